"""Write docs/flags.md, the reference of ``xlt train``'s flags, from ``xlt.config.RunConfig``.

The flags are made from RunConfig's fields (name, ``shown_default``, the metadata's "help" and
"choices"), so the page is generated from the same source and cannot drift from ``xlt train --help``;
tests/test_docs.py fails when the committed page differs from what this script writes now.

Run from the repository root:  PYTHONPATH=src python docs/gen_flags.py  (--check: only compare)
"""

from __future__ import annotations

import sys
from dataclasses import Field, fields
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "flags.md"
COMMAND = "PYTHONPATH=src python docs/gen_flags.py"

HEADER = f"""# Flags of `xlt train`

Generated from `xlt.config.RunConfig` by `docs/gen_flags.py`; do not edit by hand. After adding or
changing a setting, regenerate it from the repository root: `{COMMAND}`.

Every flag is also a key of `xlt train --config run.yaml`: the flag without its leading dashes, with
underscores for dashes (`--max-length` is `max_length`); flags given on the command line override the file.
Two flags are not settings: `--config FILE` (the YAML file; default none) and `--overwrite` (replace the
finished xlt run in `--output-dir`; default off). An on/off setting has a `--no-` form too.
`xlt <command> --help` lists the flags of the other commands.

| flag | default | choices | what it sets |
|---|---|---|---|
"""


def escaped(text: str) -> str:
    """Text safe inside a markdown table cell: no column break, no HTML tag, no emphasis."""
    for char, escape in (("\\", "\\\\"), ("|", "\\|"), ("*", "\\*"), ("_", "\\_"), ("<", "&lt;"), ("`", "\\`")):
        text = text.replace(char, escape)
    return text


def code(text: str) -> str:
    """Text as a code span in a table cell (a | still needs its escape there)."""
    return "`" + text.replace("|", "\\|") + "`"


def flag_cell(f: Field, kind: type) -> str:
    flag = "--" + f.name.replace("_", "-")
    if kind is bool:
        return f"{code(flag)}, {code('--no-' + flag[2:])}"
    if f.metadata.get("many"):  # several names after one flag
        return code(f"{flag} NAME [NAME ...]")
    return code(flag)


def row(f: Field, kind: type) -> str:
    from xlt.config import field_choices, shown_default

    choices = field_choices(f)
    choice_cell = ", ".join(code(str(choice)) for choice in choices) if choices else ""
    return (f"| {flag_cell(f, kind)} | {escaped(shown_default(f))} | {choice_cell} "
            f"| {escaped(f.metadata.get('help', ''))} |")


def render(config_class: type | None = None, field_types: dict | None = None) -> str:
    """The whole page, one table row per field of ``config_class`` (RunConfig), in the order of the dataclass."""
    from xlt.config import FIELD_TYPES, RunConfig

    config_class = config_class or RunConfig
    field_types = field_types or FIELD_TYPES
    return HEADER + "".join(row(f, field_types[f.name][0]) + "\n" for f in fields(config_class))


def stale() -> str | None:
    """None when the committed page is what render() writes now, else the line that says how to fix it."""
    committed = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if committed == render():
        return None
    return f"docs/flags.md differs from the settings in xlt.config; regenerate it: {COMMAND}"


def main(argv: list[str]) -> int:
    """Write the page, or with --check only say whether the committed page is stale (exit 1)."""
    if "--check" in argv:
        problem = stale()
        print(problem or f"{PAGE} is up to date")
        return 1 if problem else 0
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
