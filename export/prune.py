"""Magnitude pruning with tensorflow-model-optimization: `prune`, `strip`, `sparsity`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from mnist_opt.tuning.architecture import compile_model

RAMP = 0.7  # sparsity reaches its target after 70% of the fine-tuning steps, then holds
FINE_TUNE_LR = 0.25  # fraction of the tuned learning rate: fine-tuning, not training afresh


def copy(model: tf_keras.Model) -> tf_keras.Model:
    """An independent copy: stages never train their input in place."""
    clone = tf_keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def prunable(layer, min_weights: int) -> bool:
    layer = getattr(layer, "layer", layer)  # see through pruning and quantization wrappers
    kernel = getattr(layer, "kernel", None)
    return (isinstance(layer, (tf_keras.layers.Conv2D, tf_keras.layers.Dense))
            and kernel is not None and int(np.prod(kernel.shape)) >= min_weights)


def prune(model: tf_keras.Model, values: dict, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset,
          sparsity: float, epochs: int, min_weights: int, callbacks=()) -> tf_keras.Model:
    """Prune the large kernels of a copy of `model` to `sparsity` (polynomial decay) while fine-tuning.

    Returns the pruned model, still wrapped; `strip` removes the wrappers.
    """
    steps = int(train_ds.cardinality()) * epochs
    # Masks update every `frequency` steps; the ramp ends on an update so the target is met exactly.
    ramp = max(1, int(steps * RAMP))
    frequency = max(1, min(100, ramp // 10))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=frequency * max(1, ramp // frequency), frequency=frequency)

    def wrap(layer):
        if prunable(layer, min_weights):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    # clone_model hands `wrap` the copy's layers, so the wrappers start from its weights.
    pruned = tf_keras.models.clone_model(copy(model), clone_function=wrap)
    compile_model(pruned, values, k=tf_keras, learning_rate=values["learning_rate"] * FINE_TUNE_LR)
    pruned.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), *callbacks])
    return pruned


def strip(model: tf_keras.Model) -> tf_keras.Model:
    """Remove the pruning wrappers; the kernels keep their zeros."""
    return tfmot.sparsity.keras.strip_pruning(model)


def sparsity(model: tf_keras.Model, min_weights: int) -> float:
    """Fraction of exact zeros over the kernels that pruning applies to."""
    kernels = [kernel(layer) for layer in model.layers if prunable(layer, min_weights)]
    if not kernels:
        return 0.0
    return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))


def kernel(layer) -> np.ndarray:
    """The layer's kernel variable itself: a quantization wrapper replaces `.kernel` with a fake-quantized tensor."""
    for w in layer.weights:
        if w.name.split("/")[-1] == "kernel:0":
            return w.numpy()
    raise ValueError(f"layer {layer.name} has no kernel variable")
