"""Run directories cannot lie: a killed run leaves the old run whole (or nothing), resume and evaluate
check what they read, temp dirs of dead builders are cleaned, modes follow the umask, cards describe runs."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import cli_error, tiny

from xlt.cli import main
from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.io import STALE_SECONDS, current_umask, file_sha256, host_tag, write_json, write_yaml
from xlt.methods.adapters import save_adapter
from xlt.models.cache import COMPLETE_MARKER, build_once
from xlt.run_dir import model_card, write_run
from xlt.runs.stage2 import finished_run, run_stage2

SRC = Path(__file__).resolve().parents[1] / "src"
SETTINGS = dict(model="tiny-random/bert", task="nusax", method="lora", target_lang="jv", max_train_examples=24,
                max_eval_examples=20, epochs=1, stage1_epochs=1, lora_r=4, lora_alpha=8, batch_size=8,
                show_progress=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    run_stage2(RunConfig(**SETTINGS, output_dir=str(out)))
    return out


def _copy(run: Path, dest: Path) -> RunConfig:
    """A copy of a finished run whose config.yaml names its new place; returns that config."""
    shutil.copytree(run, dest)
    cfg = RunConfig.from_yaml(dest / "config.yaml").replace(output_dir=str(dest))
    write_yaml(dest / "config.yaml", cfg.to_dict())
    return cfg


def _raise(*args, **kwargs):
    raise OSError("disk full (simulated crash)")


@pytest.mark.parametrize("crash_point", ["xlt.runs.stage2.save_adapter", "xlt.run_dir.write_json", "xlt.io.replace_dir"])
def test_a_crash_while_writing_a_run_leaves_the_old_run_whole(finished, tmp_path, monkeypatch, crash_point):
    old_cfg = _copy(finished, tmp_path / "run")
    before = snapshot(tmp_path / "run")
    old_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    new_cfg = old_cfg.replace(lr=1e-3)
    module, name = crash_point.rsplit(".", 1)
    monkeypatch.setattr(sys.modules[module], name, _raise)
    with pytest.raises(OSError, match="simulated crash"):
        run_stage2(new_cfg, overwrite=True)
    assert snapshot(tmp_path / "run") == before  # the old run, every byte, and nothing of the new one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp dir left behind
    assert finished_run(old_cfg) == old_metrics
    assert finished_run(new_cfg) is None


def test_a_new_run_replaces_the_old_one_whole(finished, tmp_path):
    old_cfg = _copy(finished, tmp_path / "run")
    (tmp_path / "run" / ".metrics.json.abcd1234").write_text("{")  # a temp file a killed old xlt left
    new_cfg = old_cfg.replace(lr=1e-3)
    metrics = run_stage2(new_cfg, overwrite=True)
    assert RunConfig.from_yaml(tmp_path / "run" / "config.yaml") == new_cfg
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics == finished_run(new_cfg)
    assert sorted(snapshot(tmp_path / "run")) == [".xlt-run", "adapter/README.md", "adapter/adapter_config.json",
                                                  "adapter/adapter_model.safetensors", "adapter/xlt_adapter.json",
                                                  "config.yaml", "metrics.json", "predictions.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert finished_run(old_cfg) is None


@pytest.mark.parametrize("damage", ["metrics.json", "config.yaml", "adapter/adapter_model.safetensors",
                                    "adapter/adapter_config.json", "adapter", "corrupt metrics", "no metrics key"])
def test_finished_run_refuses_an_incomplete_run(finished, tmp_path, damage):
    cfg = _copy(finished, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert finished_run(cfg) == metrics
    target = tmp_path / "run" / damage
    if damage == "corrupt metrics":
        (tmp_path / "run" / "metrics.json").write_text('{"metrics": {"accuracy": 0.')
    elif damage == "no metrics key":
        write_json(tmp_path / "run" / "metrics.json", {k: v for k, v in metrics.items() if k != "metrics"})
    elif target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    assert finished_run(cfg) is None


def test_a_method_without_adapter_needs_no_adapter_folder(tmp_path):
    cfg = RunConfig(**{**SETTINGS, "method": "zero-shot"}, output_dir=str(tmp_path / "zs"))
    metrics = {"method": "zero-shot", "metrics": {"accuracy": 0.5, "macro_f1": 0.4}}
    write_run(tmp_path / "zs", cfg.to_dict(), metrics, None)
    assert sorted(snapshot(tmp_path / "zs")) == [".xlt-run", "config.yaml", "metrics.json"]
    assert finished_run(cfg) == metrics
    assert finished_run(cfg.replace(seed=1)) is None  # another config


def test_evaluate_says_whether_it_reproduces_the_stored_metrics(finished, tmp_path, capsys):
    _copy(finished, tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert err == ""
    assert result["metrics"] == stored["metrics"]
    assert result["matches_stored"] is True and result["stored_differences"] == []

    recomputed = stored["metrics"]["accuracy"]
    write_json(tmp_path / "run" / "metrics.json", {**stored, "metrics": {**stored["metrics"], "accuracy": 0.125}})
    assert main(["evaluate", "--run-dir", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert err == ("xlt: warning: recomputed metrics differ from the run's metrics.json: "
                   f"metrics.accuracy stored 0.125, recomputed {recomputed}\n")
    assert result["metrics"] == stored["metrics"]
    assert result["matches_stored"] is False
    assert result["stored_differences"] == [{"metric": "metrics.accuracy", "stored": 0.125, "recomputed": recomputed}]


def test_evaluate_refuses_a_run_without_its_adapter(finished, tmp_path, capsys):
    _copy(finished, tmp_path / "run")
    (tmp_path / "run" / "adapter" / "adapter_model.safetensors").unlink()
    assert main(["evaluate", "--run-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (f"xlt: error: {tmp_path / 'run'} is not a finished run: "
                                       "adapter/adapter_model.safetensors is missing\n")


@pytest.mark.parametrize("content, message", [
    ("folder with a note", "holds files xlt did not write (notes.txt)"),
    ("a file", "is an existing file, not a folder"),  # the up-front output check
])
def test_train_refuses_an_output_dir_that_holds_other_files(tmp_path, capsys, content, message):
    out = tmp_path / "out"
    if content == "a file":
        out.write_text("mine")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    argv = ["train", "--output-dir", str(out)]
    for key, value in SETTINGS.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag, str(value)] if value is not False else ["--no-" + key.replace("_", "-")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert snapshot(tmp_path) == before


def test_the_adapter_card_describes_the_run(finished):
    card = (finished / "adapter" / "README.md").read_text()
    metrics = json.loads((finished / "metrics.json").read_text())
    assert "More Information Needed" not in card  # PEFT's boilerplate is gone
    assert "# xlt adapter: lora, en → jv, task nusax" in card
    assert "| method | lora |" in card and "| fusion | – |" in card
    assert "| languages | en (the English task model's language) → jv |" in card
    assert "| task / data | nusax, 24 training and 20 test examples (jv) |" in card
    assert "| base model | the English task model of stage 1, fine-tuned from `tiny-random/bert` " \
           f"(stage-1 key `{Path(metrics['stage1_dir']).name}`) |" in card
    assert "| adapter | LoRA r=4, alpha=8, on attention projections |" in card
    assert f"| jv: accuracy | {metrics['metrics']['accuracy']:.4f} |" in card
    assert f"| jv: macro_f1 | {metrics['metrics']['macro_f1']:.4f} |" in card
    assert f"| en (stage-1 model): accuracy | {metrics['source_metrics']['accuracy']:.4f} |" in card
    assert f"| test set | content digest `{metrics['test_data_digest'][:12]}` |" in card
    assert "xlt evaluate --run-dir RUN_DIR\n" in card
    for path in (metrics["stage1_dir"], str(finished.resolve().parent)):  # the card goes with the adapter
        assert path not in card


def test_a_flare_card_names_its_fusion_and_the_zeroed_score():
    cfg = RunConfig(method="flare", fusion="mul", target_lang="su").to_dict()
    metrics = {"method": "flare", "fusion": "mul", "source_lang": "en", "target_lang": "su", "task": "nusax",
               "train_examples": 500, "test_examples": 400, "stage1_dir": "/cache/stage1/x",
               "metrics": {"accuracy": 0.8125}, "metrics_zero_source": {"accuracy": 0.5}}
    card = model_card(cfg, metrics)
    assert "# xlt adapter: flare (mul), en → su, task nusax" in card and "| fusion | mul |" in card
    assert "| su: accuracy | 0.8125 |" in card and "| su, English zeroed: accuracy | 0.5000 |" in card
    assert "| adapter | LoRA r=64, alpha=128, on attention projections |" in card
    assert card.startswith("---\nlibrary_name: peft\nlanguage:\n- en\n- su\n")


def test_save_adapter_without_a_card_drops_peft_boilerplate(tmp_path):
    adapted, _ = tiny("bert", "lora", fusion=None)
    save_adapter(adapted, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                                   "xlt_adapter.json"]
    save_adapter(adapted, tmp_path / "a", card="# my card\n")
    assert (tmp_path / "a" / "README.md").read_text() == "# my card\n"


def _build_killed_midway(target: Path) -> subprocess.CompletedProcess:
    """A builder process that dies (os._exit: no cleanup runs) half-way through build_once."""
    code = ("import os, sys; from pathlib import Path; from xlt.models.cache import build_once; "
            "build_once(Path(sys.argv[1]), lambda tmp: ((tmp / 'half').write_text('x'), os._exit(3)))")
    return subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": str(SRC)})


def test_build_once_removes_temp_dirs_of_dead_builders(tmp_path):
    target = tmp_path / "seed0-abc"
    assert _build_killed_midway(target).returncode == 3
    (killed,) = tmp_path.iterdir()
    assert killed.name.startswith(f".seed0-abc.xlt-tmp.{host_tag()}.") and (killed / "half").is_file()
    old = 2 * STALE_SECONDS
    kept = {
        f".seed0-abc.xlt-tmp.{host_tag()}.{os.getpid()}.live1234": 0,  # a builder that is still running
        ".seed0-abc.xlt-tmp.otherhost.1.young123": 0,  # another host's, recent: its builder may be alive
        ".seed0-abc.young123": 0,  # an older xlt's temp dir (no PID), recent
        f".seed0-abcd.xlt-tmp.{host_tag()}.999999999.other123": old,  # another target's
    }
    stale = {".seed0-abc.xlt-tmp.otherhost.1.old12345": old, ".seed0-abc.old12345": old}
    for name, age in {**kept, **stale}.items():
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (os.path.getmtime(tmp_path / name) - age,) * 2)
    built = build_once(target, lambda tmp: (tmp / "model.bin").write_text("ok"))
    assert (built / "model.bin").read_text() == "ok" and (built / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "seed0-abc"])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_and_folders_follow_the_umask(tmp_path, umask):
    from xlt.alignment.merge import merge_adapters

    adapters = [tiny("bert", "lora", fusion=None, adapter_seed=s)[0] for s in (1, 2)]
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        write_json(tmp_path / "a.json", {"x": 1})
        build_once(tmp_path / "built", lambda tmp: (tmp / "weights").write_text("w"))
        for i, adapted in enumerate(adapters):
            save_adapter(adapted, tmp_path / f"adapter{i}", card="# card\n")
        merge_adapters([tmp_path / "adapter0", tmp_path / "adapter1"], [0.5, 0.5], tmp_path / "merged")
        write_run(tmp_path / "run", {"method": "lora"}, {"metrics": {}},
                  lambda folder: save_adapter(adapters[0], folder))
    finally:
        os.umask(previous)
    files, folders = 0o666 & ~umask, 0o777 & ~umask
    paths = [tmp_path / "a.json", *(tmp_path / "built").iterdir(), *(tmp_path / "adapter0").iterdir(),
             *(tmp_path / "merged").iterdir(), *(tmp_path / "run").rglob("*")]
    assert len(paths) == 1 + 2 + 4 + 5 + 7  # the merge and the run with their .xlt-run markers
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in paths}
    expected = {name: folders if (tmp_path / name).is_dir() else files for name in modes}
    assert modes == expected
    for folder in ("built", "adapter0", "merged", "run"):
        assert (tmp_path / folder).stat().st_mode & 0o777 == folders


def test_a_refused_write_run_error_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data.csv").write_text("a,b\n")
    from xlt.run_dir import check_replaceable

    with pytest.raises(XltError) as err:
        check_replaceable(tmp_path / "run")
    assert str(err.value) == (f"--output-dir {tmp_path / 'run'} holds files xlt did not write (data.csv); "
                              "choose a new or empty folder")


# A user's folders and files are theirs (issue 22)

def _train_argv(out: Path | None = None, *extra: str) -> list[str]:
    """``xlt train`` with SETTINGS, then ``extra`` (which wins)."""
    argv = ["train", *(["--output-dir", str(out)] if out is not None else [])]
    for key, value in SETTINGS.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag, str(value)] if value is not False else ["--no-" + key.replace("_", "-")]
    return [*argv, *extra]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


@pytest.mark.parametrize("content", ["config.yaml", "metrics.json", "adapter/", ".config.yaml.abcd1234"])
def test_a_folder_of_files_xlt_did_not_write_is_refused_untouched(tmp_path, capsys, content):
    out = tmp_path / "mine"
    out.mkdir()
    out.chmod(0o2770)
    if content == "adapter/":
        (out / "adapter").mkdir()
        (out / "adapter" / "weights.bin").write_bytes(b"\0")
    else:
        (out / content).write_text("# my settings, with comments\nlr: 0.1\n")
    before = snapshot(out)
    assert main(_train_argv(out)) == 2
    name = content.rstrip("/")
    hint = " (a run of an xlt that wrote no .xlt-run marker is not replaced: move it away)" \
        if name == "config.yaml" else ""
    assert cli_error(capsys) == (f"--output-dir {out} holds files xlt did not write ({name}); "
                                 f"choose a new or empty folder{hint}")
    assert snapshot(out) == before and _mode(out) == 0o2770
    with pytest.raises(XltError, match="holds files xlt did not write"):  # Python callers are refused too
        run_stage2(RunConfig(**SETTINGS, output_dir=str(out)))
    assert snapshot(out) == before


def test_a_run_of_an_xlt_without_the_marker_is_refused(finished, tmp_path, capsys):
    """Pre-marker runs are never replaced: nothing tells them from a user's own config.yaml and metrics.json."""
    _copy(finished, tmp_path / "old")
    (tmp_path / "old" / ".xlt-run").unlink()
    before = snapshot(tmp_path / "old")
    assert main(_train_argv(tmp_path / "old", "--overwrite")) == 2
    assert cli_error(capsys) == (f"--output-dir {tmp_path / 'old'} holds files xlt did not write (adapter, "
                                 "config.yaml, metrics.json); choose a new or empty folder (a run of an xlt that "
                                 "wrote no .xlt-run marker is not replaced: move it away)")
    assert snapshot(tmp_path / "old") == before


