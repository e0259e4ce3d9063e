"""The layer-wise retrieval diagnostic: margin scoring, pooling, aggregation, parallel loaders, end to end."""

import argparse
import json
import math

import pytest
import torch

from xlt.alignment.retrieval import (layer_embeddings, layerwise_retrieval, margin_scores, mean_pool,
                                     retrieval_accuracy, run_retrieval)
from xlt.cli import retrieval as retrieval_cli
from xlt.data.parallel import load_parallel
from xlt.errors import XltError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- margin retrieval ------------------------------------------------------------------------


def test_noisy_permuted_copy_is_retrieved_exactly():
    x = torch.randn(50, 16)
    perm = torch.randperm(50)
    y = x[perm] + 0.01 * torch.randn(50, 16)  # y[j] is a noisy copy of x[perm[j]]
    assert torch.equal(margin_scores(x, y).argmax(1), torch.argsort(perm))
    assert retrieval_accuracy(x, x + 0.01 * torch.randn(50, 16)) == 1.0
    assert retrieval_accuracy(x, x[perm]) < 0.2


def _margin_loop(x, y, k):
    """The definition, one score at a time."""
    def cos(u, v):
        return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    def knn(u, pool):
        return sum(sorted((cos(u, v) for v in pool), reverse=True)[:k]) / k

    return [[cos(u, v) / (knn(u, y) / 2 + knn(v, x) / 2) for v in y] for u in x]


def test_margin_matches_a_loop_on_3x3():
    x = [[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.5, 0.5, 1.0]]
    y = [[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.2, 0.6, 0.9]]
    expected = torch.tensor(_margin_loop(x, y, k=2))
    assert torch.allclose(margin_scores(torch.tensor(x), torch.tensor(y), k=2), expected, atol=1e-6)


def test_margin_beats_cosine_when_a_hub_attracts_every_query():
    # y0 lies between all queries (cos 0.5 with each); y1..y3 are their translations pushed off along e4
    # (cos 0.447). Cosine sends x1..x3 to the hub; the margin divides the hub by its dense neighbourhood.
    eye = torch.eye(5)
    x = eye[:4]
    y = torch.stack([eye[0] + eye[1] + eye[2] + eye[3], *(eye[i] + 2 * eye[4] for i in (1, 2, 3))])
    cosine = torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T
    assert (cosine.argmax(1) == torch.arange(4)).float().mean() == 0.25
    assert retrieval_accuracy(x, y, k=2) == 1.0


def test_mean_pool_ignores_padding_side():
    tokens = torch.randn(3, 8)
    pad = torch.full((2, 8), 1e4)  # garbage the mask must hide
    right = torch.cat([tokens, pad]).unsqueeze(0)
    left = torch.cat([pad, tokens]).unsqueeze(0)
    pooled_right = mean_pool(right, torch.tensor([[1, 1, 1, 0, 0]]))
    pooled_left = mean_pool(left, torch.tensor([[0, 0, 1, 1, 1]]))
    assert torch.allclose(pooled_right, pooled_left)
    assert torch.allclose(pooled_right[0], tokens.mean(0))
    stacked = torch.stack([right, 2 * right])  # leading layer dimension: [L, B, T, H]
    assert torch.allclose(mean_pool(stacked, torch.tensor([[1, 1, 1, 0, 0]]))[1], 2 * pooled_right)


# --- aggregation -----------------------------------------------------------------------------


def test_layerwise_structure_and_aggregates():
    n_layers, n = 5, 30
    shared = torch.randn(n, 16)
    embeddings = {}
    for lang in ("en", "id", "jv"):
        e = torch.randn(n_layers, n, 16)
        e[2] = shared + 0.01 * torch.randn(n, 16)  # layer 3 aligns every language
        embeddings[lang] = e
    result = layerwise_retrieval(embeddings, k=4)
    assert result["layers"] == n_layers and result["languages"] == ["en", "id", "jv"]
    assert len(result["pairs"]) == 3 * 2 and "jv-en" in result["pairs"] and "en-en" not in result["pairs"]
    assert all(len(acc) == n_layers for acc in result["pairs"].values())
    assert result["pairs"]["en-id"][1] == retrieval_accuracy(embeddings["en"][1], embeddings["id"][1])
    assert result["pairs"]["id-en"][1] == retrieval_accuracy(embeddings["id"][1], embeddings["en"][1])
    average = [sum(acc[i] for acc in result["pairs"].values()) / 6 for i in range(n_layers)]
    assert result["average"] == pytest.approx(average)
    assert result["even_layer_average"] == pytest.approx((average[1] + average[3]) / 2)  # layers 2 and 4
    assert result["average"][2] == 1.0 and result["best_layer"] == 3


