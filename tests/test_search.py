import json

import keras
import numpy as np
import pytest

from mnist_opt import runtime, workarounds
from mnist_opt.tuning import pareto, search
from mnist_opt.tuning.tune import prepare_run_dir
from mnist_opt.tuning.config import TuneConfig
from mnist_opt.tuning.architecture import build_cnn
from mnist_opt.tuning.size import count_params, estimate_flash_bytes


def _cfg(tmp_path, **kw):
    base = dict(space="tiny", tuner="random", max_trials=2, max_epochs=1, train_subset=500, final_epochs=1,
                run_dir=str(tmp_path / "run"))
    return TuneConfig(**{**base, **kw})


def test_smoke_search_records_every_trial(seed, smoke_run):
    run_dir, output = smoke_run
    trials = json.loads((run_dir / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["completed", "completed"]
    assert len({t["id"] for t in trials}) == 2
    for t in trials:
        assert 0.0 < t["val_accuracy"] <= 1.0 and t["seconds"] > 0 and t["error"] is None
        assert t["params"] == count_params(t["hyperparameters"])
    # Each trial's Pareto rank of (val_accuracy, est_flash_bytes) among the completed ones.
    assert [t["pareto_rank"] for t in trials] == pareto.ranks([(t["val_accuracy"], t["est_flash_bytes"]) for t in trials])
    for n, t in enumerate(trials, 1):  # one log line per trial, named as in trials.json
        assert f"trial {t['id']} ({n}/2)  val_acc {t['val_accuracy']:.4f}" in output


def test_smoke_search_saves_a_loadable_best_model(seed, smoke_run):
    run_dir, _ = smoke_run
    best = json.loads((run_dir / "best_hparams.json").read_text())
    trials = {t["id"]: t for t in json.loads((run_dir / "trials.json").read_text())}
    assert best["search_val_accuracy"] == max(t["val_accuracy"] for t in trials.values())
    assert best["hyperparameters"] == trials[best["trial_id"]]["hyperparameters"]
    model = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    assert model.count_params() == best["params"]
    # The saved model holds no augmentation: same architecture as a fresh build.
    assert len(model.layers) == len(build_cnn(best["hyperparameters"]).layers)
    probs = model.predict(np.zeros((3, 28, 28, 1), "float32"), verbose=0)
    assert probs.shape == (3, 10)
    # Saved in float32 and uncompiled, whatever precision it trained in.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"} and not model.compiled
    config = json.loads((run_dir / "config.json").read_text())
    assert config["precision"] == (runtime.training_dtype() or "float32")
    assert config["tune"]["seed"] == config["search"]["seed"]
    assert config["search"]["data_sha256"] == "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
    assert set(config["packages"]) >= {"tensorflow", "keras", "keras-tuner", "tensorflow-model-optimization"}
    trials = json.loads((run_dir / "trials.json").read_text())
    for t in trials:  # each trial its own log: HParams, then each epoch's train and validation metrics
        logs = run_dir / "tensorboard" / t["id"] / "execution0"
        assert "_hparams_/session_start_info" in _event_tags(logs)
        assert {"epoch_loss", "epoch_accuracy"} <= _event_tags(logs / "train") & _event_tags(logs / "validation")


def _event_tags(directory) -> set:
    """The summary tags in a TensorBoard log directory's own event files (not its subdirectories')."""
    import tensorflow as tf

    files = sorted(directory.glob("*.tfevents.*"))
    assert files, f"no event file in {directory}"
    return {v.tag for f in files for e in tf.compat.v1.train.summary_iterator(str(f)) for v in e.summary.value}


def test_tensorboard_logs_every_epoch_and_does_no_work_per_batch(seed, tmp_path, monkeypatch):
    import tensorflow.summary as summary  # the module Keras' callback writes through (not always `tf.summary`)

    calls, real_scalar = [], summary.scalar

    def scalar(name, *args, **kwargs):
        calls.append(name)
        return real_scalar(name, *args, **kwargs)

    monkeypatch.setattr(summary, "scalar", scalar)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    x, y = np.zeros((64, 4), "float32"), keras.utils.to_categorical(np.arange(64) % 2, 2)
    model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0,
              callbacks=[workarounds.tensorboard_class()(str(tmp_path / "tb"))])
    # 8 batches an epoch: Keras' own callback also makes a scalar per metric after each batch (48 more here).
    assert not [name for name in calls if name.startswith("batch_")]
    assert calls.count("epoch_accuracy") == 6  # train and validation, 3 epochs
    assert {"epoch_loss", "epoch_accuracy"} <= _event_tags(tmp_path / "tb" / "train")


@pytest.mark.slow
def test_hyperband_trains_the_best_first_model_on_from_its_checkpoint(seed, tmp_path, monkeypatch):
    """The default tuner at max_epochs 3 (on the tiny space, whose models train fastest): the space's two
    starting points for 3 epochs, three one-epoch trials, then the best one's model trained on for
    epochs 2 and 3 from its own weights, not built afresh."""
    from mnist_opt import data
    from mnist_opt.tuning import space as space_module

    loaded, real_load = [], keras.Model.load_weights

    def load_weights(self, path, *args, **kwargs):  # Keras Tuner's hand-over of a trial's model
        loaded.append(str(path))
        return real_load(self, path, *args, **kwargs)

    steps_before, real_fit = [], keras.Model.fit

    def fit(self, *args, **kwargs):
        steps_before.append(int(self.optimizer.iterations))
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "load_weights", load_weights)
    monkeypatch.setattr(keras.Model, "fit", fit)
    cfg = _cfg(tmp_path, tuner="hyperband", max_trials=6, max_epochs=3)
    space = space_module.load(cfg.space)
    records = search.search(cfg, space, data.load_split(cfg.seed), prepare_run_dir(cfg, {}))
    assert [r["status"] for r in records] == ["completed"] * 6
    assert [r["start"] for r in records] == [True, True, False, False, False, False]
    assert [r["hyperparameters"] for r in records[:2]] == list(space.starts)
    assert [r["epochs"] for r in records] == [3, 3, 1, 1, 1, 3]
    assert [r["epochs_run"] for r in records] == [3, 3, 1, 1, 1, 2]
    parent = max(records[2:5], key=lambda r: r["val_accuracy"])  # Keras Tuner ranks by score alone
    assert records[5]["hyperparameters"] == parent["hyperparameters"]
    assert any(f"trial_{parent['id']}" in path for path in loaded)  # its weights, not a fresh model
    assert steps_before == [0] * 6  # and Adam afresh, not the parent's state (see FreshOptimizer._build_hypermodel)


