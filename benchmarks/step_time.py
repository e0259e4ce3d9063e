"""Training-step time of LoRA, FLARE and input-level fusion, side by side in one run.

Prints per-step medians and the ratios FLARE/LoRA, input-fusion/FLARE and FLARE/floor, where the
floor is one LoRA step plus one no-grad forward (what FLARE must at least do without a cache of
the source states). Inputs are random token ids, batch 32 x 128 tokens (input fusion reads the
English and target text together: 256 tokens).

    python benchmarks/step_time.py [--models tiny-random/bert tiny-random/llama tiny-random/mt5 e5-small]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from xlt.methods import AdapterSettings, attach, get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_classifier, resolve_model
from xlt.training.batches import Batch

LABELS = ("negative", "neutral", "positive")


def _inputs(vocab: int, batch: int, length: int, generator: torch.Generator, eos: int | None) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    if eos is not None:
        ids[:, -1] = eos  # encoder-decoder classifiers pool the EOS position
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _timed(fn, steps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, batch: int, length: int, steps: int) -> dict[str, float]:
    path = resolve_model(name)
    generator = torch.Generator().manual_seed(0)
    results = {}
    for label, method, fusion, seq in (("lora", "lora", None, length), ("flare", "flare", "add_relu", length),
                                       ("input-fusion", "input-fusion", None, 2 * length)):
        torch.manual_seed(0)
        model = load_classifier(path, LABELS, pad_token_id=0)
        adapted = attach(model, get_method(method), architecture_for(model.config.model_type),
                         AdapterSettings(r=64, alpha=128, fusion=fusion))
        vocab = model.config.vocab_size
        eos = model.config.eos_token_id if model.config.is_encoder_decoder else None
        b = Batch(_inputs(vocab, batch, seq, generator, eos), torch.zeros(batch, dtype=torch.long),
                  _inputs(vocab, batch, length, generator, eos) if method == "flare" else None)
        opt = torch.optim.AdamW([p for p in adapted.model.parameters() if p.requires_grad], lr=1e-4)
        adapted.model.train()

        def step():
            with adapted.step_context(b):
                adapted.model(**b.inputs, labels=b.labels).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        results[label] = _timed(step, steps)
        if method == "lora":
            def forward():
                with torch.no_grad():
                    adapted.model(**b.inputs)

            results["no-grad forward"] = _timed(forward, steps)
    results["floor"] = results["lora"] + results["no-grad forward"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+",
                        default=["tiny-random/bert", "tiny-random/llama", "tiny-random/mt5", "e5-small"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x {args.length} tokens")
    for name in args.models:
        r = bench_model(name, args.batch, args.length, args.steps)
        print(f"\n{name}: median step seconds over {args.steps} steps")
        for key in ("lora", "no-grad forward", "floor", "flare", "input-fusion"):
            print(f"  {key:<16} {r[key]:8.3f}")
        print(f"  FLARE/LoRA          {r['flare'] / r['lora']:.2f}")
        print(f"  FLARE/floor         {r['flare'] / r['floor']:.3f}   (target <= 1.05)")
        print(f"  input-fusion/FLARE  {r['input-fusion'] / r['flare']:.2f}   (target >= 1.5)")


if __name__ == "__main__":
    main()
