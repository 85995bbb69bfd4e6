r"""kerasnets-bench: how fast each part runs, as tables (and, with --json, a JSON line).

  --what=input             the tf.data pipeline alone: images/s with and without
                           augmentation at each of --batch_sizes
  --what=train             steady-state training images/s of the recipe (--recipe and
                           the recipe flags; --compare_torch: the course's network in
                           PyTorch beside it, with --recipe=seed)
  --what=inference         one exported version in every runtime of --runtimes side by
                           side: single-image p50/p99, images/s per batch size, bytes,
                           test accuracy (and model(x) for an untrained model)
  --what=time_to_accuracy  trains the recipe at each of --seeds: final test accuracy and
                           training seconds (--compare_torch: also the course's recipe in
                           PyTorch and the default recipe, each to the recipe's --target)
  --what=serve             a kerasnets-serve process per runtime of --runtimes on
                           127.0.0.1 under single-image requests from each of
                           --concurrency clients, with request batching on and off

Figures are measured after a warm-up and vary between machines: compare the
ratios taken in one run, never absolute numbers from different machines.

  kerasnets-bench --what=train --recipe=seed --compare_torch
  kerasnets-bench --what=time_to_accuracy --recipe=fast --seeds=0-4
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from typing import Sequence

from absl import app, flags, logging

from kerasnets import data, recipe, runtimes
from kerasnets.cli import command, data_flags, recipe_flags

FLAGS = flags.FLAGS
WHAT = ("input", "train", "inference", "time_to_accuracy", "serve")

recipe_flags.define(FLAGS)
flags.adopt_module_key_flags(recipe_flags)
flags.adopt_module_key_flags(data_flags)
flags.DEFINE_enum("what", "input", list(WHAT), "What to measure.")
flags.DEFINE_string("seeds", "0-4", "time_to_accuracy: seeds, e.g. 0-4 or 1,3.")
flags.DEFINE_list("batch_sizes", ["32", "128", "512"],
                  "input: batch sizes to measure; inference: batch sizes for images/s "
                  "(integers > 0; inference uses 1,32,256 when left at the default).")
flags.DEFINE_integer("timed_batches", 200, "input/train: batches timed per measurement.",
                     lower_bound=1)
flags.DEFINE_integer("repeats", 3, "train: alternating runs; the median is reported.",
                     lower_bound=1)
flags.DEFINE_enum("batchnorm", "fused", ["fused", "keras"], "train/inference: the models' "
                  "BatchNorm: ours (one fused kernel) or Keras's own (for an A/B).")
flags.DEFINE_bool("compare_torch", False, "train, time_to_accuracy: also time the course's "
                  "network in PyTorch (needs torch installed; --what=train with --model=seed).")
flags.DEFINE_integer("calls", 1000, "inference: single-image calls for p50/p99.",
                     lower_bound=100)
flags.DEFINE_integer("requests", 2000, "serve: requests per concurrency level.", lower_bound=10)
flags.DEFINE_list("concurrency", ["1", "16"], "serve: numbers of concurrent clients "
                  "(integers 1..256).")
flags.DEFINE_string("model_base", None, "inference, serve: the export base whose newest "
                    "version is measured (default: an untrained model of --model, exported "
                    "with every format to a temporary directory).")
flags.DEFINE_enum("inference", "auto", ["auto", "thread", "event_loop"], "serve: where the "
                  "server runs a model call (kerasnets-serve --inference).")
flags.DEFINE_list("runtimes", list(runtimes.RUNTIMES), "inference, serve: the runtimes to "
                  f"measure side by side ({', '.join(runtimes.RUNTIMES)}).")
flags.register_validator("runtimes", lambda v: bool(v) and set(v) <= set(runtimes.RUNTIMES),
                         f"--runtimes must be a comma list of {', '.join(runtimes.RUNTIMES)}")
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
flags.register_validator("seeds", command.check_seeds_flag)


@flags.multi_flags_validator(["compare_torch", "model", "what"])
def _torch_comparison(values) -> bool:
    if not values["compare_torch"]:
        return True
    if values["what"] == "train" and values["model"] != "seed":
        raise flags.ValidationError("--compare_torch needs --what=train --model=seed (the "
                                    "course's network is the one re-implemented in PyTorch; "
                                    "--recipe=seed trains it)")
    if values["what"] not in ("train", "time_to_accuracy"):
        raise flags.ValidationError("--compare_torch goes with --what=train or "
                                    "--what=time_to_accuracy")
    if importlib.util.find_spec("torch") is None:
        raise flags.ValidationError("--compare_torch: PyTorch is not installed; run "
                                    ".venv/bin/pip install torch==2.13.0 (CPU build)")
    return True


def batch_norm_class(name: str) -> type:
    """--batchnorm: ours (fused) or Keras's own layer."""
    import keras

    from kerasnets.layers import FusedBatchNorm
    return FusedBatchNorm if name == "fused" else keras.layers.BatchNormalization


