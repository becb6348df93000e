"""Training one model to the end: the search winner's retrain and the baseline."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras

from mnist_opt import runio, runtime
from mnist_opt.errors import RunDirError
from mnist_opt import data
from mnist_opt.tuning import inputs
from mnist_opt.data import Split
from mnist_opt.tuning.architecture import BASELINE, architecture, build_cnn, compile_model
from mnist_opt.tuning.space import data_values

TIMED_STEPS = 20  # batches timed to estimate a retrain, after its tracing: seconds, not minutes
# Batches per call into TensorFlow. Each call costs some Python, and 4 a call trains more images a
# second (docs/performance.md). Callbacks that act per batch (NaN, Ctrl-C) see every 4th.
STEPS_PER_EXECUTION = 4


class StopOnNaN(keras.callbacks.Callback):
    """End a trial whose loss is no longer finite, as a failure, instead of burning its epochs."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(f"loss became {float(loss)} at batch {batch}; "
                                     "try a lower learning rate or batch norm")


class EpochLog(keras.callbacks.Callback):
    """One short line per epoch, through the caller's `log`."""

    def __init__(self, log: Callable[[str], None], epochs: int):
        super().__init__()
        self.log, self.epochs = log, epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.log(f"  epoch {epoch + 1}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}  "
                 f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f}")


class TimeBudget(keras.callbacks.Callback):
    """Stop after the epoch at which another one would end past `minutes` (epochs take about the same time)."""

    def __init__(self, minutes: float, log: Callable[[str], None]):
        super().__init__()
        self.seconds, self.log = minutes * 60, log

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        spent = time.perf_counter() - self.start
        if epoch + 1 < self.params["epochs"] and spent + spent / (epoch + 1) > self.seconds:
            self.log(f"  stopping: another epoch would pass the {self.seconds / 60:g}-minute budget")
            self.model.stop_training = True


WARMUP = 0.1  # of the retrain's steps: the learning rate climbs from a tenth of its peak, then decays to zero
WEIGHT_DECAY = 1e-4  # AdamW's, decoupled from the gradient


def recipe_optimizer(values: dict, steps: int) -> keras.optimizers.Optimizer:
    """The retrain's optimizer: AdamW, linear warm-up to the trial's learning rate, cosine decay to zero.

    A schedule that ends at zero over a known number of steps is what the published small CNNs
    train with; the trials' constant Adam rate only has to rank models.
    """
    warmup = max(1, int(steps * WARMUP))
    peak = values["learning_rate"]
    schedule = keras.optimizers.schedules.CosineDecay(
        peak / 10, decay_steps=max(1, steps - warmup), alpha=0.0, warmup_target=peak, warmup_steps=warmup)
    return keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY)


def model_to_train(values: dict, steps: int | None = None) -> keras.Model:
    """`build_cnn(values)` as this toolkit trains it: in `runtime.training_dtype()`, batch norm fused, compiled.

    With `steps`, compiled with the retrain's schedule over that many steps (`recipe_optimizer`).
    """
    model = build_cnn(values, dtype=runtime.training_dtype(), fused_bn=True)
    optimizer = None if steps is None else recipe_optimizer(values, steps)
    compile_model(model, values, steps_per_execution=STEPS_PER_EXECUTION, optimizer=optimizer)
    return model


class KeepBest(keras.callbacks.Callback):
    """At the end of training, the weights of the epoch with the best val_accuracy (the first of equals)."""

    def on_train_begin(self, logs=None):
        self.best, self.weights = -1.0, None

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_accuracy", -1.0)
        if score > self.best:
            self.best, self.weights = score, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


