"""The CNN, built from hyperparameter values: the one architecture definition.

`build_cnn` takes plain values and a Keras module, so the tuner builds it with Keras 3 and the
export stage rebuilds the same layers, in the same order, with tf_keras for
tensorflow-model-optimization. Augmentation is not part of the model: it runs in the input
pipeline (`tuning.inputs`: faster on CPU, and never exported).
"""

from __future__ import annotations

import keras

from mnist_opt import workarounds
from mnist_opt.tuning.fused_bn import FusedBatchNormalization
from mnist_opt.tuning.space import DATA_KEYS, PARAMS

# Keras' default 0.99 needs hundreds of steps before the moving statistics are usable: one-epoch
# trials scored batch-norm models near chance, so Hyperband's short first rounds threw them all out
# (docs/experiments.md). 0.9 settles within ~50 steps.
BN_MOMENTUM = 0.9

# The original project's CNN (Conv2D + MaxPooling, Flatten, Dense softmax),
# as one point of the space so that it trains and exports the same way.
BASELINE = {
    "conv_blocks": 1, "convs_per_block": 1, "filters_0": 32, "kernel_size": 3,
    "batch_norm": False, "global_pooling": False, "dense_units": 0, "dropout": 0.0,
    "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "learning_rate": 1e-3, "label_smoothing": 0.0,
}


ARCHITECTURE_KEYS = ("conv_blocks", "convs_per_block", "kernel_size", "stem_stride", "separable", "transition",
                     "pool_last", "batch_norm", "global_pooling", "dense_units", "dropout", *DATA_KEYS)


def architecture(values: dict) -> dict:
    """`values` with every architecture key: the defaults fill in keys added since a run was made.

    A `best_hparams.json` from before `stem_stride`, `separable`, `transition`, `pool_last` and the data keys
    existed rebuilds the model it was trained as (on MNIST), so older run directories still export.
    """
    return {key: values.get(key, PARAMS[key].default) for key in ARCHITECTURE_KEYS} | {
        key: v for key, v in values.items() if key.startswith("filters_")}


def input_shape(values: dict) -> tuple[int, int, int]:
    """(height, width, channels) of `build_cnn(values)`'s input."""
    v = architecture(values)
    return v["image_height"], v["image_width"], v["channels"]


def layer_plan(values: dict):
    """The conv stack of `build_cnn(values)`, in order: (kind, name, kernel, stride, filters).

    kind is "conv" (a Conv2D), "depthwise" (a DepthwiseConv2D; filters is its input's channels)
    or "pool" (a 2x2 max pooling). A block's pooling is left out where the map is down to 1 pixel
    (small images). `build_cnn`, `count_params` and `estimate_flash_bytes` all read this one plan,
    so they cannot disagree on the layers.
    """
    v = architecture(values)
    height, width, channels = input_shape(v)
    first = True
    for b in range(v["conv_blocks"]):
        filters = v[f"filters_{b}"]
        if v["transition"] and b > 0:
            yield "conv", f"transition{b}", 1, 1, filters
            channels = filters
        for c in range(v["convs_per_block"]):
            stride = v["stem_stride"] if first else 1
            if v["separable"] and not first:  # the first conv sees the image's channels: nothing to separate
                yield "depthwise", f"dw{b}_{c}", v["kernel_size"], 1, channels
                yield "conv", f"conv{b}_{c}", 1, 1, filters
            else:
                yield "conv", f"conv{b}_{c}", v["kernel_size"], stride, filters
            height, width = -(-height // stride), -(-width // stride)  # "same" padding
            channels, first = filters, False
        if (b < v["conv_blocks"] - 1 or v["pool_last"]) and min(height, width) >= 2:
            yield "pool", f"pool{b}", 2, 2, channels
            height, width = height // 2, width // 2


def build_cnn(values: dict, k=keras, dtype: str | None = None, fused_bn: bool = False):
    """The CNN for `values` (flat hyperparameter values), built with Keras module `k`.

    Returns an uncompiled functional model taking `input_shape(values)` floats in [0, 1] (28x28x1 for MNIST). `dtype` is a
    Keras dtype policy for the hidden layers (training in "mixed_bfloat16"); the output
    layer stays float32, as do the weights whatever the policy. `fused_bn` (Keras 3 only) makes
    batch norm a `FusedBatchNormalization`, for models that are trained and not saved.
    """
    L = k.layers
    v = architecture(values)
    d = {} if dtype is None else {"dtype": dtype}  # for every layer but the output
    x = inputs = k.Input(shape=input_shape(v), name="image")
    bn = v["batch_norm"]
    # The fused layer only where its probe passes; else Keras' own, with a warning (workaround 'fused-batch-norm').
    fused = fused_bn and k is keras and bn and workarounds.require("fused-batch-norm")
    BatchNorm = FusedBatchNormalization if fused else L.BatchNormalization
    for kind, name, kernel, stride, filters in layer_plan(v):
        if kind == "pool":
            x = L.MaxPooling2D(2, name=name, **d)(x)
            continue
        # Without batch norm the ReLU is the conv's own activation: tfmot's pruning-preserving
        # QAT masks a conv kernel only then (a separate ReLU layer makes it skip the kernel).
        act = dict(use_bias=not bn, activation=None if bn else "relu", name=name, **d)
        if kind == "depthwise":
            x = L.DepthwiseConv2D(kernel, padding="same", **act)(x)
        else:
            x = L.Conv2D(filters, kernel, strides=stride, padding="same", **act)(x)
        if bn:
            x = BatchNorm(momentum=BN_MOMENTUM, name=f"bn_{name}", **d)(x)
            x = L.ReLU(name=f"relu_{name}", **d)(x)
    x = L.GlobalAveragePooling2D(name="gap", **d)(x) if v["global_pooling"] else L.Flatten(name="flatten", **d)(x)
    if v["dropout"] > 0:
        x = L.Dropout(v["dropout"], name="dropout", **d)(x)
    if v["dense_units"] > 0:
        x = L.Dense(v["dense_units"], activation="relu", name="dense", **d)(x)
        if v["dropout"] > 0:
            x = L.Dropout(v["dropout"], name="dropout_dense", **d)(x)
    outputs = L.Dense(v["classes"], activation="softmax", name="probs")(x)
    return k.Model(inputs, outputs, name="cnn")


def compile_model(model, values: dict, k=keras, learning_rate=None, steps_per_execution: int = 1,
                  optimizer=None) -> None:
    """Adam (or `optimizer`) and smoothed cross-entropy on one-hot labels, with accuracy.

    With Keras 3, Adam's slots are made here, not in the first training step: a variable made
    inside a traced step makes TensorFlow trace the step twice (docs/performance.md). The
    metric is named for the same reason ("accuracy" is resolved, and made, at the first step).
    """
    model.compile(
        optimizer=optimizer or k.optimizers.Adam(learning_rate if learning_rate is not None else values["learning_rate"]),
        loss=k.losses.CategoricalCrossentropy(label_smoothing=values["label_smoothing"]),
        metrics=[k.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    if k is keras:
        model.optimizer.build(model.trainable_variables)
