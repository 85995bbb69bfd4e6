"""The MNIST convnets, each one `keras.Sequential` that reads top to bottom.

Every model takes raw pixels (uint8 or float, 0..255, shape (28, 28, 1)) and
normalises them in its first layer, so a saved model accepts what a client
sends. The final softmax is float32 even under a mixed-precision policy.

  seed     the course's network, exactly: 19,130 trainable parameters
  default  our compact model: under 8,000 trainable parameters
  wide     our best model under 20,000 trainable parameters
  fast     a space-to-depth stem, then four blocks at 12x12 and below: under
           20,000 trainable parameters, for flags/fast.flags (4 epochs)

Non-trainable weights (BatchNorm's moving statistics, the fixed blur of
`blur_pool`) are not counted against the budgets: only trainable ones are.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import keras
import numpy as np
from keras import layers

# The model errors live in kerasnets.errors (light commands report them without Keras);
# convnets.ModelFileError and the others stay importable from here.
from kerasnets.errors import ModelFileError, ModelFileNotFoundError, NotAnMnistModelError
from kerasnets.models import user_code
from kerasnets.models.layers import FusedBatchNorm
from kerasnets.models.user_code import ModelReferenceError

MEAN, STD = 0.1307, 0.3081  # of MNIST training pixels on the 0..1 scale
INPUT_SHAPE = (28, 28, 1)


def normalize() -> layers.Layer:
    """(pixels / 255 - MEAN) / STD as one built-in (safe to load) Rescaling layer."""
    return layers.Rescaling(scale=1.0 / (255.0 * STD), offset=-MEAN / STD, name="normalize")


def probabilities() -> layers.Layer:
    return layers.Activation("softmax", dtype="float32", name="probabilities")


def batch_norm(layer_class: type = FusedBatchNorm) -> layers.Layer:
    """BatchNorm (by default one fused kernel: kerasnets.models.layers; kerasnets-bench passes
    keras.layers.BatchNormalization to measure what that gains) with PyTorch's defaults,
    the course's framework: running statistics updated with weight 0.1 (Keras momentum
    0.9), eps 1e-5. Keras's own 0.99 lags far behind on short runs: a model trained for a
    few hundred steps would evaluate with stale statistics."""
    return layer_class(momentum=0.9, epsilon=1e-5)


def conv_bn_relu(filters: int, bn: type = FusedBatchNorm) -> list[layers.Layer]:
    """3x3 conv (valid padding; no bias: BatchNorm's beta is the bias) → BatchNorm → ReLU."""
    return [layers.Conv2D(filters, 3, use_bias=False), batch_norm(bn), layers.ReLU()]


def blur_pool() -> list[layers.Layer]:
    """Anti-aliased max-pooling (Zhang 2019, "Making convolutional networks shift-invariant
    again"): the max over 2x2 windows at stride 1, then a fixed [1, 2, 1] x [1, 2, 1] / 16
    blur sampled at stride 2, so a digit shifted by a pixel gives nearly the same pooled
    features. Output 24x24 -> 12x12 and 8x8 -> 4x4, as MaxPooling2D(2); no trainable
    parameters (the blur is a frozen built-in DepthwiseConv2D, safe to load)."""
    blur = [[[[a * b / 16.0]] for b in (1, 2, 1)] for a in (1, 2, 1)]  # (3, 3, 1, 1)
    return [layers.MaxPooling2D(2, strides=1),
            layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False,
                                   depthwise_initializer=keras.initializers.Constant(blur),
                                   trainable=False)]


def max_pool() -> list[layers.Layer]:
    """A plain 2x2 max-pool at stride 2 (the `fast` model's)."""
    return [layers.MaxPooling2D(2)]


def space_to_depth() -> list[layers.Layer]:
    """Each 2x2 block of pixels becomes one pixel of 4 channels: 28x28x1 -> 14x14x4, the
    pixel at (2i + a, 2j + b) landing in channel 2a + b of (i, j) (tf.nn.space_to_depth's
    order, from built-in Reshape and Permute layers, safe to load). Nothing is lost, and
    the convs after it work on a quarter of the positions."""
    return [layers.Reshape((14, 2, 14, 2)), layers.Permute((1, 3, 2, 4)),
            layers.Reshape((14, 14, 4), name="space_to_depth")]


