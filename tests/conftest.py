"""Shared fixtures: one seed for every test, quiet TensorFlow, and one smoke run per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.pop("MNIST_NPZ", None)  # tests choose their data explicitly

SEED = 1234
# Images for the checks whose claim is exact agreement (TFLite Micro against LiteRT's kernels): TFLite
# Micro takes milliseconds an image, and the whole test set is the report's job, measured once.
AGREEMENT_IMAGES = 1000

# The tests that share an expensive session fixture (test modules, or a module's tests by name prefix).
# Under xdist each worker builds the session fixtures its tests use, so each group goes to one worker
# and each fixture is built once. xdist's own `xdist_group` marks do nothing under pytest 9: xdist 3.8
# renames `item._nodeid`, which pytest 9 no longer reads.
FIXTURE_GROUPS = {
    "quick_run": ("test_report.py", "test_serve.py"),
    "smoke_export": ("test_export.py", "test_micro.py", "test_csource.py", "test_evaluate.py", "test_predict.py",
                     "test_search.py::test_smoke_search_", "test_tune.py::test_resuming_with_other_settings"),
    "frontier_run": ("test_frontier.py",),
    "rgb_run": ("test_workflow.py",),
}


def pytest_configure(config):
    """Under xdist, each worker process keeps to a core of its own.

    TensorFlow's threads and TFLite Micro's worker processes size themselves by the cores a process
    may use: two workers that could each use both cores ran four TFLite Micro processes on two.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    cores = sorted(os.sched_getaffinity(0))
    if worker.startswith("gw") and len(cores) > 1:
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


def litert_accuracy(path) -> float:
    """Test accuracy of a .tflite file by an independent LiteRT loop: one image at a time, quantized by hand."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from mnist_opt.data import load_test

    x, y = load_test()
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    images = x.astype(np.float32) / 255.0  # N x 28 x 28 x 1, as the data layer gives it
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        images = np.clip(np.round(images / scale + zero), -128, 127).astype(np.int8)
    correct = 0
    for image, label in zip(images, y):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        correct += int(interpreter.get_tensor(out["index"])[0].argmax() == label)
    return correct / len(y)


# Tests that use these fixtures, or are marked slow, are left out of `make test-fast` (-m "not slow"):
# each fixture trains or exports models for a minute or more.
SLOW_FIXTURES = {"smoke_run", "smoke_export", "quick_run", "frontier_run", "small_legacy_model", "rgb_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_xdist_make_scheduler(config, log):
    """`-n 2` (xdist's `load`): every test is its own unit, except the modules of a fixture group."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FixtureGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path, _, name = nodeid.partition("::")
            test = f"{path.rsplit('/', 1)[-1]}::{name}"  # test_search.py::test_smoke_search_records_every_trial
            return next((group for group, tests in FIXTURE_GROUPS.items()
                         if any(test == t or test.startswith(t if "::" in t else t + "::") for t in tests)), nodeid)

    return FixtureGroups(config, log)


@pytest.fixture
def seed():
    """The seed every test uses; also seeds Python, NumPy and TensorFlow."""
    import keras

    keras.utils.set_random_seed(SEED)
    return SEED


@pytest.fixture
def precision(monkeypatch):
    """Set $MNIST_OPT_PRECISION for one test; runtime.training_dtype() reads it afresh."""
    from mnist_opt import runtime

    def set_to(value):
        monkeypatch.setenv("MNIST_OPT_PRECISION", value)
        runtime.training_dtype.cache_clear()
    yield set_to
    runtime.training_dtype.cache_clear()  # monkeypatch restores the variable after this


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


@pytest.fixture(scope="session")
def smoke_export(smoke_run):
    """All nine variants of the smoke run's model, exported through the CLI on small fine-tuning data."""
    from typer.testing import CliRunner

    from mnist_opt.cli import app

    run_dir, _ = smoke_run
    # Enough fine-tuning that pruning to 80% leaves a model, not noise: quantizing noise flips answers.
    result = CliRunner().invoke(app, ["export", str(run_dir), "--prune-epochs", "2", "--qat-epochs", "1",
                                      "--cluster-epochs", "1", "--train-subset", "5000"])
    assert result.exit_code == 0, result.output
    return run_dir, result.output


@pytest.fixture(scope="session")
def small_legacy_model():
    """A small trained tf_keras CNN and the data it saw: (model, values, x_train, y_train, x_val, y_val)."""
    import keras
    import tf_keras

    from mnist_opt import data
    from mnist_opt.tuning import inputs
    from mnist_opt.tuning.architecture import BASELINE, build_cnn, compile_model

    keras.utils.set_random_seed(SEED)
    values = dict(BASELINE, conv_blocks=2, filters_0=8, filters_1=16, batch_norm=True, dense_units=32)
    split = data.load_split(SEED)
    idx = data.stratified_indices(split.y_train, 3000, SEED)
    x, y = split.x_train[idx], split.y_train[idx]
    model = build_cnn(values, tf_keras)
    compile_model(model, values, k=tf_keras)
    model.fit(inputs.dataset(x, y, 128, seed=SEED), epochs=2, verbose=0)
    return model, values, x, y, split.x_val[:500], split.y_val[:500]


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """`mnist-opt run --preset quick`: tune, export and report, end to end, through the CLI."""
    from typer.testing import CliRunner

    from mnist_opt.cli import app

    run_dir = tmp_path_factory.mktemp("quick") / "run"
    # TFLite Micro on the first images: the whole test set would be most of the run (test_report.py
    # checks that the report runs all of them unless told).
    result = CliRunner().invoke(app, ["run", "--preset", "quick", "--run-dir", str(run_dir), "--seed", str(SEED),
                                      "--micro-images", str(AGREEMENT_IMAGES)])
    assert result.exit_code == 0, result.output
    return run_dir, result.output


FRONTIER_BUDGETS = (3, 9, 12)  # KB: no model of the tiny space fits in 3; its starting points fit in 12


@pytest.fixture(scope="session")
def frontier_run(tmp_path_factory):
    """A small frontier run through the CLI: a Pareto search of the tiny space with three budgets counted
    as the clustered flash form (`--clusters 16`), each chosen model exported (int8, clustered and
    pruned), then the frontier report. Returns the run directory and what the tune and report commands printed."""
    from typer.testing import CliRunner

    from mnist_opt import rundir
    from mnist_opt.cli import app

    run_dir = tmp_path_factory.mktemp("frontier") / "run"
    runner = CliRunner()
    budgets = ",".join(map(str, FRONTIER_BUDGETS))
    tune = runner.invoke(app, ["tune", "--space", "tiny", "--tuner", "pareto", "--max-trials", "6", "--max-epochs", "2",
                               "--train-subset", "2000", "--final-epochs", "1", "--budgets", budgets, "--clusters", "16",
                               "--seed", str(SEED), "--run-dir", str(run_dir)])
    assert tune.exit_code == 0, tune.output
    for _, sub in rundir.frontier_dirs(run_dir):
        result = runner.invoke(app, ["export", str(sub), "--variants", "int8,clustered_int8,pruned_float32,pruned_int8",
                                     "--prune-epochs", "1", "--cluster-epochs", "1", "--train-subset", "2000"])
        assert result.exit_code == 0, result.output
    from mnist_opt.tuning.train import train_baseline

    train_baseline(run_dir, 1, SEED, images=2000)  # the report's first row, small (it would train 10 epochs)
    report = runner.invoke(app, ["report", str(run_dir), "--latency-runs", "20",
                                 "--micro-images", str(AGREEMENT_IMAGES)])
    assert report.exit_code == 0, report.output
    return run_dir, tune.output + report.output
