"""kerasnets-bench as one library call: `bench(what, config, ...)` runs one benchmark on
plain values and returns its rows and its table.

The command only parses its flags and prints what this returns, so a notebook runs
the same benchmark with the same defaults and gets the same table. Each benchmark
is also a function of its own (`input_table`, `train_table`, `inference_table`,
`time_to_accuracy_table`, `serve_table`, `startup_table`) taking only the values it reads; the
measuring itself is in throughput, time_to_accuracy and serve_load. This module
imports no TensorFlow until a benchmark runs, so the command's --help stays quick.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Sequence

from kerasnets.data import offline
from kerasnets.training import seed_sweep
from kerasnets.serving import runtimes as runtime_files
from kerasnets.training.recipe import TrainConfig

WHAT = ("input", "train", "inference", "time_to_accuracy", "serve", "startup")
INPUT_BATCH_SIZES = (32, 128, 512)
BATCH_NORMS = ("fused", "keras")

Rows = list[dict]


def bench(what: str, config: TrainConfig, *, data_dir: str | None = None,
          mnist_path: str | None = None, batch_sizes: Sequence[int] | None = None,
          timed_batches: int = 200, repeats: int = 3, batchnorm: str = "fused",
          compare_torch: bool = False, calls: int = 1000, seeds: Sequence[int] = (0, 1, 2, 3, 4),
          requests: int = 2000, concurrency: Sequence[int] = (1, 16),
          model_base: str | None = None, inference: str = "auto",
          runtimes: Sequence[str] | None = None,
          log: Callable[[str], None] = print) -> tuple[Rows, str]:
    """Benchmark `what` (one of WHAT) of recipe `config`: (rows, table text).

    One entry point with kerasnets-bench's flags as keywords, so the command is one
    call; each benchmark reads only its own. `batch_sizes` and `runtimes` left as None
    mean the benchmark's own choice (inference: 1, 32, 256; inference, serve and startup:
    the runtimes whose file the version has), as when the flag is not given."""
    from kerasnets.training import fit

    if what not in WHAT:
        raise ValueError(f"unknown benchmark {what!r}; the benchmarks are {', '.join(WHAT)}")
    fit.set_threads(config.intra_op_threads)  # before TensorFlow starts its runtime
    if what == "time_to_accuracy":
        return time_to_accuracy_table(config, seeds, compare_torch, data_dir, mnist_path)
    mnist = offline.load_mnist(data_dir, mnist_path)
    if what == "input":
        return input_table(mnist, batch_sizes or INPUT_BATCH_SIZES, timed_batches)
    if what == "train":
        return train_table(mnist, config, timed_batches, repeats, compare_torch, batchnorm)
    if what == "inference":
        return inference_table(mnist, config.model, model_base, calls, batch_sizes, runtimes,
                               batchnorm, log)
    if what == "startup":
        return startup_table(mnist, model_base, runtimes, repeats, log)
    return serve_table(mnist, requests, concurrency, model_base, runtimes, inference, log)


def input_table(mnist, batch_sizes: Sequence[int], timed_batches: int) -> tuple[Rows, str]:
    """The tf.data pipeline alone, with and without augmentation."""
    from kerasnets.bench import throughput

    rows = throughput.bench_input(mnist, batch_sizes, timed_batches)
    return rows, throughput.format_input_table(rows)


def train_table(mnist, config: TrainConfig, timed_batches: int, repeats: int,
                compare_torch: bool = False, batchnorm: str = "fused") -> tuple[Rows, str]:
    """Training images/s of the recipe (and of the course's network in PyTorch, with the
    ratio under the table)."""
    from kerasnets.bench import throughput

    rows = throughput.bench_train_side_by_side(mnist, config, timed_batches, repeats,
                                               compare_torch, batch_norm_class(batchnorm))
    text = throughput.format_train_table(rows)
    if compare_torch:
        text += f"\nkeras / pytorch images/s: {rows[0]['ratio_to_pytorch']:.2f}"
    return rows, text


def inference_table(mnist, model_name: str, model_base: str | None, calls: int,
                    batch_sizes: Sequence[int] | None = None,
                    runtimes: Sequence[str] | None = None, batchnorm: str = "fused",
                    log: Callable[[str], None] = print) -> tuple[Rows, str]:
    """One version in every runtime side by side (see inference_version and
    present_runtimes for which version and runtimes)."""
    from kerasnets.bench import throughput

    batch_sizes = list(batch_sizes or throughput.INFERENCE_BATCH_SIZES)
    with tempfile.TemporaryDirectory() as scratch:
        version, model = inference_version(model_base, model_name, batch_norm_class(batchnorm),
                                           mnist, scratch)
        wanted = present_runtimes(version, runtimes, log)
        rows = throughput.bench_inference(version, calls, batch_sizes, mnist[1], wanted,
                                          keras_model=model)
    return rows, throughput.format_inference_table(rows, batch_sizes)


def time_to_accuracy_table(config: TrainConfig, seeds: Sequence[int], compare_torch: bool = False,
                           data_dir: str | None = None,
                           mnist_path: str | None = None) -> tuple[Rows, str]:
    """The recipe trained at each seed to its target (one row: the whole report)."""
    from kerasnets.bench import time_to_accuracy

    report = time_to_accuracy.bench_time_to_accuracy(
        config, seeds, compare_torch, seed_sweep.child_data_flags(data_dir, mnist_path))
    return [report], time_to_accuracy.format_report(report)


def serve_table(mnist, requests: int, concurrency: Sequence[int], model_base: str | None = None,
                runtimes: Sequence[str] | None = None, inference: str = "auto",
                log: Callable[[str], None] = print) -> tuple[Rows, str]:
    """kerasnets-serve processes under load, with request batching on and off, for the
    newest version under model_base (else an untrained `default` exported with every
    format): in each runtime of `runtimes`, or (None) in each whose file the version has
    (present_runtimes)."""
    from kerasnets.bench import serve_load
    from kerasnets.models.layers import FusedBatchNorm

    with tempfile.TemporaryDirectory() as scratch:
        version, _ = inference_version(model_base, "default", FusedBatchNorm, mnist, scratch)
        wanted = present_runtimes(version, runtimes, log)
        rows = serve_load.bench_serve(requests, concurrency, os.path.dirname(version),
                                      runtimes=wanted, inference=inference, mnist=mnist)
    return rows, serve_load.format_serve_table(rows)


def startup_table(mnist, model_base: str | None = None, runtimes: Sequence[str] | None = None,
                  repeats: int = 3, log: Callable[[str], None] = print) -> tuple[Rows, str]:
    """Each command's start in a fresh process (help; one-image predict and first served
    answer per runtime) beside `import tensorflow`, with the light paths' goals."""
    from PIL import Image

    from kerasnets.bench import startup
    from kerasnets.models.layers import FusedBatchNorm

    with tempfile.TemporaryDirectory() as scratch:
        version, _ = inference_version(model_base, "default", FusedBatchNorm, mnist, scratch)
        wanted = present_runtimes(version, runtimes, log)
        image = os.path.join(scratch, "seven.png")
        Image.fromarray(mnist[1][0][0]).save(image)  # the first test digit, a 7
        rows = startup.bench_startup(version, image, wanted, repeats)
    return rows, startup.format_startup_table(rows)


