"""One trial's training, as the search runs it: its data stream, its budget check, and a trial outside Keras Tuner."""

from __future__ import annotations

import math

import keras
import keras_tuner
import tensorflow as tf

from mnist_opt import data, runtime, workarounds
from mnist_opt.tuning import inputs, train
from mnist_opt.tuning.architecture import architecture, build_cnn, compile_model
from mnist_opt.tuning.config import TuneConfig


class OverBudget(keras_tuner.errors.FailedTrialError):
    """A model over the parameter budget: skipped before any training."""


def trial_data(arrays: tuple, cfg: TuneConfig, values: dict, seed: int) -> tuple:
    """A trial's training stream from the train split's (images, labels), and its steps per epoch.

    An epoch is `epoch_images` images drawn on through the whole shuffled train split, not one
    fixed subset again and again: as cheap per epoch, but a 9-epoch trial sees twice the whole
    split rather than memorizing 12,000 images (on a fixed subset, trials levelled off near 0.985).
    """
    x, y = arrays
    ds = inputs.stream(x, y, cfg.trial_batch_size, inputs.Augment.from_values(values), seed,
                       classes=architecture(values)["classes"])
    return ds, train.whole_calls(math.ceil(epoch_images(cfg, len(y)) / cfg.trial_batch_size))


def fit_trial(values: dict, split: data.Split, cfg: TuneConfig, seed: int, epochs: int) -> float:
    """Train one trial outside Keras Tuner, as the tuner trains it: the hypermodel's model and Adam, the trial
    stream of `epoch_images` an epoch, validation after each epoch. Returns the best val_accuracy.

    What another search library's trials run (benchmarks/hypervolume.py), so that only the search differs.
    """
    keras.utils.set_random_seed(seed)
    model = build_cnn(values, dtype=runtime.training_dtype(), fused_bn=True)
    compile_model(model, values, steps_per_execution=train.STEPS_PER_EXECUTION)
    train_ds, steps = trial_data((tf.constant(split.x_train), tf.constant(split.y_train)), cfg, values, seed)
    val_ds = inputs.dataset(split.x_val, split.y_val, 1000, classes=split.info.classes)
    with workarounds.released_custom_gradients():
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps,
                            callbacks=[train.StopOnNaN()], shuffle=False, verbose=0)
    return float(max(history.history["val_accuracy"]))


def epoch_images(cfg: TuneConfig, n_train: int) -> int:
    """Images in one trial epoch: --train-subset, at most the whole train split."""
    return min(cfg.train_subset or n_train, n_train)
