"""Generation tasks (MASSIVE slot filling) on decoder-only and encoder-decoder tiny models."""

import json

import pytest
import torch
from helpers import source_of, tiny

from xlt.cli import main
from xlt.data.examples import GenExample
from xlt.errors import XltError
from xlt.flare.layer import SourceStates
from xlt.kinds.generation import IGNORE, GenBatcher, decode_answers

GENERATORS = ("llama", "qwen2", "gemma2", "gemma3_text", "mt5")
EXAMPLES = [
    GenExample("bangunake aku jam lima esuk", "wake me up at five am", "time: jam lima esuk", "time: five am", "1"),
    GenExample("pira suhune", "what is the temperature", "None", "None", "2"),
]


def _generator(family, method="flare", fusion="add"):
    adapted, tok = tiny(family, method, fusion, task="generation")
    batcher = GenBatcher(tok, adapted.model.config.is_encoder_decoder, 64, 64, "slots",
                         getattr(adapted.model.config, "decoder_start_token_id", None))
    return adapted, tok, batcher


@pytest.mark.parametrize("family", GENERATORS)
def test_teacher_forced_loss_covers_answer_tokens_only(family):
    adapted, tok, batcher = _generator(family)
    batch = batcher.batch(EXAMPLES, "target", "text", teacher_forced=True)
    answers = [tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for ex in EXAMPLES]
    for row, answer in zip(batch.labels.tolist(), answers):
        assert [t for t in row if t != IGNORE] == answer  # prompt and padding never scored
    if family == "mt5":
        assert torch.equal(batch.inputs["source_decoder_input_ids"], batch.inputs["decoder_input_ids"])
    else:
        mask = batch.inputs["attention_mask"]
        assert mask[1, 0] == 0 and mask[1, -1] == 1 and mask[0].all()  # left padding: answers end aligned
        assert batch.inputs["input_ids"].shape == batch.labels.shape
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    adapted.model.train()
    loss = adapted.model(**batch.inputs, labels=batch.labels).loss
    loss.backward()
    torch.optim.SGD([p for p in adapted.model.parameters() if p.requires_grad], lr=0.1).step()
    assert torch.isfinite(loss)
    changed = {n for n, p in adapted.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


@pytest.mark.parametrize("family", GENERATORS)
def test_greedy_generation_is_deterministic_and_fuses_at_every_step(family):
    adapted, tok, batcher = _generator(family, fusion="cross_attention")
    layers = list(adapted.flare.wiring.layers)
    calls = {layer: 0 for layer in layers}
    for layer in layers:
        layer.lora_fusion["default"].register_forward_hook(
            lambda *a, layer=layer: calls.__setitem__(layer, calls[layer] + 1))
    steps = []  # one model call per decoding step (the prompt, then one token each with the KV cache)
    adapted.model.register_forward_pre_hook(lambda *a: steps.append(1))
    first = decode_answers(adapted.model, batcher, EXAMPLES, "target", "text", max_new_tokens=6,
                            show_progress=False)
    assert 1 <= len(steps) <= 6
    assert set(calls.values()) == {len(steps)}  # every step fused in every fused layer, once
    # decoders: the English prompt's pass ran once for the batch; mT5: once per step (its frozen decoder
    # reads the generated prefix)
    passes = len(steps) if family == "mt5" else 1
    assert adapted.flare.source_rows_computed == passes * len(EXAMPLES)
    second = decode_answers(adapted.model, batcher, EXAMPLES, "target", "text", max_new_tokens=6,
                             show_progress=False)
    assert first == second and len(first) == 2 and all(isinstance(s, str) for s in first)


def _full_rerun_greedy(model, tok, batch, max_new_tokens):
    """Greedy decoding without a KV cache: every step re-reads the prompt and all tokens so far."""
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    source = {f"source_{k}": v for k, v in source_of(batch).items()}
    generated = [[] for _ in range(len(ids))]
    done = torch.zeros(len(ids), dtype=torch.bool)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False, **source).logits
            next_ids = logits[:, -1].argmax(-1)
            for i, token in enumerate(next_ids.tolist()):
                if not done[i]:
                    generated[i].append(token)
            done_before, done = done, done | next_ids.eq(eos)
            if bool(done.all()):
                break
            # finished rows read padding from then on, masked out, as the cached decoder does
            ids = torch.cat([ids, torch.where(done_before, pad, next_ids).unsqueeze(1)], 1)
            mask = torch.cat([mask, (~done_before).long().unsqueeze(1)], 1)
    return [tok.decode([t for t in g if t not in (eos, pad)], skip_special_tokens=True).strip() for g in generated]


