"""Task loaders and language codes, on the real data sets and on small broken files."""

import csv
import json

import pytest

from xlt.data import paths
from xlt.data.examples import heldout_split
from xlt.data.formats.lines import read_lines
from xlt.data.paths import resolve_data_dir
from xlt.data.registry import load_task
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- languages -------------------------------------------------------------------------------


def test_language_aliases_resolve_to_one_code():
    assert {canonical_code(x) for x in ("jv", "jav", "javanese", "JaVaNeSe", " jv ")} == {"jv"}
    assert {canonical_code(x) for x in ("sw", "swa", "swh", "swahili")} == {"sw"}
    assert canonical_code("Toba-Batak") == canonical_code("bbc") == "bbc"
    assert canonical_code("eng") == canonical_code("english") == "en"
    assert dataset_name("nusax", "jav") == "javanese"
    assert dataset_name("nusax", "toba_batak") == "toba_batak"
    assert dataset_name("xnli", "swh") == "sw"
    assert dataset_name("xnli", "zho") == "zh"


def test_unknown_language_lists_supported():
    with pytest.raises(XltError, match="unknown language 'klingon'.*javanese"):
        dataset_name("nusax", "klingon")
    with pytest.raises(XltError, match="task xnli has no language 'jv'.*sw"):
        dataset_name("xnli", "jv")
    with pytest.raises(XltError, match="unknown language 'xx'"):
        canonical_code("xx")


# --- nusax -----------------------------------------------------------------------------------


def test_nusax_javanese(data_dir):
    data = load_task("nusax", "javanese", data_dir=data_dir)
    assert (len(data.train), len(data.valid), len(data.test)) == (500, 100, 400)
    assert data.labels == ("negative", "neutral", "positive")
    assert (data.source_lang, data.target_lang) == ("en", "jv")

    english = {}
    for split in ("train", "valid", "test"):
        english.update({r["id"]: r for r in read_csv(data_dir / f"nusax/sentiment/english/{split}.csv")})
    for ex in data.train + data.valid + data.test:
        assert ex.source == (english[ex.id]["text"],)
        assert data.labels[ex.label] == english[ex.id]["label"]

    first = data.train[0]  # row 1 of javanese/train.csv
    assert first.id == "219" and data.labels[first.label] == "neutral"
    assert first.target[0].startswith("Nikmatono cicilan 0% sampek 12 sasi")
    assert first.source == ("Enjoy 0% instalment for up to 12 months when ordering an Air Asia "
                            "plane ticket with BNI Credit Card!",)
    last = data.test[-1]
    assert last.id == "768" and data.labels[last.label] == "negative"
    assert last.source[0].startswith("Took forever for the food, and the waitress was rude.")


def test_nusax_quoted_newlines_and_english_target(data_dir):
    data = load_task("nusax", "bbc", data_dir=data_dir)  # toba_batak has texts with newlines
    assert (len(data.train), len(data.valid), len(data.test)) == (500, 100, 400)
    assert any("\n" in ex.target[0] for ex in data.train)
    en = load_task("nusax", "en", data_dir=data_dir)
    assert all(ex.source == ex.target for ex in en.test)


def write_nusax(root, lang, ids, label="positive"):
    folder = root / "nusax" / "sentiment" / lang
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "text", "label"])
            w.writerows([i, f"{lang} text {i}", label] for i in ids)


def test_nusax_misaligned_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_nusax(tmp_path, "english", ["1", "2"])
    write_nusax(tmp_path, "javanese", ["1", "3"])
    with pytest.raises(XltError, match="misaligned.*id '3'.*javanese/train.csv"):
        load_task("nusax", "jv", data_dir=tmp_path)


