import json

import pytest

from mnist_opt.errors import RunDirError, SearchFailed
from mnist_opt.tuning import inputs, train, tune
from mnist_opt.tuning.config import TuneConfig


def _cfg(tmp_path, **kw):
    base = dict(space="tiny", tuner="random", max_trials=2, max_epochs=1, train_subset=500, final_epochs=1,
                run_dir=str(tmp_path / "run"))
    return TuneConfig(**{**base, **kw})


@pytest.mark.parametrize("limit", [dict(budgets=(8.0,)), dict(max_arena_kb=6.0), dict(objectives=("accuracy", "arena"))])
def test_a_search_that_converts_designs_needs_the_measures_and_the_workflow_gives_them(tmp_path, limit):
    from mnist_opt import workflow
    from mnist_opt.export.file_size import arena_bytes, flash_bytes

    cfg = _cfg(tmp_path, **limit)
    with pytest.raises(TypeError, match="measures"):
        tune.tune(cfg)
    assert not (tmp_path / "run").exists()
    measures = workflow.measures(cfg)
    assert measures.flash is flash_bytes and measures.arena is arena_bytes and workflow.measures(_cfg(tmp_path)) is None


def test_over_budget_trials_are_skipped_untrained(seed, tmp_path):
    with pytest.raises(SearchFailed, match=r"no trial completed \(0 failed, 2 skipped\).*> --max-params 10"):
        tune.tune(_cfg(tmp_path, max_params=10))
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["skipped", "skipped"]
    assert all(t["params"] > 10 and t["seconds"] < 5 for t in trials)


def test_failing_trials_are_recorded_and_the_first_error_reported(seed, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("input pipeline exploded")

    monkeypatch.setattr(inputs, "dataset", broken)
    with pytest.raises(SearchFailed, match="first error: RuntimeError: input pipeline exploded"):
        tune.tune(_cfg(tmp_path, max_trials=3))
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["failed"] * 3
    assert not (tmp_path / "run" / "best.keras").exists()


def test_resuming_with_other_settings_is_refused_and_writes_nothing(seed, smoke_run, tmp_path):
    run_dir, _ = smoke_run
    before = (run_dir / "config.json").read_bytes()
    cfg = TuneConfig(tuner="hyperband", seed=99, run_dir=str(run_dir))
    with pytest.raises(RunDirError) as info:
        tune.tune(cfg)
    assert "seed: 1234 -> 99" in str(info.value) and "tuner: 'random' -> 'hyperband'" in str(info.value)
    assert "--overwrite" in str(info.value)
    assert (run_dir / "config.json").read_bytes() == before


def test_nan_loss_fails_the_trial_early(seed, tmp_path, monkeypatch):
    real = inputs.stream  # the trials' training data

    def poisoned(x, y, *args, **kwargs):
        # NaN labels, not images: whether ReLU passes a NaN image on depends on the CPU's kernels.
        return real(x, y, *args, **kwargs).map(lambda images, labels: (images, labels * float("nan")))

    monkeypatch.setattr(inputs, "stream", poisoned)
    first_call = train.STEPS_PER_EXECUTION - 1  # the last batch of the first call into TensorFlow
    with pytest.raises(SearchFailed, match=f"first error: FloatingPointError: loss became nan at batch {first_call};"):
        tune.tune(_cfg(tmp_path, max_trials=2, max_epochs=3))
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["failed", "failed"]
    assert all(t["epochs"] == 3 and t["val_accuracy"] is None for t in trials)


def test_ctrl_c_exits_130_keeps_finished_trials_and_prints_the_resume_command(seed, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    # `mnist-opt tune ...`, with Ctrl-C handled as in a terminal: a shell's background job (as CI may
    # run the tests) starts with SIGINT ignored, and Python would keep it ignored.
    command = [sys.executable, "-c", "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from mnist_opt.cli import main; main()",
               "tune", "--tuner", "random", "--max-trials", "3", "--max-epochs", "1", "--train-subset", "1000",
               "--seed", str(seed), "--run-dir", str(run_dir)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trials_path, deadline = run_dir / "trials.json", time.time() + 300
    while time.time() < deadline and not (trials_path.exists() and json.loads(trials_path.read_text())):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted; finished work is kept. Resume with:" in err
    assert f"--run-dir {run_dir}" in err.splitlines()[-1] and "Traceback" not in err
    assert json.loads(trials_path.read_text()) and not (run_dir / "best.keras").exists()
    assert not [p.name for p in run_dir.rglob("*") if ".tmp" in p.name]  # no half-written file


@pytest.mark.slow
def test_tuning_and_the_retrain_never_read_the_test_split(seed, tmp_path, monkeypatch):
    """Noise in place of the 10,000 test images changes nothing the tuning stage makes, and the
    stage never asks for them: selection and the retrain see train and validation only."""
    import keras
    import numpy as np

    from mnist_opt import data

    def outputs(name):
        result = tune.tune(_cfg(tmp_path, run_dir=str(tmp_path / name), seed=seed))
        trials = [(r["hyperparameters"], r["val_accuracy"]) for r in json.loads((result.run_dir / "trials.json").read_text())]
        return trials, result.best, keras.saving.load_model(result.run_dir / "best.keras").get_weights()

    real = outputs("real")
    load = data.load

    def noisy_test(*args, **kwargs):
        loaded = load(*args, **kwargs)
        arrays = loaded.arrays
        rng = np.random.default_rng(0)
        noise = {"x_test": rng.integers(0, 256, arrays["x_test"].shape, dtype=np.uint8),
                 "y_test": rng.integers(0, 10, arrays["y_test"].shape).astype(np.uint8)}
        return data.Loaded({**arrays, **noise}, loaded.info)

    def no_test(*args, **kwargs):
        raise AssertionError("the tuning stage asked for the test split")

    monkeypatch.setattr(data, "load", noisy_test)
    monkeypatch.setattr(data, "load_test", no_test)
    noisy = outputs("noisy")
    assert noisy[0] == real[0] and noisy[1] == real[1]
    for a, b in zip(noisy[2], real[2]):
        np.testing.assert_array_equal(a, b)