def batch_norm_class(name: str) -> type:
    """BatchNorm by name: "fused" (ours, one kernel) or "keras" (Keras's own, for an A/B)."""
    if name not in BATCH_NORMS:
        raise ValueError(f"unknown batchnorm {name!r}; the choices are {', '.join(BATCH_NORMS)}")
    import keras

    from kerasnets.models.layers import FusedBatchNorm
    return FusedBatchNorm if name == "fused" else keras.layers.BatchNormalization


def inference_version(model_base: str | None, model_name: str, batch_norm_class: type, mnist,
                      scratch: str):
    """(version directory, Keras model or None) to measure: the newest version under
    model_base, or an untrained `model_name` exported with every format into scratch
    (and that model, to time it called directly)."""
    from kerasnets.models import convnets
    from kerasnets.serving import export

    export.tf_logger_quiet()
    if model_base:
        version = export.latest_version_dir(model_base)
        if version is None:
            raise convnets.ModelFileError(f"--model_base: {model_base} holds no version")
        return version, None
    model = convnets.build_model(model_name, batch_norm_class)
    version = export.export_version(model, os.path.join(scratch, "mnist"),
                                    formats=export.FORMATS,
                                    calibration_images=export.calibration_sample(mnist[0][0]))
    return version, model


def present_runtimes(version: str, asked: Sequence[str] | None,
                     log: Callable[[str], None] = print) -> list[str]:
    """The runtimes to measure: all of `asked` when named (a missing file is then an error),
    else (None) every runtime whose file the version has, logging which were left out."""
    if asked is not None:
        return list(asked)
    present = [r for r in runtime_files.RUNTIMES if runtime_files.has_file(version, r)]
    for runtime in runtime_files.RUNTIMES:
        if runtime not in present:
            log(f"{runtime}: left out, {version} has no {runtime_files.FILES[runtime]} "
                f"(kerasnets-export --formats=saved_model,...,{runtime} writes it)")
    return present


