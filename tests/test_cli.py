import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mnist_opt.cli import app

runner = CliRunner()


def _commands():
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def test_every_command_has_help_with_an_example(seed):
    names = _commands()
    assert {"tune", "train"} <= set(names)
    for name in names:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example: mnist-opt " + name in result.output


def test_tune_has_an_option_for_every_setting(seed):
    """What `distributed.worker_command` relies on: each TuneConfig field is `tune --field-name`."""
    from dataclasses import fields

    import typer.main

    from mnist_opt.tuning.config import CLI_HIDDEN, TuneConfig

    options = {o for p in typer.main.get_command(app).commands["tune"].params for o in p.opts}
    for f in fields(TuneConfig):
        assert (f"--{f.name.replace('_', '-')}" in options) != (f.name in CLI_HIDDEN), f.name


def test_help_does_not_import_tensorflow(seed):
    code = ("import sys; from typer.testing import CliRunner; from mnist_opt.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


@pytest.mark.parametrize("make_args, expected", [
    (lambda p: ["--space", str(p / "bad.toml")], "hyperparameters.dropout: expected a number in [0.0, 1.0), got 2.0"),
    (lambda p: ["--space", "nope"], "search space 'nope': no such file or built-in space"),
    (lambda p: ["--data", str(p / "missing.npz")], "missing.npz: no such file"),
    (lambda p: ["--data", str(p / "bad.toml")], "cannot be read as .npz"),
    (lambda p: ["--run-dir", str(p / "bad.toml")], "exists and is not a directory"),
    (lambda p: ["--run-dir", "/sys/kernel"], "run directory /sys/kernel: not writable"),
    (lambda p: ["--objectives", "flash,accuracy"], "--objectives: expected accuracy and then flash, arena or both"),
    (lambda p: ["--objectives", "accuracy,ram"], "got 'accuracy,ram'"),
    (lambda p: ["--device", "cortex-m99"], "cortex-m99"),
    (lambda p: ["--device", str(p / "bad.toml")], "bad.toml"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(seed, tmp_path, make_args, expected):
    (tmp_path / "bad.toml").write_text("[hyperparameters]\ndropout = 2.0\n")
    args = ["tune", "--run-dir", str(tmp_path / "run"), *make_args(tmp_path)]  # a later --run-dir wins
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["tune", "train"])
def test_unknown_precision_exits_2_and_writes_nothing(seed, tmp_path, precision, command):
    precision("half")
    result = runner.invoke(app, [command, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "MNIST_OPT_PRECISION='half': expected one of auto, float32, bfloat16" in result.output
    assert not (tmp_path / "run").exists()


def test_bad_option_values_exit_2(seed, tmp_path):
    for args in (["tune", "--tuner", "grid"], ["tune", "--max-trials", "0"], ["tune", "--max-epochs", "-1"]):
        result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "run")])
        assert result.exit_code == 2, (args, result.output)
    assert not (tmp_path / "run").exists()


def test_train_into_a_read_only_directory_exits_2(seed):
    result = runner.invoke(app, ["train", "--run-dir", "/sys/kernel", "--epochs", "1"])
    assert result.exit_code == 2 and "not writable" in result.output