def _search_records(tmp_path, name, seed_value):
    from mnist_opt import data
    from mnist_opt.tuning import space as space_module

    # Drawn trials only: the starting points are the same whatever the seed.
    cfg = _cfg(tmp_path, seed=seed_value, starts=False, max_trials=2, run_dir=str(tmp_path / name))
    split = data.load_split(cfg.seed)
    registered = workarounds.custom_gradients()
    records = search.search(cfg, space_module.load(cfg.space), split, prepare_run_dir(cfg, {}))
    assert workarounds.custom_gradients() == registered  # trials leave no graphs behind (see workarounds.released_custom_gradients)
    assert all(r["rss_mib"] > 0 for r in records)
    return [(r["id"], r["status"], r["hyperparameters"], r["val_accuracy"]) for r in records]


@pytest.mark.slow
@pytest.mark.parametrize("run_seed", [0, 1234])  # 0: the default, which Keras Tuner reads as "no seed"
def test_same_seed_same_trials_other_seed_other_hyperparameters(seed, tmp_path, run_seed):
    first = _search_records(tmp_path, "a", run_seed)
    assert first == _search_records(tmp_path, "b", run_seed)
    other = _search_records(tmp_path, "c", run_seed + 1)
    assert [r[2] for r in other] != [r[2] for r in first]


@pytest.mark.slow
def test_killed_search_resumes_without_retraining_finished_trials(seed, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "mnist_opt", "tune", "--space", "tiny", "--tuner", "random", "--max-trials", "3",
               "--max-epochs", "1", "--train-subset", "1000", "--final-epochs", "1", "--seed", str(seed),
               "--run-dir", str(run_dir)]
    trials_path = run_dir / "trials.json"
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (trials_path.exists() and json.loads(trials_path.read_text())):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {t["id"]: t for t in json.loads(trials_path.read_text())}
    assert done_before and not (run_dir / "best.keras").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming: {len(done_before)} trials already done" in resumed.stdout
    trials = json.loads(trials_path.read_text())
    assert sorted(t["id"] for t in trials) == sorted({t["id"] for t in trials}) and len(trials) == 3
    for t in trials:  # finished trials were not trained again: their records are untouched
        if t["id"] in done_before:
            assert t == done_before[t["id"]]
    trial_lines = [line for line in resumed.stdout.splitlines() if line.startswith("trial")]
    assert len(trial_lines) == 3 - len(done_before)
    assert (run_dir / "best.keras").exists()


