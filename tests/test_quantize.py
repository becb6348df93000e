from export import prune, quantize
from tuning import pipeline


def test_qat_keeps_the_zeros_of_pruning(seed, small_legacy_model):
    model, values, x, y, x_val, y_val = small_legacy_model
    train_ds = pipeline.dataset(x, y, 128, seed=seed)
    val_ds = pipeline.dataset(x_val, y_val, 500)
    stripped = prune.strip(prune.prune(model, values, train_ds, val_ds, 0.7, epochs=1, min_weights=1000))
    before = prune.sparsity(stripped, 1000)
    qat = quantize.quantize(stripped, values, train_ds, val_ds, epochs=1)
    assert any("quant" in layer.name for layer in qat.layers)
    assert prune.sparsity(qat, 1000) >= before - 0.005
    images = pipeline.to_inputs(x_val).numpy()
    # Fine-tuning moves predictions; it must not cost accuracy beyond quantization noise.
    accuracy = lambda m: (m.predict(images, verbose=0).argmax(1) == y_val).mean()  # noqa: E731
    assert accuracy(qat) >= accuracy(stripped) - 0.03
