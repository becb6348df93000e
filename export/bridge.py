"""Moving a tuned Keras 3 model into tf_keras, the only Keras tensorflow-model-optimization takes.

The architecture is rebuilt from the same hyperparameters by the one
definition in `tuning.architecture`, the weights are copied over in layer
order, and the two models must then agree. A mismatch is an error.
"""

from __future__ import annotations

import numpy as np
import tf_keras

from mnist_opt.errors import BridgeMismatch
from mnist_opt.tuning.architecture import build_cnn

TOLERANCE = 1e-5  # max absolute difference of probabilities: float32 rounding, nothing more


def to_tf_keras(model, values: dict, images: np.ndarray) -> tuple[tf_keras.Model, float]:
    """Rebuild `model` (Keras 3) in tf_keras with its weights; return it and the measured max difference."""
    legacy = build_cnn(values, tf_keras)
    weights = model.get_weights()
    expected = [w.shape for w in legacy.get_weights()]
    if [w.shape for w in weights] != expected:
        raise BridgeMismatch(f"tf_keras rebuild has weight shapes {expected}, the tuned model "
                             f"{[w.shape for w in weights]}: best_hparams.json does not describe best.keras")
    legacy.set_weights(weights)
    diff = float(np.max(np.abs(model.predict(images, verbose=0) - legacy.predict(images, verbose=0))))
    if not diff <= TOLERANCE:
        raise BridgeMismatch(f"tf_keras rebuild disagrees with the tuned model: max |p - p'| = {diff:.3g} "
                             f"> {TOLERANCE:g} on {len(images)} validation images")
    return legacy, diff
