"""MASSIVE slot filling / intent as generation tasks: parsing, loading, templates and metrics."""

import json
from collections import Counter

import pytest

from xlt.data.examples import GenTaskData
from xlt.data.prompts import TEMPLATES, get_template
from xlt.data.registry import load_task
from xlt.data.sets import massive
from xlt.data.sets.massive import format_slots, parse_annot
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name
from xlt.scoring.generation import GEN_METRICS, get_metric, intent_metrics, parse_slot_output, slot_metrics


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def en_rows(data_dir):
    return {r["id"]: r for r in read_jsonl(data_dir / "massive/en-US.jsonl")}


@pytest.fixture(scope="module")
def jv(data_dir):
    return load_task("massive", "jv", data_dir=data_dir)


# --- annotations ---------------------------------------------------------------------------------


def test_parse_annot_real_lines(en_rows):
    assert en_rows["0"]["annot_utt"] == "wake me up at [time : five am] [date : this week]"
    assert parse_annot(en_rows["0"]["annot_utt"]) == [("time", "five am"), ("date", "this week")]
    assert parse_annot(en_rows["89"]["annot_utt"]) == [
        ("food_type", "sushi"), ("timeofday", "tonight"), ("meal_type", "dinner")]
    assert parse_annot(en_rows["3"]["annot_utt"]) == []  # "quiet"
    assert parse_annot("[date : 今週] は [time : 午前五時] に起こして") == [("date", "今週"), ("time", "午前五時")]


def test_parse_annot_spacing_and_colons():
    assert parse_annot("at [ time :   five  am ]x[date:today]") == [("time", "five  am"), ("date", "today")]
    assert parse_annot("wake me at [time : 5:30 am]") == [("time", "5:30 am")]


def test_format_parse_round_trip():
    pairs = [("time", "five am"), ("date", "this week"), ("time", "five am")]
    text = format_slots(pairs)
    assert text == "time: five am; date: this week; time: five am"
    assert parse_slot_output(text) == pairs
    assert format_slots([]) == "None"
    assert parse_slot_output(format_slots([])) == []


# --- languages ---------------------------------------------------------------------------------------


def test_language_mapping():
    for spelling in ("jv", "jav", "javanese", "jv-ID", "JV_id"):
        assert dataset_name("massive", spelling) == "jv-ID"
        assert dataset_name("massive-intent", spelling) == "jv-ID"
    assert dataset_name("massive", "eng") == "en-US"
    assert dataset_name("massive", "swh") == "sw-KE"
    assert dataset_name("massive", "tagalog") == "tl-PH"
    assert canonical_code("zh-CN") == "zh" and canonical_code("is-IS") == "is"
    assert dataset_name("nusax", "jv-ID") == "javanese"  # locales are ordinary spellings
    with pytest.raises(XltError, match="task massive has no language 'bbc'.*jv \\(jv-ID\\)"):
        dataset_name("massive", "bbc")
    with pytest.raises(XltError, match="unknown language 'xx-YY' for task massive"):
        dataset_name("massive", "xx-YY")


# --- loader ----------------------------------------------------------------------------------------


def test_loader_counts(data_dir, jv):
    en = load_task("massive", "en-US", data_dir=data_dir)
    for data in (en, jv):
        assert isinstance(data, GenTaskData)
        assert (len(data.train), len(data.valid), len(data.test)) == (11514, 2033, 2974)
        assert (data.template, data.metric, data.task) == ("slots", "slots", "massive")
    assert (jv.source_lang, jv.target_lang) == ("en", "jv")
    counts = Counter(r["partition"] for r in read_jsonl(data_dir / "massive/jv-ID.jsonl"))
    assert counts == {"train": 11514, "dev": 2033, "test": 2974}
    assert all(ex.prompt_source == ex.prompt_target for ex in en.test)


def test_loader_parallel(jv, en_rows):
    first = jv.test[0]
    assert first.id == "0" and first.prompt_target == "gugah aku jam lima esuk minggu iki"
    assert first.answer == "time: lima esuk; date: minggu iki"
    assert first.answer_source == "time: five am; date: this week"
    for ex in jv.train[:500] + jv.valid + jv.test:
        en = en_rows[ex.id]
        assert ex.prompt_source == en["utt"]
        assert ex.answer_source == format_slots(parse_annot(en["annot_utt"]))
    assert {ex.id for ex in jv.valid} == {i for i, r in en_rows.items() if r["partition"] == "dev"}


def test_intent_variant(data_dir):
    data = load_task("massive-intent", "jv-ID", data_dir=data_dir)
    assert (data.task, data.template, data.metric) == ("massive-intent", "intent", "intent")
    assert data.test[0].answer == data.test[0].answer_source == "alarm_set"


def write_massive(root, locale, ids, partition="train"):
    (root / "massive").mkdir(exist_ok=True)
    with open(root / "massive" / f"{locale}.jsonl", "w", encoding="utf-8") as f:
        for i in ids:
            f.write(json.dumps({"id": i, "locale": locale, "partition": partition, "scenario": "alarm",
                                "intent": "alarm_set", "utt": f"u{i}", "annot_utt": f"[time : u{i}]"}) + "\n")


