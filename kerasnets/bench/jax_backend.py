r"""GPU figures without TensorFlow: the flagfile recipes trained on Keras's JAX backend.

  KERAS_BACKEND=jax python -m kerasnets.bench.jax_backend --recipe=default \
      --precision=mixed_float16

Why this exists: a GPU machine may have Keras and JAX but no way to install
TensorFlow's GPU build (it needs its own CUDA 12 libraries; docs/performance.md
describes the machines the GPU figures come from), so kerasnets-train (tf.data,
tf.distribute) cannot run there. Keras 3 runs the very
same models (kerasnets.models.convnets) and compiled recipe (kerasnets.training.recipe: optimizer,
schedule, loss) on JAX, which that machine has. Only the input pipeline is
re-expressed: each epoch's augmentation (the same uniform rotation and shift,
the same output-to-input affine maps about the image centre, bilinear sampling
with zero fill, rounding back to uint8 — kerasnets.data.pipeline) is one jitted JAX
call over the whole training set on the accelerator, and each epoch is a fresh
seeded permutation. The random draws differ from TensorFlow's, so a run here is
another draw of the same recipe, not a replay of a CPU run. The TensorFlow-only
flags (--strategy, --deterministic, --intra_op_threads) are accepted, so the
flagfiles read unchanged, and ignored.

Prints the course's line per epoch; the last line is JSON: the results dict of
kerasnets-train's results.json (kerasnets.training.records), plus the backend.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import keras
import numpy as np
from absl import app, flags

from kerasnets.data import offline
from kerasnets.training import recipe, records
from kerasnets.cli import command, data_flags, recipe_flags

FLAGS = flags.FLAGS

recipe_flags.define(FLAGS)
flags.adopt_module_key_flags(recipe_flags)
flags.adopt_module_key_flags(data_flags)


def affine_maps(key, n: int, rotation: float, shift: float, scale: float):
    """[n, 6] output→input pixel maps (a0 a1 a2 b0 b1 b2), as kerasnets.data.pipeline.affine_transforms."""
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


def train_on_jax(config: recipe.TrainConfig, mnist, log=print) -> dict:
    """Trains `config` on the default JAX device; returns the results dict (as
    kerasnets-train's results.json, plus the backend and per-epoch timing summary)."""
    import jax

    keras.utils.set_random_seed(config.seed)
    precision = records.resolve_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)
    (x_train, y_train), (x_test, y_test) = recipe.select_examples(config, mnist)
    train_data = EpochData(x_train, y_train, config, recipe.augmented_epochs(config))
    model = recipe.create_model(config, len(train_data))
    history: list[dict] = []
    model.fit(train_data, epochs=config.epochs, validation_data=(x_test[..., None], y_test),
              validation_batch_size=1000, verbose=0,
              callbacks=[records.EpochHistory(history, len(x_test), log)])
    test_loss, test_acc, _ = records.scores(predict(model, x_test), y_test)
    _, train_acc, _ = records.scores(predict(model, x_train), y_train)
    seconds = [row["seconds"] for row in history]
    return records.results_dict(
        config, model, history, (test_loss, test_acc, train_acc), precision, "none", 1,
        backend=f"keras {keras.__version__} on jax {jax.__version__}",
        median_seconds_per_epoch_after_first=float(np.median(seconds[1:]))
        if len(seconds) > 1 else None)


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Softmax outputs for uint8 images [n, 28, 28]."""
    return model.predict(images[..., None], batch_size=1000, verbose=0)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if keras.backend.backend() != "jax":
        return command.fail("needs KERAS_BACKEND=jax (kerasnets-train is the TensorFlow path)")
    mnist = offline.load_mnist(FLAGS.data_dir, FLAGS.mnist_path)
    log = lambda line: print(line, flush=True)  # noqa: E731
    print(json.dumps(train_on_jax(recipe_flags.config(), mnist, log)), flush=True)
    return 0


def run():
    """Entry point of `python -m kerasnets.bench.jax_backend`."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
