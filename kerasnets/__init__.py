"""kerasnets: a backprop workbench (Part 1) and small MNIST convnets (Part 2) in Keras 3.

The public API, imported on first use (so `import kerasnets` loads neither
TensorFlow nor Keras and changes no global setting):

  load_model(path, model_code=None)  a .keras file, loaded safely (model_code: the file
                                     defining a model of your own's custom layers)
  build_model(name)                  a fresh model: seed, default, wide or fast, or your
                                     own, "my_net.py:build" (docs/training.md)
  load_mnist(data_dir, mnist_path)   MNIST offline, like keras.datasets.mnist.load_data()
  TrainConfig, recipe_path(name)     a run's definition; a named recipe's flagfile
  train(config, data, model_dir)     train with resume and write the run's files
  export_version(model, base)        the next version (SavedModel, ONNX, LiteRT), for serving

The commands (kerasnets-train, ...) are in kerasnets.cli; see README.md.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_model": "kerasnets.models.convnets",
    "build_model": "kerasnets.models.convnets",
    "load_mnist": "kerasnets.data.offline",
    "TrainConfig": "kerasnets.training.recipe",
    "recipe_path": "kerasnets.training.recipe",
    "train": "kerasnets.training.fit",
    "export_version": "kerasnets.serving.export",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'kerasnets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
