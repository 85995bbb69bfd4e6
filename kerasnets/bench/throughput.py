"""Throughput benchmarks: the input pipeline, training steps, and inference paths.

  bench_input       the tf.data pipeline alone, images/s with and without
                    augmentation at several batch sizes
  bench_train       steady-state training images/s of one recipe (beside it, with
                    torch installed, the course's network in PyTorch, and the ratio)
  bench_inference   single-image latency (p50, p99), batched images/s, size and test
                    accuracy of one exported version in every runtime (TensorFlow,
                    ONNX Runtime, LiteRT float and int8) and of the Keras model

Figures are measured after a warm-up and vary between machines; compare ratios
taken in the same run, never absolute numbers from different machines.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import numpy as np

from kerasnets.data import pipeline
from kerasnets.models.layers import FusedBatchNorm
from kerasnets.training.recipe import TrainConfig, create_model

INFERENCE_BATCH_SIZES = (1, 32, 256)


def _epochs_covering(batches: int, per_epoch: int) -> int:
    """Epochs of the pipeline enough to draw `batches` batches (one spare)."""
    return -(-batches // per_epoch) + 1


def bench_input(mnist, batch_sizes: Sequence[int], steps: int, warmup: int = 10) -> list[dict]:
    """images/s of the training pipeline for every (augment, batch size)."""
    (x_train, y_train), _ = mnist
    results = []
    for augment in (None, pipeline.Augment()):
        for batch_size in batch_sizes:
            epochs = _epochs_covering(warmup + steps,
                                      pipeline.steps_per_epoch(len(x_train), batch_size))
            batches = iter(pipeline.train_dataset(x_train, y_train, batch_size, seed=0,
                                                  augment=augment, epochs=epochs))
            for _ in range(warmup):
                next(batches)
            images, start = 0, time.perf_counter()
            for _ in range(steps):
                images += int(next(batches)[1].shape[0])
            seconds = time.perf_counter() - start
            results.append(dict(augment=augment is not None, batch_size=batch_size,
                                images=images, seconds=round(seconds, 4),
                                images_per_second=round(images / seconds)))
    return results


def format_input_table(results: Sequence[dict]) -> str:
    lines = [f"{'augment':>8} {'batch':>6} {'images/s':>10}"]
    lines += [f"{'yes' if r['augment'] else 'no':>8} {r['batch_size']:>6} "
              f"{r['images_per_second']:>10,}" for r in results]
    return "\n".join(lines)


def bench_train(mnist, config: TrainConfig, steps: int, warmup: int = 30,
                batch_norm_class: type = FusedBatchNorm) -> dict:
    """Steady-state images/s of `model.fit` of the recipe's model, optimizer and input
    pipeline on real MNIST (after `warmup` steps)."""
    from kerasnets.training import fit

    config = dataclasses.replace(config, epochs=1, clean_epochs=0)
    batch_size = config.batch_size
    (x_train, y_train), _ = mnist
    per_epoch = pipeline.steps_per_epoch(len(x_train), batch_size)
    ds = pipeline.train_dataset(x_train, y_train, batch_size, augment=fit.augmentation(config),
                                epochs=_epochs_covering(warmup + steps, per_epoch))
    keras_model = create_model(config, per_epoch, batch_norm_class)
    keras_model.fit(ds, epochs=1, steps_per_epoch=warmup, verbose=0, shuffle=False)  # warm-up
    start = time.perf_counter()
    keras_model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return dict(framework="keras", model=config.model, batch_size=batch_size, steps=steps,
                steps_per_execution=config.steps_per_execution, seconds=round(seconds, 3),
                images_per_second=round(steps * batch_size / seconds))


def bench_train_torch(mnist, batch_size: int, steps: int) -> dict:
    from kerasnets.bench import torch_course

    (x_train, y_train), _ = mnist
    ips = torch_course.images_per_second(x_train, y_train, batch_size, steps)
    return dict(framework="pytorch", model="seed", batch_size=batch_size, steps=steps,
                images_per_second=round(ips))


def bench_train_side_by_side(mnist, config: TrainConfig, steps: int, repeats: int,
                             compare_torch: bool, batch_norm_class: type = FusedBatchNorm):
    """Keras (and PyTorch) alternately `repeats` times; each row is the median run.

    Alternating in one process makes the ratio fair on a machine whose speed drifts."""
    runs = {"keras": [], "pytorch": []}
    for _ in range(repeats):
        runs["keras"].append(bench_train(mnist, config, steps,
                                         batch_norm_class=batch_norm_class))
        if compare_torch:
            runs["pytorch"].append(bench_train_torch(mnist, config.batch_size, steps))
    results = []
    for name, rows in runs.items():
        if rows:
            rows = sorted(rows, key=lambda r: r["images_per_second"])
            median = dict(rows[len(rows) // 2])
            median["all_images_per_second"] = [r["images_per_second"] for r in rows]
            results.append(median)
    if compare_torch:
        results[0]["ratio_to_pytorch"] = round(
            results[0]["images_per_second"] / results[1]["images_per_second"], 3)
    return results


def format_train_table(results: Sequence[dict]) -> str:
    lines = [f"{'framework':>10} {'model':>8} {'batch':>6} {'images/s':>10}  (all runs)"]
    lines += [f"{r['framework']:>10} {r['model']:>8} {r['batch_size']:>6} "
              f"{r['images_per_second']:>10,}  {r['all_images_per_second']}" for r in results]
    return "\n".join(lines)


def _latency_ms(call, image, calls: int, warmup: int = 50) -> tuple[float, float]:
    for _ in range(warmup):
        call(image)
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        call(image)
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _throughput(call, batch: np.ndarray, seconds: float = 2.0) -> float:
    call(batch)
    call(batch)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call(batch)
        images += len(batch)
    return images / (time.perf_counter() - start)


def version_size(version_dir: str, runtime: str) -> int:
    """Bytes a runtime loads: its file, or for TensorFlow the SavedModel (graph, variables)."""
    from kerasnets.serving import runtimes

    if runtime != "tensorflow":
        return os.path.getsize(runtimes.file_path(version_dir, runtime))
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(version_dir) for name in names
               if name not in runtimes.FILES.values() or name == "saved_model.pb")


def bench_inference(version_dir: str, calls: int, batch_sizes: Sequence[int], test_set=None,
                    runtimes_to_run: Sequence[str] | None = None, seconds: float = 2.0,
                    keras_model=None) -> list[dict]:
    """Per runtime of one version (and the Keras model called directly, when given):
    p50/p99 single-image latency over `calls` calls, images/s per batch size, the bytes
    it loads and, with `test_set` (images, labels), its test accuracy. The runtimes run
    one after the other in one process, so their ratios compare like with like. A
    runtime whose file the version lacks raises runtimes.MissingRuntimeFileError."""
    from kerasnets.serving import runtimes

    calls_by_path = {runtime: runtimes.load(version_dir, runtime)
                     for runtime in runtimes_to_run or runtimes.RUNTIMES}
    if keras_model is not None:
        calls_by_path["keras model(x)"] = lambda x: {"classes": np.argmax(
            keras_model(x[..., None], training=False), axis=1)}
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
    batches = {b: rng.integers(0, 256, (b, 28, 28), dtype=np.uint8) for b in batch_sizes}
    results = []
    for path, call in calls_by_path.items():
        p50, p99 = _latency_ms(call, one, calls)
        row = dict(path=path, calls=calls, p50_ms=round(p50, 4), p99_ms=round(p99, 4))
        for b, batch in batches.items():
            row[f"images_per_second_batch_{b}"] = round(_throughput(call, batch, seconds))
        if path in runtimes.RUNTIMES:
            row["bytes"] = version_size(version_dir, path)
        if test_set is not None:
            images, labels = test_set
            row["test_accuracy"] = runtimes.accuracy(call, images, labels)
        results.append(row)
    base = next((r["p50_ms"] for r in results if r["path"] == "tensorflow"), None)
    for row in results:
        row["p50_vs_tensorflow"] = round(base / row["p50_ms"], 2) if base else None
    return results


def format_inference_table(results: Sequence[dict], batch_sizes: Sequence[int]) -> str:
    head = f"{'runtime':>15} {'p50 ms':>8} {'p99 ms':>8} {'p50 x TF':>8}" + "".join(
        f" {'img/s @' + str(b):>12}" for b in batch_sizes) + f" {'bytes':>9} {'test acc':>8}"

    def row(r: dict) -> str:
        ratio = f"{r['p50_vs_tensorflow']:.1f}x" if r["p50_vs_tensorflow"] else "—"
        accuracy = f"{100 * r['test_accuracy']:.2f}%" if "test_accuracy" in r else "—"
        return (f"{r['path']:>15} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {ratio:>8}" + "".join(
            f" {r[f'images_per_second_batch_{b}']:>12,}" for b in batch_sizes) +
            f" {r['bytes'] if 'bytes' in r else '—':>9} {accuracy:>8}")

    return "\n".join([head, *(row(r) for r in results)])
