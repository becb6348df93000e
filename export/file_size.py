"""The exact flash form and arena of a design, before it is trained: what budgets and arena limits are checked against."""

from __future__ import annotations

import numpy as np
import tf_keras

from mnist_opt.export import flash, micro
from mnist_opt.export.cluster import clusterable
from mnist_opt.export.tflite import convert
from mnist_opt.tuning.architecture import build_cnn


def _int8(values: dict, representative: np.ndarray, clusters: int | None) -> bytes:
    """`build_cnn(values)`'s full-integer file, converted with random weights; with `clusters`, every kernel the
    export clusters holds that many values.

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
    return convert(model, "int8", representative)


def flash_bytes(values: dict, representative: np.ndarray, clusters: int | None = None,
                max_arena: int | None = None) -> int | None:
    """The size of the flash form (`export.flash`) of `build_cnn(values)`'s full-integer file; with `clusters`, of
    its clustered variant's (LUT-compressed where that is smaller). With `max_arena`, of the smallest form whose
    TensorFlow Lite Micro arena fits in that many bytes, or None if none does (a compressed form needs more RAM).

    Unclustered, the slim form: random weights can fall on few enough int8 values to LUT-compress, trained ones
    do not (a kernel's channels have more values than the indices and tables would save).
    """
    int8 = _int8(values, representative, clusters)
    made = {"flash": flash.slim(int8)} if clusters is None else flash.forms(int8)
    sizes = sorted(len(blob) for blob in made.values()
                   if max_arena is None or micro.arena_bytes(blob) <= max_arena)
    return sizes[0] if sizes else None


def arena_bytes(values: dict, representative: np.ndarray) -> int:
    """The smallest TensorFlow Lite Micro arena of `build_cnn(values)`'s slim full-integer form (`micro.arena_bytes`):
    planned by TFLite Micro itself, as the export measures the trained file's. It depends on the tensors' shapes,
    not on the weights."""
    return micro.arena_bytes(flash.slim(_int8(values, representative, None)))
