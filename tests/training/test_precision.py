"""Mixed precision end to end: the smoke recipe trained under --precision=mixed_float16 and
--precision=mixed_bfloat16 (both run on a CPU), then reloaded and exported for serving.

One training run per precision (a module-scoped fixture, ~10-15 s each on 2 cores) is
shared by the tests below. tests/training/test_training.py checks the models' dtypes without
training (test_mixed_precision_keeps_the_softmax_float32).
"""

import dataclasses
import json
import math
import types
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SMOKE
from kerasnets.serving import contract, export
from kerasnets.training import fit

import kerasnets

# The compute dtype of every layer but the float32 softmax, per precision.
COMPUTE_DTYPE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# The smoke recipe: 2 epochs of 32 batches (2,048 images, batch size 64).
STEPS = 2 * 2048 // 64


class _KeepModel(keras.callbacks.Callback):
    """Keeps the model fit trained (training.train returns only the results dict)."""

    def on_train_end(self, logs=None):
        self.trained = self.model


@pytest.fixture(scope="module", params=list(COMPUTE_DTYPE))
def mixed_run(request, real_mnist, tmp_path_factory):
    """The smoke recipe trained in-process under one mixed precision."""
    precision = request.param
    policy_before = keras.mixed_precision.global_policy().name
    keep, lines = _KeepModel(), []
    model_dir = tmp_path_factory.mktemp(precision)
    results = fit.train(dataclasses.replace(SMOKE, precision=precision), real_mnist[0],
                             str(model_dir), log=lines.append, verbose=0, extra_callbacks=[keep])
    return types.SimpleNamespace(
        precision=precision, results=results, model_dir=model_dir, model=keep.trained,
        lines=lines, policy_before=policy_before,
        policy_after=keras.mixed_precision.global_policy().name)


@pytest.fixture(scope="module")
def test_images(real_mnist):
    (_, _), (x_test, y_test) = real_mnist[0]
    return x_test[:1000], y_test[:1000]


def test_the_run_records_its_precision_and_the_model_learns(mixed_run):
    results = mixed_run.results
    assert results["precision"] == mixed_run.precision
    on_disk = json.loads((mixed_run.model_dir / "results.json").read_text())
    assert on_disk["precision"] == on_disk["flags"]["precision"] == mixed_run.precision
    assert len(results["train_loss"]) == 2 and all(map(math.isfinite, results["train_loss"]))
    assert results["train_loss"][1] < results["train_loss"][0]
    # Measured on our CPU: 0.931 (mixed_float16) and 0.923 (mixed_bfloat16) against 0.925 in
    # float32; above 0.85 is a model that learned (chance is 0.10), whatever the kernels.
    assert results["final_test_accuracy"] > 0.85


def test_training_restores_the_global_dtype_policy(mixed_run):
    assert mixed_run.policy_before == "float32"  # Keras's default; no test leaves another set
    assert mixed_run.policy_after == mixed_run.policy_before


def test_loss_scaling_is_on_exactly_under_float16(mixed_run):
    """Keras 3's Model.compile wraps the optimizer in a LossScaleOptimizer when the model's
    dtype policy is mixed_float16 (auto_scale_loss=True, its default): float16 gradients
    underflow without it. bfloat16 has float32's exponent range and needs no scaling."""
    optimizer = mixed_run.model.optimizer
    if mixed_run.precision == "mixed_float16":
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(optimizer.inner_optimizer, keras.optimizers.SGD)
        scale = float(optimizer.dynamic_scale.numpy())
        assert math.isfinite(scale) and scale > 0  # halved at each non-finite step, never to 0
    else:
        assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(optimizer, keras.optimizers.SGD)
    assert int(optimizer.iterations.numpy()) == STEPS