def seed_model(bn: type = FusedBatchNorm) -> keras.Sequential:
    """The course's network: 3x3 valid convs with bias, each followed by ReLU then BatchNorm."""
    return keras.Sequential([
        keras.Input(INPUT_SHAPE, name="images"),
        normalize(),
        layers.Conv2D(16, 3, activation="relu"), batch_norm(bn),   # 26x26
        layers.Conv2D(16, 3, activation="relu"), batch_norm(bn),   # 24x24
        layers.MaxPooling2D(2), layers.Dropout(0.2),                            # 12x12
        layers.Conv2D(16, 3, activation="relu"), batch_norm(bn),   # 10x10
        layers.Dropout(0.2),
        layers.Conv2D(16, 3, activation="relu"), batch_norm(bn),   # 8x8
        layers.Dropout(0.2),
        layers.Conv2D(64, 3, activation="relu"), batch_norm(bn),   # 6x6
        layers.GlobalAveragePooling2D(), layers.Dropout(0.1),
        layers.Dense(32, activation="relu"), batch_norm(bn), layers.Dropout(0.1),
        layers.Dense(10),
        probabilities(),
    ], name="seed")


def five_block_model(widths: tuple[int, int, int, int, int], name: str,
                     bn: type = FusedBatchNorm) -> keras.Sequential:
    """Our design: five conv-BN-ReLU blocks, two anti-aliased max-pools (`blur_pool`), GAP,
    one small dense.

    The second pool (before the last block) lets each of the last block's features
    see the whole digit instead of an 18x18 patch; blurring before subsampling
    (`blur_pool`) keeps the pooled features steady under one-pixel shifts. What each
    gained is measured in docs/experiments.md.
    """
    c1, c2, c3, c4, c5 = widths
    return keras.Sequential([
        keras.Input(INPUT_SHAPE, name="images"),
        normalize(),
        *conv_bn_relu(c1, bn),                       # 26x26, receptive field 3
        *conv_bn_relu(c2, bn),                       # 24x24, 5
        *blur_pool(),                            # 12x12, 8 (plain max-pools: 6)
        *conv_bn_relu(c3, bn),                       # 10x10, 12 (10)
        *conv_bn_relu(c4, bn),                       # 8x8, 16 (14)
        *blur_pool(),                            # 4x4, 22 (16)
        *conv_bn_relu(c5, bn),                       # 2x2, 30 (24)
        layers.GlobalAveragePooling2D(),
        layers.Dense(10),
        probabilities(),
    ], name=name)


DEFAULT_WIDTHS = (8, 16, 16, 16, 12)  # default's channels per block


def default_model(bn: type = FusedBatchNorm) -> keras.Sequential:
    """Compact: 7,826 trainable parameters."""
    return five_block_model(DEFAULT_WIDTHS, "default", bn)


def wide_model(bn: type = FusedBatchNorm) -> keras.Sequential:
    """default's design at 1.5x the width, the last block wider: 19,630 trainable parameters."""
    return five_block_model((12, 24, 24, 24, 28), "wide", bn)


def fast_model(bn: type = FusedBatchNorm) -> keras.Sequential:
    """Built for a trustworthy 99.4 % in seconds (flags/fast.flags): 19,370 trainable
    parameters, none of them at full resolution.

    On a CPU a step of `default` spends most of its time in its first two convs at
    26x26 and 24x24 (memory-bound BatchNorm and ReLU passes over the largest feature
    maps). Here a space-to-depth stem hands 14x14x4 to the first conv, which sees 6x6
    pixels at stride 2, and the budget goes to width instead (timings and accuracies
    against `default`: docs/experiments.md).
    """
    return keras.Sequential([
        keras.Input(INPUT_SHAPE, name="images"),
        normalize(),
        *space_to_depth(),                       # 14x14x4, receptive field 2
        *conv_bn_relu(16, bn),                       # 12x12, 6
        *conv_bn_relu(32, bn),                       # 10x10, 10
        *max_pool(),                             # 5x5, 12
        *conv_bn_relu(32, bn),                       # 3x3, 20
        *conv_bn_relu(16, bn),                       # 1x1, 28: the whole digit
        layers.GlobalAveragePooling2D(),
        layers.Dense(10),
        probabilities(),
    ], name="fast")