def test_layer_embeddings_restore_input_order():
    from xlt.alignment.retrieval import load_backbone
    from xlt.models.loading import load_tokenizer, resolve_model

    path = resolve_model("tiny-random/bert")
    model, tokenizer = load_backbone(path), load_tokenizer(path)
    sentences = ["a much longer sentence than the others here", "short", "a middle one", "x"]
    e = layer_embeddings(model, tokenizer, sentences, batch_size=2)
    assert e.shape == (model.config.num_hidden_layers, 4, model.config.hidden_size)
    alone = layer_embeddings(model, tokenizer, sentences[:1], batch_size=1)
    assert torch.allclose(e[:, :1], alone, atol=1e-5)
    assert torch.allclose(layer_embeddings(model, tokenizer, sentences[::-1], batch_size=3), e.flip(1), atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "mt5"])
def test_layer_embeddings_decoder_and_encoder_decoder(family):
    """A left-padding decoder (RoPE: shifting positions changes nothing) and an encoder-decoder's encoder."""
    from xlt.alignment.retrieval import load_backbone
    from xlt.models.loading import load_tokenizer, resolve_model
    path = resolve_model(f"tiny-random/{family}")
    model, tokenizer = load_backbone(path), load_tokenizer(path)
    sentences = ["a much longer sentence than the others here", "short", "x"]
    e = layer_embeddings(model, tokenizer, sentences, batch_size=3)
    assert e.shape[:2] == (2, 3) and torch.isfinite(e).all()
    assert torch.allclose(e[:, 1:2], layer_embeddings(model, tokenizer, ["short"]), atol=1e-4)


# --- parallel sets ---------------------------------------------------------------------------


def test_builtin_sets(data_dir):
    nusax = load_parallel("nusax-mt", None, data_dir)
    assert len(nusax) == 12 and {"en", "id", "jv", "bbc"} <= set(nusax)
    assert {len(s) for s in nusax.values()} == {400}
    assert nusax["en"][0].startswith("Near the hotel")
    assert len(load_parallel("nusax-mt", ["en", "jv"], data_dir, split="valid")["jv"]) == 100
    tatoeba = load_parallel("tatoeba", ["en", "jav"], data_dir)
    assert list(tatoeba) == ["en", "jv"] and len(tatoeba["jv"]) == 205
    xnli = load_parallel("xnli", ["en", "swahili"], data_dir, max_sentences=7, split="dev")
    assert list(xnli) == ["en", "sw"] and len(xnli["sw"]) == 7
    assert xnli["en"][0] == (data_dir / "xnli/dev-en.tsv").read_text(encoding="utf-8").split("\t", 1)[0]


