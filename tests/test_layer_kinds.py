"""Every layer kind the architecture can build, through the whole export path.

Keras 3 build and training -> bridge to tf_keras -> pruning -> pruning-preserving QAT, clustering and
PCQAT -> full-integer TFLite -> TFLite Micro, with the invariants each step promises: the bridge agrees,
the sparsity is reached and kept, the clusters are kept, each int8 file agrees with its Keras source and
runs in TFLite Micro, and the size and arena estimates are close to the real file's.
"""

import numpy as np
import pytest

from mnist_opt.export import bridge, cluster, file_size, flash, flatbuffer, litert, micro, prune, quantize, tflite
from mnist_opt import data
from mnist_opt.tuning import inputs
from mnist_opt.tuning.architecture import BASELINE, build_cnn, compile_model
from mnist_opt.tuning.limits import ARENA_ERROR
from mnist_opt.tuning.size import ESTIMATE_ERROR, count_params, estimate_flash_bytes, peak_activation_bytes

pytestmark = pytest.mark.slow  # each test trains models through every stage (make test-fast leaves them out)

BN_GAP = dict(BASELINE, conv_blocks=2, convs_per_block=2, filters_0=16, filters_1=32, batch_norm=True,
              global_pooling=True, pool_last=False, dropout=0.1, learning_rate=3e-3)
KINDS = {  # the stride-2 stem, a conv like the others, goes through every stage in "all together"
    "separable": dict(BN_GAP, separable=True),
    "transition": dict(BN_GAP, transition=True),
    "all together": dict(BN_GAP, stem_stride=2, separable=True, transition=True, conv_blocks=3, filters_2=48,
                         dense_units=32),
    # The frontier's lowest-RAM start: a 4-filter stride-2 stem, 5x5 kernels, the last block pooled and flattened.
    "low-RAM flattened": dict(BN_GAP, stem_stride=2, convs_per_block=1, filters_0=4, filters_1=24, kernel_size=5,
                              pool_last=True, global_pooling=False),
}
SPARSITY = 0.6
MIN_WEIGHTS = 1000
CLUSTERS = 16


@pytest.fixture(scope="module")
def split():
    s = data.load_split(0)
    idx = data.stratified_indices(s.y_train, 3000, 0)
    return s.x_train[idx], s.y_train[idx], s.x_val[:500], s.y_val[:500]


@pytest.mark.parametrize("values", KINDS.values(), ids=KINDS.keys())
def test_layer_kind_goes_through_bridge_prune_qat_and_int8(seed, split, values):
    x, y, x_val, y_val = split
    train_ds, val_ds = inputs.dataset(x, y, 32, seed=seed), inputs.dataset(x_val, y_val, 500)
    images = inputs.to_inputs(x_val).numpy()
    model = build_cnn(values, fused_bn=True)
    compile_model(model, values)
    model.fit(train_ds, epochs=2, verbose=0)
    tuned = build_cnn(values)  # what train.train saves: the stock layers, the same weights
    tuned.set_weights(model.get_weights())
    assert tuned.count_params() == count_params(values)

    legacy, diff = bridge.to_tf_keras(tuned, values, images)
    assert diff <= bridge.TOLERANCE
    pruned = prune.strip(prune.prune(legacy, values, train_ds, val_ds, SPARSITY, epochs=1, min_weights=MIN_WEIGHTS))
    reached = prune.sparsity(pruned, MIN_WEIGHTS)
    assert abs(reached - SPARSITY) <= 0.01
    qat = quantize.quantize(pruned, values, train_ds, val_ds, epochs=1)
    assert abs(prune.sparsity(qat, MIN_WEIGHTS) - reached) <= 0.01  # QAT kept the zeros

    accuracy = lambda probs: (probs.argmax(1) == y_val).mean()  # noqa: E731
    # A model that learned: near-ties of an untrained one would make the agreement a coin toss
    # (a half-trained one has more of them than a good one, so this is the harder case).
    assert accuracy(tuned.predict(images, verbose=0)) > 0.5
    sources = {"tuned": legacy, "pruned_qat": qat}
    if values is KINDS["all together"]:
        # Clustering through PCQAT (sparsity-preserving clustering, then cluster-preserving QAT: both of
        # tfmot's clustering paths), on the model that has every layer kind at once: a minute and a
        # half a kind, mostly tfmot building its wrappers. Plain clustering is in test_cluster. A fifth
        # of the data: what is checked is that the clusters and zeros are kept, not accuracy.
        short = train_ds.take(int(train_ds.cardinality()) // 5)
        sources["pcqat"] = quantize.quantize(cluster.cluster(pruned, values, short, val_ds, CLUSTERS, epochs=1,
                                                             min_weights=MIN_WEIGHTS, preserve_sparsity=True),
                                             values, short, val_ds, epochs=1, preserve="clusters")
    representative = images[:100]
    for name, source in sources.items():
        int8 = tflite.convert(source, "int8", representative)
        agree = (litert.predict(int8, images).argmax(1) == source.predict(images, verbose=0).argmax(1)).mean()
        assert agree >= 0.98, (name, agree)
        assert micro.check(int8)["runs"], name
        # What goes on flash, checked by the export on some images, gives the int8 file's outputs on others.
        made, _ = flash.verified_forms(int8, images[:100])
        for form, data in made.items():
            assert np.array_equal(micro.predict(data, images[100:300]), micro.predict(int8, images[100:300])), (name, form)
        kernels = flatbuffer.kernels(int8, MIN_WEIGHTS)
        if name == "pcqat":
            assert kernels and all(k["distinct"] <= CLUSTERS for k in kernels.values()), kernels
            assert abs(flatbuffer.sparsity(kernels) - reached) <= 0.02, kernels
    # What --max-kb and the Pareto search trust: the estimate made before training, against the trained
    # model's file (within ESTIMATE_ERROR on every layer kind).
    slim = flash.slim(tflite.convert(legacy, "int8", representative))
    real = len(slim)
    assert abs(estimate_flash_bytes(values) - real) <= ESTIMATE_ERROR * real, (estimate_flash_bytes(values), real)
    # What --max-arena-kb trusts: the arena planned before training (random weights), against the trained file's.
    measured, before = micro.arena_bytes(slim), file_size.arena_bytes(values, representative)
    assert abs(before - measured) <= ARENA_ERROR * measured, (before, measured)
    assert peak_activation_bytes(values) <= measured