@pytest.mark.slow
def test_max_kb_skips_models_over_the_budget_before_training(seed, tmp_path):
    """Every completed trial's estimated flash form fits the budget; every skipped one does not."""
    from mnist_opt import data
    from mnist_opt.tuning import space

    budget = 40  # the second starting point fits, the first does not
    cfg = _cfg(tmp_path, space="default", max_trials=6, max_kb=budget, seed=3)
    records = search.search(cfg, space.load(cfg.space), data.load_split(cfg.seed), prepare_run_dir(cfg, {}))
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert trials == records and len(trials) == 6
    assert {"completed", "skipped"} <= {t["status"] for t in trials}
    for t in trials:
        assert t["est_flash_bytes"] == estimate_flash_bytes(t["hyperparameters"])
        if t["status"] == "completed":
            assert t["est_flash_bytes"] <= budget * 1024
        else:
            assert t["status"] == "skipped" and t["est_flash_bytes"] > budget * 1024
            assert f"> --max-kb {budget}" in t["error"] and t["seconds"] < 5


def test_max_kb_from_the_command_line(tmp_path):
    """The CLI passes --max-kb through: a budget no model fits skips every trial, then exits 1 naming it."""
    from typer.testing import CliRunner

    from mnist_opt.cli import app

    result = CliRunner().invoke(app, ["tune", "--max-kb", "1", "--max-trials", "2", "--tuner", "random",
                                      "--train-subset", "500", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and "> --max-kb 1" in result.output and "2 skipped" in result.output


@pytest.mark.slow
def test_every_tuner_trains_the_starts_first_and_no_starts_leaves_them_out(seed, tmp_path):
    from typer.testing import CliRunner

    from mnist_opt.cli import app
    from mnist_opt import data
    from mnist_opt.tuning import space as space_module

    space, split, lines = space_module.load("tiny"), data.load_split(0), []
    for tuner in ("random", "bayesian"):
        cfg = _cfg(tmp_path, tuner=tuner, max_trials=3, run_dir=str(tmp_path / tuner))
        records = search.search(cfg, space, split, prepare_run_dir(cfg, {}), lines.append)
        assert [(r["status"], r["start"]) for r in records] == [("completed", True)] * 2 + [("completed", False)]
        assert [r["hyperparameters"] for r in records[:2]] == list(space.starts)
        assert records[2]["hyperparameters"] not in space.starts
    assert sum("starting point: blocks=2x2 filters=8,16 k=3 stem=2 sep=0" in line for line in lines) == 2
    result = CliRunner().invoke(app, ["tune", "--space", "tiny", "--no-starts", "--tuner", "bayesian", "--max-trials", "2",
                                      "--max-epochs", "1", "--train-subset", "500", "--final-epochs", "1",
                                      "--run-dir", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    trials = json.loads((tmp_path / "cli" / "trials.json").read_text())
    assert len(trials) == 2 and not any(t["start"] or t["hyperparameters"] == space.starts[0] for t in trials)
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["search"]["starts"] is False


def test_search_minutes_starts_no_trial_after_the_budget(seed, tmp_path):
    from mnist_opt import data
    from mnist_opt.tuning import space

    cfg = _cfg(tmp_path, max_trials=4, search_minutes=0.001)  # 0.06 s: spent by the first trial
    split, lines = data.load_split(cfg.seed), []
    records = search.search(cfg, space.load(cfg.space), split, prepare_run_dir(cfg, {}), lines.append)
    assert [r["status"] for r in records] == ["completed"] and records[0]["epochs_run"] == 1
    assert any("search stopped: the trials took" in line and "--search-minutes budget is 0.001" in line
               for line in lines)
    # Resumed, with the budget spent: no trial is trained.
    again = search.search(cfg, space.load(cfg.space), split, prepare_run_dir(cfg, {}), lines.append)
    assert again == records