BUILDERS = {"seed": seed_model, "default": default_model, "wide": wide_model, "fast": fast_model}


def build_model(name: str, batch_norm_class: type | None = None) -> keras.Model:
    """A fresh, uncompiled model: 'seed', 'default', 'wide' or 'fast', its BatchNorm layers
    of `batch_norm_class` (ours, fused, by default; keras.layers.BatchNormalization to
    compare); or the learner's own, from a reference `PATH.py:FUNCTION` or
    `package.module:FUNCTION` (kerasnets.models.user_code), checked against the contract
    every built-in model keeps (`user_model`)."""
    if user_code.is_reference(name):
        if batch_norm_class not in (None, FusedBatchNorm):  # kerasnets-bench --batchnorm=keras
            raise ModelReferenceError("--batchnorm chooses the built-in models' BatchNorm "
                                      f"layers; --model={name} builds its own")
        return user_model(name)
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(BUILDERS)}, or "
                         f"name your own: {user_code.FORMS}")
    return BUILDERS[name](batch_norm_class or FusedBatchNorm)


def user_model(reference: str) -> keras.Model:
    """The model the referenced function returns, held to the built-in models' contract:
    a Keras model taking float32 pixels 0..255 of shape [batch, 28, 28, 1] and giving
    10 class probabilities, tried on one batch. ModelReferenceError in one line for
    anything else (what is wrong and what is needed)."""
    return checked_model(user_code.call(reference), reference)


def checked_model(model, reference: str, flag: str = "--model") -> keras.Model:
    """`model`, what `reference` gave, if it keeps the built-in models' contract
    (`contract_problem`); else ModelReferenceError naming `flag` and what is wrong."""
    if not isinstance(model, keras.Model):
        raise ModelReferenceError(f"{flag}: {reference} returned {type(model).__name__}, "
                                  "not a Keras model (return keras.Sequential([...]) or "
                                  "keras.Model(inputs, outputs))")
    problem = contract_problem(model)
    if problem:
        raise ModelReferenceError(f"{flag}: {reference}: {problem}")
    return model


CONTRACT_BATCH = 4  # images the contract check runs through a referenced model


def contract_problem(model: keras.Model) -> str | None:
    """What keeps `model` from training and serving as the built-in models do, or None:
    one input (batch, 28, 28, 1), one output (batch, 10), and on a batch of pixels
    0..255 finite probabilities (each row >= 0, summing to 1)."""
    problem = mnist_model_problem(model) or (
        not add_channel_axis(model) and f"its input is {_batch_shape(model.inputs[0].shape)}")
    if problem:
        return (f"{problem}; kerasnets needs input (batch, 28, 28, 1) (start with "
                "keras.Input((28, 28, 1))) and output (batch, 10)")
    pixels = np.random.default_rng(0).integers(0, 256, (CONTRACT_BATCH, *INPUT_SHAPE))
    try:
        out = np.asarray(keras.ops.convert_to_numpy(
            model(pixels.astype("float32"), training=False)), np.float64)
    except Exception as e:  # the user's layers: their own error, in one line
        return (f"it fails on a batch of {CONTRACT_BATCH} images: {type(e).__name__}: "
                f"{user_code.one_line(e)}")
    if out.shape != (CONTRACT_BATCH, 10) or not np.all(np.isfinite(out)):
        return f"it gives non-finite outputs on a batch of {CONTRACT_BATCH} images"
    if np.any(out < 0) or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return ("its outputs are not probabilities (each row must be >= 0 and sum to "
                "1): end it with a softmax, e.g. keras.layers.Activation(\"softmax\", "
                "dtype=\"float32\")")
    return None


