"""The exact size of a design's full-integer file, before it is trained: what frontier budgets are checked against."""

from __future__ import annotations

import numpy as np
import tf_keras

from mnist_opt.export.tflite import convert
from mnist_opt.tuning.architecture import build_cnn


def int8_bytes(values: dict, representative: np.ndarray) -> int:
    """The size of the full-integer .tflite file of `build_cnn(values)`, converted with random weights.

    Not with its initial weights: the converter stores equal constant tensors once, so the zero biases
    of an untrained model made its file smaller than the trained one's (docs/experiments.md).
    """
    model = build_cnn(values, tf_keras)
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return len(convert(model, "int8", representative))
