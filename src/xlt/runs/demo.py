"""``xlt demo``: the whole modular pipeline on the embedded model and NusaX, ending in a table.

Stage 1 once per seed, then each row of a suite for each target language: ``flare`` (every baseline
and FLARE add_relu) or ``alignment`` (task LoRA, LoRA with alignment steps, an alignment module, and
the merge of task LoRA and alignment module), or ``mt`` (each method with gold, pivot and lexicon-MT English).
The ``flare`` suite also runs the other parallel tasks (``--task xnli``, ``uner``, ``mlqa``: TASK_PLANS);
``results.jsonl`` (one object per run) and ``summary.md`` are rewritten atomically after each run,
so an interrupted demo leaves complete files describing the runs that finished, and running it
again with the same settings reuses those runs. The summary's tables are ``xlt report``'s
(:mod:`xlt.runs.report`); its paired bootstrap intervals, against lora and FLARE against input-fusion, are
added when the last run has finished.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.io import write_text_atomic
from xlt.runs.recipe import Run
from xlt.runs.report import FinishedRun, full_table, markdown_comparisons, markdown_table
from xlt.runs.results import format_mean_std, gap_to_source, mean_std
from xlt.runs.stage2 import finished_run, run_stage2
from xlt.training import loop


@dataclass(frozen=True)
class DemoMethod:
    """One row of a demo table: a stage-2 method with its settings, or a weighted merge of earlier rows."""

    name: str
    settings: tuple[tuple[str, object], ...] = ()  # RunConfig fields
    merge: tuple[tuple[str, float], ...] = ()  # (row name, weight); the first row is the task adapter
    epochs_factor: int = 1  # times the plan's stage-2 epochs (a control with as many steps as lora+align)


def _row(name: str, epochs_factor: int = 1, **settings: object) -> DemoMethod:
    return DemoMethod(name, tuple(settings.items()), epochs_factor=epochs_factor)


# the FLARE paper's table: every baseline and FLARE
FLARE_SUITE = (
    _row("zero-shot", method="zero-shot"),
    _row("translate-test", method="translate-test"),
    _row("lora", method="lora"),
    _row("input-fusion", method="input-fusion"),
    _row("flare-add_relu", method="flare", fusion="add_relu"),
)
# the alignment paper's comparison: task LoRA alone, trained with alternating alignment steps, and merged
# with a separately trained alignment module; all LoRA on all linear layers at r=8, alpha 16. The
# alignment module alone ("align") is evaluated zero-shot with the English head, next to zero-shot.
# Rows keep the method name in results.jsonl except the merge and the 2x-epochs control.
ALIGNMENT_SUITE = (
    _row("zero-shot", method="zero-shot"),
    _row("lora", method="lora", lora_targets="all-linear", lora_r=8, lora_alpha=16),
    # lora+align at 1:1 takes twice the optimizer steps of lora; this row has the same number
    _row("lora 2x epochs", epochs_factor=2, method="lora", lora_targets="all-linear", lora_r=8, lora_alpha=16),
    _row("lora+align", method="lora+align"),
    _row("align", method="align"),
    DemoMethod("merge: 0.9 lora + 0.1 align", merge=(("lora", 0.9), ("align", 0.1))),
)
# the FLARE paper's realistic setting: the English each method reads is gold, a human pivot (NusaX's
# Indonesian), or a weak machine translation (the lexicon stand-in; no MT weights are reachable offline)
MT_SOURCES = (("gold", "gold"), ("pivot:id", "Indonesian pivot"), ("lexicon", "lexicon MT"))
MT_SUITE = (
    _row("zero-shot", method="zero-shot"),
    _row("lora", method="lora"),
    *(_row(f"{name} [{label}]", source_from=source, **settings) for source, label in MT_SOURCES
      for name, settings in (("translate-test", {"method": "translate-test"}),
                             ("input-fusion", {"method": "input-fusion"}),
                             ("flare", {"method": "flare", "fusion": "add_relu"}),
                             ("x-mixup", {"method": "x-mixup"}))),
)
SUITES = {"flare": FLARE_SUITE, "alignment": ALIGNMENT_SUITE, "mt": MT_SUITE}
TASK_TITLES = {"nusax": "NusaX sentiment", "xnli": "XNLI", "uner": "UNER PUD named entities (tagging)",
               "mlqa": "MLQA extractive QA"}
DEFAULT_DEMO_DIRS = {"flare": "xlt-demo", "alignment": "xlt-demo-alignment", "mt": "xlt-demo-mt"}


@dataclass(frozen=True)
class DemoPlan:
    task: str = "nusax"  # TASK_TITLES; the alignment and mt suites are NusaX's
    languages: tuple[str, ...] = ("ace", "bug", "jv")
    seeds: tuple[int, ...] = (0,)
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    epochs: int = 3  # the reference protocol uses 5; 3 keeps the default demo within 15 min on 2 cores
    stage1_epochs: int | None = None  # None: the task's stage-1 budget (its row's stage1_budget, xlt.data.registry)
    stage1_lr: float | None = None  # None: the task's, or a LoRA rate where stage 1 is LoRA (xlt.runs.stage1.stage1_lr)
    stage1_max_train_examples: int | None = None  # English training examples (None: all 500)
    max_length: int = 64
    # bf16 autocast as in the reference protocol where the hardware has it (None: loop.resolve_bf16);
    # emulated bf16 on an AVX2 CPU is some 30x slower than fp32
    bf16: bool | None = None
    quick: bool = False  # the smoke-test plan (xlt demo --quick): the summary says its numbers are not results


FULL = DemoPlan()
# quick: a smoke run of every step, under 3 minutes on 2 cores (384 English examples for 2 epochs at a
# higher rate; 64 target training and 64 test examples, 2 epochs)
QUICK = DemoPlan(quick=True, max_train_examples=64, max_eval_examples=64, epochs=2, stage1_epochs=2, stage1_lr=2e-4,
                 stage1_max_train_examples=384, max_length=48)
# a model several times e5-small's cost gets a plan that keeps each run under 15 minutes on 2 CPU cores
# (its stage 1 is LoRA, at the LoRA learning rate every LoRA stage 1 defaults to)
MODEL_PLANS = {"gemma3-270m": {"max_train_examples": 256, "stage1_epochs": 3}}
# the other tasks of the flare suite: their languages (parallel with English, so every row runs), and what
# their English training set needs; a quick plan takes only the languages
TASK_PLANS: dict[str, dict] = {
    "xnli": {"languages": ("de", "sw", "ur"), "max_train_examples": 1000, "max_eval_examples": 1000},
    # stage 1 takes the task's own budget (its row's stage1_budget, xlt.data.registry)
    "uner": {"languages": ("de", "ru", "zh"), "max_length": 128},
    "mlqa": {"languages": ("de", "es"), "max_train_examples": 1000, "max_eval_examples": 1000},
}


def demo_plan(model: str, quick: bool = False, task: str = "nusax") -> DemoPlan:
    """The plan ``xlt demo`` runs for ``model`` and ``task``: the quick smoke plan, else the full plan with the
    model's caps, then the task's settings (only its languages for a quick plan)."""
    if task not in TASK_TITLES:
        raise XltError(f"xlt demo runs tasks {', '.join(TASK_TITLES)}, not {task!r}")
    plan = QUICK if quick else dataclasses.replace(FULL, **MODEL_PLANS.get(model, {}))
    settings = TASK_PLANS.get(task, {})
    return dataclasses.replace(plan, task=task, **({"languages": settings["languages"]} if quick and settings
                                                   else settings))


def primary_metric(metrics: dict) -> str:
    """The metric a demo row is printed and its gap computed with: accuracy, else F1 (tagging, QA)."""
    return "accuracy" if "accuracy" in metrics else "f1"


def _retrieval_lines(rows: list[dict]) -> list[str]:
    """Mean over seeds of English<->target margin retrieval at the aligned layer(s), before -> after."""
    cells: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        for lang, result in (row.get("alignment_retrieval") or {}).items():
            before, after = list(result["before"].values()), list(result["after"].values())
            cells.setdefault((row["method"], lang), []).append((sum(before) / len(before), sum(after) / len(after)))
    if not cells:
        return []
    lines = ["## English↔target retrieval at the aligned layer (held-out parallel sentences), before → after", "",
             "| method | language | before | after |", "|---|---|---:|---:|"]
    for (method, lang), pairs in cells.items():
        before, _ = mean_std([x for x, _ in pairs])
        lines.append(f"| {method} | {lang} | {before:.3f} | {format_mean_std([y for _, y in pairs])} |")
    return lines + [""]


def _count(values: list[int]) -> str:
    """One example count, or the range when runs differ (e.g. languages of different sizes)."""
    return str(values[0]) if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _sizes(train: list[int], test: list[int]) -> str:
    if not train and not test:
        return "example counts not recorded (runs of an older xlt)"
    return f"{_count(train) if train else 'no'} training and {_count(test) if test else 'no'} test examples"


def _setup_lines(rows: list[dict], quick: bool) -> list[str]:
    """What the numbers below rest on: seeds, data sizes, the plan, and what translate-test reads."""
    seeds = sorted({row["seed"] for row in rows})
    stage1 = [row["stage1_examples"] for row in rows if row.get("stage1_examples")]
    trained = [row["train_examples"] for row in rows if row.get("train_examples")]
    lines = [f"- {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"
             + ("; cells are mean ± sample standard deviation over seeds" if len(seeds) > 1 else
                "; one run per cell, no standard deviation"),
             f"- stage 1 (English): {_sizes([s['train'] for s in stage1], [s['test'] for s in stage1])}",
             "- stage 2 (each target language): "
             + _sizes(trained, [row["test_examples"] for row in rows if "test_examples" in row])]
    if quick:
        lines.append("- **`--quick` run**: fewer examples and epochs than the full demo; a smoke test, not results")
    if any(row["method"].startswith("translate-test") and row.get("source_from", "gold") == "gold" for row in rows):
        lines.append("- translate-test reads the gold (human) English version of each test example, not a machine "
                     "translation: an upper bound for translate-test")
    return lines + [""]


def _source_quality_lines(rows: list[dict]) -> list[str]:
    """chrF of each non-gold source (machine translation, pivot) against the gold English of the same test rows."""
    cells: dict[tuple[str, str], list[float]] = {}
    signature = ""
    for row in rows:
        test = (row.get("source_chrf") or {}).get("test")
        if test:
            cells.setdefault((row.get("source_from", "?"), row["target_lang"]), []).append(test["chrf"])
            signature = row["source_chrf"].get("signature", signature)
    if not cells:
        return []
    lines = ["## chrF of each source against the gold English (test rows)", "",
             "| source | language | chrF |", "|---|---|---:|"]
    lines += [f"| {source} | {lang} | {sum(v) / len(v):.1f} |" for (source, lang), v in cells.items()]
    if any(source.startswith("pivot:") for source, _ in cells):
        lines += ["", "A pivot is another language, not a translation into English: its chrF says how far its text "
                      "is from the English, not how good it is."]
    return lines + ["", f"sacreBLEU signature: `{signature}`", ""]


def summary_markdown(rows: list[dict], model: str = "e5-small", quick: bool = False, samples: int = 1000) -> str:
    """The demo's summary, its tables printed by :mod:`xlt.runs.report`: per metric mean ± std per method and
    language, and for the primary metric each method against lora (FLARE also against input-fusion) with a paired
    bootstrap interval of ``samples`` draws from the runs' predictions (none for 0)."""
    runs = [FinishedRun.from_row(row, predictions=samples > 0) for row in rows]
    primary = primary_metric(rows[0]["metrics"])
    task = TASK_TITLES.get(rows[0]["task"], rows[0]["task"])
    lines = [f"# xlt demo: {task}, {model}, English → target", "", *_setup_lines(rows, quick)]
    for metric in dict.fromkeys([primary, *rows[0]["metrics"]]):
        table = full_table(runs, metric, samples if metric == primary else 0, keep_order=True)
        lines += [f"## {metric}", "", *markdown_table(table), ""]
        lines += [*markdown_comparisons(table), ""] if table.comparisons else []
    lines += _source_quality_lines(rows)
    lines += _retrieval_lines(rows)
    return "\n".join(lines)


