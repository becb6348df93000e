"""A faster batch norm for training on CPU: Keras 3's layer through TensorFlow's fused kernel."""

from __future__ import annotations

import keras

from mnist_opt import workarounds


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras 3's BatchNormalization, trained through TensorFlow's fused kernel.

    Keras 3 trains batch norm as a dozen separate ops (moments, then normalize, in float32),
    and on 2 cores that was most of a batch-norm model's step (docs/performance.md). tf_keras
    uses the fused kernel by itself.
    Same variables and the same moving averages (Keras' biased batch variance); inference and
    anything but plain NHWC training is Keras' own code. Only models built to train here use it:
    what is saved is built with the stock layer, so a saved model needs nothing of this package.

    The kernel runs in bfloat16 only on a multiple of 16 channels; on fewer it is slower than Keras'
    layer in bfloat16 and faster in float32, so it computes in float32 there (docs/performance.md).
    The step itself is `workarounds.fused_batch_norm` (it reads Keras' layer settings and variables);
    `build_cnn` uses this layer only where that workaround's probe passes ('fused-batch-norm').
    """

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and mask is None:
            y = workarounds.fused_batch_norm(self, inputs)  # None where the kernel does not apply
            if y is not None:
                return y
        return super().call(inputs, training=training, mask=mask)
