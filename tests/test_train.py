import json

import keras

from mnist_opt.errors import RunDirError
from tuning import data, train
from tuning.hypermodel import BASELINE

import pytest


def test_baseline_trains_and_saves(seed, tmp_path):
    path = train.train_baseline(tmp_path / "run", epochs=1, seed=seed)
    model = keras.saving.load_model(path, safe_mode=True)
    meta = json.loads((tmp_path / "run" / "baseline.json").read_text())
    assert meta["hyperparameters"] == BASELINE and meta["params"] == model.count_params()
    # Trained in runtime.training_dtype() (bfloat16 on a CPU with bfloat16 units), saved in float32.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert meta["val_accuracy"] > 0.9  # one epoch of the reference CNN on 54k images
    split = data.load_split(seed)
    x = split.x_val[:200, ..., None] / 255.0
    assert (model.predict(x, verbose=0).argmax(1) == split.y_val[:200]).mean() > 0.9


def test_baseline_refuses_a_file_as_run_dir(seed, tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(RunDirError):
        train.train_baseline(tmp_path / "f", epochs=1, seed=seed)


def test_time_budget_stops_before_an_epoch_that_would_overrun(seed, monkeypatch):
    import numpy as np

    now = [0.0]  # a clock on which every epoch takes exactly 1 s
    monkeypatch.setattr(train.time, "perf_counter", lambda: now[0])

    class OneSecondEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now[0] += 1.0

    lines = []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    history = model.fit(np.zeros((8, 4), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4], epochs=10, verbose=0,
                        callbacks=[OneSecondEpochs(), train.TimeBudget(3.5 / 60, lines.append)])
    # After 3 epochs (3 s) a fourth would end at 4 s, past 3.5 s.
    assert len(history.history["loss"]) == 3
    assert len(lines) == 1 and lines[0].startswith("  stopping: another epoch would pass the 0.0583")

    # The same budget over 3 epochs: nothing to stop, and nothing said after the last one.
    lines.clear()
    history = model.fit(np.zeros((8, 4), "float32"), np.eye(2, dtype="float32")[[0, 1] * 4], epochs=3, verbose=0,
                        callbacks=[OneSecondEpochs(), train.TimeBudget(3.5 / 60, lines.append)])
    assert len(history.history["loss"]) == 3 and lines == []


def test_seconds_per_image_is_measured_per_model(seed):
    split = data.load_split(seed)
    small = train.seconds_per_image(BASELINE, split, 128, steps=5)
    # ~250x the multiply-adds of the baseline, with augmentation: far slower on any machine.
    big = dict(BASELINE, conv_blocks=2, convs_per_block=2, filters_0=64, filters_1=128, rotation=0.1)
    assert 0 < small < train.seconds_per_image(big, split, 128, steps=5)
