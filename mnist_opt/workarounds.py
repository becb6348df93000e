"""Every workaround of a library's behaviour that patches or leans on its internals, in one place.

Each names the release it was written for (`WRITTEN_FOR`, the pins of constraints.txt). On another
release it still applies, and `check` warns once that it needs looking at again: its test in
tests/test_workarounds.py fails when the behaviour it works around has changed upstream. The reasons,
and when each can go, are in docs/internals.md.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import warnings
from importlib import metadata

import keras

WRITTEN_FOR = {"keras-tuner": "1.4.8", "keras": "3.15.1", "tensorflow": "2.21.0",
               "tensorflow-model-optimization": "0.8.1"}
_warned: set[str] = set()


@functools.cache
def _installed(package: str) -> str:
    return metadata.version(package)  # reads the package's metadata from disk: once, not every trial


def check(package: str, what: str) -> bool:
    """Whether `package` is the release the workaround `what` was written for; warn once if not."""
    installed = _installed(package)
    if installed == WRITTEN_FOR[package]:
        return True
    if what not in _warned:
        _warned.add(what)
        warnings.warn(f"mnist-opt: the workaround for {what} was written for {package} {WRITTEN_FOR[package]}, "
                      f"{installed} is installed; run tests/test_workarounds.py to see whether it is still needed",
                      stacklevel=2)
    return False


def quiet_keras_tuner() -> None:
    """Keras Tuner 1.4.8 prints too much; make it print only what this toolkit logs.

    - `keras_tuner.src.config.DEBUG` makes it print every failed trial's traceback to stdout;
      failures go to trials.json and one log line each instead.
    - `conditions.Parent.to_proto` has a debug `print(self.values[0])`: every conditional
      hyperparameter sent over gRPC printed a bare number on the chief's and the workers' stdout.
    """
    from keras_tuner.src import config
    from keras_tuner.src.engine import conditions

    check("keras-tuner", "Keras Tuner's prints")
    config.DEBUG = False
    original = conditions.Parent.to_proto
    if getattr(original, "quieted", False):
        return

    def to_proto(self):
        with contextlib.redirect_stdout(io.StringIO()):
            return original(self)
    to_proto.quieted, to_proto.original = True, original
    conditions.Parent.to_proto = to_proto


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback as trials use it: a log per epoch, none per batch.

    Keras' own, even at `update_freq="epoch"`, calls `tf.summary.scalar` for every metric after
    every batch call, with no writer to write them to (1.5% of a starting point's trial). Named
    `TensorBoard`: Keras Tuner gives a callback of that class name the trial's own log directory
    and its HParams.
    """

    def __init__(self, log_dir: str):
        check("keras", "Keras' per-batch TensorBoard work")
        super().__init__(log_dir, write_graph=False, profile_batch=0, update_freq="epoch")

    def on_train_batch_end(self, batch, logs=None):
        pass


def custom_gradients() -> set[str]:
    """Names of the gradient functions that `tf.custom_gradient` has registered in this process."""
    from tensorflow.python.framework import ops

    return {name for name in ops._gradient_registry._registry if name.startswith("CustomGradient-")}


@contextlib.contextmanager
def released_custom_gradients():
    """Drop the gradient functions that `tf.custom_gradient` registered inside the block.

    Keras 3's optimizer sums gradients through `tf.distribute`'s `all_reduce`, which registers a
    custom gradient in TensorFlow's global gradient registry every time a train step is traced,
    and never removes it. Each one keeps its whole train-step graph alive: about 10 MiB per
    trained model, which `clear_session` and `gc.collect` cannot free. Use around training whose
    graphs are not traced again after the block.
    """
    from tensorflow.python.framework import ops

    check("tensorflow", "the custom-gradient registry")
    before = custom_gradients()
    try:
        yield
    finally:
        for name in custom_gradients() - before:
            del ops._gradient_registry._registry[name]


@contextlib.contextmanager
def frozen_heap():
    """Leave the objects alive now (TensorFlow, Keras, the data) out of garbage collection in the block.

    Keras Tuner collects garbage twice before every trial, and each full collection walks every
    object in the process: 0.4 s a trial here, a tenth of a one-epoch trial. What the block
    creates is collected as usual; the rest is handed back to the collector at its end.
    """
    check("keras-tuner", "Keras Tuner's per-trial garbage collection")
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def hyperband_promotes_by(keys: dict):
    """Make Keras Tuner's Hyperband promote by `keys` (trial -> number, higher first) inside the block.

    keras-tuner 1.4.8's `HyperbandOracle.populate_space` chooses the trial it promotes to a round's
    next rung inline, `sorted(candidates, key=lambda t: t.score, ...)[0]` (tuners/hyperband.py), with no
    hook for another order. Keras Tuner's own multi-objective support (keras-team/keras-tuner#556, #641)
    sums the objectives into one score, which has no Pareto front to promote from.
    So each keyed trial's `score` is its key while the oracle chooses, and its own score again after.
    Nothing else reads a score meanwhile: a one-process search runs the oracle in its own thread, and the
    distributed chief serves it from one gRPC thread (`tuning/distributed.py`, max_workers=1); Keras
    Tuner's `create_trial` saves the oracle after `populate_space` returns.
    """
    check("keras-tuner", "Hyperband's promotion order")
    scores = {trial: trial.score for trial in keys}
    try:
        for trial, key in keys.items():
            trial.score = key
        yield
    finally:
        for trial, score in scores.items():
            trial.score = score


def cluster_preserve_scheme():
    """tfmot's PCQAT scheme (cluster- and sparsity-preserving QAT), with one weight quantizer per layer.

    tfmot 0.8.1's registry hands the same quantizer object to every Conv2D (and another to every
    Dense), and a quantizer turns its own `preserve_sparsity` off, with the warning "Input layer does
    not contain zero weights, so apply CQAT instead", as soon as it is built on a layer with no zeros.
    The first conv is left dense on purpose, so it switched sparsity preservation off for every conv
    after it: the pruned convs of a PCQAT model came out of training with 0% zeros instead of 80%.
    A fresh registry per layer gives each layer its own quantizer. Its warning, true of the layers
    left dense and of no other now, is kept off the log (`quiet_cqat_fallback`).
    """
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as registry, default_8bit_cluster_preserve_quantize_scheme as scheme)

    check("tensorflow-model-optimization", "tfmot's shared PCQAT quantizers")

    class PerLayerRegistry(registry.Default8bitClusterPreserveQuantizeRegistry):
        def __init__(self, preserve_sparsity):
            super().__init__(preserve_sparsity)
            self.preserve_sparsity = preserve_sparsity

        def get_quantize_config(self, layer):
            return registry.Default8bitClusterPreserveQuantizeRegistry(self.preserve_sparsity).get_quantize_config(layer)

    class Scheme(scheme.Default8BitClusterPreserveQuantizeScheme):
        def get_quantize_registry(self):
            return PerLayerRegistry(self.preserve_sparsity)

    return Scheme(preserve_sparsity=True)


@contextlib.contextmanager
def quiet_cqat_fallback():
    """Hide tfmot's "apply CQAT instead" warning (root logger) for the layers pruning leaves dense."""
    import logging

    def keep(record):
        return "so apply CQAT instead" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