def inference_version(model_base: str | None, model_name: str, batch_norm_class: type, mnist,
                      scratch: str):
    """(version directory, Keras model or None) to measure: the newest version under
    model_base, or an untrained `model_name` exported with every format into scratch
    (and that model, to time it called directly)."""
    from kerasnets import export, models

    export.tf_logger_quiet()
    if model_base:
        version = export.latest_version_dir(model_base)
        if version is None:
            raise models.ModelFileError(f"--model_base: {model_base} holds no version")
        return version, None
    model = models.build_model(model_name, batch_norm_class)
    version = export.export_savedmodel(model, os.path.join(scratch, "mnist"),
                                       formats=export.FORMATS,
                                       calibration_images=export.calibration_sample(mnist[0][0]))
    return version, model


def present_runtimes(version: str, wanted: Sequence[str], asked: bool) -> list[str]:
    """The runtimes to measure: all of `wanted` when asked for by name (a missing file is
    then an error), else those whose file the version has, saying which were left out."""
    if asked:
        return list(wanted)
    present = [r for r in wanted if runtimes.has_file(version, r)]
    for runtime in wanted:
        if runtime not in present:
            print(f"{runtime}: left out, {version} has no {runtimes.FILES[runtime]} "
                  f"(kerasnets-export --formats=saved_model,...,{runtime} writes it)")
    return present


def bench_command(what: str, config: recipe.TrainConfig, options: dict) -> list[dict]:
    """Runs one benchmark (options: this command's flag values); prints its table and
    returns its rows."""
    from kerasnets.bench import serve_load, throughput, time_to_accuracy

    batch_sizes = [int(b) for b in options["batch_sizes"]]
    if what == "inference":
        batch_sizes = batch_sizes if options["batch_sizes_given"] else list(
            throughput.INFERENCE_BATCH_SIZES)
        mnist = data.load_mnist(options["data_dir"], options["mnist_path"])
        with tempfile.TemporaryDirectory() as scratch:
            version, model = inference_version(options["model_base"], config.model,
                                               options["batch_norm_class"], mnist, scratch)
            results = throughput.bench_inference(
                version, options["calls"], batch_sizes, mnist[1],
                present_runtimes(version, options["runtimes"], options["runtimes_given"]),
                keras_model=model)
        print(throughput.format_inference_table(results, batch_sizes))
        return results
    if what == "time_to_accuracy":
        report = time_to_accuracy.bench_time_to_accuracy(
            config, options["seeds"], options["compare_torch"],
            options["data_flags"])
        print(time_to_accuracy.format_report(report))
        return [report]
    if what == "serve":
        results = serve_load.bench_serve(options["requests"], options["concurrency"],
                                         options["model_base"], runtimes=options["runtimes"],
                                         inference=options["inference"],
                                         mnist=data.load_mnist(options["data_dir"],
                                                               options["mnist_path"]))
        print(serve_load.format_serve_table(results))
        return results
    mnist = data.load_mnist(options["data_dir"], options["mnist_path"])
    if what == "input":
        results = throughput.bench_input(mnist, batch_sizes, options["timed_batches"])
        print(throughput.format_input_table(results))
        return results
    results = throughput.bench_train_side_by_side(
        mnist, config, options["timed_batches"], options["repeats"], options["compare_torch"],
        options["batch_norm_class"])
    print(throughput.format_train_table(results))
    if options["compare_torch"]:
        print(f"keras / pytorch images/s: {results[0]['ratio_to_pytorch']:.2f}")
    return results


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from kerasnets import seed_sweep, training

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
    config = recipe_flags.config()
    training.set_threads(config.intra_op_threads)
    options = dict(
        batch_sizes=FLAGS.batch_sizes, batch_sizes_given=FLAGS["batch_sizes"].present,
        calls=FLAGS.calls, seeds=seed_sweep.parse_seeds(FLAGS.seeds),
        compare_torch=FLAGS.compare_torch, requests=FLAGS.requests,
        concurrency=[int(c) for c in FLAGS.concurrency], model_base=FLAGS.model_base,
        runtimes=list(FLAGS.runtimes), runtimes_given=FLAGS["runtimes"].present,
        inference=FLAGS.inference,
        data_dir=FLAGS.data_dir, mnist_path=FLAGS.mnist_path,
        data_flags=command.data_flag_values(FLAGS.data_dir, FLAGS.mnist_path),
        timed_batches=FLAGS.timed_batches, repeats=FLAGS.repeats,
        batch_norm_class=batch_norm_class(FLAGS.batchnorm))
    results = bench_command(FLAGS.what, config, options)
    if FLAGS.json:
        summary = dict(results[0]) if FLAGS.what == "train" else {}
        print(json.dumps({"what": FLAGS.what, **summary, "results": results}))
    return 0


def run():
    """Console-script entry point (kerasnets-bench)."""
    command.run(main, __name__, default_recipe="default")


if __name__ == "__main__":
    run()
