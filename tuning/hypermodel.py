"""What is searched: the CNN, built from hyperparameter values.

`build_cnn` is the one architecture definition. It takes plain values and a
Keras module, so the tuner builds it with Keras 3 and the export stage
rebuilds the same layers, in the same order, with tf_keras for
tensorflow-model-optimization. Augmentation is not part of the model: it runs
in the input pipeline (faster on CPU, and never exported).
"""

from __future__ import annotations

import keras
import keras_tuner
import tensorflow as tf

from tuning.space import PARAMS, Choice, Fixed, Range, SearchSpace

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)

# Keras' default 0.99 needs hundreds of steps before the moving statistics are usable: after one
# epoch on 10,000 images a batch-norm CNN scored 11% on validation (93% with 0.9), so Hyperband's
# short first rounds threw out every batch-norm model. 0.9 settles within ~50 steps.
BN_MOMENTUM = 0.9

# The original project's CNN (Conv2D + MaxPooling, Flatten, Dense softmax),
# as one point of the space so that it trains and exports the same way.
BASELINE = {
    "conv_blocks": 1, "convs_per_block": 1, "filters_0": 32, "kernel_size": 3,
    "batch_norm": False, "global_pooling": False, "dense_units": 0, "dropout": 0.0,
    "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "learning_rate": 1e-3, "label_smoothing": 0.0,
}


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras 3's BatchNormalization, trained through TensorFlow's fused kernel.

    Keras 3 trains batch norm as a dozen separate ops (moments, then normalize, in float32),
    and on 2 cores that was most of a batch-norm model's step: one epoch of 12,000 images of a
    3x2-conv, 32-filter model took 5.9 s against 3.2 s without batch norm, and 3.9 s with this
    layer (mixed bfloat16; 5.1 s in float32). tf_keras uses the fused kernel by itself.
    Same variables and the same moving averages (Keras' biased batch variance); inference and
    anything but plain NHWC training is Keras' own code. Only models built to train here use it:
    what is saved is built with the stock layer, so a saved model needs nothing of this package.

    The kernel runs in bfloat16 only on a multiple of 16 channels: on 4, 8 or 12 its bfloat16 form
    was 2-3x slower than Keras' layer, and its float32 form 1.5-4x faster (a step of 32 or 128
    images at 28x28 or 14x14). On 16 and 32 channels bfloat16 was the fastest of the three.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized \
                or len(inputs.shape) != 4 or self.axis not in (-1, 3) or not (self.center and self.scale):
            return super().call(inputs, training=training, mask=mask)
        if inputs.dtype != tf.float32 and inputs.shape[-1] % 16:
            inputs = tf.cast(inputs, tf.float32)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta), epsilon=self.epsilon,
            is_training=True)
        n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
        variance = variance * (n - 1.0) / n  # the kernel's is unbiased; Keras averages the biased one
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)


ARCHITECTURE_KEYS = ("conv_blocks", "convs_per_block", "kernel_size", "stem_stride", "separable", "transition",
                     "pool_last", "batch_norm", "global_pooling", "dense_units", "dropout")


def architecture(values: dict) -> dict:
    """`values` with every architecture key: the defaults fill in keys added since a run was made.

    A `best_hparams.json` from before `stem_stride`, `separable`, `transition` and `pool_last`
    existed rebuilds the model it was trained as, so older run directories still export.
    """
    return {key: values.get(key, PARAMS[key].default) for key in ARCHITECTURE_KEYS} | {
        key: v for key, v in values.items() if key.startswith("filters_")}


def layer_plan(values: dict):
    """The conv stack of `build_cnn(values)`, in order: (kind, name, kernel, stride, filters).

    kind is "conv" (a Conv2D), "depthwise" (a DepthwiseConv2D; filters is its input's channels)
    or "pool" (a 2x2 max pooling). `build_cnn`, `count_params` and `estimate_int8_bytes` all read
    this one plan, so they cannot disagree on the layers.
    """
    v = architecture(values)
    channels, first = INPUT_SHAPE[-1], True
    for b in range(v["conv_blocks"]):
        width = v[f"filters_{b}"]
        if v["transition"] and b > 0:
            yield "conv", f"transition{b}", 1, 1, width
            channels = width
        for c in range(v["convs_per_block"]):
            stride = v["stem_stride"] if first else 1
            if v["separable"] and not first:  # the first conv sees one channel: nothing to separate
                yield "depthwise", f"dw{b}_{c}", v["kernel_size"], 1, channels
                yield "conv", f"conv{b}_{c}", 1, 1, width
            else:
                yield "conv", f"conv{b}_{c}", v["kernel_size"], stride, width
            channels, first = width, False
        if b < v["conv_blocks"] - 1 or v["pool_last"]:
            yield "pool", f"pool{b}", 2, 2, channels


def build_cnn(values: dict, k=keras, dtype: str | None = None, fused_bn: bool = False):
    """The CNN for `values` (flat hyperparameter values), built with Keras module `k`.

    Returns an uncompiled functional model taking 28x28x1 floats in [0, 1]. `dtype` is a
    Keras dtype policy for the hidden layers (training in "mixed_bfloat16"); the output
    layer stays float32, as do the weights whatever the policy. `fused_bn` (Keras 3 only) makes
    batch norm a `FusedBatchNormalization`, for models that are trained and not saved.
    """
    L = k.layers
    v = architecture(values)
    d = {} if dtype is None else {"dtype": dtype}  # for every layer but the output
    x = inputs = k.Input(shape=INPUT_SHAPE, name="image")
    bn = v["batch_norm"]
    BatchNorm = FusedBatchNormalization if fused_bn and k is keras else L.BatchNormalization
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
    outputs = L.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return k.Model(inputs, outputs, name="cnn")


