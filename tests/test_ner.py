"""Named-entity tagging (tasks panx, uner) on encoders: the loaders on the real files, word → first
sub-token labels, what a training step changes, the entity metric, and runs of every method from the CLI."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from helpers import cli_error

from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.examples import TagExample, TagTaskData, source_side
from xlt.data.formats.iob import NER_TAGS, read_sentences
from xlt.data.registry import load_task
from xlt.errors import XltError
from xlt.kinds.registry import Tagging, kind_of
from xlt.kinds.tagging import IGNORE, read_tags, tag_batch
from xlt.methods.adapters import AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model
from xlt.models.token_classifier import load_token_classifier
from xlt.runs.stage1 import stage1_dir
from xlt.scoring.entities import tagging_metrics
from xlt.training.loop import TrainSettings, task_steps, train

O, BP, IP = NER_TAGS.index("O"), NER_TAGS.index("B-PER"), NER_TAGS.index("I-PER")


@pytest.fixture(scope="module")
def bert():
    path = resolve_model("tiny-random/bert")
    return path, load_tokenizer(path)


# --- loaders on the real files ----------------------------------------------------------------

def test_panx_reads_train_and_dev_and_english_files_for_stage1(data_dir):
    data = load_task("panx", "german", data_dir=data_dir)
    assert isinstance(data, TagTaskData) and data.labels == NER_TAGS and (data.source_lang, data.target_lang) == ("en", "de")
    assert (len(data.train), len(data.valid), len(data.test)) == (20000, 0, 10000)  # test = dev-de.tsv
    assert data.train[0] == TagExample(("als", "Teil", "der", "Savoyer", "Voralpen", "im", "Osten", "."),
                                       ("O", "O", "O", "B-LOC", "I-LOC", "O", "O", "O"), None, None, "train-0")
    assert data.test[0].tokens == ("Anton", "Wilhelm", "von", "Zuccalmaglio", ".")
    assert data.test[0].tags == ("B-PER", "I-PER", "I-PER", "I-PER", "O")
    assert all(ex.source_tokens is None for ex in data.train + data.test)  # not parallel
    english = source_side(data)  # what stage 1 reads: PAN-X's English files
    assert english is data.english and english.target_lang == "en"
    assert (len(english.train), len(english.test)) == (20000, 10000)
    assert english.train[0].tokens == tuple(read_sentences(data_dir / "panx" / "train-en.tsv", "panx")[0].tokens)
    with pytest.raises(XltError, match=r"test-de.tsv: line 1 has 1 tab-separated field\(s\), expected token<TAB>tag"):
        read_sentences(data_dir / "panx" / "test-de.tsv", "panx")  # why xlt tests on dev: test has no tags


def test_uner_splits_pud_and_pairs_each_sentence_with_its_english_version(data_dir):
    data = load_task("uner", "de", data_dir=data_dir)
    assert (len(data.train), len(data.valid), len(data.test)) == (500, 0, 500)
    ids = [ex.id for ex in data.train + data.test]
    assert len(set(ids)) == 1000 and not {ex.id for ex in data.train} & {ex.id for ex in data.test}
    english_pud = read_sentences(data_dir / "uner/English-PUD/en_pud-ud-test.iob2", "uner")
    by_id = {s.id: s for s in english_pud}
    for ex in data.train + data.test:  # German and English sent_ids match: rows pair by position
        assert (ex.source_tokens, ex.source_tags) == (by_id[ex.id].tokens, by_id[ex.id].tags)
    ex = next(ex for ex in data.test if ex.id == "n01001-0001")
    assert ex.tokens[9:11] == ("Vereinigten", "Staaten") and ex.tags[9:11] == ("B-LOC", "I-LOC")
    assert ex.tokens[23:25] == ("Kori", "Schulman") and ex.tags[23:25] == ("B-PER", "I-PER")
    assert ex.source_tokens[11:13] == ("United", "States") and ex.source_tags[11:13] == ("B-LOC", "I-LOC")
    assert ex.source_tokens[26:28] == ("Kori", "Schulman") and ex.source_tags[26:28] == ("B-PER", "I-PER")
    # stage 1: English-EWT dev for training, the English side of the same test rows for testing
    english = source_side(data)
    assert len(english.train) == 2001 and english.train[0].id.startswith("answers-")
    assert [(e.tokens, e.tags) for e in english.test] == [(e.source_tokens, e.source_tags) for e in data.test]
    # Chinese has its own sent_ids and pairs by position: the same rows, the same English sentences
    chinese = load_task("uner", "zh", data_dir=data_dir)
    assert chinese.test[0].id == "batch-0000-0001" and "美國" in chinese.test[0].tokens
    assert [e.source_tokens for e in chinese.test] == [e.source_tokens for e in data.test]
    assert source_side(chinese).test == english.test  # one English model for every target language


def _mini_uner(tmp, data_dir, german_sentences: int | None = None):
    """A uner folder with the real English files and a German file of the first ``german_sentences``."""
    for folder in ("English-PUD", "English-EWT"):
        shutil.copytree(data_dir / "uner" / folder, tmp / "uner" / folder)
    (tmp / "uner" / "German-PUD").mkdir()
    text = (data_dir / "uner/German-PUD/de_pud-ud-test.iob2").read_text(encoding="utf-8")
    blocks = text.strip("\n").split("\n\n")[:german_sentences]
    (tmp / "uner/German-PUD/de_pud-ud-test.iob2").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return tmp


def test_uner_refuses_files_of_different_lengths_and_stage1_from_another_language(tmp_path, data_dir):
    root = _mini_uner(tmp_path, data_dir, german_sentences=999)
    with pytest.raises(XltError, match=r"misaligned uner files: .*de_pud-ud-test.iob2 has 999 sentences but "
                                       r".*en_pud-ud-test.iob2 has 1000"):
        load_task("uner", "de", data_dir=root)
    data = load_task("uner", "en", source_lang="de", data_dir=data_dir)  # German as the examples' source side
    with pytest.raises(XltError, match="task uner trains its English model on en files; the source language must "
                                       "be en, not de"):
        source_side(data)


def test_a_tag_outside_the_tag_set_is_refused_with_file_and_line(tmp_path):
    path = tmp_path / "train-xx.tsv"
    path.write_text("Hamburg\tB-LOC\nSV\tB-MISC\n")
    with pytest.raises(XltError, match=r"train-xx.tsv: line 2 has tag 'B-MISC', expected one of O, B-PER"):
        read_sentences(path, "panx")


def _write_panx(root, lang: str, split: str, sentences: list[list[tuple[str, str]]]) -> None:
    (root / "panx").mkdir(exist_ok=True)
    text = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences)
    (root / "panx" / f"{split}-{lang}.tsv").write_text(text + "\n", encoding="utf-8")


def test_stage1_cache_key_follows_the_english_files_not_the_target_ones(tmp_path):
    sentence = [("Kori", "B-PER"), ("wrote", "O")]
    for lang in ("en", "jv"):
        for split in ("train", "dev"):
            _write_panx(tmp_path, lang, split, [sentence, [("Jakarta", "B-LOC")]])
    cfg = RunConfig(task="panx", target_lang="jv", method="lora", model="tiny-random/bert", data_dir=str(tmp_path),
                    stage1_dir=str(tmp_path / "s1"))
    first = stage1_dir(cfg)
    _write_panx(tmp_path, "jv", "train", [sentence])  # the target side changes: the English model does not
    assert stage1_dir(cfg) == first
    _write_panx(tmp_path, "en", "train", [[("Kori", "B-PER"), ("wrote", "B-LOC")]])  # one English tag changes
    assert stage1_dir(cfg) != first


# --- words -> sub-tokens -----------------------------------------------------------------------

HAND = TagExample(("Hello", "Kori", "Schulman", "wrote"), ("O", "B-PER", "I-PER", "O"),
                  ("Obama", "wrote"), ("B-PER", "O"), "hand")


def test_labels_sit_on_the_first_sub_token_of_each_word(bert):
    _, tokenizer = bert  # tiny bert's vocab is characters: [CLS] h ##e ##l ##l ##o k ##o ##r ##i s ... [SEP]
    batch = tag_batch(tokenizer, [HAND], NER_TAGS, "target", max_length=64)
    expected = [IGNORE] * 24
    expected[1], expected[6], expected[10], expected[18] = O, BP, IP, O
    assert batch.labels.tolist() == [expected]
    assert batch.first_tokens == [[1, 6, 10, 18]]
    assert {"input_ids", "attention_mask"} <= set(batch.inputs) and not any(k.startswith("source_") for k in batch.inputs)
    # truncation: 8 tokens keep Hello and Kori's first sub-token; Schulman and wrote have none
    short = tag_batch(tokenizer, [HAND], NER_TAGS, "target", max_length=8)
    assert short.first_tokens == [[1, 6, -1, -1]]
    assert short.labels.tolist() == [[IGNORE, O, IGNORE, IGNORE, IGNORE, IGNORE, BP, IGNORE]]


def test_the_e5_tokenizer_labels_first_pieces():
    tokenizer = load_tokenizer(resolve_model("e5-small"))  # <s> ▁Hello ▁Kor i ▁Schul man ▁wrote </s>
    batch = tag_batch(tokenizer, [HAND], NER_TAGS, "target", max_length=64)
    assert batch.first_tokens == [[1, 2, 4, 6]]
    assert batch.labels.tolist() == [[IGNORE, O, BP, IGNORE, IP, IGNORE, O, IGNORE]]


def test_views_translate_test_input_fusion_and_flare_source(bert):
    _, tokenizer = bert
    english = tag_batch(tokenizer, [HAND], NER_TAGS, "source", max_length=64)  # translate-test: English words, tags
    assert tokenizer.convert_ids_to_tokens(english.inputs["input_ids"][0].tolist())[:2] == ["[CLS]", "o"]
    assert [english.labels[0, p].item() for p in english.first_tokens[0]] == [BP, O]
    pair = tag_batch(tokenizer, [HAND], NER_TAGS, "concat", max_length=64)  # input-fusion: (English, target)
    tokens = tokenizer.convert_ids_to_tokens(pair.inputs["input_ids"][0].tolist())
    assert tokens[:8] == ["[CLS]", "o", "##b", "##a", "##m", "##a", "w", "##r"]
    labelled = (pair.labels[0] != IGNORE).nonzero().flatten().tolist()
    assert labelled == pair.first_tokens[0] == [12, 17, 21, 29]  # the 4 target words, after [SEP]; no English word
    assert tokens.index("[SEP]") == 11 and pair.labels[0, labelled].tolist() == [O, BP, IP, O]
    flare = tag_batch(tokenizer, [HAND], NER_TAGS, "target", max_length=64, source="text")
    alone = tokenizer(["Obama", "wrote"], is_split_into_words=True)
    assert flare.inputs["source_input_ids"][0].tolist() == alone["input_ids"]
    assert torch.equal(flare.inputs["input_ids"], tag_batch(tokenizer, [HAND], NER_TAGS, "target", 64).inputs["input_ids"])
    no_english = TagExample(("Kori",), ("B-PER",), id="p7")
    with pytest.raises(XltError, match="example p7 has no source-language text, which this method needs"):
        tag_batch(tokenizer, [no_english], NER_TAGS, "concat", max_length=64)


# --- the model, training and evaluation --------------------------------------------------------

class AlwaysBPer(torch.nn.Module):
    """Predicts B-PER at every token: what the metric sees depends only on where words are read."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        logits = torch.zeros(*input_ids.shape, len(NER_TAGS))
        logits[..., BP] = 1.0
        return SimpleNamespace(logits=logits)


