"""kerasnets: a backprop workbench (Part 1) and small MNIST convnets (Part 2) in Keras 3.

Command-line tools are `kerasnets-<command>` (also `python -m kerasnets.<module>`);
see README.md.
"""

import os

# TensorFlow's C++ info and warning logs (per-op notices during training) bury
# the commands' own output. Quiet by default; set the variable yourself to see
# them. (A few lines TensorFlow prints while loading, before its logging starts,
# cannot be silenced this way.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["load_model"]


def load_model(path: str, compile: bool = True):
    """Loads a kerasnets `.keras` model safely; see `kerasnets.models.load_model`."""
    from kerasnets import models  # imports Keras/TensorFlow only when asked

    return models.load_model(path, compile=compile)
