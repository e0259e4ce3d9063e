"""The package's shape, checked: every module belongs to one layer, imports go only sideways or down, no
import circles, no function over 60 lines without a reason in its docstring (docs/ARCHITECTURE.md draws the
same layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# bottom to top; a module's layer is that of the longest prefix listed (xlt/__init__.py, which only calls
# xlt.flare.registration and xlt.models.registration, is left out)
LAYERS = [
    ("foundation", ("xlt.errors", "xlt.io", "xlt.processes", "xlt.languages")),
    ("scoring, models", ("xlt.scoring", "xlt.models")),
    ("data, run folders", ("xlt.data", "xlt.run_dir")),
    ("translation, FLARE, language identification", ("xlt.mt", "xlt.flare", "xlt.lid")),
    ("methods, training", ("xlt.methods", "xlt.training")),
    ("settings", ("xlt.config",)),
    ("task kinds, alignment", ("xlt.kinds", "xlt.alignment")),
    ("runs", ("xlt.runs",)),
    ("command line", ("xlt.cli",)),
]
LONG_FUNCTION = 60


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted((SRC / "xlt").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def layer_of(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"module {module} is in no layer of tests/test_layers.py")
    return best[0]


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Every xlt module ``module`` imports, at the top or inside a function (a lazy import is still a
    dependency); ``from pkg import name`` counts as ``pkg.name`` when that is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {name for name in found if name in known and name != module}


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imports_of(module, path, set(files)) for module, path in files.items() if module != "xlt"}


def test_every_import_goes_sideways_or_down():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in graph().items() for target in sorted(targets)
              if target != "xlt" and layer_of(target) > layer_of(module)]
    assert upward == []


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    assert circles(graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_over_60_lines_without_a_reason():
    """A longer function says why in its docstring (the word "long" and the reason)."""
    long = []
    for module, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONG_FUNCTION and "long" not in (ast.get_docstring(node) or "").lower():
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert long == []


@pytest.mark.parametrize("module", ["xlt.config", "xlt.methods.table", "xlt.data.registry", "xlt.cli.main"])
def test_modules_the_cli_checks_with_import_no_torch(module):
    """The up-front checks stay fast: the settings, the tables and the parser import no torch."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"})
    assert out.stdout.strip() == "False"


def test_adapter_file_names_are_spelled_in_one_module():
    """An adapter folder's file names are written once (xlt.run_dir, the lowest layer that needs them);
    every other module imports them, so a rename cannot leave one reader looking for the old name."""
    names = {"adapter_model.safetensors", "adapter_config.json", "xlt_adapter.json"}
    spelled = set()
    for module, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        spelled |= {module for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in names
                    and id(node) not in docstrings}
    assert spelled == {"xlt.run_dir"}


def test_no_private_name_is_imported_from_another_module():
    """A name with a leading underscore is its module's own: what others use gets a public name."""
    found = []
    for path in [*module_files().values(), *sorted(SRC.parent.joinpath("tests").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xlt"):
                found += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == []


@pytest.mark.parametrize("script", sorted(p.name for p in (SRC.parent / "benchmarks").glob("*.py")))
def test_every_benchmark_script_imports_and_shows_its_help(script):
    """The benchmarks import xlt's modules by name: a move that leaves one behind fails here, not at measuring time."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(SRC.parent / "benchmarks" / script), "--help"], capture_output=True,
                         text=True, env={"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr.splitlines()[-1:]
    assert "usage:" in out.stdout


def test_architecture_doc_draws_the_same_layers():
    """docs/ARCHITECTURE.md's layer table: every module it lists sits in the layer its row numbers, and every
    package or module of the table above has a row."""
    import re

    doc = (SRC.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed = {}
    for number, modules in re.findall(r"^\| (\d) \| [^|]+ \| ([^|]+) \|", doc, re.M):
        for name in re.findall(r"`([\w/]+?)(?:\.py|/)`", modules):
            listed["xlt." + name.replace("/", ".")] = int(number)
    assert {module: layer_of(module) for module in listed} == listed
    assert sorted(listed) == sorted(prefix for _, prefixes in LAYERS for prefix in prefixes)
