"""QA and NER metrics against hand-worked examples."""

import pytest

from xlt.scoring.entities import entity_spans, json_entity_metrics, parse_json_entities, tagging_metrics
from xlt.scoring.squad import answer_tokens, exact_match, normalize_answer, squad_metrics, token_f1


def test_squad_normalisation_drops_case_punctuation_articles_and_extra_space():
    assert normalize_answer("  The  Eiffel-Tower, (Paris)! ") == "eiffeltower paris"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Los Angeles «la ciudad»", "es") == "angeles ciudad"
    assert normalize_answer("the theory") == "theory"  # whole words only
    assert answer_tokens("北京大学 in 2020", "zh") == ["北", "京", "大", "学", "in", "2020"]


def test_token_f1_and_exact_match_by_hand():
    # pred: [barack, obama], gold: [president, barack, obama] -> P 1, R 2/3, F1 0.8
    assert token_f1("Barack Obama", "President Barack Obama") == pytest.approx(0.8)
    assert exact_match("the Barack Obama.", "barack obama") == 1.0
    assert token_f1("", "") == 1.0 and token_f1("a", "obama") == 0.0  # "a" normalises to nothing
    assert token_f1("obama obama", "obama") == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts, not sets


def test_squad_metrics_take_the_best_gold_answer_per_question():
    result = squad_metrics(["Denver Broncos", "1990", "blue"],
                           [["Denver Broncos", "Broncos"], ["in 1990", "1991"], ["red"]])
    assert result["exact_match"] == pytest.approx(1 / 3)
    # q1: 1.0; q2: best of F1("1990","in 1990") = 2*1*0.5/1.5 = 2/3; q3: 0
    assert result["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_entity_spans_follow_conlleval():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert entity_spans(["B-PER", "B-PER"]) == [("PER", 0, 1), ("PER", 1, 2)]  # adjacent entities
    assert entity_spans(["O", "I-ORG", "I-ORG"]) == [("ORG", 1, 3)]  # I- after O starts one (IOB1)
    assert entity_spans(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 3)]  # type change splits
    assert entity_spans(["O", "O"]) == []


def test_tagging_metrics_are_entity_level_micro_scores():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]  # PER span too short: wrong; LOC, ORG right
    result = tagging_metrics(pred, gold)
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert tagging_metrics([["O"]], [["B-PER"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="2 predicted tags for 1 words"):
        tagging_metrics([["O", "O"]], [["O"]])


def test_json_entities_are_parsed_or_counted_invalid():
    assert parse_json_entities('[{"type": "PER", "text": " Barack  Obama"}]') == [("PER", "Barack Obama")]
    assert parse_json_entities("[]") == []
    for bad in ('{"type": "PER"}', "PER: Obama", '[{"type": "PER"}]', '[{"type": 1, "text": "x"}]', ""):
        assert parse_json_entities(bad) is None
    outputs = ['[{"type": "PER", "text": "Obama"}, {"type": "LOC", "text": "Paris"}]', "not json",
               '[{"type": "ORG", "text": "UN"}, {"type": "ORG", "text": "UN"}]']
    gold = [[("PER", "Obama"), ("LOC", "Berlin")], [("LOC", "Rome")], [("ORG", "UN")]]
    result = json_entity_metrics(outputs, gold)
    # correct: Obama, one UN (multiset) = 2; predicted 2 + 0 + 2 = 4; gold 2 + 1 + 1 = 4
    assert result == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "invalid_outputs": 1}


from xlt.mt.answer_projection import Span, mark, project, unmark  # noqa: E402


def test_marked_answers_survive_an_identity_translation_at_every_position():
    cases = [("Paris is the capital.", 0, "Paris"),                      # at the start
             ("The capital is Paris", 15, "Paris"),                      # at the end
             ('He said "yes" twice: "yes".', 21, '"yes"'),               # quotes, and a repeated answer
             ("one two one", 8, "one")]                                  # the second of two occurrences
    spans, dropped = project(cases, lambda texts: texts)
    assert not dropped
    for (context, start, answer), span in zip(cases, spans):
        assert span == Span(context, start, answer)
        assert span.context[span.answer_start : span.answer_start + len(span.answer)] == answer


def test_a_translation_that_moves_the_answer_keeps_its_new_offset():
    def translate(texts):
        assert texts == ["The capital is [Paris]."]
        return ["[Paris] ist die Hauptstadt ."]

    spans, dropped = project([("The capital is Paris.", 15, "Paris")], translate)
    assert spans == [Span("Paris ist die Hauptstadt .", 0, "Paris")] and not dropped


def test_examples_are_dropped_with_their_reason():
    assert unmark("no markers here") == "markers lost in translation"
    assert unmark("[a] and [b]") == "markers repeated or half lost"
    assert unmark("only [open") == "markers repeated or half lost"
    assert unmark("]a[") == "markers out of order"
    assert unmark("x [ ] y") == "empty answer"
    assert unmark("x [ spaced ] y") == Span("x  spaced  y", 3, "spaced")
    assert mark("a [note] here", 0, "a") is None and mark("abc", 1, "c") is None
    cases = [("a [note] here", 0, "a"), ("abc", 1, "c"), ("keep me", 0, "keep")]
    spans, dropped = project(cases, lambda texts: ["lost" for _ in texts])
    assert spans == [None, None, None]
    assert dropped == {"paragraph holds a marker": 1, "answer not at its offset": 1, "markers lost in translation": 1}