def test_layers_compute_in_half_precision_on_float32_variables(mixed_run):
    model, half = mixed_run.model, COMPUTE_DTYPE[mixed_run.precision]
    *hidden, softmax = model.layers
    assert softmax.name == "probabilities" and softmax.compute_dtype == "float32"
    assert [layer.compute_dtype for layer in hidden] == [half] * len(hidden)
    assert isinstance(hidden[-1], keras.layers.Dense)
    logits = np.zeros((2, 28, 28, 1), np.uint8)
    for layer in hidden:
        logits = layer(logits, training=False)
    assert logits.dtype == half  # the logits really are computed in half precision
    assert {v.dtype for v in model.weights} == {"float32"}
    assert model(np.zeros((2, 28, 28, 1), np.uint8), training=False).dtype == "float32"


def test_the_saved_model_reloads_and_scores_the_same(mixed_run, test_images):
    model = kerasnets.load_model(str(mixed_run.model_dir / "model.keras"))
    half = COMPUTE_DTYPE[mixed_run.precision]
    assert model.layers[1].compute_dtype == half and model.layers[-1].compute_dtype == "float32"
    images, labels = test_images
    probabilities = model.predict(images[..., None], batch_size=1000, verbose=0)
    assert probabilities.dtype == np.float32 and probabilities.shape == (1000, 10)
    # the same weights as at the end of training (same machine: exactly the same accuracy)
    assert np.mean(probabilities.argmax(axis=1) == labels) == pytest.approx(
        mixed_run.results["final_test_accuracy"], abs=1e-9)


def test_the_saved_optimizer_state_reloads_under_the_runs_policy(mixed_run):
    """What resuming from a backup relies on: training.train loads backup/epoch-N/model.keras
    with the run's policy set, and gets the optimizer back with all its state."""
    keras.mixed_precision.set_global_policy(mixed_run.precision)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # "Skipping variable loading for optimizer"
            model = kerasnets.load_model(str(mixed_run.model_dir / "model.keras"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(model.optimizer) is type(mixed_run.model.optimizer)
    assert int(model.optimizer.iterations.numpy()) == STEPS


def test_the_saved_optimizer_state_reloads_under_the_default_policy(mixed_run):
    """kerasnets.load_model promises a model "ready for fit (fine-tuning)", and a fresh process
    (kerasnets-predict, a notebook) loads under Keras's default float32 policy."""
    # Keras's Sequential.from_config builds under the global policy: kerasnets.load_model
    # loads under the file's own policy, so compile wraps the optimizer again and the
    # saved optimizer state loads (no "Skipping variable loading for optimizer").
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = kerasnets.load_model(str(mixed_run.model_dir / "model.keras"))
    assert type(model.optimizer) is type(mixed_run.model.optimizer)
    assert int(model.optimizer.iterations.numpy()) == STEPS
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was


def test_the_exported_savedmodel_keeps_the_signature_contract(mixed_run, test_images, tmp_path):
    # compile=False: serving needs no optimizer
    model = kerasnets.load_model(str(mixed_run.model_dir / "model.keras"), compile=False)
    version = export.export_version(model, str(tmp_path / "mnist"))
    loaded = tf.saved_model.load(version)
    assert contract.signature_problem(loaded.signatures) is None
    images, _ = test_images
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    probabilities, classes = out["probabilities"], out["classes"]
    assert probabilities.dtype == tf.float32 and probabilities.shape == (1000, 10)
    assert classes.dtype == tf.int64 and classes.shape == (1000,)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, atol=1e-3)
    np.testing.assert_array_equal(classes.numpy(), probabilities.numpy().argmax(axis=1))
    # The graph and Keras's predict may round half-precision near-ties differently.
    keras_classes = model.predict(images[..., None], batch_size=1000, verbose=0).argmax(axis=1)
    assert np.mean(classes.numpy() == keras_classes) >= 0.99
    # ONNX and LiteRT files come from a float32 twin (their converters have no half-precision
    # kernels): the same weights, so the same answers but for half-precision near-ties
    from kerasnets.serving import runtimes
    for runtime in ("onnx", "litert"):
        out = runtimes.load(version, runtime)(images)
        assert out["probabilities"].dtype == np.float32
        assert np.mean(out["classes"] == classes.numpy()) >= 0.99, runtime
