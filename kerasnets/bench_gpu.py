r"""GPU figures without TensorFlow: the flagfile recipes trained on Keras's JAX backend.

  KERAS_BACKEND=jax python -m kerasnets.bench_gpu --flagfile=flags/default.flags \
      --precision=mixed_float16

Why this exists: a GPU machine may have Keras and JAX but no way to install
TensorFlow's GPU build (the NVIDIA H100/H200 machines our GPU figures come from
are offline, take at most 64 MiB of extra files, and have CUDA 13, while
TensorFlow's wheel alone is 573 MB and its GPU build needs CUDA 12 libraries),
so kerasnets-train (tf.data, tf.distribute) cannot run there. Keras 3 runs the very
same models (kerasnets.models) and compiled recipe (kerasnets.recipe: optimizer,
schedule, loss) on JAX, which that machine has. Only the input pipeline is
re-expressed: each epoch's augmentation (the same uniform rotation and shift,
the same output-to-input affine maps about the image centre, bilinear sampling
with zero fill, rounding back to uint8 — kerasnets.pipeline) is one jitted JAX
call over the whole training set on the accelerator, and each epoch is a fresh
seeded permutation. The random draws differ from TensorFlow's, so a run here is
another draw of the same recipe, not a replay of a CPU run. The TensorFlow-only
flags (--strategy, --deterministic, --intra_op_threads) are accepted, so the
flagfiles read unchanged, and ignored.

Prints the course's line per epoch with its seconds; the last line is JSON
(model, parameters, precision, device, seconds_per_epoch, test_accuracy, ...).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Sequence

import numpy as np
from absl import app, flags

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported

import keras  # noqa: E402

from kerasnets import data, models, recipe  # noqa: E402

FLAGS = flags.FLAGS
data.define_data_flags()
recipe.define_flags()


def affine_maps(key, n: int, rotation: float, shift: float, scale: float):
    """[n, 6] output→input pixel maps (a0 a1 a2 b0 b1 b2), as kerasnets.pipeline.affine_transforms."""
    import jax
    import jax.numpy as jnp

    k_angle, k_shift, k_scale = jax.random.split(key, 3)
    angle = jax.random.uniform(k_angle, (n,), minval=-1, maxval=1) * (rotation * math.pi / 180)
    d = jax.random.uniform(k_shift, (n, 2), minval=-shift, maxval=shift)
    s = 1.0 + jax.random.uniform(k_scale, (n,), minval=-scale, maxval=scale)
    cos, sin = jnp.cos(angle) / s, jnp.sin(angle) / s
    c = 13.5  # pixel centre of a 28x28 image
    cx, cy = c + d[:, 0], c + d[:, 1]
    return jnp.stack([cos, sin, c - cos * cx - sin * cy, -sin, cos, c + sin * cx - cos * cy], axis=1)


def make_augmenter(config: recipe.TrainConfig):
    """A jitted (images uint8 [n, 28, 28], seed, epoch) → warped uint8 images."""
    import jax
    import jax.numpy as jnp

    ys, xs = jnp.mgrid[0:28, 0:28].astype(jnp.float32)

    def warp_one(image, m):
        x_in = m[0] * xs + m[1] * ys + m[2]
        y_in = m[3] * xs + m[4] * ys + m[5]
        return jax.scipy.ndimage.map_coordinates(image, [y_in, x_in], order=1, mode="constant",
                                                 cval=0.0)

    @jax.jit
    def augment(images, seed, epoch):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), epoch)
        maps = affine_maps(key, images.shape[0], config.rotation, config.shift, config.scale)
        warped = jax.vmap(warp_one)(images.astype(jnp.float32), maps)
        return jnp.clip(jnp.round(warped), 0, 255).astype(jnp.uint8)

    return augment


class EpochData(keras.utils.PyDataset):
    """Epoch e: a seeded permutation of the training set, augmented on the accelerator
    for e < until_epoch; batches are slices of that epoch's array."""

    def __init__(self, images, labels, config: recipe.TrainConfig, until_epoch: int):
        super().__init__()
        import jax.numpy as jnp

        self.images, self.labels, self.config = images, labels, config
        self.on_device = jnp.asarray(images)
        self.until_epoch, self.epoch = until_epoch, 0
        self.augment = make_augmenter(config)
        self._prepare()

    def _prepare(self):
        order = np.random.default_rng([self.config.seed, self.epoch]).permutation(len(self.images))
        if self.epoch < self.until_epoch:
            x = np.asarray(self.augment(self.on_device, self.config.seed, self.epoch))
        else:
            x = self.images
        self.x, self.y = x[order][..., None], self.labels[order]

    def __len__(self):
        return -(-len(self.images) // self.config.batch_size)

    def __getitem__(self, i):
        b = self.config.batch_size
        return self.x[i * b:(i + 1) * b], self.y[i * b:(i + 1) * b]

    def on_epoch_end(self):
        self.epoch += 1
        self._prepare()


class EpochLog(keras.callbacks.Callback):
    """The course's line and the seconds of each epoch."""

    def __init__(self, test_size: int):
        super().__init__()
        self.test_size, self.rows = test_size, []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        self.rows.append(dict(epoch=epoch + 1, seconds=seconds, train_loss=logs["loss"],
                              train_accuracy=logs["accuracy"], test_loss=logs["val_loss"],
                              test_accuracy=logs["val_accuracy"]))
        correct = int(round(logs["val_accuracy"] * self.test_size))
        print(f"epoch {epoch + 1}: {seconds:.2f} s  "
              f"{recipe.course_line(logs['val_loss'], correct, self.test_size)}", flush=True)


def train(config: recipe.TrainConfig, mnist) -> dict:
    """Trains `config` on the default JAX device; returns the per-epoch figures."""
    import jax

    keras.utils.set_random_seed(config.seed)
    accelerated = jax.default_backend() != "cpu"
    precision = config.precision
    if precision == "auto":
        precision = "mixed_float16" if accelerated else "float32"
    keras.mixed_precision.set_global_policy(precision)
    (x_train, y_train), (x_test, y_test) = recipe.select_examples(config, mnist)
    train_data = EpochData(x_train, y_train, config, recipe.augmented_epochs(config))
    model = recipe.create_model(config, len(train_data))
    log = EpochLog(len(x_test))
    model.fit(train_data, epochs=config.epochs, validation_data=(x_test[..., None], y_test),
              validation_batch_size=1000, callbacks=[log], verbose=0)
    test_acc = [r["test_accuracy"] for r in log.rows]
    trainable, frozen = models.count_params(model)
    return dict(
        model=config.model, trainable_params=trainable, total_params=trainable + frozen,
        backend=f"keras {keras.__version__} on jax {jax.__version__}", precision=precision,
        device=str(jax.devices()[0].device_kind), epochs=len(log.rows),
        seconds_per_epoch=[round(r["seconds"], 3) for r in log.rows],
        median_seconds_per_epoch_after_first=float(np.median([r["seconds"] for r in log.rows[1:]]))
        if len(log.rows) > 1 else None,
        test_accuracy=test_acc, first_epoch_at_99_4=recipe.first_epoch_at(test_acc, 0.994),
        best_test_accuracy=max(test_acc), last3=test_acc[-3:], flags=dataclasses.asdict(config))


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if keras.backend.backend() != "jax":
        print("kerasnets.bench_gpu: error: needs KERAS_BACKEND=jax (kerasnets-train is the "
              "TensorFlow path)", file=sys.stderr)
        return 1
    try:
        mnist = data.load_mnist(FLAGS.data_dir, FLAGS.mnist_path)
    except data.MnistDataError as e:
        print(f"kerasnets.bench_gpu: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(train(recipe.config_from_flags(), mnist)), flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
