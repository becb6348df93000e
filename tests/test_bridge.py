import numpy as np
import pytest

from mnist_opt.export import bridge
from mnist_opt.errors import BridgeMismatch
from mnist_opt.tuning.architecture import BASELINE, build_cnn


def _inputs(seed, n=64):
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype="float32")


def test_rebuild_predicts_what_the_tuned_model_does(seed):
    values = dict(BASELINE, conv_blocks=2, filters_1=16, batch_norm=True, dense_units=32, dropout=0.3)
    tuned = build_cnn(values)
    x = _inputs(seed)
    legacy, diff = bridge.to_tf_keras(tuned, values, x)
    assert diff <= bridge.TOLERANCE
    assert type(legacy).__module__.startswith("tf_keras")
    np.testing.assert_allclose(legacy.predict(x, verbose=0), tuned.predict(x, verbose=0), atol=1e-5)


def test_wrong_hyperparameters_are_an_error(seed):
    tuned = build_cnn(BASELINE)
    with pytest.raises(BridgeMismatch, match="does not describe best.keras"):
        bridge.to_tf_keras(tuned, dict(BASELINE, filters_0=16), _inputs(seed))


class _Drifting:
    """A model whose predictions drift from its weights: the bridge must notice."""

    def __init__(self, model):
        self.model = model

    def get_weights(self):
        return self.model.get_weights()

    def predict(self, x, verbose=0):
        return self.model.predict(x, verbose=verbose) + 1e-3


def test_disagreement_is_an_error_not_a_warning(seed):
    with pytest.raises(BridgeMismatch, match=r"max \|p - p'\|"):
        bridge.to_tf_keras(_Drifting(build_cnn(BASELINE)), BASELINE, _inputs(seed))