def test_evaluation_reads_first_sub_tokens_and_counts_cut_off_words_as_o(bert):
    _, tokenizer = bert
    test = [TagExample(("Kori", "Schulman"), ("B-PER", "I-PER")), TagExample(("Obama",), ("B-PER",)),
            TagExample(("Hello", "Kori"), ("O", "B-PER"))]  # 7 tokens: [CLS] + Hello (5) + [SEP]; Kori is cut
    data = TagTaskData("t", NER_TAGS, "en", "de", [], [], test)
    cfg = RunConfig(task="uner", max_length=7, show_progress=False)
    metrics = Tagging().evaluate(cfg, AlwaysBPer(), tokenizer, data, "target", None, "test")
    predicted = [["B-PER", "B-PER"], ["B-PER"], ["B-PER", "O"]]
    assert metrics == tagging_metrics(predicted, [list(ex.tags) for ex in test])
    # 1 correct (Obama) of 4 predicted entities and 3 gold ones: the cut-off Kori is still a missed entity
    assert metrics["precision"] == 0.25 and metrics["recall"] == pytest.approx(1 / 3)
    assert read_tags(NER_TAGS)(SimpleNamespace(first_tokens=[[0, -1]]), torch.eye(7)[[BP]][None]) == [["B-PER", "O"]]


