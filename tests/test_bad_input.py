"""Bad input: one line on stderr, exit code 2, before any data set or model loads, nothing written.

Every test goes through ``xlt.cli.main`` with the heavy entry points (``run_stage2``, ``evaluate_run``,
``run_retrieval``, the merges) replaced by a function that fails the test: the checks must stop bad
input before them. Warnings (input accepted but changed or partly ignored) are one line each too.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.formats import user_file
from xlt.data.registry import load_task
from xlt.errors import XltError
from xlt.models.loading import check_model_folder, check_safetensors, resolve_model
from xlt.runs.preflight import check_output_dir
from xlt.runs.stage2 import run_stage2 as REAL_RUN_STAGE2  # before nothing_heavy_runs replaces it

TRAIN = ["--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv", "--epochs", "1",
         "--stage1-epochs", "1", "--no-show-progress"]
CUSTOM_HEADER = "source_text,target_text,label\n"


@pytest.fixture(autouse=True)
def nothing_heavy_runs(monkeypatch):
    """Reaching a run, an evaluation, a retrieval or a merge means a check was missing."""
    import xlt.alignment.merge as merge
    import xlt.alignment.retrieval as retrieval
    import xlt.runs.evaluate as evaluate
    import xlt.runs.stage2 as run

    def fail(*args, **kwargs):
        raise AssertionError("bad input reached the heavy code path")

    for module, name in ((run, "run_stage2"), (evaluate, "evaluate_run"), (retrieval, "run_retrieval"),
                         (merge, "merge_runs"), (merge, "merge_adapters")):
        monkeypatch.setattr(module, name, fail)


def error_line(capsys) -> str:
    """The one line on stderr (asserting there is exactly one, with the CLI's prefix)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xlt: error: "), err
    return lines[0]


def refused(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    line = error_line(capsys)
    for word in words:
        assert word in line, line
    return line


def train_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["train", *TRAIN, "--output-dir", str(tmp_path / "run"), "--stage1-dir", str(tmp_path / "stage1"),
            *extra]


def nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "run").exists() and not (tmp_path / "stage1").exists()


# --- the user's data files ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["--train-file", "--test-file"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_file(tmp_path, capsys, which, suffix):
    good = tmp_path / f"good{suffix}"
    bad = tmp_path / f"bad{suffix}"
    if suffix == ".csv":
        good.write_text(CUSTOM_HEADER + "hello,halo,pos\nbye,dah,neg\n", encoding="utf-8")
        bad.write_bytes(CUSTOM_HEADER.encode() + b"hello,halo,pos\ncaf\xe9,kopi,neg\n")  # Latin-1 e-acute
        line = 3
    else:
        rows = [{"source_text": "hello", "target_text": "halo", "label": "pos"},
                {"source_text": "bye", "target_text": "dah", "label": "neg"}]
        good.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        bad.write_bytes(json.dumps(rows[0]).encode() + b'\n{"source_text": "caf\xe9", "target_text": "x", '
                        b'"label": "neg"}\n')
        line = 2
    files = {"--train-file": good, "--test-file": good, which: bad}
    before = bad.read_bytes()
    refused(capsys, train_args(tmp_path, "--task", "custom", "--train-file", str(files["--train-file"]),
                               "--test-file", str(files["--test-file"])),
            str(bad), "not UTF-8", "byte 0xe9", f"line {line}")
    nothing_written(tmp_path)
    assert bad.read_bytes() == before


def test_csv_field_over_python_default_limit_is_read(tmp_path):
    """Python's csv stops at 131,072 characters per field; xlt reads up to MAX_FIELD_CHARS and restores the limit."""
    long_text = "kata " * 40_000  # 200,000 characters
    train = tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["source_text", "target_text", "label"])
        writer.writerows([["hello", long_text, "pos"], ["bye", "dah", "neg"]] * 5)
    default_limit = csv.field_size_limit()
    data = load_task("custom", "jv", train_file=train, test_file=train)
    assert sorted(len(ex.target[0]) for ex in data.test) == [3] * 5 + [200_000] * 5
    assert csv.field_size_limit() == default_limit == 131_072


