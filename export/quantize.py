"""Quantization-aware training that keeps the pruning, or the clusters (tfmot's collaborative optimization)."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from mnist_opt.export.prune import copy
from mnist_opt import workarounds
from mnist_opt.tuning.architecture import compile_model

FINE_TUNE_LR = 0.1  # fraction of the tuned learning rate: the weights are already trained and pruned


def quantize(model: tf_keras.Model, values: dict, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset,
             epochs: int, callbacks=(), preserve: str = "pruning") -> tf_keras.Model:
    """Quantization-aware fine-tuning of a stripped pruned (or clustered) model; zeros stay zeros.

    preserve="pruning": Default8BitPrunePreserveQuantizeScheme, the sparsity pattern survives the
    QAT updates (PQAT). preserve="clusters": Default8BitClusterPreserveQuantizeScheme with its
    sparsity kept (through `workarounds.cluster_preserve_scheme`), each kernel keeps its clusters
    and its zeros (PCQAT). Returns the QAT model, ready for conversion.
    """
    schemes = {"pruning": tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme,
               "clusters": workarounds.cluster_preserve_scheme}
    annotated = tfmot.quantization.keras.quantize_annotate_model(copy(model))
    with workarounds.quiet_cqat_fallback():
        qat = tfmot.quantization.keras.quantize_apply(annotated, schemes[preserve]())
    compile_model(qat, values, k=tf_keras, learning_rate=values["learning_rate"] * FINE_TUNE_LR)
    if epochs > 0:
        qat.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return qat
