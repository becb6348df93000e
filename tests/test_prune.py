import numpy as np
import pytest

from mnist_opt.export import prune
from mnist_opt.tuning import inputs


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_pruning_reaches_target_and_strip_keeps_predictions(seed, small_legacy_model, target):
    model, values, x, y, x_val, y_val = small_legacy_model
    before = [w.copy() for w in model.get_weights()]
    train_ds = inputs.dataset(x, y, 128, seed=seed)
    val_ds = inputs.dataset(x_val, y_val, 500)
    pruned = prune.prune(model, values, train_ds, val_ds, target, epochs=1, min_weights=1000)
    stripped = prune.strip(pruned)
    assert abs(prune.sparsity(stripped, 1000) - target) <= 0.02
    images = inputs.to_inputs(x_val).numpy()
    np.testing.assert_array_equal(stripped.predict(images, verbose=0), pruned.predict(images, verbose=0))
    # The input model is untouched: stages never train it in place.
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Small kernels stay dense.
    assert all(not prune.prunable(layer, 1000) or layer.kernel.shape.num_elements() >= 1000
               for layer in stripped.layers)


def test_sparsity_of_a_dense_model_is_zero(seed, small_legacy_model):
    assert prune.sparsity(small_legacy_model[0], 1000) == 0.0