@pytest.mark.parametrize("fusion", ["add", "cross_attention"])
def test_kv_cached_decoding_matches_a_full_rerun_with_flare(fusion):
    adapted, tok, _ = _generator("llama", fusion=fusion)
    batcher = GenBatcher(tok, False, 256, 64, "slots")  # prompts long enough not to be cut to one length
    examples = [EXAMPLES[1], EXAMPLES[0]]
    batch = batcher.batch(examples, "target", "text", teacher_forced=False)
    mask = batch.inputs["attention_mask"]
    assert mask[0, 0] == 0 and mask[1].all()  # left-padded prompts of different lengths
    source_mask = source_of(batch)["attention_mask"]
    assert (source_mask == 0).any() and len(set(source_mask.sum(1).tolist())) == 2  # the English prompts too
    adapted.model.eval()
    last = []  # each call's next-token logits: the same at every step, not only the same argmax
    hook = adapted.model.register_forward_hook(lambda m, a, out: last.append(out.logits[:, -1]))
    expected = _full_rerun_greedy(adapted.model, tok, batch, 8)
    rerun, last = last, []
    cached = decode_answers(adapted.model, batcher, examples, "target", "text", max_new_tokens=8,
                             show_progress=False)
    hook.remove()
    assert cached == expected
    assert len(last) == len(rerun) >= 2
    for step, (a, b) in enumerate(zip(last, rerun)):
        assert torch.allclose(a, b, atol=1e-4), step
    assert any(len(tok(s, add_special_tokens=False)["input_ids"]) >= 2 for s in expected)  # several steps compared