def test_a_run_keeps_the_mode_and_setgid_bit_of_the_folder_it_replaces(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o2770)
    write_run(out, {"method": "zero-shot"}, {"metrics": {}}, None)
    assert _mode(out) == 0o2770 and (out / "config.yaml").is_file()
    write_run(out, {"method": "zero-shot", "seed": 1}, {"metrics": {}}, None)  # an earlier run replaced
    assert _mode(out) == 0o2770 and "seed: 1" in (out / "config.yaml").read_text()
    write_run(tmp_path / "new", {"method": "zero-shot"}, {"metrics": {}}, None)
    assert _mode(tmp_path / "new") == 0o777 & ~current_umask()


def test_every_run_has_a_marker_with_the_version_and_a_random_id(finished, tmp_path):
    import xlt
    from xlt.run_dir import run_id

    marker = json.loads((finished / ".xlt-run").read_text())
    assert marker == {"xlt": xlt.__version__, "run_id": run_id(finished)} and len(marker["run_id"]) == 16
    write_run(tmp_path / "other", {}, {"metrics": {}}, None)
    assert run_id(tmp_path / "other") not in (None, marker["run_id"])


def test_a_finished_run_is_replaced_only_with_overwrite(finished, tmp_path, capsys):
    _copy(finished, tmp_path / "run")
    before = snapshot(tmp_path / "run")
    assert main(_train_argv(tmp_path / "run", "--lr", "0.001")) == 2
    assert cli_error(capsys) == (f"--output-dir {tmp_path / 'run'} holds a finished xlt run; pass --overwrite to "
                                 "replace it, or choose a new folder")
    assert snapshot(tmp_path / "run") == before
    assert main(_train_argv(tmp_path / "run", "--lr", "0.001", "--overwrite")) == 0
    assert RunConfig.from_yaml(tmp_path / "run" / "config.yaml").lr == 0.001