@pytest.mark.parametrize("method", ["lora", "flare"])
def test_a_training_step_changes_only_adapter_weights(bert, method):
    path, tokenizer = bert
    data = TagTaskData("uner", NER_TAGS, "en", "de", [HAND] * 4, [], [HAND])
    kind = kind_of(data)
    model = kind.load_model(path, tokenizer, data, architecture_for("bert"))
    assert type(model).__name__ == "BertForTokenClassification" and model.num_labels == 7
    adapted = attach(model, get_method(method), architecture_for("bert"),
                     AdapterSettings(r=4, alpha=8, dropout=0.0, fusion="add" if method == "flare" else None))
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    source = "text" if method == "flare" else None
    to_batch = kind.train_batches(RunConfig(task="uner", max_length=32), tokenizer, adapted.model, data, "target", source)
    train(adapted.model, task_steps(data.train, to_batch, 4, 2, seed=0),
          TrainSettings(epochs=2, lr=1e-2, batch_size=4, show_progress=False))
    changed = {n for n, p in adapted.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert all(("lora_" in n) == p.requires_grad for n, p in adapted.model.named_parameters())


def test_a_saved_token_classifier_loads_only_under_its_own_tags(bert, tmp_path):
    path, _ = bert
    load_token_classifier(path, ("O", "B-X", "I-X")).save_pretrained(tmp_path / "m")
    assert load_token_classifier(str(tmp_path / "m"), ("O", "B-X", "I-X")).config.id2label[1] == "B-X"
    with pytest.raises(XltError, match=r"was trained with tags \['O', 'B-X', 'I-X'\], not \['O', 'B-PER'"):
        load_token_classifier(str(tmp_path / "m"), NER_TAGS)


# --- runs from the CLI -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage1_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ner-stage1")  # one English model shared by the runs below


def _train(tmp_path, stage1_root, task: str, target: str, method: str, model: str = "tiny-random/bert") -> list[str]:
    return ["train", "--task", task, "--target-lang", target, "--method", method, "--model", model,
            "--max-train-examples", "16", "--max-eval-examples", "24", "--stage1-max-train-examples", "48",
            "--epochs", "2", "--stage1-epochs", "2", "--stage1-lr", "1e-3", "--lr", "1e-2", "--max-length", "48",
            "--batch-size", "8", "--lora-r", "4", "--lora-alpha", "8", "--no-show-progress",
            "--stage1-dir", str(stage1_root), "--output-dir", str(tmp_path / method)]


@pytest.mark.parametrize("method", ["zero-shot", "translate-test", "lora", "input-fusion", "flare"])
def test_every_method_runs_on_uner_from_the_cli(tmp_path, stage1_root, capsys, method):
    assert main(_train(tmp_path, stage1_root, "uner", "de", method)) == 0
    metrics = json.loads((tmp_path / method / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"precision", "recall", "f1"}
    assert 0.0 <= metrics["metrics"]["f1"] <= 1.0
    assert metrics["test_examples"] == 24 and metrics["stage1_examples"] == {"train": 48, "test": 24}
    trains = method in ("lora", "input-fusion", "flare")
    assert metrics["train_examples"] == (16 if trains else 0)
    assert metrics["trainable_params"] == (2 * 2 * 4 * (32 + 32) if trains else 0)  # r=4 on q, v of 2 layers
    if method == "translate-test":  # the English model on the English side of the same test rows
        assert metrics["metrics"] == metrics["source_metrics"]
    if method == "flare":
        assert set(metrics["metrics_zero_source"]) == {"precision", "recall", "f1"}
    if trains:
        capsys.readouterr()
        assert main(["evaluate", "--run-dir", str(tmp_path / method)]) == 0
        again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert again["matches_stored"] is True and again["metrics"] == metrics["metrics"]


def test_every_uner_language_shares_one_english_model(tmp_path, stage1_root):
    assert main(_train(tmp_path / "de", stage1_root, "uner", "de", "zero-shot")) == 0
    assert main(_train(tmp_path / "zh", stage1_root, "uner", "zh", "zero-shot")) == 0
    de, zh = (json.loads((tmp_path / lang / "zero-shot" / "metrics.json").read_text()) for lang in ("de", "zh"))
    assert de["stage1_dir"] == zh["stage1_dir"] and de["source_metrics"] == zh["source_metrics"]


def test_panx_runs_lora_on_xlm_roberta(tmp_path, stage1_root):
    assert main(_train(tmp_path, stage1_root, "panx", "jv", "lora", model="tiny-random/xlm-roberta")) == 0
    metrics = json.loads((tmp_path / "lora" / "metrics.json").read_text())
    assert metrics["task"] == "panx" and metrics["target_lang"] == "jv" and metrics["train_examples"] == 16
    assert set(metrics["metrics"]) == {"precision", "recall", "f1"}
    assert metrics["stage1_examples"] == {"train": 48, "test": 24}  # train-en.tsv capped, dev-en.tsv


@pytest.mark.parametrize("method", ["translate-test", "input-fusion", "flare"])
def test_panx_refuses_methods_that_need_the_english_version(tmp_path, capsys, method):
    assert main(["train", "--task", "panx", "--target-lang", "jv", "--method", method,
                 "--output-dir", str(tmp_path / "run"), "--stage1-dir", str(tmp_path / "s1")]) == 2
    assert cli_error(capsys) == (f"method {method} needs the English version of each example, and task panx is not "
                              "parallel; use zero-shot or lora")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "run").exists()


def test_panx_refuses_a_pivot_and_tagging_refuses_decoders_before_any_model_loads(tmp_path, capsys):
    assert main(["train", "--task", "panx", "--target-lang", "jv", "--method", "lora", "--source-from", "pivot:id",
                 "--output-dir", str(tmp_path / "run")]) == 2
    assert cli_error(capsys) == "--source-from pivot:id changes the source text, which 'lora' never reads"
    args = _train(tmp_path, tmp_path / "s1", "uner", "de", "lora", model="tiny-random/llama")
    assert main(args) == 2
    assert cli_error(capsys) == ("task 'uner' tags words with an encoder (bert, xlm-roberta, e5-small); xlt has no "
                              "tagging head for decoder models")
    assert not (tmp_path / "s1").exists()  # refused before stage 1
