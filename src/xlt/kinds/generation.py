"""Generation tasks: teacher-forced batches (loss on answer tokens only) and greedy decoding.

FLARE for generation (the rule, identical in training and decoding):
- the source is the English *prompt* only; the English answer is never read (at test time it
  would be the label; QA only places the English paragraph's window over it in training, as the
  target's, xlt.kinds.passages). Decoder-only models: the target token at relative position p (prompt or
  answer) fuses English prompt token p, zeros past its end; causal cross-attention lets it see
  English prompt tokens <= p.
- mT5: the encoder fuses the English prompt's encoder states; decoder self-attention fuses the
  decoder states of the frozen model reading the English prompt while teacher-forced on the
  *same* target decoder input (in decoding: the tokens generated so far), so position t only
  ever sees positions <= t. Cross-attention projections get plain LoRA.
Decoding is greedy and deterministic (never the checkpoint's sampling defaults) and goes through
the model call of training, source inputs included; beam search (``num_beams`` > 1, for methods
without source inputs) goes through transformers' ``generate()`` with an explicit configuration. Decoder-only models decode with a KV cache
(the English prompt's states are computed once per batch); mT5 re-runs its decoder each step,
because the frozen decoder it fuses reads the generated prefix. The loop is ours, not
``generate()``: transformers checks generate's keyword arguments against the model's forward
signature and refuses the ``source_*`` inputs that reach FLARE through the call.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Sequence

import torch
from tqdm.auto import tqdm

from xlt.data.examples import GenExample, GenQAExample
from xlt.data.prompts import get_template
from xlt.errors import XltError
from xlt.kinds.passages import fit_prompt
from xlt.training.batches import Batch, pad_rows, source_inputs, view_segments

IGNORE = -100


def prompt_text(ex: GenExample, view: str, template: str, sep: str) -> str:
    """The templated prompt a method reads: target text, English text, or both (input fusion)."""
    return get_template(template).prompt(sep.join(view_segments(ex, view, sep)))


def gold_answer(ex: GenExample, view: str) -> str:
    """translate-test answers the English prompt, so it is scored against the English answer."""
    return ex.answer_source if view == "source" and ex.answer_source is not None else ex.answer


def scored_answers(ex: GenExample, view: str) -> str | tuple[str, ...]:
    """What a prediction is scored against: the gold answer, or every gold answer of a question (QA)."""
    if isinstance(ex, GenQAExample):
        return ex.answers_source if view == "source" and ex.answers_source else ex.answers
    return gold_answer(ex, view)


def fit_before_cue(tokenizer, prompt: str, limit: int) -> list[int]:
    """Token ids of ``prompt`` (special tokens included) in at most ``limit`` tokens, cut just before its last
    line. Every template ends with the answer's cue on a line of its own (``Entities:``, ``Slots:``,
    ``Acehnese:``); cutting a long prompt at its end would remove the cue, and the model would be asked to
    continue the input instead of answering. A prompt without a line break is cut at its end."""
    ids = tokenizer(prompt)["input_ids"]
    if len(ids) <= limit:
        return ids
    if "\n" not in prompt:
        return tokenizer(prompt, truncation=True, max_length=limit)["input_ids"]
    head, cue = prompt.rsplit("\n", 1)
    ends = [end for _, end in tokenizer(head, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    keep = len(ends) - (len(ids) - limit)
    while keep > 0:  # tokens may merge differently at the cut: shrink until the whole prompt fits
        ids = tokenizer(head[: ends[keep - 1]] + "\n" + cue)["input_ids"]
        if len(ids) <= limit:
            return ids
        keep -= len(ids) - limit
    return tokenizer("\n" + cue, truncation=True, max_length=limit)["input_ids"]


class GenBatcher:
    """Builds teacher-forced (answers given) or prompt-only batches for one model family."""

    def __init__(self, tokenizer, seq2seq: bool, max_length: int, max_answer_length: int, template: str,
                 decoder_start_token_id: int | None = None, instruction_extra: bool = False):
        """``max_length``: the prompt's limit in tokens; with ``instruction_extra`` it is the limit of the text
        alone (``--max-length``, as for classification: twice it for input fusion's two texts) and the template's
        own tokens come on top, so an instruction of ~40 tokens does not eat a 64-token text budget."""
        self.tok = tokenizer
        self.seq2seq = seq2seq
        self.max_length = max_length
        self.instruction = len(tokenizer(get_template(template).prompt(""))["input_ids"]) if instruction_extra else 0
        self.max_answer = max_answer_length
        self.template = template
        self.start = decoder_start_token_id if decoder_start_token_id is not None else tokenizer.pad_token_id
        self.sep = f" {tokenizer.sep_token or tokenizer.eos_token} "

    def limit(self, view: str) -> int:
        """Tokens a prompt of this view may take (special tokens included)."""
        return (2 * self.max_length if self.instruction and view == "concat" else self.max_length) + self.instruction

    def _prompts(self, texts: list[str], limit: int) -> list[list[int]]:
        rows = self.tok(texts)["input_ids"]  # one batched call; only prompts over the limit are cut again
        return [ids if len(ids) <= limit else fit_before_cue(self.tok, text, limit) for ids, text in zip(rows, texts)]

    def prompt_ids(self, examples: Sequence[GenExample], view: str, teacher_forced: bool) -> list[list[int]]:
        """Each prompt in at most ``max_length`` tokens: cut at its end, or, around a passage (QA), by cutting
        the passage alone, over the answer when training (xlt.kinds.passages)."""
        if not any(isinstance(ex, GenQAExample) for ex in examples):
            return self._prompts([prompt_text(ex, view, self.template, self.sep) for ex in examples], self.limit(view))
        template = get_template(self.template)
        return [fit_prompt(self.tok, template, ex, view, self.sep, self.limit(view), teacher_forced)
                for ex in examples]

    def _answers(self, texts: list[str]) -> list[list[int]]:
        ids = self.tok(texts, add_special_tokens=False, truncation=True, max_length=self.max_answer - 1)["input_ids"]
        return [a + [self.tok.eos_token_id] for a in ids]

    def encode_prompts(self, prompts: list[list[int]]) -> dict[str, torch.Tensor]:
        left = not self.seq2seq  # decoders generate to the right of the prompt
        return {"input_ids": pad_rows(prompts, self.tok.pad_token_id, left),
                "attention_mask": pad_rows([[1] * len(p) for p in prompts], 0, left)}

    def decoder_inputs(self, decoder_rows: list[list[int]]) -> dict[str, torch.Tensor]:
        return {"decoder_input_ids": pad_rows(decoder_rows, self.tok.pad_token_id, False),
                "decoder_attention_mask": pad_rows([[1] * len(r) for r in decoder_rows], 0, False)}

    def batch(self, examples: Sequence[GenExample], view: str, source: str | None, teacher_forced: bool) -> Batch:
        prompts = self.prompt_ids(examples, view, teacher_forced)
        answers = self._answers([gold_answer(ex, view) for ex in examples]) if teacher_forced else None

        def source_prompts() -> dict:
            return self.encode_prompts(self.prompt_ids(examples, "source", teacher_forced))

        if self.seq2seq:
            inputs = self.encode_prompts(prompts)
            labels = pad_rows(answers, IGNORE, False) if answers else torch.full((len(examples), 1), IGNORE)
            decoder_rows = [[self.start] + a[:-1] for a in answers] if answers else [[self.start]] * len(examples)
            inputs.update(self.decoder_inputs(decoder_rows))
            # the frozen decoder reads the English prompt, teacher-forced on the same decoder input
            inputs |= source_inputs(source, lambda: {**source_prompts(), **self.decoder_inputs(decoder_rows)})
            return Batch(inputs, labels)
        rows = [p + a for p, a in zip(prompts, answers)] if answers else prompts
        inputs = self.encode_prompts(rows)
        if answers:
            labels = pad_rows([[IGNORE] * len(p) + a for p, a in zip(prompts, answers)], IGNORE, True)
        else:
            labels = torch.full((len(examples), 1), IGNORE)
        inputs |= source_inputs(source, source_prompts)
        return Batch(inputs, labels)


@torch.no_grad()
def decode_answers(model: torch.nn.Module, batcher: GenBatcher, examples: Sequence[GenExample], view: str,
                   source: str | None, max_new_tokens: int = 48, batch_size: int = 32, bf16: bool = False,
                   show_progress: bool = True, desc: str = "generate", num_beams: int = 1) -> list[str]:
    """Greedy decoding (see the module docstring): decoders with a KV cache, mT5 by full re-runs;
    beam search with ``num_beams`` > 1."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    eos, pad = batcher.tok.eos_token_id, batcher.tok.pad_token_id
    decode = _decode_seq2seq if batcher.seq2seq else _decode_cached
    if num_beams > 1:
        if source is not None:
            raise XltError("beam search decodes methods without a source text; FLARE decodes greedily")
        decode = partial(_decode_beams, num_beams=num_beams)
    outputs: list[str] = []
    try:
        for start in tqdm(range(0, len(examples), batch_size), desc=desc, disable=not show_progress, leave=False):
            chunk = examples[start : start + batch_size]
            batch = batcher.batch(chunk, view, source, teacher_forced=False).to(device)
            with autocast:
                generated = decode(model, batcher, batch, max_new_tokens)
            outputs += [batcher.tok.decode([t for t in g if t not in (eos, pad)], skip_special_tokens=True).strip()
                        for g in generated]
    finally:
        model.train(was_training)
    return outputs


def _decode_beams(model, batcher: GenBatcher, batch: Batch, max_new_tokens: int, num_beams: int) -> list[list[int]]:
    """Beam search by ``generate()``, every setting explicit (the checkpoint's generation defaults never apply)."""
    from transformers import GenerationConfig

    tok = batcher.tok
    config = GenerationConfig(num_beams=num_beams, do_sample=False, max_new_tokens=max_new_tokens,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, length_penalty=1.0,
                              early_stopping=True, num_return_sequences=1,
                              decoder_start_token_id=batcher.start if batcher.seq2seq else None)
    prompt = {k: batch.inputs[k] for k in ("input_ids", "attention_mask")}
    out = model.generate(**prompt, generation_config=config)
    new = out[:, 1:] if batcher.seq2seq else out[:, prompt["input_ids"].shape[1]:]  # after the start / the prompt
    return new.tolist()


def _append(generated: list[list[int]], next_ids: torch.Tensor, done: torch.Tensor, eos: int) -> torch.Tensor:
    for i, token in enumerate(next_ids.tolist()):
        if not done[i]:
            generated[i].append(token)
    return done | next_ids.eq(eos)


def _decode_cached(model, batcher: GenBatcher, batch: Batch, max_new_tokens: int) -> list[list[int]]:
    """Decoder-only: the prompt once, then one token per step against the KV cache. The source inputs
    come with every call and the FLARE tuner reuses their states; the growing attention mask gives
    each new token its relative position."""
    eos, pad = batcher.tok.eos_token_id, batcher.tok.pad_token_id
    inputs = dict(batch.inputs)
    rows = inputs["input_ids"].shape[0]
    generated: list[list[int]] = [[] for _ in range(rows)]
    done = torch.zeros(rows, dtype=torch.bool, device=inputs["input_ids"].device)
    past = None
    cache_name = _cache_argument(model)
    for _ in range(max_new_tokens):
        out = model(**inputs, **{cache_name: past}, use_cache=True)
        past = getattr(out, cache_name)
        next_ids = out.logits[:, -1].argmax(-1)
        done_before = done
        done = _append(generated, next_ids, done, eos)
        if bool(done.all()):
            break
        step = torch.where(done_before, torch.full_like(next_ids, pad), next_ids)
        mask = torch.cat([inputs["attention_mask"], (~done_before).long().unsqueeze(1)], 1)
        inputs = {**inputs, "input_ids": step.unsqueeze(1), "attention_mask": mask}
    return generated


def _cache_argument(model) -> str:
    """The KV cache's keyword (and output field): ``cache`` in newer transformers 5.x, ``past_key_values`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _decode_seq2seq(model, batcher: GenBatcher, batch: Batch, max_new_tokens: int) -> list[list[int]]:
    """mT5: the whole decoder input again each step; the frozen decoder of the FLARE source pass is
    teacher-forced on the same prefix, so its states change with every token (O(length²), short outputs)."""
    eos = batcher.tok.eos_token_id
    rows = batch.inputs["input_ids"].shape[0]
    generated: list[list[int]] = [[] for _ in range(rows)]
    done = torch.zeros(rows, dtype=torch.bool, device=batch.inputs["input_ids"].device)
    for _ in range(max_new_tokens):
        logits = model(**_with_generated(batch, batcher, generated)).logits[:, -1]
        done = _append(generated, logits.argmax(-1), done, eos)
        if bool(done.all()):
            break
    return generated


def _with_generated(batch: Batch, batcher: GenBatcher, generated: list[list[int]]) -> dict:
    """mT5's inputs with the decoder reading the tokens generated so far (rows that finished are padded)."""
    eos = batcher.tok.eos_token_id
    device = batch.inputs["input_ids"].device
    grown = [g[: g.index(eos) + 1] if eos in g else g for g in generated]
    decoder = {k: v.to(device) for k, v in batcher.decoder_inputs([[batcher.start] + g for g in grown]).items()}
    inputs = {**batch.inputs, **decoder}
    if "source_input_ids" in inputs:  # teacher-forced on the same prefix
        inputs |= {f"source_{k}": v for k, v in decoder.items()}
    return inputs