def test_runs_without_output_dir_go_to_new_folders_named_for_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = []
    for _ in range(2):
        assert main(_train_argv()) == 0
        written.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"])
    assert written == ["runs/nusax-jv-lora-seed0", "runs/nusax-jv-lora-seed0-2"]
    first, second = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in written)
    assert first["metrics"] == second["metrics"]  # two whole runs, neither replaced


def test_the_default_folder_names_method_fusion_and_seed(tmp_path):
    from xlt.run_dir import default_output_dir

    name = "xnli-sw-flare-add_relu-seed3"
    assert default_output_dir("xnli", "sw", "flare", "add_relu", 3, tmp_path) == tmp_path / name
    (tmp_path / name).mkdir()
    (tmp_path / f"{name}-2").write_text("a file counts too")
    assert default_output_dir("xnli", "sw", "flare", "add_relu", 3, tmp_path) == tmp_path / f"{name}-3"
    assert default_output_dir("mlqa", "de", "lora", None, 0, tmp_path) == tmp_path / "mlqa-de-lora-seed0"


_HOLD = ("import sys; from xlt.run_dir import output_lock\n"
         "with output_lock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(_train_argv(out)) == 2
        assert cli_error(capsys) == f"--output-dir {out} is in use by another xlt run (pid {holder.pid})"
        with pytest.raises(XltError, match=f"in use by another xlt run \\(pid {holder.pid}\\)"):
            run_stage2(RunConfig(**SETTINGS, output_dir=str(out)))
    finally:
        holder.communicate("")
    assert not out.exists()
    assert main(_train_argv(out)) == 0  # free again once the holder is gone


def test_merges_are_locked_and_marked_too(tmp_path):
    from xlt.alignment.merge import merge_adapters
    from xlt.run_dir import output_lock, run_id

    for i in range(2):
        save_adapter(tiny("bert", "lora", fusion=None, adapter_seed=i + 1)[0], tmp_path / f"a{i}")
    inputs = [tmp_path / "a0", tmp_path / "a1"]
    with output_lock(tmp_path / "merged"), pytest.raises(XltError, match="in use by another xlt run"):
        merge_adapters(inputs, [0.5, 0.5], tmp_path / "merged")
    merge_adapters(inputs, [0.5, 0.5], tmp_path / "merged")
    assert run_id(tmp_path / "merged") is not None
    with pytest.raises(XltError, match="holds a finished xlt run; pass --overwrite"):
        merge_adapters(inputs, [0.9, 0.1], tmp_path / "merged")
    merge_adapters(inputs, [0.9, 0.1], tmp_path / "merged", overwrite=True)
    info = json.loads((tmp_path / "merged" / "xlt_merge.json").read_text())
    assert info["weights"] == [0.9, 0.1]
    # xlt_merge.json goes with the adapter: inputs by name and weights' hash, no path of this machine
    assert str(tmp_path) not in json.dumps(info)
    assert info["inputs"] == [{"name": f"a{i}", "sha256": file_sha256(tmp_path / f"a{i}" / "adapter_model.safetensors")}
                              for i in range(2)]
    assert info["head_source"] is None and info["heads_dropped"] == []


def _crash_in_swap(out: Path, crash_at: str) -> subprocess.CompletedProcess:
    """A process killed inside replace_dir (os._exit: nothing cleans up) while swapping a new run into ``out``:
    between its two renames, or after them before the old folder is deleted."""
    code = ("import os, shutil, sys\n"
            "from xlt.run_dir import write_run\n"
            "real = os.rename\n"
            "calls = []\n"
            "def rename(a, b):\n"
            "    calls.append(a)\n"
            "    if sys.argv[2] == 'between renames' and len(calls) == 2: os._exit(3)\n"
            "    real(a, b)\n"
            "os.rename = rename\n"
            "if sys.argv[2] == 'before the old is deleted': shutil.rmtree = lambda *a, **k: os._exit(3)\n"
            "write_run(sys.argv[1], {'method': 'zero-shot', 'seed': 2}, {'metrics': {'accuracy': 0.5}}, None)\n")
    return subprocess.run([sys.executable, "-c", code, str(out), crash_at], env={**os.environ, "PYTHONPATH": str(SRC)})


@pytest.mark.parametrize("crash_at", ["between renames", "before the old is deleted"])
def test_a_kill_inside_the_swap_never_loses_the_previous_run(tmp_path, crash_at):
    from xlt.io import remove_stale_temp_dirs

    out = tmp_path / "run"
    write_run(out, {"method": "zero-shot", "seed": 1}, {"metrics": {"accuracy": 0.25}}, None)
    before = snapshot(out)
    assert _crash_in_swap(out, crash_at).returncode == 3
    (aside,) = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.xlt-old.")]
    assert (not out.exists()) if crash_at == "between renames" else "seed: 2" in (out / "config.yaml").read_text()
    remove_stale_temp_dirs(out)  # what the next run (make_temp_dir) does first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    if crash_at == "between renames":
        assert snapshot(out) == before  # the previous run, put back whole
    else:
        assert "seed: 2" in (out / "config.yaml").read_text()  # the new run made it; the old one is gone


def test_the_next_run_puts_a_run_hidden_by_a_killed_swap_back(tmp_path, capsys):
    out = tmp_path / "run"
    write_run(out, {"method": "zero-shot", "seed": 1}, {"metrics": {"accuracy": 0.25}}, None)
    before = snapshot(out)
    assert _crash_in_swap(out, "between renames").returncode == 3
    assert not out.exists()
    assert main(_train_argv(out)) == 2  # the next run finds the previous one in place, and will not replace it
    assert "holds a finished xlt run" in cli_error(capsys)
    assert snapshot(out) == before


def test_spill_folders_of_killed_runs_are_removed_when_a_cache_starts(tmp_path):
    from xlt.flare.source_cache import SourceStateCache

    code = ("import os, sys, torch\nfrom xlt.flare.source_cache import SourceStateCache\n"
            "cache = SourceStateCache(0, spill_dir=sys.argv[1])\n"
            "cache.put('row', (torch.zeros(2, 3),))\nos._exit(3)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(SRC)})
    assert killed.returncode == 3
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(f"xlt-source-states-{host_tag()}.") and (left / "states.bin").is_file()
    live = tmp_path / f"xlt-source-states-{host_tag()}.{os.getpid()}.live1234"  # a running process's
    live.mkdir()
    cache = SourceStateCache(0, spill_dir=tmp_path)
    assert sorted(tmp_path.iterdir()) == [live]
    cache.put("row", (torch.ones(2, 3),))
    assert torch.equal(cache.get("row", torch.device("cpu"))[0], torch.ones(2, 3))
    (mine,) = [p for p in tmp_path.iterdir() if p != live]
    assert mine.name.startswith(f"xlt-source-states-{host_tag()}.{os.getpid()}.")


CUSTOM_HEADER = "source_text,target_text,label\n"


def _custom_rows(words: list[str], label: str | None = None) -> str:
    """Rows alternating neg/pos (``label``: all of that label)."""
    rows = [f"{'good' if i % 2 else 'bad'} {w},{'apik' if i % 2 else 'elek'} {w},"
            f"{label or ('pos' if i % 2 else 'neg')}" for i, w in enumerate(words)]
    return CUSTOM_HEADER + "\n".join(rows) + "\n"


def test_evaluate_reads_the_data_the_run_was_trained_on_from_anywhere(tmp_path, capsys, monkeypatch):
    """config.yaml names the data files by absolute path and metrics.json their content hash: evaluate from
    another directory with its own data/test.csv reads the run's file, and refuses once it changed or is gone."""
    words = [f"w{i}" for i in range(16)]
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    for root, label in ((home, None), (elsewhere, "pos")):
        (root / "data").mkdir(parents=True)
        (root / "data" / "train.csv").write_text(_custom_rows(words))
        (root / "data" / "test.csv").write_text(_custom_rows(words, label))
    run = tmp_path / "run"
    monkeypatch.chdir(home)
    assert main(_train_argv(run, "--task", "custom", "--train-file", "data/train.csv",
                            "--test-file", "data/test.csv")) == 0
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert (cfg.train_file, cfg.test_file) == (str(home / "data" / "train.csv"), str(home / "data" / "test.csv"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data_files"] == {name: {"path": str(home / "data" / f"{split}.csv"),
                                            "sha256": file_sha256(home / "data" / f"{split}.csv")}
                                     for name, split in (("train_file", "train"), ("test_file", "test"))}
    card = (run / "adapter" / "README.md").read_text()
    digest = metrics["data_files"]["test_file"]["sha256"][:12]
    assert f"`test.csv` (sha256 `{digest}`)" in card and str(home) not in card

    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["metrics"] == metrics["metrics"] and result["matches_stored"] is True

    test_file = home / "data" / "test.csv"
    test_file.write_text(_custom_rows(words, "neg"))
    assert main(["evaluate", "--run-dir", str(run)]) == 2
    assert cli_error(capsys) == (f"--test-file {test_file} changed since run {run} was trained (sha256 {digest}, "
                                 f"now {file_sha256(test_file)[:12]}); evaluate reads the files the run was trained "
                                 "and tested on")
    test_file.unlink()
    assert main(["evaluate", "--run-dir", str(run)]) == 2
    assert cli_error(capsys) == (f"--test-file {test_file} of run {run} is missing; evaluate reads the files the "
                                 "run was trained and tested on")


def test_evaluate_refuses_a_test_set_that_is_not_the_one_the_run_was_tested_on(finished, tmp_path, capsys):
    cfg = RunConfig.from_yaml(finished / "config.yaml")
    assert cfg.data_dir is not None and Path(cfg.data_dir).is_absolute()  # the data directory it read, written out
    _copy(finished, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    recorded = metrics["test_data_digest"]
    write_json(tmp_path / "run" / "metrics.json", {**metrics, "test_data_digest": "0" * 64})
    assert main(["evaluate", "--run-dir", str(tmp_path / "run")]) == 2
    assert cli_error(capsys) == ("the nusax test set read now differs from the one run "
                                 f"{tmp_path / 'run'} was tested on (content digest 000000000000, now "
                                 f"{recorded[:12]}); evaluate needs the same data")


def test_a_card_names_a_local_model_folder_and_the_english_model_without_paths(tmp_path):
    (tmp_path / "my-model").mkdir()
    cfg = RunConfig(model=str(tmp_path / "my-model"), target_lang="su").to_dict()
    metrics = {"method": "lora", "source_lang": "en", "target_lang": "su", "task": "nusax",
               "stage1_dir": "/home/me/.cache/xlt/stage1/my-model/nusax/seed0-0123abcd", "metrics": {"accuracy": 0.5}}
    card = model_card(cfg, metrics)
    assert "| base model | the English task model of stage 1, fine-tuned from `my-model` (a local model folder) " \
           "(stage-1 key `seed0-0123abcd`) |" in card
    assert str(tmp_path) not in card and "/home/me" not in card


BUILDER = """
import os, sys, time
from pathlib import Path
from xlt.models.cache import build_once

target, go, log = (Path(a) for a in sys.argv[1:4])
while not go.exists():  # both processes are up and waiting: start together
    time.sleep(0.005)

def build(tmp):
    with log.open("a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(1.5)  # a stage-1 training, shortened
    (tmp / "model.bin").write_text(str(os.getpid()))

print((build_once(target, build) / "model.bin").read_text())
"""


def test_two_processes_that_need_one_folder_build_it_once(tmp_path):
    """Two runs start together needing the same English model: one builds it, the other waits (one line on
    stderr) and reuses it; neither trains twice."""
    target, go, log = tmp_path / "stage1" / "seed0-abc", tmp_path / "go", tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(SRC), "XLT_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(target), str(go), str(log)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)  # both have imported xlt and poll for the go file
    go.write_text("go")
    outs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    builders = log.read_text().split()
    assert len(builders) == 1  # one build, one training
    assert [out for out, _ in outs] == [builders[0] + "\n"] * 2  # both read the one folder
    waited = [err for _, err in outs if "waiting for another process building" in err]
    assert len(waited) == 1 and waited[0].strip() == f"xlt: waiting for another process building {target}"
    assert (target / COMPLETE_MARKER).is_file()
