"""--data_dir and --mnist_path: where a command finds MNIST (kerasnets.data.offline), defined once."""

from __future__ import annotations

import os

from absl import flags

from kerasnets.data import offline

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, f"Our MNIST cache directory (default: ${offline.DATA_DIR_ENV}, "
                    "else $XDG_CACHE_HOME/kerasnets, else ~/.cache/kerasnets).")
flags.DEFINE_string("mnist_path", None, "A Keras-format mnist.npz, or a directory of the four "
                    "MNIST IDX files (gzipped or not).")
flags.register_validator(
    "mnist_path", lambda p: p is None or os.path.exists(p),
    "--mnist_path must be an existing mnist.npz file or IDX directory")
flags.register_validator(
    "data_dir", lambda d: d is None or not os.path.exists(d) or os.path.isdir(d),
    "--data_dir must be a directory (it is created when missing)")
