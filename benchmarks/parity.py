"""xlt's stage 1 and stage 2 against a plain PyTorch loop of the same protocol, on data the tests do not use.

The data (``--set``): a classification set built from MASSIVE (English and a target locale, parallel by id): the
utterances of ``--topics`` scenarios (or intents, ``--label intent``) with at least ``--min-words`` words, split per
class into ``--train-per-topic`` training and ``--test-per-topic`` test rows (fixed seed); or NusaX sentiment (the
demo's data). Either is written as ``--task custom`` CSV files into a temporary folder (nothing is written into the
repository), so xlt reads it as a user's own files. The protocol both sides follow:
e5-small, mean pooling over real tokens, dropout + linear head, word embeddings frozen, AdamW (weight decay 0),
lr 5e-5, 4 epochs, batch 32, 10 % linear warm-up then linear decay, fp32; stage 2 (``--stage2``): LoRA r=64 on
query/value (alpha 128, dropout 0.1) of xlt's own English model (so only stage 2 differs), head frozen, lr 5e-4,
5 epochs, trained on the target text.

The plain loop shuffles at random (``--plain-grouped``: xlt's length-grouped batches, a diagnostic) and clips
nothing; xlt runs its own defaults (``RunConfig``: length-grouped batches, gradients clipped at 1.0). Prints both
accuracies and exits 1 when xlt is more than ``--tolerance`` below the plain loop. Measured results: README.

    python benchmarks/parity.py [--set nusax] [--target jv] [--seeds 0 1 2] [--stage2]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import math
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from xlt.config import RunConfig
from xlt.data.paths import resolve_data_dir
from xlt.languages import dataset_name
from xlt.models.loading import load_tokenizer, resolve_model

TOPICS = ("calendar", "email", "news", "play", "qa", "social", "transport")


def build_set(folder: Path, target: str, topics, min_words: int, n_train: int, n_test: int,
              label: str = "scenario") -> tuple[Path, Path]:
    """Two custom CSV files (source_text = English, target_text = ``target``) of MASSIVE train utterances,
    labelled by their ``label`` column (scenario or intent)."""
    root = resolve_data_dir() / "massive"
    read = lambda locale: {r["id"]: r for r in map(json.loads, (root / f"{locale}.jsonl").open(encoding="utf-8"))}
    english, other = read("en-US"), read(dataset_name("massive", target))
    by_topic = collections.defaultdict(list)
    for rid, row in sorted(english.items(), key=lambda kv: int(kv[0])):
        if row["partition"] == "train" and row[label] in topics and len(row["utt"].split()) >= min_words:
            by_topic[row[label]].append(rid)
    rng = random.Random(0)
    train, test = [], []
    for topic in topics:
        ids = rng.sample(by_topic[topic], n_train + n_test)
        train += ids[:n_train]
        test += ids[n_train:]
    rng.shuffle(train)
    paths = []
    for name, ids in (("train", train), ("test", test)):
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "source_text", "target_text", "label"])
            for rid in ids:
                writer.writerow([rid, english[rid]["utt"], other[rid]["utt"], english[rid][label]])
        paths.append(path)
    return paths[0], paths[1]


def build_nusax(folder: Path, target: str) -> tuple[Path, Path]:
    """NusaX sentiment as custom CSV files: the English side and ``target``'s, parallel by id (500 train, 400 test)."""
    from xlt.data.sets.nusax import load

    data = load(resolve_data_dir(), target, "en")
    paths = []
    for name, examples in (("train", data.train), ("test", data.test)):
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "source_text", "target_text", "label"])
            for ex in examples:
                writer.writerow([ex.id, " ".join(ex.source), " ".join(ex.target), data.labels[ex.label]])
        paths.append(path)
    return paths[0], paths[1]


def read_rows(path: Path, column: str) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [(row[column], row["label"]) for row in csv.DictReader(f)]


class MeanPooled(torch.nn.Module):
    def __init__(self, backbone, classes: int):
        super().__init__()
        self.backbone, self.drop = backbone, torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(backbone.config.hidden_size, classes)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        return self.head(self.drop((hidden * mask).sum(1) / mask.sum(1)))


