"""Decoder classification by label-word log-likelihood, with FLARE and left padding."""

import torch
from transformers import AutoModelForCausalLM

from xlt.kinds.verbalizer import PROMPT, VerbalizerClassifier, make_verbalizer_batch
from xlt.methods.adapters import AdapterSettings, attach, load_adapter, save_adapter
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model

LABELS = ("negative", "neutral", "positive")


def _verbalizer(family="llama", method="flare", fusion="cross_attention", seed=0):
    path = resolve_model(f"tiny-random/{family}")
    torch.manual_seed(seed)
    model = VerbalizerClassifier(AutoModelForCausalLM.from_pretrained(path), len(LABELS))
    adapted = attach(model, get_method(method), architecture_for(family),
                     AdapterSettings(r=4, alpha=8, dropout=0.0, fusion=fusion))
    for name, p in adapted.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return adapted, load_tokenizer(path)


def _scores(adapted, batch):
    adapted.model.eval()
    with torch.no_grad():
        return adapted.model(**batch.inputs).logits


def test_scores_are_summed_label_word_log_likelihoods(parallel_examples):
    adapted, tok = _verbalizer(method="lora", fusion=None)
    example = parallel_examples[0]
    batch = make_verbalizer_batch(tok, [example], LABELS, "target", 48)
    scores = _scores(adapted, batch)
    assert scores.shape == (1, 3)
    prompt = tok(PROMPT.format(text=example.target[0]))["input_ids"]
    lm = adapted.model.get_base_model().lm
    for i, label in enumerate(LABELS):
        word = tok(" " + label, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([prompt + word])).logits[0], -1)
        expected = sum(logp[len(prompt) + j - 1, t] for j, t in enumerate(word))
        assert torch.allclose(scores[0, i], expected, atol=1e-4)


def test_verbalizer_with_flare_is_padding_invariant_and_saves_exactly(parallel_examples, tmp_path):
    for family in ("llama", "gemma2"):
        adapted, tok = _verbalizer(family)
        batched = _scores(adapted, make_verbalizer_batch(tok, parallel_examples, LABELS, "target", 48, source="text"))
        for i, example in enumerate(parallel_examples):
            alone = _scores(adapted, make_verbalizer_batch(tok, [example], LABELS, "target", 48, source="text"))
            assert torch.allclose(alone[0], batched[i], atol=1e-4), family
        batch = make_verbalizer_batch(tok, parallel_examples, LABELS, "target", 48, source="text")
        adapted.model.train()
        adapted.model(**batch.inputs, labels=batch.labels).loss.backward()
        assert all(p.grad is not None for n, p in adapted.model.named_parameters() if "lora_" in n)
        save_adapter(adapted, tmp_path / family)
        fresh, _ = _verbalizer(family, seed=5)  # same base LM, different adapter initialization
        load_adapter(fresh, tmp_path / family)
        assert torch.equal(_scores(fresh, batch), _scores(adapted, batch))


def test_cli_verbalizer_run_reloads(tmp_path, capsys):
    import json

    from xlt.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", "tiny-random/qwen2", "--task", "nusax", "--target-lang", "jv",
                 "--decoder-classifier", "verbalizer", "--method", "flare", "--fusion", "add_relu",
                 "--max-train-examples", "8", "--max-eval-examples", "6", "--stage1-max-train-examples", "8",
                 "--epochs", "1", "--stage1-epochs", "1", "--lora-r", "4", "--batch-size", "4",
                 "--no-show-progress", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_examples"] == 6 and set(metrics["metrics"]) == {"accuracy", "macro_f1"}
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"] == metrics["metrics"]
    assert main(["train", "--model", "tiny-random/bert", "--task", "nusax", "--decoder-classifier", "verbalizer",
                 "--method", "lora", "--output-dir", str(tmp_path / "b")]) == 2
    assert "decoder-only" in capsys.readouterr().err
