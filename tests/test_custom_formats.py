"""Tasks custom-ner and custom-mt: the user's own entity sentences and sentence pairs, read from files.

custom-ner is tagging on encoders and JSON entities (as uner-json) on decoders and mT5; custom-mt is
translation (as nusax-mt) whose stage 1 translates the same pairs the other way. Bad files are one line
naming the file, the line or row and the column, exit code 2, nothing written.
"""

import csv
import json

import pytest

from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.examples import GenTaskData, TagTaskData, source_side
from xlt.data.prompts import get_template
from xlt.data.registry import load_task
from xlt.data.sets.custom_ner import read_custom_ner
from xlt.errors import XltError
from xlt.runs.recipe import load_data

SENTENCES = [
    {"id": "s1", "target_tokens": ["Angela", "Merkel", "besucht", "Paris"],
     "target_tags": ["B-PER", "I-PER", "O", "B-LOC"],
     "source_tokens": ["Angela", "Merkel", "visits", "Paris"], "source_tags": ["B-PER", "I-PER", "O", "B-LOC"]},
    {"target_tokens": ["Die", "UNO", "tagt"], "target_tags": ["O", "B-ORG", "O"],
     "source_tokens": ["The", "UN", "meets"], "source_tags": ["O", "B-ORG", "O"]},
    {"id": "s3", "target_tokens": ["Berlin", "im", "Mai"], "target_tags": ["B-LOC", "O", "B-DATE"],
     "source_tokens": ["Berlin", "in", "May"], "source_tags": ["B-LOC", "O", "B-DATE"]},
    {"id": "s4", "target_tokens": ["Kein", "Name"], "target_tags": ["O", "O"],
     "source_tokens": ["No", "name"], "source_tags": ["O", "O"]},
]
PAIRS = [{"id": f"p{i}", "source_text": f"the house number {i}", "target_text": f"das Haus Nummer {i}"}
         for i in range(4)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _files(tmp_path, train_rows, test_rows=None, suffix=".jsonl"):
    train, test = tmp_path / f"train{suffix}", tmp_path / f"test{suffix}"
    _jsonl(train, train_rows)
    _jsonl(test, train_rows if test_rows is None else test_rows)
    return train, test


def _train(tmp_path, task, model, method, files, *extra):
    return ["train", "--task", task, "--target-lang", "de", "--method", method, "--model", model,
            "--train-file", str(files[0]), "--test-file", str(files[1]), "--max-length", "32",
            "--epochs", "1", "--stage1-epochs", "1", "--batch-size", "4", "--lora-r", "4",
            "--max-answer-length", "12", "--no-show-progress", "--stage1-dir", str(tmp_path / "stage1"),
            "--output-dir", str(tmp_path / "run"), *extra]


def _refused(capsys, tmp_path, argv, *words):
    """Exit code 2, one line on stderr holding every word, and no run or English model written."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xlt: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "stage1").exists()


def _reloads_exactly(capsys, run_dir) -> dict:
    """The stored metrics, after ``xlt evaluate --run-dir`` reproduced them exactly."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(run_dir)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["matches_stored"] is True and again["metrics"] == metrics["metrics"]
    return metrics


# --- custom-ner: reading ---------------------------------------------------------------------------------

def test_custom_ner_reads_words_tags_the_label_set_and_the_english_side(tmp_path):
    train, test = _files(tmp_path, SENTENCES, SENTENCES[:2])
    data = load_task("custom-ner", "de", train_file=train, test_file=test)
    assert isinstance(data, TagTaskData)
    assert (data.task, data.source_lang, data.target_lang) == ("custom-ner", "en", "de")
    # O and B-/I- of every train type, types sorted: I-DATE too, though DATE is only ever one word long
    assert data.labels == ("O", "B-DATE", "I-DATE", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER")
    assert [ex.id for ex in data.train] == ["s1", "line-2", "s3", "s4"] and len(data.test) == 2 and data.valid == []
    assert data.train[0].tokens == ("Angela", "Merkel", "besucht", "Paris")
    assert data.train[0].tags == ("B-PER", "I-PER", "O", "B-LOC")
    english = source_side(data)  # what stage 1 trains and is tested on: each line's source side
    assert english.target_lang == "en" and english.labels == data.labels
    assert english.train[1].tokens == ("The", "UN", "meets")
    assert english.test[0].tags == ("B-PER", "I-PER", "O", "B-LOC")


def test_custom_ner_reads_an_i_tag_after_o_as_iob_does_and_rows_without_english_until_stage1(tmp_path):
    rows = [{"target_tokens": ["in", "Paris"], "target_tags": ["O", "I-LOC"]}]  # I- after O: it starts an entity
    train, test = _files(tmp_path, rows)
    data = load_task("custom-ner", "de", train_file=train, test_file=test)
    assert data.labels == ("O", "B-LOC", "I-LOC") and data.train[0].source_tokens is None
    with pytest.raises(XltError, match="custom-ner: example line-1 has no source-language text"):
        source_side(data)
    with pytest.raises(XltError, match=r"train.jsonl: line 1 has no column 'source_tokens' \(stage 1"):
        read_custom_ner(train, english=True)


def test_custom_ner_on_a_decoder_is_uner_json_generation_with_the_english_side(tmp_path):
    train, test = _files(tmp_path, SENTENCES)
    cfg = RunConfig(task="custom-ner", target_lang="de", model="tiny-random/llama", train_file=str(train),
                    test_file=str(test))
    data, english = load_data(cfg), load_data(cfg, stage1=True)
    assert isinstance(data, GenTaskData)
    assert (data.task, data.metric) == ("custom-ner", "json_ner")
    # the instruction names the file's entity types (DATE is not one of uner-json's PER, LOC, ORG)
    prompt = get_template(data.template).prompt("Berlin im Mai")
    assert "with type DATE, LOC, ORG or PER ([] if none).\nSentence: Berlin im Mai\nEntities:" in prompt
    assert english.template == data.template
    assert data.train[0].prompt_target == "Angela Merkel besucht Paris"
    assert json.loads(data.train[0].answer) == [{"type": "PER", "text": "Angela Merkel"},
                                                {"type": "LOC", "text": "Paris"}]
    assert english.train[2].prompt_target == "Berlin in May"
    assert json.loads(english.train[2].answer) == [{"type": "LOC", "text": "Berlin"}, {"type": "DATE", "text": "May"}]
    assert isinstance(load_data(cfg.replace(model="tiny-random/bert")), TagTaskData)


# --- custom-ner: bad files -------------------------------------------------------------------------------

def _with(**changes):
    """SENTENCES with the first line changed."""
    return [{**SENTENCES[0], **changes}, *SENTENCES[1:]]


def _without(row: dict, *columns: str) -> dict:
    return {k: v for k, v in row.items() if k not in columns}


@pytest.mark.parametrize("train_rows, test_rows, message", [
    (_with(target_tags=["B-PER", "I-PER", "O"]), None,
     "train.jsonl: line 1: target_tags has 3 tags for the 4 words of target_tokens"),
    (_with(source_tokens="Angela Merkel visits Paris"), None,
     'train.jsonl: line 1: source_tokens must be a JSON list of strings, got "Angela Merkel visits Paris"'),
    (_with(target_tokens=[], target_tags=[]), None,
     "train.jsonl: line 1: target_tokens is empty (a sentence needs at least one word)"),
    (_with(target_tags=["B-PER", "I-PER", "O", "LOC"]), None,
     "train.jsonl: line 1: target_tags item 4 is 'LOC', not an IOB2 tag (O, B-TYPE or I-TYPE)"),
    (SENTENCES, [SENTENCES[0], {**SENTENCES[1], "target_tags": ["O", "B-MISC", "O"]}],
     "test.jsonl: line 2: target_tags has tag 'B-MISC', whose type is not among the entity types of"),
    (SENTENCES, [SENTENCES[0], _without(SENTENCES[1], "source_tokens", "source_tags")],
     "test.jsonl: line 2 has no column 'source_tokens' (stage 1, the English task model, trains and is tested"),
    ([_without(SENTENCES[0], "source_tags"), *SENTENCES[1:]], None,
     "train.jsonl: line 1: the source side needs source_tokens and source_tags together (found only source_tokens)"),
])
def test_custom_ner_bad_files_are_one_line_naming_file_line_and_column(tmp_path, capsys, train_rows, test_rows,
                                                                       message):
    files = _files(tmp_path, train_rows, test_rows)
    _refused(capsys, tmp_path, _train(tmp_path, "custom-ner", "tiny-random/bert", "lora", files), message)


# --- custom-ner: runs ------------------------------------------------------------------------------------

def test_custom_ner_flare_on_bert_writes_f1_and_evaluate_reproduces_it(tmp_path, capsys):
    files = _files(tmp_path, SENTENCES)
    assert main(_train(tmp_path, "custom-ner", "tiny-random/bert", "flare", files)) == 0
    metrics = _reloads_exactly(capsys, tmp_path / "run")
    assert set(metrics["metrics"]) >= {"f1", "precision", "recall"} and 0.0 <= metrics["metrics"]["f1"] <= 1.0
    assert (metrics["task"], metrics["train_examples"], metrics["test_examples"]) == ("custom-ner", 4, 4)
    assert metrics["stage1_examples"] == {"train": 4, "test": 4}


def test_custom_ner_on_llama_writes_entity_f1_and_invalid_outputs(tmp_path, capsys):
    files = _files(tmp_path, SENTENCES)
    assert main(_train(tmp_path, "custom-ner", "tiny-random/llama", "lora", files)) == 0
    metrics = _reloads_exactly(capsys, tmp_path / "run")
    assert set(metrics["metrics"]) == {"precision", "recall", "f1", "invalid_outputs"}
    assert 0 <= metrics["metrics"]["invalid_outputs"] <= 4 and metrics["test_examples"] == 4


# --- custom-mt ---------------------------------------------------------------------------------------------

def _csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_custom_mt_reads_csv_and_jsonl_and_stage1_translates_the_pairs_the_other_way(tmp_path):
    train, test = _csv(tmp_path / "train.csv", PAIRS), _jsonl(tmp_path / "test.jsonl", PAIRS[:2])
    data = load_task("custom-mt", "de", "en", train_file=train, test_file=test)
    assert isinstance(data, GenTaskData) and (data.template, data.metric) == ("mt", "mt")
    assert (data.source_lang, data.target_lang, len(data.train), len(data.test)) == ("en", "de", 4, 2)
    ex = data.test[1]
    assert ex.id == "p1" and ex.prompt_target == "English: the house number 1\nGerman:"
    assert ex.answer == "das Haus Nummer 1"
    stage1 = source_side(data)  # German -> English on the same pairs
    assert stage1.target_lang == "en" and stage1.train[3].prompt_target == "German: das Haus Nummer 3\nEnglish:"
    assert stage1.train[3].answer == "the house number 3"
    other = load_task("custom-mt", "xx-yy", "en", train_file=train, test_file=test)  # a code xlt does not know
    assert other.test[0].prompt_target == "English: the house number 0\nxx-yy:"


@pytest.mark.parametrize("model, method, message", [
    ("tiny-random/bert", "lora", "task 'custom-mt' generates text: use a decoder or encoder-decoder model"),
    ("tiny-random/llama", "flare", "method flare reads another version of the input, which for custom-mt is"),
    ("tiny-random/llama", "translate-test", "method translate-test reads another version of the input"),
])
def test_custom_mt_refuses_encoders_and_methods_that_read_the_other_side(tmp_path, capsys, model, method, message):
    files = _files(tmp_path, PAIRS)
    _refused(capsys, tmp_path, _train(tmp_path, "custom-mt", model, method, files), message)


@pytest.mark.parametrize("rows, message", [
    ([*PAIRS[:2], {"source_text": "x", "target_text": "  "}], "train.jsonl: row 3 has an empty target_text"),
    ([{"source_text": "x"}], "train.jsonl: line 1 has no column 'target_text'"),
])
def test_custom_mt_bad_files_are_one_line(tmp_path, capsys, rows, message):
    files = _files(tmp_path, rows, PAIRS)
    _refused(capsys, tmp_path, _train(tmp_path, "custom-mt", "tiny-random/llama", "lora", files), message)


@pytest.mark.parametrize("model", ["tiny-random/llama", "tiny-random/mt5"])
def test_custom_mt_writes_bleu_and_chrf_with_signatures_and_reloads_exactly(tmp_path, capsys, model):
    files = _files(tmp_path, PAIRS)
    assert main(_train(tmp_path, "custom-mt", model, "lora", files)) == 0
    metrics = _reloads_exactly(capsys, tmp_path / "run")
    assert set(metrics["metrics"]) == {"bleu", "chrf"} and set(metrics["source_metrics"]) == {"bleu", "chrf"}
    assert metrics["metric_signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert metrics["metric_signatures"]["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    assert (metrics["task"], metrics["target_lang"], metrics["test_examples"]) == ("custom-mt", "de", 4)