def plain_loop(model, tokenizer, train, test, labels, lr, epochs, seed, max_length=64, batch=32,
               grouped=False) -> float:
    """The minimal loop: random shuffles (``grouped``: xlt's length-grouped batches instead, a diagnostic), AdamW,
    linear warm-up/decay, fp32, accuracy on ``test``."""
    from xlt.data.examples import Example
    from xlt.training.loop import length_grouped_batches

    torch.manual_seed(seed)
    random.seed(seed)
    generator = torch.Generator().manual_seed(seed)
    as_examples = [Example((text,), None, 0) for text, _ in train]
    index = {label: i for i, label in enumerate(labels)}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = epochs * math.ceil(len(train) / batch)
    warm = int(0.1 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / max(1, warm) if s < warm else
                                              max(0.0, (total - s) / max(1, total - warm)))
    model.train()
    for _ in range(epochs):
        order = random.sample(range(len(train)), len(train))
        batches = (length_grouped_batches(as_examples, batch, generator) if grouped else
                   [order[start:start + batch] for start in range(0, len(order), batch)])
        for indices in batches:
            rows = [train[i] for i in indices]
            enc = tokenizer([t for t, _ in rows], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            loss = torch.nn.functional.cross_entropy(model(enc["input_ids"], enc["attention_mask"]),
                                                     torch.tensor([index[y] for _, y in rows]))
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
    model.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(test), 64):
            rows = test[start:start + 64]
            enc = tokenizer([t for t, _ in rows], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            pred = model(enc["input_ids"], enc["attention_mask"]).argmax(-1).tolist()
            right += sum(p == index[y] for p, (_, y) in zip(pred, rows))
    return right / len(test)


def plain_stage1(path: str, train, test, labels, seed: int, grouped=False) -> float:
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = MeanPooled(AutoModel.from_pretrained(path, add_pooling_layer=False), len(labels))
    model.backbone.get_input_embeddings().weight.requires_grad_(False)
    return plain_loop(model, load_tokenizer(path), train, test, labels, 5e-5, 4, seed, grouped=grouped)


def plain_stage2(stage1: str, train, test, labels, seed: int) -> float:
    """LoRA on query/value of xlt's own English model (the same start as xlt's stage 2), head frozen, at xlt's
    stage-2 defaults: r=64, alpha=128, dropout 0.1, lr 5e-4, 5 epochs."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = MeanPooled(AutoModel.from_pretrained(stage1, add_pooling_layer=False), len(labels))
    head = load_file(str(Path(stage1) / "classifier.safetensors"))
    model.head.load_state_dict({k.removeprefix("classifier."): v for k, v in head.items()})
    model.requires_grad_(False)
    model.backbone = get_peft_model(model.backbone, LoraConfig(r=64, lora_alpha=128, lora_dropout=0.1,
                                                               target_modules=["query", "value"]))
    return plain_loop(model, load_tokenizer(stage1), train, test, labels, 5e-4, 5, seed)


def xlt_run(train_file: Path, test_file: Path, target: str, seed: int, folder: Path, method: str) -> dict:
    from xlt.runs.stage2 import run_stage2

    cfg = RunConfig(task="custom", method=method, target_lang=target, train_file=str(train_file),
                    test_file=str(test_file), seed=seed, output_dir=str(folder / f"{method}-{seed}"),
                    stage1_dir=str(folder / "stage1"), show_progress=False, bf16=False)
    return run_stage2(cfg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("massive", "nusax"), default="massive",
                        help="massive: topics built from MASSIVE; nusax: NusaX sentiment (the demo's data)")
    parser.add_argument("--target", default="de")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--topics", nargs="+", default=list(TOPICS), help="the scenarios (or intents) to classify")
    parser.add_argument("--label", choices=("scenario", "intent"), default="scenario")
    parser.add_argument("--min-words", type=int, default=8)
    parser.add_argument("--train-per-topic", type=int, default=100)
    parser.add_argument("--test-per-topic", type=int, default=30)
    parser.add_argument("--stage2", action="store_true", help="also compare stage 2 (LoRA on the target text)")
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--plain-grouped", action="store_true", help="diagnostic: the plain loop takes xlt's "
                        "length-grouped batches")
    parser.add_argument("--skip-xlt", action="store_true", help="diagnostic: the plain loop only")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    path = resolve_model("e5-small")
    rows = {"xlt stage 1 (English)": [], "plain stage 1 (English)": []}
    if args.stage2:
        rows.update({f"xlt lora ({args.target})": [], f"plain lora ({args.target})": []})
    with tempfile.TemporaryDirectory(prefix="xlt-parity-") as tmp:
        folder = Path(tmp)
        if args.set == "nusax":
            train_file, test_file = build_nusax(folder, args.target)
        else:
            train_file, test_file = build_set(folder, args.target, args.topics, args.min_words, args.train_per_topic,
                                              args.test_per_topic, args.label)
        labels = tuple(sorted({label for _, label in read_rows(train_file, "source_text")}))
        en_train, en_test = read_rows(train_file, "source_text"), read_rows(test_file, "source_text")
        for seed in args.seeds:
            if not args.skip_xlt:
                metrics = xlt_run(train_file, test_file, args.target, seed, folder,
                                  "lora" if args.stage2 else "zero-shot")
                rows["xlt stage 1 (English)"].append(metrics["source_metrics"]["accuracy"])
            rows["plain stage 1 (English)"].append(plain_stage1(path, en_train, en_test, labels, seed,
                                                                args.plain_grouped))
            if args.stage2:
                rows[f"xlt lora ({args.target})"].append(metrics["metrics"]["accuracy"])
                rows[f"plain lora ({args.target})"].append(plain_stage2(
                    metrics["stage1_dir"], read_rows(train_file, "target_text"), read_rows(test_file, "target_text"),
                    labels, seed))
            print(json.dumps({k: v[-1] for k, v in rows.items() if v}), flush=True)
    print(f"{len(en_train)} training / {len(en_test)} test rows, {len(labels)} topics, seeds {args.seeds}")
    mean = {k: statistics.mean(v) for k, v in rows.items() if v}
    for name, value in mean.items():
        print(f"{name:28s} {value:.3f}  ({', '.join(f'{x:.3f}' for x in rows[name])})")
    gaps = [mean[f"xlt {s}"] - mean[f"plain {s}"] for s in [k.removeprefix("xlt ") for k in mean if k.startswith("xlt")]]
    print("xlt - plain:", ", ".join(f"{g:+.3f}" for g in gaps))
    return 1 if gaps and min(gaps) < -args.tolerance else 0


if __name__ == "__main__":
    sys.exit(main())