def written_line(output_dir: str | Path) -> str:
    """Where the demo wrote its results (printed last by ``xlt demo``)."""
    out = Path(output_dir)
    return f"wrote {out / 'results.jsonl'} (one JSON object per run) and {out / 'summary.md'}"


def _merged_run(out: Path, parts: list[tuple[dict, float]]) -> dict:
    """Merge finished runs' adapters into ``out`` and evaluate it; reused while its inputs are unchanged."""
    from xlt.alignment.merge import merge_runs
    from xlt.run_dir import ADAPTER, CARD, missing_files, model_card
    from xlt.runs.evaluate import record_merge_evaluation, reevaluate_with_predictions

    inputs = [{"run": str(Path(m["output_dir"]).resolve()), "finished": m["finished"], "weight": w} for m, w in parts]
    saved = out / "metrics.json"
    if not missing_files(out, trains=True):
        metrics = json.loads(saved.read_text())
        if metrics.get("demo_inputs") == inputs and "metrics" in metrics:
            return metrics
    merge_runs([i["run"] for i in inputs], [w for _, w in parts], out, overwrite=True)  # the demo's own folder
    first = parts[0][0]
    result, predictions = reevaluate_with_predictions(out)
    source = first["source_metrics"]
    metrics = {**json.loads(saved.read_text()), **result, "source_metrics": source, "demo_inputs": inputs,
               "fusion": None, "train_seconds": 0.0, "output_dir": str(out.resolve()), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "gap": {k: gap_to_source(source[k], v) for k, v in result["metrics"].items() if source.get(k)}}
    write_text_atomic(out / ADAPTER / CARD, model_card(RunConfig.from_yaml(out / "config.yaml").to_dict(),
                                                       metrics))  # the card now with the merge's scores
    record_merge_evaluation(out, metrics, predictions)  # predictions.jsonl, then metrics.json with "metrics"
    return metrics