def test_loader_errors(tmp_path, data_dir):
    write_massive(tmp_path, "en-US", ["1", "2"])
    with pytest.raises(XltError, match="file not found: .*massive/jv-ID.jsonl"):
        load_task("massive", "jv", data_dir=tmp_path)
    write_massive(tmp_path, "jv-ID", ["1", "3", "4"])
    with pytest.raises(XltError, match="misaligned massive data: 2 ids of .*jv-ID.jsonl are missing "
                                       "from .*en-US.jsonl \\(first: '3'\\)"):
        load_task("massive", "jv", data_dir=tmp_path)
    write_massive(tmp_path, "sw-KE", ["1"], partition="validation")
    with pytest.raises(XltError, match="sw-KE.jsonl: line 1 has partition 'validation'"):
        load_task("massive", "sw", data_dir=tmp_path)
    (tmp_path / "massive/id-ID.jsonl").write_text('{"id": "1"}\n')
    with pytest.raises(XltError, match="id-ID.jsonl: line 1 is not a MASSIVE record \\(KeyError"):
        load_task("massive", "id", data_dir=tmp_path)
    with pytest.raises(XltError, match="task massive has no language 'bbc'"):
        load_task("massive", "bbc", data_dir=data_dir)
    with pytest.raises(XltError, match="apply only to tasks custom, custom-qa, custom-ner, custom-mt, not massive-intent"):
        load_task("massive-intent", "jv", data_dir=tmp_path, train_file="x.csv")
    with pytest.raises(XltError, match="unknown massive variant 'ner'"):
        massive.load(tmp_path, "jv", variant="ner")


# --- templates and metrics ---------------------------------------------------------------------


def test_templates_and_registry():
    assert TEMPLATES["slots"].prompt("wake me up {x}") == (
        "Extract the slots from the utterance as 'slot: words; ...' or None.\n"
        "Utterance: wake me up {x}\nSlots:")
    assert get_template("intent").prompt("quiet").endswith("Utterance: quiet\nIntent:")
    assert get_metric("slots") is slot_metrics and GEN_METRICS["intent"] is intent_metrics
    with pytest.raises(XltError, match="unknown prompt template 'translate'"):
        get_template("translate")
    with pytest.raises(XltError, match="unknown generation metric 'bleu'"):
        get_metric("bleu")


def test_parse_slot_output_tolerant():
    assert parse_slot_output("Time :  Five AM ;date: this week;") == [("time", "five am"), ("date", "this week")]
    assert parse_slot_output("NONE") == parse_slot_output("  none ; ") == parse_slot_output("") == []
    assert parse_slot_output(None) == []
    assert parse_slot_output("five am; date: x\nplace: y") == [("", "five am"), ("date", "x"), ("place", "y")]
    assert parse_slot_output("time:") == [("time", "")]
    assert parse_slot_output(";;: ;") == [("", "")]


def test_slot_metrics_hand_computed():
    golds = ["time: five am; date: this week", "None", "food_type: sushi; food_type: sushi", "None"]
    preds = ["time: Five  AM; date: today", "none", "food_type: sushi", "place: home"]
    # pairs: gold 2 + 0 + 2 + 0 = 4, pred 2 + 0 + 1 + 1 = 4, tp = 1 (time) + 1 (one sushi) = 2
    m = slot_metrics(preds, golds)
    assert m["slot_precision"] == pytest.approx(2 / 4)
    assert m["slot_recall"] == pytest.approx(2 / 4)
    assert m["slot_f1"] == pytest.approx(0.5)
    assert m["exact_match"] == pytest.approx(1 / 4)  # only None == none

    m = slot_metrics(["time: five am; time: five am", "garbage output"], ["time: five am", "date: x"])
    # pred 3 pairs (one duplicate, one malformed), gold 2, tp 1
    assert (m["slot_precision"], m["slot_recall"]) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert m["slot_f1"] == pytest.approx(2 * 1 / (3 + 2))
    assert m["exact_match"] == 0.0

    m = slot_metrics(["NONE;", "", "TIME: Five   am ;"], ["None", "None", "time: five am"])
    assert m == {"slot_f1": 1.0, "slot_precision": 1.0, "slot_recall": 1.0, "exact_match": 1.0}
    assert slot_metrics(["none"], ["None"])["slot_f1"] == 1.0  # nothing to find, nothing wrong
    m = slot_metrics(["None"], ["time: five am"])
    assert (m["slot_f1"], m["slot_precision"], m["slot_recall"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="1 predictions for 2 gold answers"):
        slot_metrics(["None"], ["None", "None"])


def test_intent_accuracy():
    assert intent_metrics([" Alarm_Set ", "alarm_query", "x"], ["alarm_set", "alarm_set", "x"]) == {
        "accuracy": pytest.approx(2 / 3)}