def compile_model(model, values: dict, k=keras, learning_rate=None, steps_per_execution: int = 1,
                  optimizer=None) -> None:
    """Adam (or `optimizer`) and smoothed cross-entropy on one-hot labels, with accuracy.

    With Keras 3, Adam's slots are made here, not in the first training step: a variable made
    inside a traced step makes TensorFlow trace the step twice, 0.4-0.7 s a model here. The
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


def declare(hp: keras_tuner.HyperParameters, name: str, param):
    """Declare one space entry on `hp` and return its current value."""
    if isinstance(param, Fixed):
        return hp.Fixed(name, param.value)
    if isinstance(param, Choice) and isinstance(param.values[0], bool):
        # Keras Tuner's Choice turns bools into ints; Boolean keeps them bools.
        if len(param.values) == 1:
            return hp.Fixed(name, param.values[0])
        return hp.Boolean(name, default=param.values[0])
    if isinstance(param, Choice):
        return hp.Choice(name, list(param.values))
    if isinstance(param.min, int) and isinstance(param.max, int):
        return hp.Int(name, param.min, param.max, step=param.step or 1, sampling=param.sampling)
    return hp.Float(name, param.min, param.max, step=param.step, sampling=param.sampling)


def block_counts(param) -> list[int]:
    """Every number of conv blocks a `conv_blocks` entry allows."""
    if isinstance(param, Fixed):
        return [param.value]
    if isinstance(param, Choice):
        return sorted(param.values)
    return list(range(param.min, param.max + 1, param.step or 1))


def sample(space: SearchSpace, hp: keras_tuner.HyperParameters) -> dict:
    """Declare the space on `hp` and return the flat values of this trial.

    Filters are searched per block, each only while its block exists
    (a Keras Tuner conditional scope on `conv_blocks`).
    """
    values = {key: declare(hp, key, param) for key, param in space.params.items() if key != "filters"}
    counts = block_counts(space.params["conv_blocks"])
    for b in range(max(counts)):
        with hp.conditional_scope("conv_blocks", [n for n in counts if n > b]):
            value = declare(hp, f"filters_{b}", space.params["filters"])
        if b < values["conv_blocks"]:
            values[f"filters_{b}"] = value
    return values


def _weight_layers(values: dict):
    """(kind, weights, units) of each conv, depthwise and dense layer of `build_cnn(values)`, in order."""
    v = architecture(values)
    side, channels = INPUT_SHAPE[0], INPUT_SHAPE[-1]
    for kind, _, kernel, stride, filters in layer_plan(v):
        if kind == "pool":
            side //= 2
            continue
        side = -(-side // stride)  # "same" padding
        weights = kernel * kernel * (1 if kind == "depthwise" else channels) * filters
        yield kind, weights, filters
        channels = filters
    features = channels if v["global_pooling"] else side * side * channels
    for units in ([v["dense_units"]] if v["dense_units"] > 0 else []) + [NUM_CLASSES]:
        yield "dense", features * units, units
        features = units


def count_params(values: dict) -> int:
    """Parameters of `build_cnn(values)`, computed without building it.

    Lets the tuner skip over-budget trials before paying for a graph.
    """
    bn = values["batch_norm"]
    # A conv with batch norm has no bias but 4 values per channel (gamma, beta, moving mean and variance).
    return sum(w + (4 * units if bn and kind != "dense" else units) for kind, w, units in _weight_layers(values))


# The int8 .tflite file, modelled from 24 models of the default space converted with TF 2.21:
# one byte per weight, ~20 bytes per output channel (int32 bias, per-channel scale and zero
# point), ~700 bytes per conv op and ~1.6 KB of fixed overhead. Largest error seen: 4%.
INT8_FIXED_BYTES = 1600
INT8_BYTES_PER_CHANNEL = 20
INT8_BYTES_PER_CONV = 700


def estimate_int8_bytes(values: dict) -> int:
    """Size of the full-integer .tflite file of `build_cnn(values)`, estimated without building it.

    Batch norm is folded into the convs by the converter, so it adds no bytes.
    """
    return INT8_FIXED_BYTES + sum(w + INT8_BYTES_PER_CHANNEL * units + (INT8_BYTES_PER_CONV if kind != "dense" else 0)
                                  for kind, w, units in _weight_layers(values))


class CNNHyperModel(keras_tuner.HyperModel):
    """Keras Tuner hypermodel over a `SearchSpace`: builds and compiles, nothing else.

    Training (input pipeline, budgets, callbacks) belongs to the tuner in `tuning.search`.
    """

    def __init__(self, space: SearchSpace, steps_per_execution: int = 1, dtype: str | None = None):
        super().__init__(name=f"cnn_{space.name}")
        self.space, self.steps_per_execution, self.dtype = space, steps_per_execution, dtype

    def build(self, hp):
        values = sample(self.space, hp)
        model = build_cnn(values, dtype=self.dtype, fused_bn=True)  # Keras Tuner saves weights only
        compile_model(model, values, steps_per_execution=self.steps_per_execution)
        return model
