"""Weight clustering and PCQAT on a small trained model: few values per kernel, zeros kept, files agree."""

import gzip

import pytest

from mnist_opt.export import cluster, flatbuffer, litert, prune, quantize, tflite
from mnist_opt.tuning import inputs

CLUSTERS = 8
MIN_WEIGHTS = 1000


@pytest.fixture(scope="module")
def datasets(small_legacy_model):
    _, _, x, y, x_val, y_val = small_legacy_model
    return inputs.dataset(x, y, 128, seed=0), inputs.dataset(x_val, y_val, 500), inputs.to_inputs(x_val).numpy()


def agreement(model, data: bytes, images) -> float:
    return float((litert.predict(data, images).argmax(1) == model.predict(images, verbose=0).argmax(1)).mean())


def test_clustered_kernels_hold_at_most_n_values_and_the_file_compresses_better(seed, small_legacy_model, datasets):
    model, values, *_ = small_legacy_model
    train_ds, val_ds, images = datasets
    clustered = cluster.cluster(model, values, train_ds, val_ds, CLUSTERS, epochs=1, min_weights=MIN_WEIGHTS)
    counts = cluster.distinct_values(clustered, MIN_WEIGHTS)
    assert counts and all(n <= CLUSTERS for n in counts.values()), counts
    assert all(n > CLUSTERS for n in cluster.distinct_values(model, MIN_WEIGHTS).values())  # the source was not
    representative = images[:100]
    plain, clustered_file = (tflite.convert(m, "int8", representative) for m in (model, clustered))
    assert agreement(clustered, clustered_file, images) >= 0.98
    assert len(gzip.compress(clustered_file, 9)) < 0.85 * len(gzip.compress(plain, 9))
    assert all(k["distinct"] <= CLUSTERS for k in flatbuffer.kernels(clustered_file, MIN_WEIGHTS).values())


def test_pcqat_keeps_the_sparsity_and_the_clusters(seed, small_legacy_model, datasets):
    model, values, *_ = small_legacy_model
    train_ds, val_ds, images = datasets
    pruned = prune.strip(prune.prune(model, values, train_ds, val_ds, 0.7, epochs=1, min_weights=MIN_WEIGHTS))
    clustered = cluster.cluster(pruned, values, train_ds, val_ds, CLUSTERS, epochs=1, min_weights=MIN_WEIGHTS,
                                preserve_sparsity=True)
    assert abs(prune.sparsity(clustered, MIN_WEIGHTS) - prune.sparsity(pruned, MIN_WEIGHTS)) <= 0.02
    pcqat = quantize.quantize(clustered, values, train_ds, val_ds, epochs=1, preserve="clusters")
    data = tflite.convert(pcqat, "int8", images[:100])
    kernels = flatbuffer.kernels(data, MIN_WEIGHTS)
    assert len(kernels) == len(cluster.distinct_values(pruned, MIN_WEIGHTS))  # every clustered kernel is there
    for name, k in kernels.items():
        assert abs(k["zeros"] - prune.sparsity(pruned, MIN_WEIGHTS)) <= 0.02, (name, k)  # each kernel, not just on average
        assert k["distinct"] <= CLUSTERS, (name, k)
    assert agreement(pcqat, data, images) >= 0.98
