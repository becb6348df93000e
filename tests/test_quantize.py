import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
import tf_keras

from mnist_opt.export import prune, quantize
from mnist_opt.tuning import inputs
from mnist_opt.tuning.architecture import BASELINE, build_cnn


def test_qat_keeps_the_zeros_of_pruning(seed, small_legacy_model):
    model, values, x, y, x_val, y_val = small_legacy_model
    train_ds = inputs.dataset(x, y, 128, seed=seed)
    val_ds = inputs.dataset(x_val, y_val, 500)
    stripped = prune.strip(prune.prune(model, values, train_ds, val_ds, 0.7, epochs=1, min_weights=1000))
    before = prune.sparsity(stripped, 1000)
    qat = quantize.quantize(stripped, values, train_ds, val_ds, epochs=1)
    wrapped = {layer.layer.name for layer in qat.layers if isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2)}
    kernels = {layer.name for layer in stripped.layers if isinstance(layer, (tf_keras.layers.Conv2D, tf_keras.layers.Dense))}
    assert kernels and wrapped >= kernels  # every conv and dense layer learns its quantization
    assert prune.sparsity(qat, 1000) >= before - 0.005
    images = inputs.to_inputs(x_val).numpy()
    # Fine-tuning moves predictions; it must not cost accuracy beyond quantization noise.
    accuracy = lambda m: (m.predict(images, verbose=0).argmax(1) == y_val).mean()  # noqa: E731
    assert accuracy(qat) >= accuracy(stripped) - 0.03


@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_architecture_keeps_its_zeros_through_qat(seed, batch_norm):
    """tfmot skips the mask of a conv followed by a separate ReLU layer; build_cnn must avoid that."""
    values = dict(BASELINE, conv_blocks=2, convs_per_block=2, filters_0=8, filters_1=32, kernel_size=5,
                  batch_norm=batch_norm, dense_units=32)
    model = build_cnn(values, tf_keras)
    for layer in model.layers:
        if prune.prunable(layer, 1000):
            k = layer.kernel.numpy()
            k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0
            layer.kernel.assign(k)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    ds = inputs.dataset(x, rng.integers(0, 10, 256), 64, seed=seed)
    qat = quantize.quantize(model, values, ds, ds, epochs=1)
    assert abs(prune.sparsity(qat, 1000) - 0.8) <= 0.01
