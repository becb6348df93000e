"""Weight clustering with tensorflow-model-optimization: `cluster`, `distinct_values`.

Each kernel's weights are replaced by the nearest of N shared values (centroids), which are
fine-tuned; after `strip` a kernel holds at most N distinct floats, so its flash form stores it
as ceil(log2 N)-bit indices (`export.flash`). Only kernels that this makes smaller are clustered
(`tuning.size.lut_pays`: the first conv's 9 weights a channel, say, cost more in value tables than
their indices save): the others would lose accuracy for no byte. The same rule is what the size
estimate counts, so a budget's clustered model is the size the search expected.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from mnist_opt import workarounds
from mnist_opt.export.prune import copy, kernel, prunable
from mnist_opt.tuning.architecture import compile_model
from mnist_opt.tuning.size import lut_pays

FINE_TUNE_LR = 0.1  # fraction of the tuned learning rate: centroids move little from the trained weights


def cluster(model: tf_keras.Model, values: dict, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset,
            clusters: int, epochs: int, min_weights: int, preserve_sparsity: bool = False,
            callbacks=()) -> tf_keras.Model:
    """Cluster the kernels of a copy of `model` that LUT compression makes smaller to `clusters` values each,
    fine-tune, strip.

    preserve_sparsity: a pruned model's zeros stay zeros (tfmot's sparsity-preserving clustering,
    the first half of PCQAT); then the kernels pruning applied to (at least `min_weights` values) are the ones
    clustered, whether or not their look-up tables pay: the cluster-preserving QAT that follows keeps the zeros
    of clustered kernels only. Returns the stripped model: plain layers with clustered kernels.
    """
    centroids = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
    cluster_weights = workarounds.experimental_cluster_weights()

    def wrap(layer):
        # PCQAT clusters every pruned kernel: its QAT keeps the zeros of clustered kernels only.
        if prunable(layer, min_weights) if preserve_sparsity else clusterable(layer, clusters):
            return cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=centroids,
                                   preserve_sparsity=preserve_sparsity)
        return layer

    clustered = tf_keras.models.clone_model(copy(model), clone_function=wrap)
    compile_model(clustered, values, k=tf_keras, learning_rate=values["learning_rate"] * FINE_TUNE_LR)
    if epochs > 0:
        clustered.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return tfmot.clustering.keras.strip_clustering(clustered)


def clusterable(layer, clusters: int) -> bool:
    """A conv or dense kernel whose flash form is smaller clustered to `clusters` values (`tuning.size.lut_pays`)."""
    if not prunable(layer, 1):
        return False
    shape = getattr(layer, "layer", layer).kernel.shape
    return lut_pays(int(np.prod(shape)), int(shape[-1]), clusters)


def distinct_values(model: tf_keras.Model, min_weights: int) -> dict[str, int]:
    """Distinct values in each kernel that clustering applies to, by layer name."""
    return {layer.name: int(np.unique(kernel(layer)).size) for layer in model.layers if prunable(layer, min_weights)}