@pytest.mark.parametrize("family", ["llama", "mt5"])
def test_greedy_decoding_matches_transformers_generate(family):
    adapted, tok, batcher = _generator(family, method="lora", fusion=None)
    ours = decode_answers(adapted.model, batcher, EXAMPLES[:1], "target", None, max_new_tokens=8,
                           show_progress=False)
    batch = batcher.batch(EXAMPLES[:1], "target", None, teacher_forced=False)
    assert not source_of(batch) and "zero_source" not in batch.inputs
    adapted.model.eval()
    kwargs = {"input_ids": batch.inputs["input_ids"], "attention_mask": batch.inputs["attention_mask"]}
    out = adapted.model.generate(**kwargs, max_new_tokens=8, do_sample=False, num_beams=1,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    new = out[0] if family == "mt5" else out[0, batch.inputs["input_ids"].shape[1]:]
    expected = tok.decode([t for t in new.tolist() if t not in (tok.eos_token_id, tok.pad_token_id)],
                          skip_special_tokens=True).strip()
    assert ours == [expected]


@pytest.mark.parametrize("family", ["llama", "mt5"])
def test_beam_search_is_transformers_beam_search_and_one_beam_is_greedy(family):
    adapted, tok, batcher = _generator(family, method="lora", fusion=None)
    greedy = decode_answers(adapted.model, batcher, EXAMPLES, "target", None, max_new_tokens=8, show_progress=False)
    one_beam = decode_answers(adapted.model, batcher, EXAMPLES, "target", None, max_new_tokens=8,
                              show_progress=False, num_beams=1)
    assert one_beam == greedy
    beams = decode_answers(adapted.model, batcher, EXAMPLES, "target", None, max_new_tokens=8, show_progress=False,
                           num_beams=3)
    batch = batcher.batch(EXAMPLES, "target", None, teacher_forced=False)
    adapted.model.eval()
    out = adapted.model.generate(input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"],
                                 max_new_tokens=8, do_sample=False, num_beams=3, early_stopping=True,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    new = out[:, 1:] if family == "mt5" else out[:, batch.inputs["input_ids"].shape[1]:]
    expected = [tok.decode([t for t in row if t not in (tok.eos_token_id, tok.pad_token_id)],
                           skip_special_tokens=True).strip() for row in new.tolist()]
    assert beams == expected and len(beams) == len(EXAMPLES)
    again = decode_answers(adapted.model, batcher, EXAMPLES, "target", None, max_new_tokens=8, show_progress=False,
                           num_beams=3)
    assert again == beams  # deterministic


def test_beam_search_refuses_a_source_text():
    adapted, tok, batcher = _generator("llama")
    with pytest.raises(XltError, match="beam search decodes methods without a source text"):
        decode_answers(adapted.model, batcher, EXAMPLES, "target", "text", num_beams=2, show_progress=False)


def test_decoder_fusion_never_sees_future_source_positions():
    adapted, tok, batcher = _generator("llama", fusion="cross_attention")
    batch = batcher.batch(EXAMPLES[:1], "target", "text", teacher_forced=True)
    adapted.model.eval()
    with torch.no_grad():
        base = adapted.model(**batch.inputs).logits
    layers = list(adapted.flare.wiring.layers)
    clean = {layer: layer.source for layer in layers}  # the states the call set stay on the layers
    cut = 3
    assert all(s.states.shape[1] > cut + 1 for s in clean.values())

    def perturb(layer, args):  # the layer fuses source states changed after `cut` (no padding in a batch of one)
        states = clean[layer].states.clone()
        states[:, cut + 1:] += 5.0
        layer.source = SourceStates(states, clean[layer].mask)

    hooks = [layer.register_forward_pre_hook(perturb) for layer in layers]
    with torch.no_grad():
        other = adapted.model(**batch.inputs).logits
    for hook in hooks:
        hook.remove()
    assert all(torch.equal(layer.source.states[:, : cut + 1], clean[layer].states[:, : cut + 1]) for layer in layers)
    assert torch.allclose(base[:, : cut + 1], other[:, : cut + 1], atol=1e-6)
    assert not torch.allclose(base[:, cut + 1:], other[:, cut + 1:], atol=1e-4)


QUICK = ["--task", "massive", "--target-lang", "jv", "--max-train-examples", "8", "--max-eval-examples", "4",
         "--stage1-max-train-examples", "8", "--epochs", "1", "--stage1-epochs", "1", "--lora-r", "4",
         "--lora-alpha", "8", "--batch-size", "4", "--max-answer-length", "8", "--no-show-progress"]


@pytest.mark.parametrize("family", GENERATORS)
def test_cli_massive_flare_run_writes_slot_metrics_and_reloads(family, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", f"tiny-random/{family}", "--method", "flare", "--fusion", "mul", *QUICK,
                 "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"slot_f1", "exact_match"} <= set(metrics["metrics"])
    assert metrics["test_examples"] == 4 and metrics["task"] == "massive"
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"] == metrics["metrics"]


def test_fp16_is_refused_for_mt5_and_generation_needs_a_generator(tmp_path, capsys):
    assert main(["train", "--model", "tiny-random/mt5", "--method", "lora", "--fp16", *QUICK,
                 "--output-dir", str(tmp_path / "a")]) == 2
    assert "fp16 is refused for mT5" in capsys.readouterr().err
    assert main(["train", "--model", "tiny-random/bert", "--method", "lora", *QUICK,
                 "--output-dir", str(tmp_path / "b")]) == 2
    assert "decoder or encoder-decoder" in capsys.readouterr().err


@pytest.mark.parametrize("family", ("llama", "mt5"))
def test_a_long_prompt_is_cut_before_its_cue_never_at_its_end(family):
    """uner-json: most German PUD prompts were longer than 64 tokens and lost ``Entities:`` to a cut at the end."""
    from xlt.data.prompts import get_template
    from xlt.kinds.generation import fit_before_cue

    _, tok, _ = _generator(family)
    template = get_template("json_ner")
    short = template.prompt("Anna wohnt in Berlin.")
    assert fit_before_cue(tok, short, 200) == tok(short)["input_ids"]  # a prompt that fits is untouched
    limit = len(tok(short)["input_ids"]) + 16  # room for a part of the sentence, whatever the tokenizer
    long = template.prompt(" ".join(["Die Stadt Berlin liegt an der Spree"] * 20))
    cut = fit_before_cue(tok, long, limit)
    assert len(tok(long)["input_ids"]) > limit and limit - 4 <= len(cut) <= limit
    # tiny tokenizers lowercase and decode with spaces around punctuation: compare without whitespace
    text = "".join(tok.decode(cut, skip_special_tokens=True).casefold().split())
    assert text.startswith("listthenamedentities") and text.endswith("entities:")
    assert "sentence:diestadtberlin" in text
    if family == "mt5":
        assert cut[-1] == tok.eos_token_id
    # a cue-less prompt is cut at its end, as the tokenizer would
    flat = "word " * 200
    assert fit_before_cue(tok, flat, 32) == tok(flat, truncation=True, max_length=32)["input_ids"]


def test_max_length_counts_the_text_and_the_instruction_comes_on_top():
    """--max-length 64 holds a 64-token sentence whole in a generation prompt (its ~40-token instruction used to
    share the 64 tokens); input fusion gets twice the text budget, as for classification."""
    from xlt.data.examples import GenExample
    from xlt.data.prompts import get_template
    from xlt.kinds.generation import GenBatcher

    _, tok, _ = _generator("llama")
    instruction = len(tok(get_template("json_ner").prompt(""))["input_ids"])
    batcher = GenBatcher(tok, False, 24, 8, "json_ner", instruction_extra=True)
    assert (batcher.limit("target"), batcher.limit("concat")) == (24 + instruction, 48 + instruction)
    template = get_template("json_ner")

    def text_tokens(n):  # the tokens n words add to the prompt, in context
        return len(tok(template.prompt(" ".join(["berlin"] * n)))["input_ids"]) - instruction

    n = max(n for n in range(1, 40) if text_tokens(n) <= 24)
    fits = " ".join(["berlin"] * n)
    whole = tok(template.prompt(fits))["input_ids"]
    assert text_tokens(n) > 12 and len(whole) > 24 + 12  # longer than the text budget: it used to be cut
    assert batcher.prompt_ids([GenExample(fits, None, "[]", None, "x")], "target", True)[0] == whole
    long = GenExample(" ".join(["berlin"] * 60), None, "[]", None, "y")
    assert 20 + instruction <= len(batcher.prompt_ids([long], "target", True)[0]) <= 24 + instruction
    # the whole-prompt limit (QA's --qa-max-length) keeps its meaning
    assert GenBatcher(tok, False, 24, 8, "json_ner").limit("concat") == 24