def test_massive_keeps_ids_present_in_every_locale(tmp_path):
    rows = {
        "en-US": [("1", "test", "one"), ("2", "test", "two"), ("10", "test", "ten"), ("3", "train", "three")],
        "ja-JP": [("10", "test", "十"), ("1", "test", "一"), ("3", "train", "三")],
        "jv-ID": [("2", "test", "loro"), ("1", "test", "siji"), ("10", "test", "sepuluh")],
    }
    (tmp_path / "massive").mkdir()
    for locale, items in rows.items():
        lines = [json.dumps({"id": i, "locale": locale, "partition": p, "utt": u}) for i, p, u in items]
        (tmp_path / "massive" / f"{locale}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = load_parallel("massive", ["en", "ja-JP", "javanese"], tmp_path)
    assert out == {"en": ["one", "ten"], "ja": ["一", "十"], "jv": ["siji", "sepuluh"]}
    assert load_parallel("massive", ["en", "jv"], tmp_path)["en"] == ["one", "two", "ten"]
    assert load_parallel("massive", ["en", "ja"], tmp_path, split="train")["ja"] == ["三"]


def test_user_files(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('en,id,xx\nhello,halo,"multi\nline"\nbye,dah,zz\n', encoding="utf-8")
    assert load_parallel(str(csv_path), None) == {"en": ["hello", "bye"], "id": ["halo", "dah"],
                                                  "xx": ["multi\nline", "zz"]}
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"english": "a", "jv": "b"}\n{"english": "c", "jv": "d"}\n', encoding="utf-8")
    assert load_parallel(str(jsonl), ["jav", "en"], max_sentences=1) == {"jv": ["b"], "en": ["a"]}


def _error(*args, **kwargs) -> str:
    with pytest.raises(XltError) as info:
        load_parallel(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_parallel_errors(tmp_path, data_dir):
    assert "no language 'de'" in _error("nusax-mt", ["en", "de"], data_dir)
    assert "at least 2 languages" in _error("nusax-mt", ["en"], data_dir)
    assert "requested twice" in _error("nusax-mt", ["jv", "jav"], data_dir)
    assert "no split 'dev2'" in _error("nusax-mt", ["en", "jv"], data_dir, split="dev2")
    assert "exactly one other language" in _error("tatoeba", ["en", "jv", "id"], data_dir)
    assert "unknown parallel set" in _error("flores", None, data_dir)
    assert "file not found" in _error(str(tmp_path / "missing.csv"), None)
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("en,id\nhello,halo\nbye,\n", encoding="utf-8")
    assert "no language 'fr'" in _error(str(csv_path), ["en", "fr"])
    assert "row 2 has an empty 'id'" in _error(str(csv_path), None)
    (tmp_path / "xnli").mkdir()
    (tmp_path / "xnli" / "test-en.tsv").write_text("a\tb\tneutral\nc\td\tneutral\n", encoding="utf-8")
    (tmp_path / "xnli" / "test-de.tsv").write_text("a\tb\tneutral\n", encoding="utf-8")
    assert "unequal numbers of sentences" in _error("xnli", None, tmp_path)


# --- end to end ------------------------------------------------------------------------------


def test_run_retrieval_tiny_bert_writes_json_and_plots(tmp_path, data_dir):
    out = tmp_path / "ret"
    result = run_retrieval("tiny-random/bert", "nusax-mt", ["en", "id", "jv"], 20, out, data_dir=data_dir,
                           batch_size=8, show_progress=False)
    saved = json.loads((out / "retrieval.json").read_text(encoding="utf-8"))
    assert saved == result
    assert {"layers", "languages", "pairs", "average", "even_layer_average", "best_layer"} <= set(saved)
    assert saved["layers"] == 2 and saved["languages"] == ["en", "id", "jv"] and saved["sentences"] == 20
    assert len(saved["pairs"]) == 6 and all(len(a) == 2 and all(0 <= v <= 1 for v in a) for a in saved["pairs"].values())
    assert len(saved["average"]) == 2 and saved["even_layer_average"] == saved["average"][1]
    for name in ("retrieval_layers.png", "retrieval_heatmap.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out.iterdir()) == ["retrieval.json", "retrieval_heatmap.png", "retrieval_layers.png"]


def test_run_retrieval_shows_progress_on_stderr_only_when_asked(tmp_path, capsys, data_dir):
    quiet = run_retrieval("tiny-random/bert", "nusax-mt", ["en", "jv"], 8, tmp_path / "quiet", data_dir=data_dir,
                          batch_size=4, show_progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    loud = run_retrieval("tiny-random/bert", "nusax-mt", ["en", "jv"], 8, tmp_path / "loud", data_dir=data_dir,
                         batch_size=4)
    captured = capsys.readouterr()
    assert "embed 2 languages x 8 sentences" in captured.err and "/4 [" in captured.err  # 16 sentences, 4 per batch
    assert "score" in captured.err and captured.out == ""
    assert loud["pairs"] == quiet["pairs"]


def test_cli_prints_the_table(tmp_path, capsys, data_dir):
    parser = argparse.ArgumentParser()
    retrieval_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["retrieval", "--model", "tiny-random/bert", "--data", "nusax-mt", "--langs", "en, jv",
                              "--max-sentences", "8", "--output-dir", str(tmp_path / "o"), "--data-dir", str(data_dir)])
    assert retrieval_cli.run(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("layer  avg_acc\n") and "even-layer average:" in out and "(2 languages, 2 pairs)" in out
    bad = parser.parse_args(["retrieval", "--data", "nusax-mt", "--langs", "en,klingon", "--output-dir",
                             str(tmp_path / "bad"), "--data-dir", str(data_dir)])
    with pytest.raises(XltError, match="klingon"):
        retrieval_cli.run(bad)
    assert not (tmp_path / "bad").exists()


def test_the_cli_takes_bf16_only_where_the_hardware_has_it(tmp_path, monkeypatch, data_dir):
    import xlt.alignment.retrieval
    import xlt.training.loop
    from xlt.cli import main

    seen = []

    class Stop(Exception):
        pass

    def record(*args, bf16, **kwargs):
        seen.append(bf16)
        raise Stop

    monkeypatch.setattr(xlt.alignment.retrieval, "run_retrieval", record)
    for native, flags in ((True, []), (False, []), (False, ["--bf16"]), (True, ["--no-bf16"])):
        monkeypatch.setattr(xlt.training.loop, "bf16_is_native", lambda: native)
        with pytest.raises(Stop):
            main(["retrieval", "--model", "tiny-random/bert", "--data", "nusax-mt", "--langs", "en,jv",
                  "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "r"), *flags])
    assert seen == [True, False, True, False]
