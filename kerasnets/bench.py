"""kerasnets-bench: throughput benchmarks that print tables (and, with --json, a JSON line).

  kerasnets-bench --what=input      the tf.data pipeline alone, images/s with and
                                    without augmentation at several batch sizes
  kerasnets-bench --what=train      steady-state training images/s of one model and
                                    recipe (with --compare_torch, the course's network
                                    in PyTorch side by side, and the ratio)
  kerasnets-bench --what=inference  single-image latency (p50, p99) and batched
                                    images/s of the exported SavedModel signature,
                                    the Keras model called directly, and model.predict
  kerasnets-bench --what=time_to_accuracy --flagfile=flags/default.flags --seeds=0-4
                                    trains a recipe at each seed: final test accuracy,
                                    training seconds (with --compare_torch, the course's
                                    recipe in PyTorch and flags/default.flags to 99.4 %)
  kerasnets-bench --what=serve      a kerasnets-serve process on 127.0.0.1 under
                                    single-image requests from N concurrent clients:
                                    p50/p99 latency, images/s, errors, with request
                                    batching on and off (kerasnets.bench_serve)

Figures are measured after a warm-up and vary between machines; compare ratios
taken in the same run, never absolute numbers from different machines.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Sequence

import numpy as np
from absl import app, flags, logging

from kerasnets import data, pipeline

# The recipe each model is benchmarked with: the course's for `seed`, ours otherwise.
SEED_RECIPE = dict(optimizer="sgd", learning_rate=0.01, momentum=0.9, nesterov=False,
                   schedule="constant", augment=False)
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


def bench_train(mnist, model: str, batch_size: int, steps: int, warmup: int = 30,
                steps_per_execution: int = 1) -> dict:
    """Steady-state images/s of `model.fit` on real MNIST (after `warmup` steps)."""
    from kerasnets import training

    recipe = SEED_RECIPE if model == "seed" else {}
    config = training.TrainConfig(model=model, batch_size=batch_size, epochs=1,
                                  steps_per_execution=steps_per_execution, **recipe)
    (x_train, y_train), _ = mnist
    per_epoch = pipeline.steps_per_epoch(len(x_train), batch_size)
    ds = pipeline.train_dataset(x_train, y_train, batch_size, augment=training.augmentation(config),
                                epochs=_epochs_covering(warmup + steps, per_epoch))
    keras_model = training.create_model(config, per_epoch)
    keras_model.fit(ds, epochs=1, steps_per_epoch=warmup, verbose=0, shuffle=False)  # warm-up
    start = time.perf_counter()
    keras_model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return dict(framework="keras", model=model, batch_size=batch_size, steps=steps,
                steps_per_execution=steps_per_execution, seconds=round(seconds, 3),
                images_per_second=round(steps * batch_size / seconds))


def bench_train_torch(mnist, batch_size: int, steps: int) -> dict:
    from kerasnets import bench_torch

    (x_train, y_train), _ = mnist
    ips = bench_torch.images_per_second(x_train, y_train, batch_size, steps)
    return dict(framework="pytorch", model="seed", batch_size=batch_size, steps=steps,
                images_per_second=round(ips))


def bench_train_side_by_side(mnist, model: str, batch_size: int, steps: int,
                             steps_per_execution: int, repeats: int, compare_torch: bool):
    """Keras (and PyTorch) alternately `repeats` times; each row is the median run.

    Alternating in one process makes the ratio fair on a machine whose speed drifts."""
    runs = {"keras": [], "pytorch": []}
    for _ in range(repeats):
        runs["keras"].append(bench_train(mnist, model, batch_size, steps,
                                         steps_per_execution=steps_per_execution))
        if compare_torch:
            runs["pytorch"].append(bench_train_torch(mnist, batch_size, steps))
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


def inference_paths(keras_model, export_dir: str) -> dict:
    """name → function(uint8 [batch, 28, 28]) → probabilities, for each way users predict."""
    import tensorflow as tf

    from kerasnets import export

    export.export_savedmodel(keras_model, export_dir)
    serve = tf.saved_model.load(export.latest_version_dir(export_dir)).signatures[export.SIGNATURE]
    return {
        "savedmodel signature": lambda x: serve(images=tf.constant(x))["probabilities"].numpy(),
        "keras model(x)": lambda x: keras_model(x[..., None], training=False).numpy(),
        "keras predict": lambda x: keras_model.predict(x[..., None], batch_size=len(x),
                                                       verbose=0),
    }


def bench_inference(model: str, calls: int, batch_sizes: Sequence[int],
                    seconds: float = 2.0) -> list[dict]:
    """p50/p99 single-image latency over `calls` calls and images/s per batch size, per path.

    The weights are untrained (latency does not depend on their values)."""
    from kerasnets import models

    keras_model = models.build_model(model)
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as export_dir:
        for path, call in inference_paths(keras_model, export_dir).items():
            one = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
            p50, p99 = _latency_ms(call, one, calls)
            row = dict(path=path, model=model, calls=calls, p50_ms=round(p50, 3),
                       p99_ms=round(p99, 3))
            for b in batch_sizes:
                batch = rng.integers(0, 256, (b, 28, 28), dtype=np.uint8)
                row[f"images_per_second_batch_{b}"] = round(_throughput(call, batch, seconds))
            results.append(row)
    return results


def format_inference_table(results: Sequence[dict], batch_sizes: Sequence[int]) -> str:
    head = f"{'path':>22} {'p50 ms':>8} {'p99 ms':>8}" + "".join(
        f" {'img/s @' + str(b):>12}" for b in batch_sizes)
    rows = [f"{r['path']:>22} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}" + "".join(
        f" {r[f'images_per_second_batch_{b}']:>12,}" for b in batch_sizes) for r in results]
    return "\n".join([head, *rows])


FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
    from kerasnets import models, training
    training.set_threads(FLAGS.intra_op_threads)
    if FLAGS.batchnorm == "keras":
        import keras
        models.BATCH_NORM = keras.layers.BatchNormalization
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    if FLAGS.what == "inference" and not FLAGS["batch_sizes"].present:
        batch_sizes = list(INFERENCE_BATCH_SIZES)
    if FLAGS.what == "inference":
        results = bench_inference(FLAGS.model, FLAGS.calls, batch_sizes)
        print(format_inference_table(results, batch_sizes))
    elif FLAGS.what == "time_to_accuracy":
        from kerasnets import bench_time, sweep
        report = bench_time.bench_time_to_accuracy(FLAGS.recipe, sweep.parse_seeds(FLAGS.seeds),
                                                   FLAGS.target, FLAGS.compare_torch)
        print(bench_time.format_report(report))
        results = [report]
    elif FLAGS.what == "serve":
        from kerasnets import bench_serve
        results = bench_serve.bench_serve(FLAGS.requests,
                                          [int(c) for c in FLAGS.concurrency],
                                          FLAGS.model_base)
        print(bench_serve.format_serve_table(results))
    else:
        try:
            mnist = data.load_mnist(FLAGS.data_dir, FLAGS.mnist_path)
        except data.MnistDataError as e:
            print(f"kerasnets-bench: error: {e}", file=sys.stderr)
            return 1
        if FLAGS.what == "input":
            results = bench_input(mnist, batch_sizes, FLAGS.steps)
            print(format_input_table(results))
        else:
            results = bench_train_side_by_side(
                mnist, FLAGS.model, FLAGS.batch_size, FLAGS.steps, FLAGS.steps_per_execution,
                FLAGS.repeats, FLAGS.compare_torch)
            print(format_train_table(results))
            if FLAGS.compare_torch:
                print(f"keras / pytorch images/s: {results[0]['ratio_to_pytorch']:.2f}")
    if FLAGS.json:
        summary = dict(results[0]) if FLAGS.what == "train" else {}
        print(json.dumps({"what": FLAGS.what, **summary, "results": results}))
    return 0


def _torch_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def run():
    """Console-script entry point (kerasnets-bench)."""
    from kerasnets import models

    data.define_data_flags()
    flags.DEFINE_enum("what", "input", ["input", "train", "inference", "time_to_accuracy",
                                         "serve"], "What to measure.")
    flags.DEFINE_string("recipe", None, "time_to_accuracy: the kerasnets-train flagfile to time, "
                        "given as --flagfile=F.")
    flags.DEFINE_string("seeds", "0-4", "time_to_accuracy: seeds, e.g. 0-4 or 1,3.")
    flags.DEFINE_float("target", 0.994, "time_to_accuracy: the test accuracy whose first "
                       "epoch is reported (0..1).")
    flags.DEFINE_list("batch_sizes", ["32", "128", "512"],
                      "input: batch sizes to measure; inference: batch sizes for images/s "
                      "(integers > 0; inference uses 1,32,256 when left at the default).")
    flags.DEFINE_integer("steps", 200, "Timed batches per measurement (>= 1).", lower_bound=1)
    flags.DEFINE_enum("model", "default", list(models.BUILDERS), "train/inference: which model.")
    flags.DEFINE_integer("batch_size", 128, "train: batch size (>= 1).", lower_bound=1)
    flags.DEFINE_integer("steps_per_execution", 1, "train: batches per tf.function call "
                         "(Keras compile option; >= 1).", lower_bound=1)
    flags.DEFINE_integer("repeats", 3, "train: alternating runs; the median is reported (>= 1).",
                         lower_bound=1)
    flags.DEFINE_integer("intra_op_threads", 0, "Threads per TensorFlow op (0 = all cores).",
                         lower_bound=0)
    flags.DEFINE_enum("batchnorm", "fused", ["fused", "keras"], "train/inference: the models' "
                      "BatchNorm: ours (one fused kernel) or Keras's own (for an A/B).")
    flags.DEFINE_bool("compare_torch", False, "train: also time the course's network in PyTorch "
                      "(needs `pip install torch`; --model=seed only).")
    flags.DEFINE_integer("calls", 1000, "inference: single-image calls for p50/p99 (>= 100).",
                         lower_bound=100)
    flags.DEFINE_integer("requests", 2000, "serve: requests per concurrency level (>= 10).",
                         lower_bound=10)
    flags.DEFINE_list("concurrency", ["1", "16"], "serve: numbers of concurrent clients "
                      "(integers 1..256).")
    flags.DEFINE_string("model_base", None, "serve: the export base to serve (default: an "
                        "untrained default model, exported to a temporary directory).")
    flags.DEFINE_bool("json", False, "Also print the results as one JSON line at the end.")
    flags.register_validator(
        "concurrency", lambda v: bool(v) and all(s.isdigit() and 1 <= int(s) <= 256 for s in v),
        "--concurrency must be a comma list of integers 1..256, e.g. 1,16")
    flags.register_validator(
        "model_base", lambda v: v is None or os.path.isdir(v),
        "--model_base must be an export base directory (e.g. savedmodels/mnist)")
    flags.register_validator(
        "batch_sizes", lambda v: bool(v) and all(s.isdigit() and int(s) > 0 for s in v),
        "--batch_sizes must be a comma list of integers > 0, e.g. 32,128,512")

    flags.register_validator("target", lambda v: 0 < v <= 1, "--target must be in (0, 1]")

    from kerasnets import sweep
    flags.register_validator("seeds", sweep.check_seeds_flag)
    flags.register_multi_flags_validator(
        ["what", "recipe"],
        lambda v: v["what"] != "time_to_accuracy" or sweep.check_recipe_flag(v["recipe"]))

    @flags.multi_flags_validator(["compare_torch", "model", "what"])
    def _torch_comparison(values) -> bool:
        if not values["compare_torch"]:
            return True
        if values["what"] == "train" and values["model"] != "seed":
            raise flags.ValidationError("--compare_torch needs --what=train --model=seed (the "
                                        "course's network is the one re-implemented in PyTorch)")
        if values["what"] not in ("train", "time_to_accuracy"):
            raise flags.ValidationError("--compare_torch goes with --what=train or "
                                        "--what=time_to_accuracy")
        if not _torch_installed():
            raise flags.ValidationError("--compare_torch: PyTorch is not installed; run "
                                        ".venv/bin/pip install torch==2.13.0 (CPU build)")
        return True

    from kerasnets import recipe
    app.run(main, argv=recipe.flagfile_as_recipe(sys.argv))


if __name__ == "__main__":
    run()
