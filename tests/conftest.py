"""Shared fixtures: one seed for every test, quiet TensorFlow, and one smoke run per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.pop("MNIST_NPZ", None)  # tests choose their data explicitly

SEED = 1234


@pytest.fixture
def seed():
    """The seed every test uses; also seeds Python, NumPy and TensorFlow."""
    import keras

    keras.utils.set_random_seed(SEED)
    return SEED


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The issue's smoke search, run through the CLI once per session.

    2 random trials, 1 epoch each on 2,000 images, then 1 retrain epoch.
    Returns the run directory and what the command printed.
    """
    from typer.testing import CliRunner

    from mnist_opt.cli import app

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = CliRunner().invoke(app, [
        "tune", "--max-trials", "2", "--max-epochs", "1", "--train-subset", "2000", "--tuner", "random",
        "--final-epochs", "1", "--seed", str(SEED), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir, result.output