def train(values: dict, split: Split, epochs: int, batch_size: int, seed: int,
          log: Callable[[str], None] = lambda line: None, minutes: float | None = None,
          recipe: bool = True) -> tuple[keras.Model, dict]:
    """Train `build_cnn(values)` on the whole train split for `epochs` (stopped in `minutes`).

    The recipe: AdamW over a warm-up and cosine schedule of exactly `epochs` epochs, the trial's
    augmentation and label smoothing, and the weights of the best validation epoch kept; without
    it (`recipe=False`, the original project's way), Adam at the constant rate. Trains in
    `runtime.training_dtype()`. Returns an uncompiled float32 model with those weights, and the history.
    """
    keras.utils.set_random_seed(seed)
    steps = math.ceil(len(split.y_train) / batch_size) * epochs
    model = model_to_train(values, steps=steps if recipe else None)
    classes = architecture(values)["classes"]
    train_ds = inputs.dataset(split.x_train, split.y_train, batch_size, inputs.Augment.from_values(values),
                              seed=seed, classes=classes)
    val_ds = inputs.dataset(split.x_val, split.y_val, 1000, classes=classes)
    callbacks = [StopOnNaN(), runtime.stop_on_interrupt(keras), KeepBest(), EpochLog(log, epochs)]
    if minutes is not None:
        callbacks.append(TimeBudget(minutes, log))
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=0)  # the dataset shuffles
    # What is saved, exported and reported is the same (float32) weights in float32 layers, uncompiled:
    # a compiled one would also save the optimizer's two slots per weight (3x the file).
    final = build_cnn(values)
    final.set_weights(model.get_weights())
    return final, history.history


def epochs_in(minutes: float, minutes_per_epoch: float, epochs: int) -> int:
    """How many of `epochs` fit in `minutes` (at least one)."""
    return max(1, min(epochs, int(minutes / minutes_per_epoch)))


def seconds_per_image(values: dict, split: Split, batch_size: int, steps: int = TIMED_STEPS) -> float:
    """Training time per image of `build_cnn(values)` at `batch_size`, with its augmentation, measured.

    `steps` batches (rounded up to whole calls of STEPS_PER_EXECUTION) are timed, after one call
    that builds and traces the graph: the same model the retrain trains (`model_to_train`).
    """
    model = model_to_train(values)
    ds = inputs.stream(split.x_train, split.y_train, batch_size, inputs.Augment.from_values(values), seed=0,
                       classes=architecture(values)["classes"])
    model.fit(ds.take(STEPS_PER_EXECUTION), verbose=0)  # build and trace outside the timing
    steps = whole_calls(steps)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - start) / (steps * batch_size)


def whole_calls(steps: int) -> int:
    """`steps` rounded up to a multiple of STEPS_PER_EXECUTION: on an endless stream, Keras runs whole calls."""
    return math.ceil(steps / STEPS_PER_EXECUTION) * STEPS_PER_EXECUTION


def train_baseline(run_dir: Path, epochs: int, seed: int, source: data.Source | str | None = None,
                   log: Callable[[str], None] = lambda line: None, images: int | None = None) -> Path:
    """Train the original project's CNN on the same split and pipeline, for the data's images and classes;
    save `baseline.keras`.

    With `images`, on that many of the train split's images (each class in proportion).
    """
    split = data.load_split(seed, source, log)
    baseline = BASELINE | data_values(split.info.shape, split.info.classes)
    if images is not None and images < len(split.y_train):
        idx = data.stratified_indices(split.y_train, images, seed)
        split = dataclasses.replace(split, x_train=split.x_train[idx], y_train=split.y_train[idx],
                                    train_index=split.train_index[idx])
    precision = runtime.training_dtype() or "float32"  # $MNIST_OPT_PRECISION, checked before anything is written
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir}: exists and is not a directory; pass --run-dir with a directory")
    runio.check_writable(run_dir)
    log(f"baseline: Conv2D(32) + MaxPooling, Flatten, Dense softmax; up to {epochs} epochs of {len(split.y_train):,} images")
    model, history = train(baseline, split, epochs, 128, seed, log, recipe=False)
    path = run_dir / "baseline.keras"
    with runio.atomic_path(path) as tmp:
        model.save(tmp)
    runio.write_json(run_dir / "baseline.json", {
        "hyperparameters": baseline, "params": model.count_params(), "seed": seed, "epochs": epochs,
        "images": len(split.y_train), "precision": precision,
        "val_accuracy": max(history["val_accuracy"]), "data_sha256": split.content_sha256,
    })
    return path
