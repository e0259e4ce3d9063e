"""The CLI contract: one-line errors with exit code 2; train writes metrics, evaluate reproduces them."""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from helpers import cli_error

import xlt
from xlt.cli.main import build_parser, main
from xlt.config import RunConfig

QUICK = ["--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv", "--max-train-examples", "24",
         "--max-eval-examples", "20", "--epochs", "1", "--stage1-epochs", "1", "--lora-r", "4", "--lora-alpha", "8",
         "--batch-size", "8", "--no-show-progress"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "flare", "--fusion", "concat"], "argument --fusion: invalid choice: 'concat'"),
        (["--method", "prompting"], "argument --method: invalid choice: 'prompting'"),
        (["--method", "lora", "--fusion", "add"], "--fusion is only for --method flare"),
        (["--method", "lora", "--target-lang", "klingon"], "klingon"),
        (["--method", "lora", "--task", "squad"], "argument --task: invalid choice: 'squad'"),
        (["--method", "lora", "--data-dir", "/nonexistent/xlt-data"], "/nonexistent/xlt-data"),
        (["--method", "lora", "--config", "/nonexistent/run.yaml"], "config file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code = main(["train", *QUICK, "--output-dir", str(out), *extra])
    assert code == 2
    assert message in _error_line(capsys)
    assert not out.exists()  # nothing half written


def test_custom_file_errors(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("source_text,target_text,label\nhello,halo,pos\nbad,ala,neg\n")
    no_column = tmp_path / "test.csv"
    no_column.write_text("source_text,label\nhello,pos\n")
    args = ["train", *QUICK, "--task", "custom", "--method", "lora", "--train-file", str(train),
            "--output-dir", str(tmp_path / "r")]
    assert main([*args, "--test-file", str(no_column)]) == 2
    assert "target_text" in _error_line(capsys)
    bad_label = tmp_path / "test2.csv"
    bad_label.write_text("source_text,target_text,label\nhello,halo,maybe\n")
    assert main([*args, "--test-file", str(bad_label)]) == 2
    assert "maybe" in _error_line(capsys)
    assert main([*args, "--test-file", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in _error_line(capsys)


def test_unknown_yaml_key_is_rejected(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("method: lora\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(config), "--output-dir", str(tmp_path / "r")]) == 2
    assert "learning_rate" in _error_line(capsys)


@pytest.mark.parametrize("method, fusion", [("flare", "cross_attention"), ("input-fusion", None), ("zero-shot", None)])
def test_train_then_evaluate_reproduces_metrics(tmp_path, capsys, method, fusion):
    out = tmp_path / "run"
    args = ["train", *QUICK, "--method", method, "--output-dir", str(out)]
    if fusion:
        args += ["--fusion", fusion]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("task", "method", "fusion", "model", "source_lang", "target_lang", "seed", "trainable_params",
                "train_seconds", "metrics"):
        assert key in metrics
    assert metrics["target_lang"] == "jv" and metrics["test_examples"] == 20
    assert set(metrics["metrics"]) == {"accuracy", "macro_f1"}
    assert (out / "config.yaml").is_file()
    if method == "zero-shot":
        assert metrics["trainable_params"] == 0 and not (out / "adapter").exists()
    else:
        assert (out / "adapter" / "adapter_model.safetensors").is_file()
        assert metrics["trainable_params"] > 0
    if method == "flare":
        assert "metrics_zero_source" in metrics
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(out)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["metrics"] == metrics["metrics"]


def test_yaml_config_with_flag_override(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("method: flare\nfusion: mul\nmodel: tiny-random/xlm-roberta\ntarget_lang: acehnese\n"
                      "max_train_examples: 16\nmax_eval_examples: 8\nepochs: 1\nstage1_epochs: 1\nlora_r: 2\n"
                      "show_progress: false\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--fusion", "add", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fusion"] == "add" and metrics["target_lang"] == "ace" and metrics["model"] == "tiny-random/xlm-roberta"
    assert metrics["trainable_params"] == 4 * (32 * 2 + 2 * 32)


def test_evaluate_on_missing_run_dir(tmp_path, capsys):
    assert main(["evaluate", "--run-dir", str(tmp_path)]) == 2
    assert "not a finished run" in _error_line(capsys)


def test_same_seed_same_result_and_xnli_pairs(tmp_path, capsys):
    """CPU runs are repeatable; XNLI (premise, hypothesis) pairs flow through FLARE's source pass."""
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["train", *QUICK, "--task", "xnli", "--target-lang", "sw", "--method", "flare",
                     "--fusion", "add", "--output-dir", str(out)]) == 0
        results.append(json.loads((out / "metrics.json").read_text()))
        assert results[-1]["test_examples"] == 20 and results[-1]["target_lang"] == "sw"
    assert results[0]["metrics"] == results[1]["metrics"]
    first = (tmp_path / "a" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert first == (tmp_path / "b" / "adapter" / "adapter_model.safetensors").read_bytes()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_flag_has_a_help_line_with_its_default_and_choices():
    commands = _subcommands()
    assert set(commands) == {"train", "study", "compare", "evaluate", "predict", "export", "report", "demo",
                             "retrieval", "merge", "translate", "lid"}
    for name, parser in commands.items():
        text = parser.format_help()
        options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        assert options, name
        for action in options:
            flag = action.option_strings[0]
            help_line = action.help or ""
            assert help_line.endswith("(required)" if action.required else ")"), (name, flag, help_line)
            assert action.required or "(default: " in help_line, (name, flag, help_line)
            assert len(help_line.split("(")[0].strip()) > 3, (name, flag, help_line)  # says what it is
            for choice in action.choices or ():
                assert str(choice) in text, (name, flag, choice)
    merge_help = commands["merge"].format_help()
    assert "{exact,linear,svd," in merge_help  # the combinations are listed though checked after parsing


def test_compare_has_no_overwrite_flag_because_a_study_skips_finished_runs(capsys):
    """xlt compare once listed xlt train's --overwrite, which it ignored: its finished runs are skipped, never
    replaced. The flag is gone from its help, and giving it is a usage error; xlt train keeps it."""
    commands = _subcommands()
    assert "--overwrite" not in commands["compare"].format_help()
    assert "--overwrite" in commands["train"].format_help()
    assert main(["compare", "--overwrite"]) == 2
    assert cli_error(capsys) == "unrecognized arguments: --overwrite (see xlt --help)"


def test_train_flags_come_from_run_config():
    """One flag per RunConfig field, with the field's help, default and choices; adding a field adds a flag."""
    train = _subcommands()["train"]
    by_dest = {a.dest: a for a in train._actions}
    for f in fields(RunConfig):
        assert f.metadata.get("help"), f"RunConfig.{f.name} has no help text: use setting(default, help, ...)"
        action = by_dest[f.name]
        assert action.option_strings[0] == "--" + f.name.replace("_", "-")
        assert action.help.startswith(f.metadata["help"])
    assert by_dest["method"].choices == ("zero-shot", "translate-test", "lora", "translate-train", "input-fusion",
                                         "flare", "flare-mt", "x-mixup", "align", "lora+align")
    assert by_dest["fusion"].choices == (
        "add", "mul", "add_relu", "mul_relu", "aligned_add", "aligned_mul", "aligned_add_relu", "aligned_mul_relu",
        "summary_add", "summary_mul", "summary_add_relu", "summary_mul_relu", "cross_attention")
    assert by_dest["task"].choices == ("nusax", "xnli", "custom", "massive", "massive-intent", "panx", "uner",
                                       "uner-json", "nusax-mt", "wmt23", "mlqa", "tydiqa", "custom-qa", "custom-ner",
                                       "custom-mt")
    assert by_dest["lora_targets"].choices == ("attention", "all-linear")
    assert by_dest["decoder_classifier"].choices == ("head", "verbalizer")
    assert by_dest["stage1_method"].choices == ("full", "lora")
    assert by_dest["source_layer_offset"].choices == (0, 1) and by_dest["source_layer_offset"].type is int
    assert by_dest["lr"].type is float and by_dest["lora_r"].type is int and by_dest["model"].type is str
    assert by_dest["bf16"].option_strings == ["--bf16", "--no-bf16"]
    assert by_dest["lr"].help == "stage-2 learning rate (> 0) (default: 0.0005)"
    assert by_dest["zero_source_eval"].help.endswith("(default: on)")
    assert by_dest["lora_r"].help == "LoRA rank (default: 64 (FLARE paper); 8 for align methods)"
    args = train.parse_args(["--lr", "0.01", "--no-bf16", "--source-layer-offset", "0"])
    assert vars(args) == {"config": None, "lr": 0.01, "bf16": False, "source_layer_offset": 0}


def test_name_tables_match_the_torch_modules():
    from xlt import run_dir
    from xlt.alignment import merge, merge_names
    from xlt.flare import fusion, fusion_names
    from xlt.methods import adapters as methods
    from xlt.methods import table as method_table
    from xlt.runs import preflight

    assert tuple(fusion.FUNCTIONS) == fusion_names.FUNCTIONS and tuple(fusion.PAIRINGS) == fusion_names.PAIRINGS
    assert fusion.FUSIONS is fusion_names.FUSIONS and merge.COMBINATIONS is merge_names.COMBINATIONS
    assert not hasattr(methods, "METHODS") and "flare" in method_table.METHODS  # one table, imported from methods.table
    assert preflight.ADAPTER_WEIGHTS == methods.ADAPTER_WEIGHTS
    assert preflight.ADAPTER_WEIGHTS is methods.ADAPTER_WEIGHTS is merge.ADAPTER_WEIGHTS is run_dir.ADAPTER_WEIGHTS
    assert (methods.ADAPTER_CONFIG, methods.ADAPTER_INFO) == run_dir.ADAPTER_FILES[1:]


def test_help_imports_neither_torch_nor_transformers():
    code = ("import sys\n"
            "from xlt.cli import main\n"
            "for argv in (['--help'], *([name, '--help'] for name in ('train', 'evaluate', 'demo', 'retrieval', 'merge',\n"
            "                                                        'translate', 'export'))):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, e.code\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)\n")
    src = str(Path(xlt.__file__).resolve().parents[1])  # this checkout's xlt, as in the test process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--learning" not in done.stdout and "--lora-dropout LORA_DROPOUT" in done.stdout
    assert done.stderr.strip() == "False False"


def test_the_demo_plan_caps_gemma_and_the_flags_override_it(tmp_path, capsys, monkeypatch):
    import xlt.runs.demo
    from xlt.runs.demo import FULL, QUICK, demo_plan

    assert demo_plan("e5-small") == FULL and demo_plan("gemma3-270m", quick=True) == QUICK
    gemma = demo_plan("gemma3-270m")
    # stage 1's learning rate is left to the LoRA default every decoder gets (test_stage1)
    assert (gemma.max_train_examples, gemma.max_eval_examples, gemma.stage1_epochs, gemma.stage1_lr) == (256, None, 3, None)
    plans = []
    monkeypatch.setattr(xlt.runs.demo, "run_demo", lambda out, plan, **kwargs: plans.append(plan) or "table")
    assert main(["demo", "--model", "tiny-random/bert", "--max-train-examples", "32", "--max-eval-examples", "16",
                 "--output-dir", str(tmp_path / "d")]) == 0
    assert (plans[0].max_train_examples, plans[0].max_eval_examples) == (32, 16)
    capsys.readouterr()
    assert main(["demo", "--max-train-examples", "0", "--output-dir", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err == "xlt: error: --max-train-examples must be >= 1, got 0\n"
    assert not (tmp_path / "e").exists()


def _subprocess_env() -> dict:
    src = str(Path(xlt.__file__).resolve().parents[1])  # this checkout's xlt, as in the test process
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH")))),
            "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _temp_dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".xlt-tmp." in p.name or p.name.startswith(".config.yaml.")]


def test_ctrl_c_is_one_line_exit_code_130_and_leaves_nothing_half_written(tmp_path):
    """SIGINT while stage 1 trains: "xlt: interrupted", exit code 130, no traceback; the folder being built
    is removed on the way out, so neither the stage-1 cache nor the run directory holds anything."""
    import signal
    import time

    stage1, out = tmp_path / "s1", tmp_path / "run"
    argv = [sys.executable, "-m", "xlt.cli", "train", *QUICK, "--stage1-epochs", "1000", "--output-dir", str(out),
            "--stage1-dir", str(stage1)]
    # the default Ctrl-C disposition for the child: a test run launched in the background (`cmd &` in a script)
    # ignores SIGINT, a disposition children inherit and Python then keeps (no KeyboardInterrupt at all)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_subprocess_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not _temp_dirs(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _temp_dirs(tmp_path), "stage 1 never started building"
        time.sleep(2)  # into the training loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err == "xlt: interrupted\n"
    assert _temp_dirs(tmp_path) == [] and not out.exists()
    assert not [p for p in stage1.rglob("*") if p.is_file()]  # no stage-1 model, whole or half


def test_a_full_disk_while_writing_the_run_is_one_line_and_keeps_the_old_run(tmp_path, capsys, monkeypatch):
    import errno

    import xlt.run_dir

    out = tmp_path / "run"
    assert main(["train", *QUICK, "--method", "lora", "--output-dir", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    def full(path, obj):
        Path(path).write_text('{"half": ')  # what a disk that fills up leaves: the start of the file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(xlt.run_dir, "write_json", full)
    assert main(["train", *QUICK, "--method", "lora", "--lr", "1e-3", "--overwrite", "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err == (f"xlt: error: cannot write {out}: No space left on device (ENOSPC); nothing "
                                       "was written there\n")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _temp_dirs(tmp_path) == []


def test_a_file_size_limit_while_merging_is_one_line(tmp_path):
    """RLIMIT_FSIZE makes the merged safetensors file fail with EFBIG (safetensors reports it as its own error):
    one line naming the output, exit code 2, no output folder and no temp sibling."""
    from helpers import tiny

    from xlt.methods.adapters import save_adapter

    adapters = []
    for seed in (1, 2):
        adapted, _ = tiny("bert", "lora", fusion=None, adapter_seed=seed)
        save_adapter(adapted, tmp_path / f"a{seed}")
        adapters.append(str(tmp_path / f"a{seed}"))
    out = tmp_path / "merged"
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "from xlt.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", code, "merge", "--adapters", *adapters, "--weights", "0.5", "0.5",
                           "--output-dir", str(out)], capture_output=True, text=True, env=_subprocess_env(),
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"xlt: error: cannot write {out}: File too large (EFBIG); nothing was written there\n"
    assert not out.exists() and _temp_dirs(tmp_path) == []


def test_every_subcommand_is_one_module_with_add_parser_and_run(monkeypatch, capsys):
    """cli/main.py only assembles: each sub-command's flags and handler live in the module named for it."""
    import importlib

    cli_main = importlib.import_module("xlt.cli.main")
    assert set(cli_main.COMMANDS) == set(_subcommands())
    for name, module in cli_main.COMMANDS.items():
        assert module.__name__ == f"xlt.cli.{name}"
        assert callable(module.add_parser) and callable(module.run)
    assert [name for name, value in vars(cli_main).items() if callable(value) and name.startswith("_cmd")] == []
    calls = []
    monkeypatch.setattr(cli_main.COMMANDS["evaluate"], "run", lambda args: calls.append(args.run_dir) or 7)
    assert main(["evaluate", "--run-dir", "somewhere"]) == 7 and calls == ["somewhere"]

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main.COMMANDS["evaluate"], "run", interrupted)
    assert main(["evaluate", "--run-dir", "somewhere"]) == 130
    assert capsys.readouterr().err == "xlt: interrupted\n"
