"""The tf.data input pipeline for MNIST: seeded, epoch-addressable, batched augmentation.

Design (each choice measured with `kerasnets-bench --what=input`; figures in
docs/performance.md):

* The uint8 arrays live in memory as tensors (that *is* the cache); an epoch is a
  seeded permutation of indices, batched, and each batch is one `tf.gather`, so
  no per-image tf.data work is done at all.
* Epoch e's order and augmentation depend only on (seed, e), never on how many
  epochs this process has already iterated: a run resumed at epoch k sees the
  very batches an uninterrupted run would, which makes resume-after-kill give
  the same history.
* Pixels stay raw uint8 0..255 all the way into the model; the normalisation is
  the model's first layer (kerasnets.models.convnets), so a saved model takes raw pixels.
* Augmentation is one batched affine warp per batch (random rotation, shift and
  optional scale) with `ImageProjectiveTransformV3`, the kernel Keras's own
  RandomRotation uses, driven by stateless random numbers, so it is
  deterministic whatever the parallelism; the result is rounded back to uint8.
* Fixed parallelism, tf.data's autotuning off: with autotuning, some training
  processes on a small CPU settled at half speed for their whole life (one core
  idle); a fixed number of batches prepared in parallel and prefetched did not.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from kerasnets.data.augmentation import Augment  # noqa: F401 -- pipeline.Augment, as before

def parallel_batches(cpu_count: int | None) -> int:
    """Batches prepared in parallel and batches prefetched on `cpu_count` cores (None:
    unknown): one per core, at least two."""
    return max(2, cpu_count or 1)


PARALLEL_BATCHES = parallel_batches(os.cpu_count())


def affine_transforms(batch: tf.Tensor, augment: Augment, seed: tf.Tensor) -> tf.Tensor:
    """[batch, 8] projective transforms (output → input pixel maps) about the image centre."""
    n = tf.shape(batch)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([n], seeds[0], -1, 1) * (augment.rotation * math.pi / 180)
    shift = tf.random.stateless_uniform([n, 2], seeds[1], -augment.shift, augment.shift)
    scale = 1.0 + tf.random.stateless_uniform([n], seeds[2], -augment.scale, augment.scale)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    c = 13.5  # pixel centre of a 28x28 image
    cx, cy = c + shift[:, 0], c + shift[:, 1]
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, sin, c - cos * cx - sin * cy,
                     -sin, cos, c + sin * cx - cos * cy, zeros, zeros], axis=1)


def warp(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """A uint8 batch [n, 28, 28, 1] through [n, 8] output→input pixel maps: bilinear
    sampling, zero outside the image, rounded back to uint8."""
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32), transforms=transforms,
        output_shape=tf.shape(images)[1:3], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT")
    return tf.cast(tf.clip_by_value(tf.round(warped), 0, 255), tf.uint8)


def augment_batch(images: tf.Tensor, augment: Augment, seed: tf.Tensor) -> tf.Tensor:
    """Randomly rotates, shifts (and scales) a uint8 batch [n, 28, 28, 1]; returns uint8."""
    return warp(images, affine_transforms(images, augment, seed))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def train_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int = 0,
                  augment: Augment | None = None, first_epoch: int = 0, epochs: int = 1,
                  deterministic: bool = True) -> tf.data.Dataset:
    """Epochs first_epoch..epochs-1 back to back, each a fresh seeded shuffle.

    Yields (uint8 images [b, 28, 28, 1], uint8 labels [b]); the last batch of an
    epoch may be smaller. Use with `steps_per_epoch(len(images), batch_size)`.
    """
    x = tf.constant(images.reshape(-1, 28, 28, 1), tf.uint8)
    y = tf.constant(labels, tf.uint8)
    n = int(x.shape[0])

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack(
            [tf.constant(seed, tf.int64), e]))
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
        return batches.map(lambda i, idx: (e, i, idx))

    def load(e, i, idx):
        images, labels = tf.gather(x, idx), tf.gather(y, idx)
        if augment is None:
            return images, labels
        warp = lambda: augment_batch(images, augment, tf.stack([seed * 1_000_003 + e, i]))  # noqa: E731
        if augment.until_epoch is None:
            return warp(), labels
        return tf.cond(e < augment.until_epoch, warp, lambda: images), labels

    options = fixed_parallelism()
    options.deterministic = deterministic
    return (tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch)
            .map(load, num_parallel_calls=PARALLEL_BATCHES)
            .prefetch(PARALLEL_BATCHES).with_options(options))


def fixed_parallelism() -> tf.data.Options:
    """tf.data options with autotuning off (see the module docstring for why)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def test_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """The test set in its original order, batched, never augmented."""
    ds = tf.data.Dataset.from_tensor_slices((images.reshape(-1, 28, 28, 1), labels))
    return ds.batch(batch_size).cache().prefetch(PARALLEL_BATCHES).with_options(fixed_parallelism())


def make_datasets(data, batch_size: int, seed: int = 0, augment: Augment | None = None,
                  first_epoch: int = 0, epochs: int = 1, deterministic: bool = True,
                  eval_batch_size: int = 1000):
    """(train, test) datasets from load_mnist()'s ((x_train, y_train), (x_test, y_test))."""
    (x_train, y_train), (x_test, y_test) = data
    return (train_dataset(x_train, y_train, batch_size, seed, augment, first_epoch, epochs,
                          deterministic),
            test_dataset(x_test, y_test, eval_batch_size))
