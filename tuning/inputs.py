"""The training input pipeline: uint8 arrays to batched, augmented tf.data.

Augmentation (rotation, zoom, shift, and a left-right flip) is one projective transform per image,
applied to whole batches in parallel map calls. Keeping it out of the model
keeps the exported graph free of training-only layers, and on a 2-core CPU
it costs a fraction of what Keras' augmentation layers inside the model do.
The shuffle and the augmentation draws are seeded, so a seed fixes every epoch's batches.

tf.data's autotuning is off and the parallelism fixed instead. With it on, ending an
iterator (every epoch's end, every validation pass) waited for its tuning thread
(docs/performance.md). Two map calls in parallel and two batches ahead keep up with any
model this toolkit trains on 2 cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

PARALLEL_CALLS = 2  # augmentation map calls in flight
PREFETCH = 2  # batches made ahead of the model


@dataclass(frozen=True)
class Augment:
    rotation: float = 0.0  # degrees
    zoom: float = 0.0  # fraction
    translation: float = 0.0  # fraction of the side
    flip: bool = False  # mirror half the images left to right

    @classmethod
    def from_values(cls, values: dict) -> "Augment":
        return cls(values.get("rotation", 0.0), values.get("zoom", 0.0), values.get("translation", 0.0),
                   bool(values.get("flip", False)))

    @property
    def active(self) -> bool:
        return self.rotation > 0 or self.zoom > 0 or self.translation > 0 or self.flip


def to_inputs(x: np.ndarray | tf.Tensor) -> tf.Tensor:
    """uint8 images (N, H, W, C), or (N, H, W) grey, to the model's input: float32 (N, H, W, C) in [0, 1]."""
    x = tf.cast(x, tf.float32)
    return (x[..., tf.newaxis] if x.shape.rank == 3 else x) / 255.0


def transforms(batch: int, aug: Augment, seed: tf.Tensor, height: int = 28, width: int = 28) -> tf.Tensor:
    """Per-image projective transforms (output pixel -> input pixel) for `height` x `width` images, shape (batch, 8)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0) * (aug.rotation * math.pi / 180.0)
    scale = 1.0 + tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0) * aug.zoom
    dx = tf.random.stateless_uniform([batch], seeds[2], -1.0, 1.0) * (aug.translation * width)
    dy = tf.random.stateless_uniform([batch], seeds[3], -1.0, 1.0) * (aug.translation * height)
    # A flipped image reads its column x from width - 1 - x: the x row of the transform mirrored.
    # Its draws come from a seed of their own, so that the other four are what they were before flips existed.
    flips = tf.random.stateless_uniform([batch], tf.random.experimental.stateless_fold_in(seed, 4)) < 0.5
    mirror = 1.0 - 2.0 * tf.cast(flips, tf.float32) if aug.flip else tf.ones([batch])
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a0 = mirror * tf.cos(angle) / scale
    a1 = -tf.sin(angle) / scale
    b0 = mirror * tf.sin(angle) / scale
    b1 = tf.cos(angle) / scale
    a2 = cx - a0 * cx - a1 * cy - dx
    b2 = cy - b0 * cx - b1 * cy - dy
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment(images: tf.Tensor, aug: Augment, seed: tf.Tensor) -> tf.Tensor:
    """Randomly rotate, zoom, shift and flip a float batch (N, H, W, C); empty space is black."""
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms(batch, aug, seed, height, width), output_shape=[height, width],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")


def dataset(x, y, batch_size: int, aug: Augment | None = None, seed: int | None = None,
            classes: int | None = None) -> tf.data.Dataset:
    """Batches of (images, one-hot labels), one pass. With `seed`, reshuffled every epoch; with `aug`, augmented.

    `classes`: the one-hot depth (the data's class count); None reads it off `y`, for labels that hold every class.
    """
    return _batches(x, y, batch_size, aug, seed, endless=False, classes=classes)


def stream(x, y, batch_size: int, aug: Augment | None, seed: int, classes: int | None = None) -> tf.data.Dataset:
    """Endless batches drawn on through (x, y), reshuffled at every pass: for `fit(steps_per_epoch=...)`."""
    return _batches(x, y, batch_size, aug, seed, endless=True, classes=classes)


def _batches(x, y, batch_size: int, aug: Augment | None, seed: int | None, endless: bool,
             classes: int | None) -> tf.data.Dataset:
    """uint8 (x, y) to batches of model inputs and one-hot labels, gathered in shuffled order when seeded.

    Only positions are shuffled, so the shuffle buffer holds 8 bytes an image, not the image: a
    buffer of the whole train split's images, made for every trial, grew the process every trial.
    """
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    depth = int(tf.reduce_max(y)) + 1 if classes is None else classes
    order = tf.data.Dataset.range(len(y))
    if seed is not None:
        order = order.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    if endless:
        order = order.repeat()
    pairs = order.batch(batch_size).map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
    onehot = lambda labels: tf.one_hot(tf.cast(labels, tf.int32), depth)  # noqa: E731
    if aug is not None and aug.active:
        noise = tf.data.Dataset.random(seed=seed or 0, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(pairs, noise).map(
            lambda pair, s: (augment(to_inputs(pair[0]), aug, s), onehot(pair[1])),
            num_parallel_calls=PARALLEL_CALLS, deterministic=True)
    else:
        ds = pairs.map(lambda xb, yb: (to_inputs(xb), onehot(yb)), num_parallel_calls=PARALLEL_CALLS)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH).with_options(options)