def run_demo(output_dir: str | Path, plan: DemoPlan, model: str = "e5-small", data_dir: str | None = None,
             show_progress: bool = True, suite: str = "flare") -> str:
    if suite not in SUITES:
        raise XltError(f"unknown demo suite {suite!r}; choose one of: {', '.join(SUITES)}")
    if suite != "flare" and plan.task != "nusax":
        raise XltError(f"the {suite} suite runs NusaX; --task {plan.task} runs with --suite flare")
    out = Path(output_dir)
    rows: list[dict] = []
    methods = SUITES[suite]
    total = len(plan.seeds) * len(plan.languages) * len(methods)
    bf16 = loop.resolve_bf16(plan.bf16)
    done = 0
    for seed in plan.seeds:
        for lang in plan.languages:
            finished: dict[str, dict] = {}
            for method in methods:
                run_dir = out / "runs" / lang / method.name.replace(" ", "").replace(":", "_") / f"seed{seed}"
                if method.merge:
                    metrics = _merged_run(run_dir, [(finished[name], w) for name, w in method.merge])
                else:
                    cfg = RunConfig(
                        task=plan.task, model=model, target_lang=lang, seed=seed, output_dir=str(run_dir),
                        data_dir=data_dir, epochs=plan.epochs * method.epochs_factor, stage1_epochs=plan.stage1_epochs,
                        stage1_lr=plan.stage1_lr, stage1_max_train_examples=plan.stage1_max_train_examples,
                        max_length=plan.max_length, stage1_dir=str(out / "stage1"),
                        max_train_examples=plan.max_train_examples, max_eval_examples=plan.max_eval_examples,
                        bf16=bf16, show_progress=show_progress, **dict(method.settings),
                    )
                    # resumes; a run of other settings in the demo's own folder is replaced
                    run = Run(cfg)  # resolved once: the reuse check and the run share its look-ups
                    metrics = {**(finished_run(run) or run_stage2(run, overwrite=True)), "output_dir": str(run_dir)}
                finished[method.name] = metrics
                relabel = method.merge or method.epochs_factor != 1 or "source_from" in dict(method.settings)
                rows.append({**metrics, "method": method.name} if relabel else metrics)
                done += 1
                metric = primary_metric(metrics["metrics"])
                print(f"[{done}/{total}] seed {seed} {lang:>4} {method.name:<16} {metric} "
                      f"{metrics['metrics'][metric]:.3f}  ({metrics['train_seconds']:.0f}s train)", flush=True)
                write_text_atomic(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
                # after each run the tables; the bootstrap intervals, which read every run's predictions, once at the end
                write_text_atomic(out / "summary.md", summary_markdown(rows, model, plan.quick, samples=0))
    summary = summary_markdown(rows, model, plan.quick)
    write_text_atomic(out / "summary.md", summary)
    return summary
