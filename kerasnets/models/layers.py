"""The one custom layer: BatchNormalization computed by TensorFlow's fused kernel.

Keras 3's BatchNormalization computes moments, normalisation and the moving
averages as separate elementwise ops; on a CPU that made the course's network
train markedly slower than the same network in PyTorch, whose batch norm is one
fused kernel (`kerasnets-bench --what=train --compare_torch`; figures in
docs/performance.md). `FusedBatchNorm` is the same layer — same weights, same config, same
saved form — whose forward pass on 4-D NHWC inputs is the single
`FusedBatchNormV3` op; other inputs use the Keras implementation.

Under a tf.distribute strategy the moving statistics are averaged over the
replicas (each computes them on its own batch). One deliberate difference from
Keras: the moving variance is updated with the unbiased
batch variance (n / (n - 1) correction), as FusedBatchNormV3 — and PyTorch, the
course's framework — do; Keras's own layer uses the biased one.

It is registered as a Keras serializable ("kerasnets>FusedBatchNorm"), so
`.keras` files load with safe_mode=True once this module is imported
(`kerasnets.load_model` does that).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="kerasnets")
class FusedBatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization, fused on the TensorFlow backend for NHWC and 2-D inputs."""

    def add_weight(self, *args, **kwargs):
        # The moving statistics are averaged over replicas when assigned under a tf.distribute
        # strategy (as tf.keras did): otherwise each worker keeps its own, and the workers of
        # one synchronous run would end with different models.
        if kwargs.get("trainable") is False:
            kwargs.setdefault("aggregation", "mean")
        return super().add_weight(*args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        if (keras.backend.backend() != "tensorflow" or mask is not None or self.renorm
                or self.synchronized or rank not in (2, 4) or self.axis % rank != rank - 1
                or not (self.scale and self.center)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only on the TensorFlow backend: the models also load on JAX/torch

        x = tf.cast(inputs, tf.float32)  # as Keras does: statistics in float32 under mixed precision
        if rank == 2:
            x = x[:, None, None, :]
        common = dict(x=x, scale=self.gamma.value, offset=self.beta.value,
                      epsilon=self.epsilon, data_format="NHWC")
        if training and self.trainable:
            y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                mean=self.moving_mean.value, variance=self.moving_variance.value,
                exponential_avg_factor=1.0 - self.momentum, is_training=True, **common)
            self.moving_mean.assign(mean)          # already the moving averages
            self.moving_variance.assign(variance)
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                mean=self.moving_mean.value, variance=self.moving_variance.value,
                is_training=False, **common)
        if rank == 2:
            y = y[:, 0, 0, :]
        return tf.cast(y, self.compute_dtype)