def test_csv_field_over_xlt_limit_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(user_file, "MAX_FIELD_CHARS", 1_000)
    train = tmp_path / "train.csv"
    train.write_text(CUSTOM_HEADER + "hello,halo,pos\nbye," + "x" * 1_001 + ",neg\n", encoding="utf-8")
    refused(capsys, train_args(tmp_path, "--task", "custom", "--train-file", str(train), "--test-file", str(train)),
            str(train), "row 2 has a field longer than 1,000 characters")
    nothing_written(tmp_path)
    assert csv.field_size_limit() == 131_072


# --- values of settings ---------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, message", [
    ("--lr", "-1", "lr must be a finite number > 0, got -1.0"),
    ("--lr", "nan", "lr must be a finite number > 0, got nan"),
    ("--lr", "0", "lr must be a finite number > 0, got 0.0"),
    ("--lr", "inf", "lr must be a finite number > 0, got inf"),
    ("--stage1-lr", "-1", "stage1_lr must be a finite number > 0, got -1.0"),
    ("--stage1-lr", "nan", "stage1_lr must be a finite number > 0, got nan"),
    ("--stage1-lr", "0", "stage1_lr must be a finite number > 0, got 0.0"),
    ("--lora-dropout", "2", "lora_dropout must be in [0, 1), got 2.0"),
    ("--lora-dropout", "1", "lora_dropout must be in [0, 1), got 1.0"),
    ("--lora-dropout", "nan", "lora_dropout must be in [0, 1), got nan"),
    ("--lora-alpha", "-16", "lora_alpha must be >= 1, got -16"),
    ("--align-temperature", "0", "align_temperature must be a finite number > 0, got 0.0"),
    ("--align-temperature", "-0.1", "align_temperature must be a finite number > 0, got -0.1"),
    ("--align-temperature", "nan", "align_temperature must be a finite number > 0, got nan"),
    ("--batch-size", "0", "batch_size must be >= 1, got 0"),
    ("--qa-windows-per-pass", "0", "qa_windows_per_pass must be >= 1, got 0"),
    ("--seed", "-1", "seed must be in 0 .. 2**32-1, got -1"),
    ("--align-max-pairs", "1", "align_max_pairs must be >= 2"),
    ("--align-layers", "4,x", "align_layers must be comma-separated layer numbers >= 1, got '4,x'"),
    ("--lr", "fast", "argument --lr: invalid float value: 'fast'"),
    ("--source-layer-offset", "2", "argument --source-layer-offset: invalid choice: 2"),
])
def test_bad_value(tmp_path, capsys, flag, value, message):
    refused(capsys, train_args(tmp_path, flag, value), message)
    nothing_written(tmp_path)


