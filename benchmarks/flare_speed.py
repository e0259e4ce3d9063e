"""FLARE's cost next to LoRA and input-level fusion, measured in one run; exits 1 when a target is missed.

Training (default e5-small, batch 32 x 128 random tokens, 4 distinct batches, fp32 and bf16 autocast):
median step time of LoRA, FLARE with the source-state cache from its second epoch (the first fills
the cache), FLARE without the cache, and input-level fusion (English + target: 256 tokens).
Decoding (tiny random Llama, 128 prompts, 64 new tokens, KV cache): greedy decoding time of FLARE
and LoRA, median of 7 runs of each in alternation (ratio: the median of the pairs' ratios).
Targets: FLARE/LoRA <= 1.10 with the cache, <= 1.35 without; input-fusion/FLARE >= 2.0;
decoding FLARE/LoRA <= 1.5. Run it on an idle machine: a parallel job distorts every ratio.

    python benchmarks/flare_speed.py [--model e5-small] [--precisions fp32 bf16] [--steps 4] [--runs 7]
    python benchmarks/flare_speed.py --fusions add aligned_add_relu ... [--length 64]   # one row per fusion
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from functools import partial

import torch

from xlt.data.examples import GenExample
from xlt.flare.fusion_names import FUSIONS
from xlt.kinds.generation import GenBatcher, decode_answers
from xlt.methods.adapters import AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.classifier import PooledClassifier, resolve_pooling
from xlt.models.loading import load_tokenizer, resolve_model
from xlt.runs.recipe import architecture_of

LABELS = ("negative", "neutral", "positive")
TARGETS = {  # ratio: (comparison, bound)
    "FLARE/LoRA, cached": ("<=", 1.10),
    "FLARE/LoRA, uncached": ("<=", 1.35),
    "input-fusion/FLARE": (">=", 2.0),
    "decoding FLARE/LoRA": ("<=", 1.5),
}


def _batches(vocab: int, count: int, batch: int, length: int, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(5, vocab, (batch, length), generator=generator)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return out


def _classifier(path: str, method: str, fusion: str | None):
    torch.manual_seed(0)
    arch = architecture_of(path)
    model = PooledClassifier.from_pretrained(path, LABELS, resolve_pooling(None, arch.family), arch.family)
    return attach(model, get_method(method), arch, AdapterSettings(r=64, alpha=128, fusion=fusion))


def _median_step(adapted, batches: list[dict], autocast, epochs: int) -> float:
    """Median time of the steps of the last epoch (earlier epochs warm up, and fill FLARE's cache)."""
    return _epoch_medians(adapted, batches, autocast, epochs)[-1]


def _epoch_medians(adapted, batches: list[dict], autocast, epochs: int) -> list[float]:
    """Median step time of each epoch."""
    opt = torch.optim.AdamW([p for p in adapted.model.parameters() if p.requires_grad], lr=1e-4)
    labels = torch.zeros(len(batches[0]["input_ids"]), dtype=torch.long)
    adapted.model.train()
    times: list[list[float]] = []
    for _ in range(epochs):
        times.append([])
        for inputs in batches:
            start = time.perf_counter()
            with autocast():
                loss = adapted.model(**inputs, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times[-1].append(time.perf_counter() - start)
    return [statistics.median(epoch) for epoch in times]


def _training_inputs(model: str, precision: str, steps: int, batch: int, length: int):
    """The model path, the target batches, the same with their source batches, the concatenated (input-fusion)
    batches and the autocast context of ``precision``."""
    path = resolve_model(model)
    vocab = load_tokenizer(path).vocab_size
    target = _batches(vocab, steps, batch, length, seed=1)
    source = _batches(vocab, steps, batch, length, seed=2)
    with_source = [{**t, **{f"source_{k}": v for k, v in s.items()}} for t, s in zip(target, source)]
    concat = [{k: torch.cat([s[k], t[k]], 1) for k in t} for t, s in zip(target, source)]
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16"
                else contextlib.nullcontext)
    return path, target, with_source, concat, autocast


def bench_training(model: str, precision: str, steps: int, batch: int, length: int) -> dict[str, float]:
    path, target, with_source, concat, autocast = _training_inputs(model, precision, steps, batch, length)
    times = {"lora": _median_step(_classifier(path, "lora", None), target, autocast, 2)}
    cached = _classifier(path, "flare", "add_relu")
    cached.flare.enable_source_cache(8 * 2**30)
    times["flare, cached"] = _median_step(cached, with_source, autocast, 2)
    times["flare, uncached"] = _median_step(_classifier(path, "flare", "add_relu"), with_source, autocast, 2)
    times["input-fusion"] = _median_step(_classifier(path, "input-fusion", None), concat, autocast, 2)
    return times


def bench_fusions(model: str, precision: str, steps: int, batch: int, length: int,
                  fusions: list[str]) -> dict[str, tuple[float, float]]:
    """Median step time of LoRA, input-level fusion and FLARE with each fusion (source cache on, as runs use it):
    (a step of the first epoch, a step once the cache is full). The first epoch is a warm-up for all, and for FLARE
    the epoch that runs the frozen passes (and the aligned fusions' alignment passes)."""
    path, target, with_source, concat, autocast = _training_inputs(model, precision, steps, batch, length)
    times = {"lora": tuple(_epoch_medians(_classifier(path, "lora", None), target, autocast, 2)),
             "input-fusion": tuple(_epoch_medians(_classifier(path, "input-fusion", None), concat, autocast, 2))}
    for fusion in fusions:
        adapted = _classifier(path, "flare", fusion)
        adapted.flare.enable_source_cache(8 * 2**30)
        times[f"flare {fusion}"] = tuple(_epoch_medians(adapted, with_source, autocast, 2))
    return times


def print_fusion_table(times: dict[str, tuple[float, float]], precision: str) -> None:
    """Per method: its first-epoch and cached steps, and a 3-epoch run's time (one first epoch, two cached) as a
    ratio to LoRA's and to input-level fusion's."""
    run = {name: first + 2 * cached for name, (first, cached) in times.items()}
    print(f"\n{precision}: step times, and a 3-epoch run's time against LoRA's and input-level fusion's")
    print("| method | first-epoch step (s) | cached step (s) | run / LoRA | run / input-fusion |\n"
          "|---|---:|---:|---:|---:|")
    for name, (first, cached) in times.items():
        print(f"| {name} | {first:.3f} | {cached:.3f} | {run[name] / run['lora']:.2f} | "
              f"{run[name] / run['input-fusion']:.2f} |")


class _NeverEnding:
    """The tokenizer with an end-of-sequence id no model emits, so every run decodes all its tokens."""

    eos_token_id = -1

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def bench_decoding(prompts: int, new_tokens: int, runs: int) -> dict[str, float]:
    """Greedy decoding of LoRA and FLARE, timed in alternation (each pair of runs shares the machine's load):
    the median time of each and the median of the pairs' FLARE/LoRA ratios."""
    from transformers import AutoModelForCausalLM

    path = resolve_model("tiny-random/llama")
    tok = load_tokenizer(path)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    examples = [GenExample(" ".join(words[: 3 + i % 7]), " ".join(words[i % 5 :]), "x", "x") for i in range(prompts)]
    batcher = GenBatcher(_NeverEnding(tok), False, 64, new_tokens, "intent")
    decoders = {}
    for method, fusion in (("lora", None), ("flare", "add_relu")):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(path)
        adapted = attach(model, get_method(method), architecture_for("llama"), AdapterSettings(r=8, alpha=16,
                                                                                              fusion=fusion))
        decoders[method] = partial(decode_answers, adapted.model, batcher, examples, "target",
                                   "text" if fusion else None, max_new_tokens=new_tokens, show_progress=False)
        decoders[method]()  # warm-up
    times: dict[str, list[float]] = {method: [] for method in decoders}
    for _ in range(runs):
        for method, run in decoders.items():
            start = time.perf_counter()
            run()
            times[method].append(time.perf_counter() - start)
    ratio = statistics.median(f / lo for f, lo in zip(times["flare"], times["lora"]))
    return {**{method: statistics.median(t) for method, t in times.items()}, "ratio": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=4, help="distinct batches per epoch (timed: the last epoch)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=128, help="decoding: prompts (batches of 32)")
    parser.add_argument("--new-tokens", type=int, default=64, help="decoding: tokens generated per prompt")
    parser.add_argument("--runs", type=int, default=7, help="decoding: timed runs of each method (median)")
    parser.add_argument("--fusions", nargs="+", choices=FUSIONS, help="instead: the step time of every fusion "
                        "named, next to LoRA and input-level fusion (no targets)")
    args = parser.parse_args()
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model}, batch {args.batch} x "
          f"{args.length} tokens, median of {args.steps} steps after one warm-up epoch")
    if args.fusions:
        for precision in args.precisions:
            print_fusion_table(bench_fusions(args.model, precision, args.steps, args.batch, args.length,
                                             args.fusions), precision)
        return 0
    ratios: dict[str, float] = {}
    for precision in args.precisions:
        t = bench_training(args.model, precision, args.steps, args.batch, args.length)
        print(f"\n{precision}: " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items()))
        ratios[f"FLARE/LoRA, cached ({precision})"] = t["flare, cached"] / t["lora"]
        ratios[f"FLARE/LoRA, uncached ({precision})"] = t["flare, uncached"] / t["lora"]
        ratios[f"input-fusion/FLARE ({precision})"] = t["input-fusion"] / t["flare, cached"]
    d = bench_decoding(args.prompts, args.new_tokens, args.runs)
    print(f"\ndecoding (tiny llama, {args.prompts} prompts x {args.new_tokens} tokens, median of {args.runs} "
          f"alternating runs): lora {d['lora']:.3f} s, flare {d['flare']:.3f} s")
    ratios["decoding FLARE/LoRA"] = d["ratio"]
    missed = 0
    print()
    for name, value in ratios.items():
        op, bound = TARGETS[name.split(" (")[0]]
        ok = value <= bound if op == "<=" else value >= bound
        missed += not ok
        print(f"  {name:<36} {value:5.2f}   target {op} {bound:.2f}   {'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