def test_nusax_missing_file_and_bad_label(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_nusax(tmp_path, "english", ["1"])
    with pytest.raises(XltError, match="file not found: .*sundanese/train.csv"):
        load_task("nusax", "su", data_dir=tmp_path)
    write_nusax(tmp_path, "sundanese", ["1"], label="happy")
    with pytest.raises(XltError, match="sundanese/train.csv: row 1 has label 'happy'"):
        load_task("nusax", "su", data_dir=tmp_path)


# --- xnli ------------------------------------------------------------------------------------


def test_xnli_swahili(data_dir):
    data = load_task("xnli", "swh", data_dir=data_dir)
    assert data.target_lang == "sw"
    assert data.labels == ("entailment", "neutral", "contradiction")
    assert len(data.test) == 5010
    assert (len(data.train), len(data.valid)) == (1992, 498)

    en_row0 = (data_dir / "xnli/test-en.tsv").read_text(encoding="utf-8").split("\n", 1)[0].split("\t")
    sw_row0 = (data_dir / "xnli/test-sw.tsv").read_text(encoding="utf-8").split("\n", 1)[0].split("\t")
    assert data.test[0].source == tuple(en_row0[:2])
    assert data.test[0].target == tuple(sw_row0[:2])
    assert data.labels[data.test[0].label] == en_row0[2] == "contradiction"


def test_xnli_split_deterministic_disjoint_and_parallel(data_dir):
    sw = load_task("xnli", "sw", data_dir=data_dir)
    en = load_task("xnli", "en", data_dir=data_dir)
    train_ids = [ex.id for ex in sw.train]
    valid_ids = [ex.id for ex in sw.valid]
    assert not set(train_ids) & set(valid_ids)
    assert len(set(train_ids) | set(valid_ids)) == 2490
    assert [ex.id for ex in en.train] == train_ids  # same split for every language
    assert [ex.target for ex in en.valid] == [ex.source for ex in sw.valid]
    assert heldout_split(2490, 0.2, 2018) == heldout_split(2490, 0.2, 2018)
    assert heldout_split(2490, 0.2, 2018) != heldout_split(2490, 0.2, 1)


def test_xnli_row_count_mismatch(tmp_path):
    (tmp_path / "xnli").mkdir()
    for split in ("dev", "test"):
        (tmp_path / f"xnli/{split}-en.tsv").write_text("p\th\tneutral\np2\th2\tentailment\n")
        (tmp_path / f"xnli/{split}-de.tsv").write_text("p\th\tneutral\n")
    with pytest.raises(XltError, match=r"misaligned xnli rows: .*dev-de.tsv has 1 rows "
                       r"but .*dev-en.tsv has 2"):
        load_task("xnli", "de", data_dir=tmp_path)


# --- custom ----------------------------------------------------------------------------------


def write_rows(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def rows(labels, **extra):
    return [{"source_text": f"src {i}", "target_text": f"tgt\n{i}", "label": lab, **extra}
            for i, lab in enumerate(labels)]


def test_custom_csv_and_jsonl(tmp_path):
    train = write_rows(tmp_path / "train.csv", rows(["pos", "neg", "neu"] * 10))
    test = write_rows(tmp_path / "test.jsonl", rows(["neg", "pos"]))
    data = load_task("custom", "yo", train_file=train, test_file=test)
    assert data.labels == ("neg", "neu", "pos")
    assert (len(data.train), len(data.valid), len(data.test)) == (30, 0, 2)  # every train row trains
    assert data.target_lang == "yo" and data.source_lang == "en"
    assert data.test[0].target == ("tgt\n0",) and data.test[0].source == ("src 0",)
    assert [data.labels[ex.label] for ex in data.test] == ["neg", "pos"]


def test_custom_errors(tmp_path):
    train = write_rows(tmp_path / "train.csv", rows(["a", "b"]))
    with pytest.raises(XltError, match=r"file not found: .*nope\.csv"):
        load_task("custom", "de", train_file=train, test_file=tmp_path / "nope.csv")
    bad = write_rows(tmp_path / "bad.jsonl", rows(["a", "c"]))
    with pytest.raises(XltError, match=r"bad\.jsonl: row 2 has label 'c', not among .*\(a, b\)"):
        load_task("custom", "de", train_file=train, test_file=bad)
    nolabel = write_rows(tmp_path / "nolabel.csv", [{"source_text": "s", "target_text": "t"}])
    with pytest.raises(XltError, match=r"nolabel\.csv: missing column 'label'"):
        load_task("custom", "de", train_file=train, test_file=nolabel)
    blank = {"source_text": "s", "target_text": " ", "label": "a"}
    empty = write_rows(tmp_path / "empty.csv", rows(["a", "b"]) + [blank])
    with pytest.raises(XltError, match=r"empty\.csv: row 3 has an empty target_text"):
        load_task("custom", "de", train_file=empty, test_file=train)
    with pytest.raises(XltError, match="needs both a train file and a test file"):
        load_task("custom", "de", train_file=train)


# --- registry and data dir -------------------------------------------------------------------


def test_unknown_task_and_language():
    with pytest.raises(XltError, match="unknown task 'sst2'; known tasks: nusax, xnli, custom"):
        load_task("sst2", "de")
    with pytest.raises(XltError, match="task nusax has no language 'de'.*javanese"):
        load_task("nusax", "de")


def test_no_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("XLT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "CHECKOUT_DATA_DIR", None)
    with pytest.raises(XltError, match="no data directory found: pass --data-dir DIR or set XLT_DATA_DIR="):
        resolve_data_dir(None)
    with pytest.raises(XltError, match="no data directory found"):
        load_task("nusax", "jv")
    with pytest.raises(XltError, match=r"data directory .*missing \(from --data-dir\) does not exist"):
        resolve_data_dir(tmp_path / "missing")
    monkeypatch.setenv("XLT_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path


def test_read_lines_keeps_line_k_as_sentence_k_whatever_the_line_ends(tmp_path):
    crlf, bare, empty = tmp_path / "crlf.txt", tmp_path / "bare.txt", tmp_path / "empty.txt"
    crlf.write_bytes("één\r\n\r\nzwei\r\n".encode())
    bare.write_text("one\n\ntwo", encoding="utf-8")
    empty.write_text("", encoding="utf-8")
    assert (read_lines(crlf), read_lines(bare), read_lines(empty)) == (["één", "", "zwei"], ["one", "", "two"], [])
    with pytest.raises(XltError, match=r"^Tatoeba file .*missing\.eng does not exist$"):
        read_lines(tmp_path / "missing.eng", "Tatoeba file")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(XltError, match=r"latin1\.txt is not UTF-8 text \(invalid continuation byte at byte 3\)"):
        read_lines(tmp_path / "latin1.txt")
