"""The MNIST convnets, each one `keras.Sequential` that reads top to bottom.

Every model takes raw pixels (uint8 or float, 0..255, shape (28, 28, 1)) and
normalises them in its first layer, so a saved model accepts what a client
sends. The final softmax is float32 even under a mixed-precision policy.

  seed     the course's network, exactly: 19,130 trainable parameters
  default  our compact model: under 8,000 trainable parameters
  wide     our best model under 20,000 trainable parameters
"""

from __future__ import annotations

import keras
from keras import layers

MEAN, STD = 0.1307, 0.3081  # of MNIST training pixels on the 0..1 scale
INPUT_SHAPE = (28, 28, 1)


def normalize() -> layers.Layer:
    """(pixels / 255 - MEAN) / STD as one built-in (safe to load) Rescaling layer."""
    return layers.Rescaling(scale=1.0 / (255.0 * STD), offset=-MEAN / STD, name="normalize")


def probabilities() -> layers.Layer:
    return layers.Activation("softmax", dtype="float32", name="probabilities")


def conv_bn_relu(filters: int, kernel: int = 3) -> list[layers.Layer]:
    """Conv (no bias: BatchNorm's beta is the bias) → BatchNorm → ReLU."""
    return [layers.Conv2D(filters, kernel, use_bias=False), layers.BatchNormalization(),
            layers.ReLU()]


def seed_model() -> keras.Sequential:
    """The course's network: 3x3 valid convs with bias, each followed by ReLU then BatchNorm."""
    return keras.Sequential([
        keras.Input(INPUT_SHAPE, name="images"),
        normalize(),
        layers.Conv2D(16, 3, activation="relu"), layers.BatchNormalization(),   # 26x26
        layers.Conv2D(16, 3, activation="relu"), layers.BatchNormalization(),   # 24x24
        layers.MaxPooling2D(2), layers.Dropout(0.2),                            # 12x12
        layers.Conv2D(16, 3, activation="relu"), layers.BatchNormalization(),   # 10x10
        layers.Dropout(0.2),
        layers.Conv2D(16, 3, activation="relu"), layers.BatchNormalization(),   # 8x8
        layers.Dropout(0.2),
        layers.Conv2D(64, 3, activation="relu"), layers.BatchNormalization(),   # 6x6
        layers.GlobalAveragePooling2D(), layers.Dropout(0.1),
        layers.Dense(32, activation="relu"), layers.BatchNormalization(), layers.Dropout(0.1),
        layers.Dense(10),
        probabilities(),
    ], name="seed")


def default_model() -> keras.Sequential:
    """Compact: 7.7k parameters, no dense layer; the last conv's 10 maps are averaged to logits."""
    return keras.Sequential([
        keras.Input(INPUT_SHAPE, name="images"),
        normalize(),
        *conv_bn_relu(10),                       # 26x26
        *conv_bn_relu(16),                       # 24x24
        layers.MaxPooling2D(2),                  # 12x12
        *conv_bn_relu(16),                       # 10x10
        *conv_bn_relu(16),                       # 8x8
        layers.Conv2D(10, 3),                    # 6x6, one map per class
        layers.GlobalAveragePooling2D(),
        probabilities(),
    ], name="default")


def wide_model() -> keras.Sequential:
    """Wider and deeper within 20k parameters: 32-channel blocks, a 1x1 squeeze after pooling."""
    return keras.Sequential([
        keras.Input(INPUT_SHAPE, name="images"),
        normalize(),
        *conv_bn_relu(16),                       # 26x26
        *conv_bn_relu(32),                       # 24x24
        layers.MaxPooling2D(2),                  # 12x12
        *conv_bn_relu(16, kernel=1),             # 12x12, squeeze
        *conv_bn_relu(32),                       # 10x10
        *conv_bn_relu(32),                       # 8x8
        layers.Conv2D(10, 1),                    # 8x8, one map per class
        layers.GlobalAveragePooling2D(),
        probabilities(),
    ], name="wide")


BUILDERS = {"seed": seed_model, "default": default_model, "wide": wide_model}


def build_model(name: str) -> keras.Sequential:
    """A fresh, uncompiled model: 'seed', 'default' or 'wide'."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[name]()


def count_params(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts."""
    trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
    frozen = sum(int(v.numpy().size) for v in model.non_trainable_weights)
    return trainable, frozen