@pytest.mark.parametrize("yaml_text, message", [
    ("epochs: 1.5\n", "epochs must be an integer, got 1.5 (float)"),
    ("lora_r: true\n", "lora_r must be an integer or null, got True (bool)"),
    ("bf16: 'yes'\n", "bf16 must be true or false, got 'yes' (str)"),
    ("target_lang: no\n", "target_lang must be a string, got False (bool) (quote it in YAML)"),
    ("lr: [0.1]\n", "lr must be a number, got [0.1] (list)"),
    ("lr: fast\n", "lr must be a number, got 'fast' (str)"),
    ("method: null\n", "method must be a string, got None (NoneType)"),
    ("task: squad\n", "task must be one of nusax, xnli, custom, massive, massive-intent, panx, uner, uner-json, "
                       "nusax-mt, wmt23, mlqa, tydiqa, custom-qa, custom-ner, custom-mt; got 'squad'"),
])
def test_yaml_value_of_the_wrong_type(tmp_path, capsys, yaml_text, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    refused(capsys, ["train", "--config", str(config), "--output-dir", str(tmp_path / "run"),
                     "--stage1-dir", str(tmp_path / "stage1")], message)
    nothing_written(tmp_path)


def test_yaml_numbers_that_are_fine():
    """YAML 1.1 reads 5e-4 as a string and 1 as an int: both are the numbers they look like."""
    cfg = RunConfig.from_dict(yaml.safe_load("lr: 5e-4\nstage1_lr: 1\nepochs: 2\n"))
    assert cfg.lr == 0.0005 and cfg.stage1_lr == 1.0 and isinstance(cfg.stage1_lr, float) and cfg.epochs == 2


# --- output paths ---------------------------------------------------------------------------


def test_output_dir_is_an_existing_file(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    refused(capsys, ["train", *TRAIN, "--output-dir", str(existing), "--stage1-dir", str(tmp_path / "stage1")],
            "--output-dir", str(existing), "is an existing file")
    assert existing.read_text() == "mine\n" and not (tmp_path / "stage1").exists()


def test_output_dir_under_a_file(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    refused(capsys, ["train", *TRAIN, "--output-dir", str(existing / "run"), "--stage1-dir", str(tmp_path / "s1")],
            str(existing / "run"), f"lies under {existing}, which is a file")
    assert existing.read_text() == "mine\n" and not (tmp_path / "s1").exists()


def _deny_writes_in(monkeypatch, locked: Path) -> None:
    """What ``os.access`` answers a non-root user for a 0500 folder (root may write anywhere)."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == locked and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_output_dir_in_an_unwritable_folder(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    _deny_writes_in(monkeypatch, locked)
    try:
        refused(capsys, ["train", *TRAIN, "--output-dir", str(locked / "run" / "a"),
                         "--stage1-dir", str(tmp_path / "s1")],
                str(locked / "run" / "a"), f"no permission to write in {locked}")
        assert list(locked.iterdir()) == [] and not (tmp_path / "s1").exists()
    finally:
        locked.chmod(0o700)


def test_check_output_dir_accepts_writable_and_new_paths(tmp_path):
    check_output_dir(tmp_path)
    check_output_dir(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_unwritable_stage1_cache(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "cache"
    locked.mkdir()
    _deny_writes_in(monkeypatch, locked)
    refused(capsys, ["train", *TRAIN, "--output-dir", str(tmp_path / "run"), "--stage1-dir", str(locked)],
            "--stage1-dir", f"no permission to write in {locked}")
    assert not (tmp_path / "run").exists()


# --- model folders --------------------------------------------------------------------------


def model_folder(tmp_path: Path, config: dict, weights: bytes | None = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    path = folder / "model.safetensors"
    if weights is None:
        save_file({"embeddings.weight": np.ones((4, 8), dtype=np.float32),
                   "classifier.bias": np.zeros(2, dtype=np.float32)}, str(path))
    else:
        path.write_bytes(weights)
    return folder


def whole_safetensors(tmp_path: Path) -> bytes:
    path = tmp_path / "whole.safetensors"
    save_file({"w": np.arange(64, dtype=np.float32)}, str(path))
    return path.read_bytes()


@pytest.mark.parametrize("case, words", [
    ("no model_type", ["config.json has no model_type", "bert"]),
    ("auto_map", ["names custom code (configuration_nova.NovaConfig, modeling_nova.NovaForSequenceClassification)",
                  "model type 'nova'", "no remote code"]),
    ("unsupported type", ["model type 'gpt2' is not supported yet", "xlm-roberta"]),
    ("config not json", ["config.json is not valid JSON"]),
    ("truncated", ["model.safetensors is truncated", "the file has"]),
    ("garbage", ["model.safetensors is not a safetensors file, or truncated"]),
    ("garbage header", ["model.safetensors is not a safetensors file: its header is not JSON"]),
    ("bad offsets", ["tensor 'w' has no valid data_offsets"]),
    ("no weights", ["has no weights (model.safetensors"]),
])
def test_broken_model_folder(tmp_path, capsys, case, words):
    bert = {"model_type": "bert", "hidden_size": 8}
    whole = whole_safetensors(tmp_path)
    if case == "no model_type":
        folder = model_folder(tmp_path, {"hidden_size": 8})
    elif case == "auto_map":
        folder = model_folder(tmp_path, {"model_type": "nova", "auto_map": {
            "AutoConfig": "configuration_nova.NovaConfig",
            "AutoModelForSequenceClassification": "modeling_nova.NovaForSequenceClassification"}})
    elif case == "unsupported type":
        folder = model_folder(tmp_path, {"model_type": "gpt2"})
    elif case == "config not json":
        folder = model_folder(tmp_path, bert)
        (folder / "config.json").write_text("{model_type: bert")
    elif case == "truncated":
        folder = model_folder(tmp_path, bert, whole[:-100])
    elif case == "garbage":
        folder = model_folder(tmp_path, bert, os.urandom(64) + b"\xff" * 8)
    elif case == "garbage header":
        header = b"not json at all!"
        folder = model_folder(tmp_path, bert, len(header).to_bytes(8, "little") + header + b"\0" * 32)
    elif case == "bad offsets":
        header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}).encode()
        folder = model_folder(tmp_path, bert, len(header).to_bytes(8, "little") + header + b"\0" * 8)
    else:
        folder = model_folder(tmp_path, bert)
        (folder / "model.safetensors").unlink()
    refused(capsys, train_args(tmp_path, "--model", str(folder)), *words)
    nothing_written(tmp_path)


def test_missing_model_folder(tmp_path, capsys):
    refused(capsys, train_args(tmp_path, "--model", str(tmp_path / "nowhere")), "model folder", "does not exist")
    nothing_written(tmp_path)


def test_sane_model_folders_pass(tmp_path):
    assert check_model_folder(resolve_model("tiny-random/bert")) == "bert"
    assert check_model_folder(model_folder(tmp_path, {"model_type": "xlm-roberta"})) == "xlm-roberta"
    whole = tmp_path / "whole.safetensors"
    whole.write_bytes(whole_safetensors(tmp_path))
    check_safetensors(whole)
    whole.write_bytes(whole.read_bytes()[:-1])
    with pytest.raises(XltError, match="is truncated: its tensors end at byte"):
        check_safetensors(whole)


# --- run directories, retrieval, merge --------------------------------------------------------


def run_dir(tmp_path: Path, metrics_text: str) -> Path:
    folder = tmp_path / "finished"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(RunConfig(method="zero-shot").to_dict()))
    (folder / "metrics.json").write_text(metrics_text)
    return folder


@pytest.mark.parametrize("metrics_text, words", [
    ('{"task": "nusax", ', ["metrics.json is not valid JSON"]),
    ("[1, 2]", ["metrics.json is not a JSON object"]),
    ('"done"', ["metrics.json is not a JSON object"]),
    ('{"task": "nusax"}', ["metrics.json names no stage1_dir"]),
    ('{"stage1_dir": "/nonexistent/stage1"}', ["the run's English model /nonexistent/stage1 is missing"]),
])
def test_evaluate_a_broken_run_dir(tmp_path, capsys, metrics_text, words):
    folder = run_dir(tmp_path, metrics_text)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    refused(capsys, ["evaluate", "--run-dir", str(folder)], *words)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("source, words", [
    ("--max-sentences 1", ["--max-sentences must be at least 2, got 1"]),
    ("one-row file", ["1 sentence(s) per language", "need at least 2"]),
])
def test_retrieval_on_fewer_than_two_sentences(tmp_path, capsys, source, words):
    data = tmp_path / "pairs.csv"
    data.write_text("en,jv\nhello,halo\n" if source == "one-row file" else "en,jv\nhello,halo\nbye,dah\n")
    argv = ["retrieval", "--model", "tiny-random/bert", "--data", str(data), "--output-dir", str(tmp_path / "out")]
    if source.startswith("--"):
        argv += source.split()
    refused(capsys, argv, *words)
    assert not (tmp_path / "out").exists()


def test_merge_into_one_of_its_inputs(tmp_path, capsys):
    adapters = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(whole_safetensors(tmp_path))
        (folder / "adapter_config.json").write_text("{}")
        adapters.append(str(folder))
    before = (tmp_path / "a" / "adapter_model.safetensors").read_bytes()
    refused(capsys, ["merge", "--adapters", *adapters, "--weights", "0.9", "0.1", "--output-dir", adapters[0]],
            f"--output-dir {adapters[0]} overlaps the input {adapters[0]}; write the merge to another folder")
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == before


def test_merge_a_truncated_adapter(tmp_path, capsys):
    adapters = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(whole_safetensors(tmp_path)[: -4 if name == "b" else None])
        (folder / "adapter_config.json").write_text("{}")
        adapters.append(str(folder))
    refused(capsys, ["merge", "--adapters", *adapters, "--weights", "0.9", "0.1", "--output-dir",
                     str(tmp_path / "out")], "b/adapter_model.safetensors is truncated")
    assert not (tmp_path / "out").exists()


def test_alignment_language_missing_from_the_parallel_set(tmp_path, capsys):
    refused(capsys, train_args(tmp_path, "--method", "align", "--align-langs", "jv,klingon"),
            "nusax-mt: no language 'klingon'")
    nothing_written(tmp_path)


# --- warnings: accepted, but said -------------------------------------------------------------


def test_extra_columns_and_padded_labels_are_warned_about(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text(CUSTOM_HEADER.replace("\n", ",note\n") + "hello,halo, positive,a\nbye,dah,negative,b\n"
                     "yes,iya,positive ,c\nno,ora,negative,d\n", encoding="utf-8")
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"source_text": "ok", "target_text": "oke", "label": "positive", "score": 0.9}) + "\n",
                    encoding="utf-8")
    data = load_task("custom", "jv", train_file=train, test_file=test)
    assert data.labels == ("negative", "positive")  # " positive" and "positive " are "positive"
    assert [data.labels[ex.label] for ex in data.test] == ["positive"]
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        f"xlt: warning: {train}: ignoring column(s) 'note' (task custom reads source_text, target_text, label and id)",
        f"xlt: warning: {train}: 2 label(s) with surrounding whitespace read without it "
        "(e.g. ' positive' as 'positive')",
        f"xlt: warning: {test}: ignoring column(s) 'score' (task custom reads source_text, target_text, label and id)",
    ]
    load_task("custom", "jv", train_file=train, test_file=test)
    assert capsys.readouterr().err == ""  # each warning once per process


def test_csv_rows_longer_than_the_header_are_warned_about(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text(CUSTOM_HEADER + "hello,halo,pos,extra\nbye,dah,neg\nx,y,pos,1,2\n", encoding="utf-8")
    data = load_task("custom", "jv", train_file=train, test_file=train)
    assert [ex.target for ex in data.test] == [("halo",), ("dah",), ("y",)]
    assert capsys.readouterr().err.splitlines() == [
        f"xlt: warning: {train}: 2 row(s) have more fields than the header (first: row 1); the extra fields are ignored"
    ]


# --- issue 22: every error before compute, one line, never a traceback -----------------------------


def _ner_rows(path: Path) -> Path:
    path.write_text(json.dumps({"target_tokens": ["in", "Paris"], "target_tags": ["O", "B-LOC"],
                                "source_tokens": ["in", "Paris"], "source_tags": ["O", "B-LOC"]}) + "\n",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("task", ["custom", "custom-ner"])
def test_unknown_source_lang_of_a_user_file_task(tmp_path, capsys, task):
    """metrics.json records the source language's code: an unknown one used to fail after both stages ran."""
    if task == "custom":
        data = tmp_path / "data.csv"
        data.write_text(CUSTOM_HEADER + "hello,halo,pos\nbye,dah,neg\n", encoding="utf-8")
    else:
        data = _ner_rows(tmp_path / "data.jsonl")
    refused(capsys, train_args(tmp_path, "--task", task, "--train-file", str(data), "--test-file", str(data),
                               "--source-lang", "xx"), "unknown language 'xx'; known: ace, af")
    nothing_written(tmp_path)


@pytest.mark.parametrize("extra, message", [
    (["--method", "align", "--align-layers", "2,99"], "--align-layers must be layers 1..2 of tiny-random/bert, "
                                                      "got '2,99'"),
    (["--method", "x-mixup", "--mixup-layers", "3"], "--mixup-layers must be layers 1..2 of tiny-random/bert, got '3'"),
    (["--method", "x-mixup", "--mixup-layers", "1,1"], "--mixup-layers must be distinct layers 1..2 of "
                                                       "tiny-random/bert, got '1,1'"),
    (["--method", "align", "--align-layers", "9" * 5000], "--align-layers must be layers 1..2 of tiny-random/bert, "
                                                          "got '99999"),
    (["--lora-r", "100"], "--lora-r 100 is above the hidden size of tiny-random/bert (32), the highest rank"),
    (["--stage1-lora-r", "1000"], "--stage1-lora-r 1,000 is above the hidden size of tiny-random/bert (32)"),
    (["--lora-r", str(10**12)], "lora_r must be at most 65,536 (above any model's hidden size), got 1000000000000"),
])
def test_layers_and_ranks_the_model_does_not_have(tmp_path, capsys, extra, message):
    """Checked against the model's config.json before anything loads: these used to fail after stage 1
    (layers) or allocating the adapter (ranks)."""
    refused(capsys, train_args(tmp_path, *extra), message)
    nothing_written(tmp_path)


def test_output_dir_whose_parent_is_unwritable(tmp_path, capsys, monkeypatch):
    """The run is built in a temp sibling of --output-dir: a writable folder in a locked parent used to
    fail with a PermissionError after training."""
    locked = tmp_path / "locked"
    (locked / "run").mkdir(parents=True)
    _deny_writes_in(monkeypatch, locked)
    refused(capsys, ["train", *TRAIN, "--output-dir", str(locked / "run"), "--stage1-dir", str(tmp_path / "s1")],
            f"--output-dir {locked / 'run'}: no permission to write in {locked}, where the finished folder is built")
    assert list(locked.iterdir()) == [locked / "run"] and not (tmp_path / "s1").exists()


@pytest.mark.parametrize("pickle", ["pytorch_model.bin", "pytorch_model.bin.index.json"])
def test_pickle_only_model_folder(tmp_path, capsys, pickle):
    folder = model_folder(tmp_path, {"model_type": "bert", "hidden_size": 8})
    (folder / "model.safetensors").unlink()
    (folder / pickle).write_bytes(b"\x80\x04K\x01.")  # a pickle: loading it runs whatever it says
    refused(capsys, train_args(tmp_path, "--model", str(folder)),
            f"model folder {folder} has only PyTorch pickle weights ({pickle}); xlt reads safetensors only")
    nothing_written(tmp_path)


def _adapter(folder: Path, config: str, tensors: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(tensors)
    (folder / "adapter_config.json").write_text(config)
    return folder


LORA_CONFIG = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}


@pytest.mark.parametrize("config, words", [
    ('{"peft_type": "LORA", ', ["adapter_config.json is not valid JSON"]),
    ("[1, 2]", ["adapter_config.json is not a JSON object"]),
    ("{}", ["is not a plain LoRA adapter", "says peft_type None"]),
    (json.dumps({k: v for k, v in LORA_CONFIG.items() if k != "r"}),
     ["adapter_config.json: r must be a positive integer (the LoRA rank), got None"]),
    (json.dumps({**LORA_CONFIG, "r": "4"}), ["adapter_config.json: r must be a positive integer", "got '4'"]),
    (json.dumps({**LORA_CONFIG, "lora_alpha": -1}), ["adapter_config.json: lora_alpha must be a positive number"]),
    (json.dumps({k: v for k, v in LORA_CONFIG.items() if k != "target_modules"}),
     ["adapter_config.json: target_modules must name the adapted modules", "got None"]),
])
def test_merge_an_invalid_adapter_config(tmp_path, capsys, config, words):
    good = _adapter(tmp_path / "a", json.dumps(LORA_CONFIG), whole_safetensors(tmp_path))
    bad = _adapter(tmp_path / "b", config, whole_safetensors(tmp_path))
    line = refused(capsys, ["merge", "--adapters", str(good), str(bad), "--weights", "0.9", "0.1",
                            "--output-dir", str(tmp_path / "out")], *words)
    assert str(bad) in line
    assert not (tmp_path / "out").exists()


def _finished_run(folder: Path, stage1: str, tensors: bytes) -> Path:
    _adapter(folder / "adapter", json.dumps(LORA_CONFIG), tensors)
    (folder / "adapter" / "xlt_adapter.json").write_text('{"method": "lora", "pooling": "mean"}')
    (folder / "config.yaml").write_text(yaml.safe_dump(RunConfig(method="lora").to_dict()))
    (folder / "metrics.json").write_text(json.dumps({"task": "nusax", "stage1_dir": stage1}))
    return folder


@pytest.mark.parametrize("given", ["runs", "adapter folders"])
def test_merge_adapters_of_different_english_models(tmp_path, capsys, given):
    """PEFT's base_model_name_or_path is empty for xlt's classifiers; each run's metrics.json names its model."""
    tensors = whole_safetensors(tmp_path)
    runs = [_finished_run(tmp_path / "r1", "/cache/stage1/e5/nusax/seed0-aaaa", tensors),
            _finished_run(tmp_path / "r2", "/cache/stage1/e5/nusax/seed1-bbbb", tensors)]
    inputs = runs if given == "runs" else [run / "adapter" for run in runs]
    refused(capsys, ["merge", "--adapters", *map(str, inputs), "--weights", "0.5", "0.5",
                     "--output-dir", str(tmp_path / "out")],
            f"{inputs[1]} was trained on the English model /cache/stage1/e5/nusax/seed1-bbbb, {inputs[0]} on "
            "/cache/stage1/e5/nusax/seed0-aaaa: adapters of different stage-1 models cannot be merged")
    assert not (tmp_path / "out").exists()


def test_merge_output_whose_parent_is_unwritable(tmp_path, capsys, monkeypatch):
    tensors = whole_safetensors(tmp_path)
    a = _adapter(tmp_path / "a", json.dumps(LORA_CONFIG), tensors)
    b = _adapter(tmp_path / "b", json.dumps(LORA_CONFIG), tensors)
    locked = tmp_path / "locked"
    (locked / "out").mkdir(parents=True)
    _deny_writes_in(monkeypatch, locked)
    refused(capsys, ["merge", "--adapters", str(a), str(b), "--weights", "0.5", "0.5", "--output-dir",
                     str(locked / "out")], f"no permission to write in {locked}")


@pytest.mark.parametrize("argv, message", [
    (["--epochs", str(10**9)], "epochs must be at most 1,000,000 (optimizer steps a run plans), got 1000000000"),
    (["--stage1-epochs", str(10**9)], "stage1_epochs must be at most 1,000,000"),
])
def test_epochs_past_the_step_bound(tmp_path, capsys, argv, message):
    """The plan is one entry per optimizer step: a billion epochs used to grow it until memory ran out."""
    refused(capsys, train_args(tmp_path, *argv), message)
    nothing_written(tmp_path)


def test_demo_epochs_past_the_step_bound(tmp_path, capsys):
    refused(capsys, ["demo", "--epochs", str(10**9), "--output-dir", str(tmp_path / "demo")],
            "--epochs must be at most 1,000,000 (optimizer steps a run plans), got 1,000,000,000")
    assert not (tmp_path / "demo").exists()


def test_a_plan_past_the_step_bound_is_refused_before_it_is_built():
    from xlt.alignment.aligner import interleave
    from xlt.alignment.contrastive import AlternatingSchedule
    from xlt.data.examples import Example
    from xlt.training.limits import MAX_OPTIMIZER_STEPS, check_steps
    from xlt.training.loop import task_steps

    examples = [Example(("kata",), None, 0)] * 100
    assert check_steps(100, 10, MAX_OPTIMIZER_STEPS // 10) == MAX_OPTIMIZER_STEPS  # the bound itself is allowed
    assert len(task_steps(examples, None, 10, 3, seed=0)) == 30
    with pytest.raises(XltError, match=r"^training would take 1,000,010 optimizer steps \(100,001 epochs of 100 "
                                       r"examples in batches of 10\); xlt plans at most 1,000,000: lower the epochs$"):
        task_steps(examples, None, 10, MAX_OPTIMIZER_STEPS // 10 + 1, seed=0)
    with pytest.raises(XltError, match="alignment training would take more than 1,000,000 optimizer steps"):
        interleave([], "align", AlternatingSchedule(1, 1), MAX_OPTIMIZER_STEPS + 1)
    with pytest.raises(XltError, match="training with alignment steps would take more than 1,000,000"):
        interleave(["task"] * 3, "align", AlternatingSchedule(1, 10**7), 0)


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "100000", "--max-train-examples", "64", "--batch-size", "1"],
     "stage 2 would take 6,400,000 optimizer steps (100,000 epochs of 64 examples in batches of 1); xlt plans at "
     "most 1,000,000: lower --epochs"),
    (["--stage1-epochs", "100000", "--stage1-max-train-examples", "64", "--batch-size", "1"],
     "stage 1 would take 6,400,000 optimizer steps (100,000 epochs of 64 examples in batches of 1); xlt plans at "
     "most 1,000,000: lower --stage1-epochs"),
])
def test_steps_are_checked_once_the_data_is_read(tmp_path, capsys, monkeypatch, argv, message):
    """The steps depend on the data: checked once it is read, before a model loads or stage 1 trains."""
    import xlt.runs.stage1
    import xlt.runs.stage2 as run

    monkeypatch.setattr(run, "run_stage2", REAL_RUN_STAGE2)
    monkeypatch.setattr(xlt.runs.stage1, "build_once", lambda *args, **kwargs: pytest.fail("stage 1 was built"))
    refused(capsys, train_args(tmp_path, *argv), message)
    nothing_written(tmp_path)


BILLION_LAUGHS = "".join(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
                         for prev, name in zip([None, *"abcdefgh"], "abcdefghi")) + "lr: *i\n"


def test_yaml_alias_bomb_in_config(tmp_path, capsys):
    """3 KB of aliases expand to 9**9 values: refused at the first alias, before anything expands."""
    config = tmp_path / "run.yaml"
    config.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 3_000
    refused(capsys, ["train", "--config", str(config), "--output-dir", str(tmp_path / "run")],
            f"config file {config}, line 2: YAML aliases (*a) are not read in config files; write the value out")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("yaml_text, message", [
    ("lr: [" + ", ".join(["1"] * 200_000) + "]\n", "lr must be a number, got [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ...] (list)"),
    ("task: " + "x" * 100_000 + "\n", "got '" + "x" * 78 + "…"),
    ("seed: -" + "9" * 4_000 + "\n", "seed must be in 0 .. 2**32-1, got -999999"),
    ("seed: " + "9" * 5_000 + "\n", "holds a value YAML cannot read: 'Exceeds the limit (4300 digits) for integer"),
    ("a" * 1_000 + ": 1\n" + "".join(f"k{i}: 1\n" for i in range(10)),
     "unknown config key(s): '" + "a" * 78 + "…, k0, k1, k2, k3 and 6 more"),
    ("seed: 2001-13-45\n", "holds a value YAML cannot read: 'month must be in 1..12'"),
])
def test_values_echoed_in_errors_are_short(tmp_path, capsys, yaml_text, message):
    """A 200,000-element list used to make a 1.5 MB "one line"; an error repeats at most 80 characters of a value."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    line = refused(capsys, ["train", "--config", str(config), "--output-dir", str(tmp_path / "run")], message)
    assert len(line) < 400, len(line)


def test_flag_values_echoed_in_errors_are_short(tmp_path, capsys):
    line = refused(capsys, train_args(tmp_path, "--seed", "9" * 5_000), "argument --seed: invalid int value: '999")
    assert len(line) < 200 and "9…" in line


def test_negative_answer_start(tmp_path, capsys):
    """Python slices from the end for a negative start: -11 found "Hauptstadt" in "Paris ist die Hauptstadt."."""
    row = {"target_context": "Paris ist die Hauptstadt.", "target_question": "Was?",
           "answers": [{"text": "Hauptstadt", "answer_start": -11}], "source_context": "Paris is the capital.",
           "source_question": "What?", "source_answers": ["capital"]}
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    refused(capsys, train_args(tmp_path, "--task", "custom-qa", "--train-file", str(data), "--test-file", str(data)),
            f"{data}: line 1: answers answer 'Hauptstadt' has answer_start -11; it must be the character where the "
            "answer begins in the paragraph (>= 0)")
    nothing_written(tmp_path)


@pytest.mark.parametrize("task", ["custom", "custom-qa", "custom-ner", "custom-mt"])
def test_a_directory_given_as_a_data_file(tmp_path, capsys, task):
    folder = tmp_path / "train.jsonl"
    folder.mkdir()
    refused(capsys, train_args(tmp_path, "--task", task, "--train-file", str(folder), "--test-file", str(folder)),
            f"{folder} is a directory, not a data file")
