"""A faster batch norm for training on CPU: Keras 3's layer through TensorFlow's fused kernel."""

from __future__ import annotations

import keras
import tensorflow as tf


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras 3's BatchNormalization, trained through TensorFlow's fused kernel.

    Keras 3 trains batch norm as a dozen separate ops (moments, then normalize, in float32),
    and on 2 cores that was most of a batch-norm model's step: one epoch of 12,000 images of a
    3x2-conv, 32-filter model took 5.9 s against 3.2 s without batch norm, and 3.9 s with this
    layer (mixed bfloat16; 5.1 s in float32). tf_keras uses the fused kernel by itself.
    Same variables and the same moving averages (Keras' biased batch variance); inference and
    anything but plain NHWC training is Keras' own code. Only models built to train here use it:
    what is saved is built with the stock layer, so a saved model needs nothing of this package.

    The kernel runs in bfloat16 only on a multiple of 16 channels: on 4, 8 or 12 its bfloat16 form
    was 2-3x slower than Keras' layer, and its float32 form 1.5-4x faster (a step of 32 or 128
    images at 28x28 or 14x14). On 16 and 32 channels bfloat16 was the fastest of the three.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized \
                or len(inputs.shape) != 4 or self.axis not in (-1, 3) or not (self.center and self.scale):
            return super().call(inputs, training=training, mask=mask)
        if inputs.dtype != tf.float32 and inputs.shape[-1] % 16:
            inputs = tf.cast(inputs, tf.float32)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta), epsilon=self.epsilon,
            is_training=True)
        n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
        variance = variance * (n - 1.0) / n  # the kernel's is unbiased; Keras averages the biased one
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)
