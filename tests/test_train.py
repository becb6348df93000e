import json

import keras

from mnist_opt.errors import RunDirError
from mnist_opt import data
from mnist_opt.tuning import train
from mnist_opt.tuning.architecture import BASELINE
from mnist_opt.tuning.space import data_values

import pytest


def test_baseline_trains_and_saves(seed, tmp_path):
    path = train.train_baseline(tmp_path / "run", epochs=1, seed=seed, images=30000)
    model = keras.saving.load_model(path, safe_mode=True)
    meta = json.loads((tmp_path / "run" / "baseline.json").read_text())
    assert meta["hyperparameters"] == BASELINE | data_values((28, 28, 1), 10)  # MNIST's images and classes
    assert meta["params"] == model.count_params()
    assert meta["images"] == 30000  # a stratified part of the 54,000
    # Trained in runtime.training_dtype() (bfloat16 on a CPU with bfloat16 units), saved in float32.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert meta["val_accuracy"] > 0.9  # one epoch of the reference CNN on 30,000 images
    split = data.load_split(seed)
    x = split.x_val[:200] / 255.0
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


@pytest.mark.slow
def test_seconds_per_image_is_measured_per_model(seed):
    split = data.load_split(seed)
    small = train.seconds_per_image(BASELINE, split, 128, steps=5)
    # ~250x the multiply-adds of the baseline, with augmentation: far slower on any machine.
    big = dict(BASELINE, conv_blocks=2, convs_per_block=2, filters_0=64, filters_1=128, rotation=0.1)
    assert 0 < small < train.seconds_per_image(big, split, 128, steps=5)


def test_the_recipe_warms_up_to_the_trials_rate_then_decays_to_zero():
    optimizer = train.recipe_optimizer(dict(BASELINE, learning_rate=3e-3), steps=1000)
    assert type(optimizer).__name__ == "AdamW" and optimizer.weight_decay == train.WEIGHT_DECAY
    rate = lambda step: float(optimizer._learning_rate(step))  # noqa: E731
    assert rate(0) == pytest.approx(3e-4)  # a tenth of the peak
    assert rate(100) == pytest.approx(3e-3)  # the peak, after the warm-up's 10%
    assert rate(50) == pytest.approx((3e-4 + 3e-3) / 2, rel=1e-3)  # linear on the way up
    assert rate(550) == pytest.approx(1.5e-3, rel=1e-3)  # half way down the cosine
    assert rate(1000) == pytest.approx(0.0, abs=1e-9)


def test_epochs_in_a_budget():
    assert train.epochs_in(9.0, 0.5, 30) == 18
    assert train.epochs_in(9.0, 0.1, 30) == 30  # never more than asked for
    assert train.epochs_in(0.2, 0.5, 30) == 1  # at least one


def test_keep_best_restores_the_best_validation_epoch(seed):
    import numpy as np

    scores = iter([0.5, 0.9, 0.7])
    weights_at = {}

    class Scored(keras.callbacks.Callback):  # a val_accuracy per epoch, and the weights it was scored with
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = next(scores)
            weights_at[epoch] = [w.copy() for w in self.model.get_weights()]

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    x, y = np.random.default_rng(seed).random((32, 4), dtype="float32"), np.eye(2, dtype="float32")[[0, 1] * 16]
    model.fit(x, y, epochs=3, verbose=0, callbacks=[Scored(), train.KeepBest()])
    for kept, best in zip(model.get_weights(), weights_at[1]):
        np.testing.assert_array_equal(kept, best)
    assert not np.array_equal(model.get_weights()[0], weights_at[2][0])  # not the last epoch's
