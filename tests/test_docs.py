"""The docs a newcomer reads: a short README that keeps CI's test command, pages it links to, and a flag
reference that cannot drift from the settings it is generated from."""

import dataclasses
import importlib.util
import re
from pathlib import Path

from xlt.config import FIELD_TYPES, RunConfig, setting

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"


def _docs_script(name: str):
    """docs/NAME.py, a script outside the package, loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gen_flags():
    return _docs_script("gen_flags")


def test_committed_flag_reference_is_what_the_settings_generate_now():
    gen_flags = _gen_flags()
    committed = (ROOT / "docs" / "flags.md").read_text(encoding="utf-8")
    assert committed == gen_flags.render(), (
        "docs/flags.md is stale; regenerate it from the repository root: PYTHONPATH=src python docs/gen_flags.py")
    assert gen_flags.stale() is None


def test_a_new_setting_changes_the_flag_reference_and_names_the_command():
    gen_flags = _gen_flags()
    extended = dataclasses.make_dataclass(
        "Extended", [("new_setting", int, setting(3, "a setting | with a bar", choices=(3, 4)))], bases=(RunConfig,))
    page = gen_flags.render(extended, {**FIELD_TYPES, "new_setting": (int, False)})
    assert page.endswith("| `--new-setting` | 3 | `3`, `4` | a setting \\| with a bar |\n")
    assert page.startswith(gen_flags.render())  # the committed rows unchanged, the new one added
    assert gen_flags.COMMAND == "PYTHONPATH=src python docs/gen_flags.py"
    assert gen_flags.COMMAND in page


def test_flag_reference_has_one_row_per_setting_with_its_shown_default():
    rows = [line for line in _gen_flags().render().splitlines() if line.startswith("| `--")]
    assert len(rows) == len(dataclasses.fields(RunConfig))
    assert "| `--bf16`, `--no-bf16` | off |  | bf16 autocast |" in rows
    assert "| `--lora-alpha` | 2 \\* lora\\_r |  | LoRA alpha (> 0) |" in rows


def test_readme_is_short_and_keeps_the_test_command_ci_runs():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"
    assert "python -m pytest -q tests" in lines
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "python -m pytest -q tests" in ci


def test_every_docs_page_the_readme_links_to_exists():
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text(encoding="utf-8"))
    assert len(links) >= 10
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_readme_nusax_tables_are_the_ones_on_the_results_page():
    """The demo's 3-seed table and its intervals (xlt report's output) appear in both places with the same numbers;
    the seed-0 cells are on the results page."""
    readme, results = README.read_text(encoding="utf-8"), RESULTS.read_text(encoding="utf-8")
    for header, rows in (("| method | ace | bug | jv | mean | gap to English |", 8), ("| comparison | ace | bug |", 6)):
        table = readme[readme.index(header):].split("\n\n")[0]
        assert table.count("\n") == rows
        assert table in results
    assert "| flare (add_relu) | 0.892 | 0.858 | 0.870 | 0.873 |" in results


def _gen_tables():
    return _docs_script("gen_tables")


def test_committed_task_and_method_tables_are_the_rows_the_code_reads():
    gen_tables = _gen_tables()
    committed = (ROOT / "docs" / "tables.md").read_text(encoding="utf-8")
    assert committed == gen_tables.render(), (
        "docs/tables.md is stale; regenerate it from the repository root: PYTHONPATH=src python docs/gen_tables.py")
    assert gen_tables.stale() is None


def test_the_tables_page_has_one_line_per_task_and_method_with_what_it_refuses(monkeypatch):
    from xlt.data import registry
    from xlt.methods.table import METHODS

    page = _gen_tables().render()
    assert [line.split("`")[1] for line in page.splitlines() if line.startswith("| `") and "| classification |"
            in line] == ["nusax", "xnli", "custom"]
    assert sum(line.startswith("| `") for line in page.splitlines()) == len(registry.TASKS) + len(METHODS)
    panx = next(line for line in page.splitlines() if line.startswith("| `panx` |"))
    assert "| none | " in panx and "`translate-test`, `input-fusion`, `flare`, `flare-mt`, `x-mixup`" in panx
    toy = registry.TaskSpec("toy", lambda *a: None, "classification", "a toy row", parallel=False)
    monkeypatch.setitem(registry.TASKS, "toy", toy)
    assert "| `toy` | classification | any | none |" in _gen_tables().render()  # a new row is a new line


def test_train_help_lists_every_task_and_method_with_its_description(capsys):
    import pytest

    from xlt.cli.main import main
    from xlt.data.registry import TASKS
    from xlt.methods.table import METHODS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for name, row in [*TASKS.items(), *METHODS.items()]:
        assert re.search(rf"^  {re.escape(name)} +{re.escape(row.description)}$", out, re.M), name
