"""The CLI contract: one-line errors with exit code 2; train writes metrics, evaluate reproduces them."""

import json

import pytest

from xlt.cli import main

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
        (["--method", "flare", "--fusion", "concat"], "unknown fusion 'concat'"),
        (["--method", "prompting"], "unknown method 'prompting'"),
        (["--method", "lora", "--fusion", "add"], "--fusion is only for --method flare"),
        (["--method", "lora", "--target-lang", "klingon"], "klingon"),
        (["--method", "lora", "--task", "squad"], "unknown task 'squad'"),
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
