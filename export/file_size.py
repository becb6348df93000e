"""The exact size of a design's flash form, before it is trained: what frontier budgets are checked against."""

from __future__ import annotations

import numpy as np
import tf_keras

from mnist_opt.export import flash
from mnist_opt.export.cluster import clusterable
from mnist_opt.export.tflite import convert
from mnist_opt.tuning.architecture import build_cnn


def flash_bytes(values: dict, representative: np.ndarray, clusters: int | None = None) -> int:
    """The size of the flash form (`export.flash`) of `build_cnn(values)`'s full-integer file, converted with
    random weights; with `clusters`, of its clustered variant's (every kernel the export clusters holds that
    many values, then LUT-compressed).

    Not with its initial weights: the converter stores equal constant tensors once, so the zero biases
    of an untrained model made its file smaller than the trained one's (docs/experiments.md).
    """
    model = build_cnn(values, tf_keras)
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    for layer in model.layers:
        if clusters is not None and clusterable(layer, clusters):
            kernel, *rest = layer.get_weights()
            centroids = rng.uniform(-1.5, 1.5, clusters).astype(kernel.dtype)
            layer.set_weights([centroids[rng.integers(0, clusters, kernel.shape)], *rest])
    int8 = convert(model, "int8", representative)
    # Unclustered, the slim form: random weights can fall on few enough int8 values to LUT-compress, trained ones
    # do not (a kernel's channels have more values than the indices and tables would save).
    return len(flash.slim(int8) if clusters is None else flash.forms(int8)["flash"])