def count_params(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts."""
    trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
    frozen = sum(int(v.numpy().size) for v in model.non_trainable_weights)
    return trainable, frozen


def mnist_model_problem(model: keras.Model) -> str | None:
    """What makes `model` unusable as an MNIST classifier, or None if it is one.

    Needed: one input of shape (batch, 28, 28, 1) or (batch, 28, 28), one output of
    shape (batch, 10).
    """
    try:
        model.inputs, model.outputs
    except AttributeError:  # a Sequential model without layers
        return "it has no defined input and output"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return f"it has {len(model.inputs)} inputs and {len(model.outputs)} outputs"
    input_shape = tuple(model.inputs[0].shape)
    output_shape = tuple(model.outputs[0].shape)
    if input_shape[1:] not in (INPUT_SHAPE, INPUT_SHAPE[:2]) or output_shape[1:] != (10,):
        return (f"its input is {_batch_shape(input_shape)} and its output "
                f"{_batch_shape(output_shape)}")
    return None


def add_channel_axis(model: keras.Model) -> bool:
    """Whether [batch, 28, 28] images need a channel axis before `model` takes them."""
    return len(model.inputs[0].shape) == 4


def _batch_shape(shape: tuple) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


def saved_policy(path: str) -> str | None:
    """The dtype policy a `.keras` file's model was saved with (e.g. "mixed_float16"), or
    None when the file does not say."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # keras.saving.load_model reports what is wrong with the file
    dtype = (config.get("config") or {}).get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    return dtype if dtype in ("float32", "mixed_float16", "mixed_bfloat16") else None


def load_model(path: str, compile: bool = True, model_code: str | None = None) -> keras.Model:
    """Loads a `.keras` file written by kerasnets (or any Keras 3 code) with safe_mode=True.

    Our models use built-in Keras layers and one registered layer of ours
    (kerasnets.models.layers.FusedBatchNorm, imported with this module), so nothing needs
    unsafe deserialisation (no lambdas, no pickled code). The model accepts raw 0..255
    images of shape [batch, 28, 28, 1]; with `compile` (default) it keeps its
    optimizer and loss, ready for `fit` (fine-tuning). A model that is not an MNIST
    classifier (other input or output shape) raises NotAnMnistModelError, a file that
    cannot be read ModelFileError.

    A model of the learner's own with custom layers (registered the usual way,
    `keras.saving.register_keras_serializable`) loads when `model_code` names the code
    that defines them: its `PATH.py` or `package.module` (or the run's `--model`
    reference), imported first; it is the user's code, run with their rights. Without
    it the error names the class that is missing. Nothing is imported from the file's
    own directory or config.
    """
    if model_code:
        user_code.import_source(model_code, "--model_code")
    if not str(path).endswith(".keras"):
        raise ModelFileError(f"{path}: not a .keras file (for a SavedModel directory use "
                             "tf.saved_model.load or keras.layers.TFSMLayer)")
    if not os.path.isfile(path):
        raise ModelFileNotFoundError(f"{path}: no such file")
    policy = keras.mixed_precision.global_policy()
    try:
        # Under the policy it was saved with: Keras's Sequential.from_config builds the
        # model under the global policy, and a mixed_float16 model built under float32
        # compiles without its LossScaleOptimizer and drops the saved optimizer state.
        keras.mixed_precision.set_global_policy(saved_policy(path) or policy)
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as e:
        missing = re.search(r"Could not locate class '([^']+)'", str(e))
        if missing:
            raise ModelFileError(
                f"cannot load {path}: it uses the class {missing.group(1)}, which no imported "
                "code registers; name the file that defines it (--model_code=PATH.py, or "
                "load_model(path, model_code=...))") from None
        raise ModelFileError(f"cannot load {path}: {user_code.one_line(e)}") from None
    finally:
        keras.mixed_precision.set_global_policy(policy)
    problem = mnist_model_problem(model)
    if problem:
        raise NotAnMnistModelError(
            f"{path} is not an MNIST model: {problem}; kerasnets needs input (batch, 28, 28, 1) "
            "or (batch, 28, 28) and output (batch, 10)")
    return model
