"""Write docs/tables.md, the task table and the method table as xlt holds them (``xlt.data.registry.TASKS``,
``xlt.methods.table.METHODS``), so the page cannot drift from the rows the code reads; tests/test_docs.py fails
when the committed page differs from what this script writes now.

Run from the repository root:  PYTHONPATH=src python docs/gen_tables.py  (--check: only compare)
"""

from __future__ import annotations

import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "tables.md"
COMMAND = "PYTHONPATH=src python docs/gen_tables.py"

HEADER = f"""# The task and method tables

Generated from `xlt.data.registry.TASKS` and `xlt.methods.table.METHODS` by `docs/gen_tables.py`; do not edit
by hand. After changing a row, regenerate it from the repository root: `{COMMAND}`.

A task is one row of the task table; everything xlt knows about a data set is in it, and `RunConfig`, the
up-front checks, stage 1 and `xlt train --help` read it (adding one: [Adding a data set](new-dataset.md)). A
method is one row of the method table; code asks the row what a method reads and trains, never its name.
"""


def cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace("_", "\\_").replace("*", "\\*")


def code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def task_rows() -> list[str]:
    from xlt.data.registry import TASKS
    from xlt.methods.table import METHODS

    rows = ["| task | kind | languages | English side | user files | stage-1 epochs, lr | refuses | what it is |",
            "|---|---|---|---|---|---|---|---|"]
    for name, spec in TASKS.items():
        languages = ", ".join(spec.languages) if spec.languages else "any"
        english = "same sentence" if spec.translation else "each example's" if spec.parallel else "none"
        files = f"{spec.user_files.format}: {spec.user_files.columns}" if spec.user_files else ""
        epochs, lr = spec.budget()
        budget = f"{epochs}, {lr:g}" + ("" if spec.stage1_budget else " (default)")
        refused = ", ".join(code(m) for m in METHODS if spec.refusal(METHODS[m])) or "none"
        rows.append(f"| {code(name)} | {spec.kind} | {cell(languages)} | {english} | {cell(files)} | {budget} "
                    f"| {refused} | {cell(spec.description)} |")
    return rows


def method_rows() -> list[str]:
    from xlt.methods.table import METHODS

    rows = ["| method | reads | trains | adapter | its own options | families | default LoRA | what it does |",
            "|---|---|---|---|---|---|---|---|"]
    for name, m in METHODS.items():
        adapter = ("none" if not m.trains else "FLARE (MT encoder)" if m.mt_encoder else "FLARE" if m.fuses
                   else "LoRA + X-Mixup" if m.mixes else "LoRA")
        trains = ("no" if not m.trains else "alignment loss" if not m.task_loss
                  else "task + alignment" if m.align else "task loss")
        options = ", ".join(code("--" + o.replace("_", "-")) for o in m.options) or ""
        lora = f"r={m.lora_r}, {m.lora_targets}" if m.trains else ""
        rows.append(f"| {code(name)} | {m.view} | {trains} | {adapter} | {options} | {', '.join(m.families)} "
                    f"| {lora} | {cell(m.description)} |")
    return rows


def render() -> str:
    return (HEADER + "\n## Tasks\n\n" + "\n".join(task_rows()) + "\n\n## Methods\n\n" + "\n".join(method_rows())
            + "\n\nA method's `reads` is the text the task model reads: `target`, `source` (each example's English"
            " version) or `concat` (English, separator, target).\n")


def stale() -> str | None:
    """None when the committed page is what render() writes now, else the line that says how to fix it."""
    committed = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if committed == render():
        return None
    return f"docs/tables.md differs from the task and method tables; regenerate it: {COMMAND}"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problem = stale()
        if problem:
            print(problem, file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
