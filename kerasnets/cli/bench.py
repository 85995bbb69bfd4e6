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
  --what=startup           each command's start in a fresh process, beside `import
                           tensorflow`: every --help, a one-image predict and serve's
                           first answer (and memory after 1,000 requests) per runtime of
                           --runtimes, wall seconds (median of --repeats) and peak memory

inference, serve and startup measure the newest version under --model_base; without
it, an untrained model (inference: of --model; serve, startup: default) exported with
every format to a temporary directory. Without --runtimes they measure each runtime
whose file that version has (one line names each left out); a runtime named in
--runtimes whose file it lacks stops the command with one error line.

Figures are measured after a warm-up and vary between machines: compare the
ratios taken in one run, never absolute numbers from different machines.

  kerasnets-bench --what=train --recipe=seed --compare_torch
  kerasnets-bench --what=time_to_accuracy --recipe=fast --seeds=0-4
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Sequence

from absl import app, flags, logging

from kerasnets.serving import runtimes
from kerasnets.bench import run as bench_run
from kerasnets.cli import command, data_flags, recipe_flags

FLAGS = flags.FLAGS

recipe_flags.define(FLAGS)
flags.adopt_module_key_flags(recipe_flags)
flags.adopt_module_key_flags(data_flags)
flags.DEFINE_enum("what", "input", list(bench_run.WHAT), "What to measure.")
flags.DEFINE_string("seeds", "0-4", "Seeds: a range like 0-7, a list like 1,4,9, or one.")
flags.DEFINE_list("batch_sizes", [str(b) for b in bench_run.INPUT_BATCH_SIZES],
                  "input: batch sizes to measure; inference: batch sizes for images/s "
                  "(integers > 0; inference uses 1,32,256 when left at the default).")
flags.DEFINE_integer("timed_batches", 200, "input/train: batches timed per measurement.",
                     lower_bound=1)
flags.DEFINE_integer("repeats", 3, "train: alternating runs; startup: runs of each command; "
                     "the median is reported.",
                     lower_bound=1)
flags.DEFINE_enum("batchnorm", "fused", list(bench_run.BATCH_NORMS), "train/inference: the "
                  "models' BatchNorm: ours (one fused kernel) or Keras's own (for an A/B).")
flags.DEFINE_bool("compare_torch", False, "train, time_to_accuracy: also time the course's "
                  "network in PyTorch (needs torch installed; --what=train with --model=seed).")
flags.DEFINE_integer("calls", 1000, "inference: single-image calls for p50/p99.",
                     lower_bound=100)
flags.DEFINE_integer("requests", 2000, "serve: requests per concurrency level.", lower_bound=10)
flags.DEFINE_list("concurrency", ["1", "16"], "serve: numbers of concurrent clients "
                  "(integers 1..256).")
flags.DEFINE_string("model_base", None, "The export base: a directory of numbered SavedModel "
                    "versions (kerasnets-export writes them).")
flags.DEFINE_enum("inference", "auto", ["auto", "thread", "event_loop"], "Where a model call "
                  "runs: in a worker thread, or on the event loop (cheaper for a call shorter "
                  "than the hop to the thread); auto: the event loop for the LiteRT runtimes, "
                  "a thread for tensorflow and onnx (docs/serving.md has both measured).")
flags.DEFINE_list("runtimes", list(runtimes.RUNTIMES), "inference, serve, startup: the "
                  f"runtimes to measure side by side ({', '.join(runtimes.RUNTIMES)}).")
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


def _given(name: str, value):
    """`value` if flag `name` was given, else None: the benchmark then picks its own (inference
    times 1, 32, 256 and leaves out the runtimes whose file the version lacks)."""
    return value if FLAGS[name].present else None


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from kerasnets.training import seed_sweep

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
    rows, table = bench_run.bench(
        FLAGS.what, recipe_flags.config(), data_dir=FLAGS.data_dir, mnist_path=FLAGS.mnist_path,
        batch_sizes=_given("batch_sizes", [int(b) for b in FLAGS.batch_sizes]),
        timed_batches=FLAGS.timed_batches, repeats=FLAGS.repeats, batchnorm=FLAGS.batchnorm,
        compare_torch=FLAGS.compare_torch, calls=FLAGS.calls,
        seeds=seed_sweep.parse_seeds(FLAGS.seeds), requests=FLAGS.requests,
        concurrency=[int(c) for c in FLAGS.concurrency], model_base=FLAGS.model_base,
        inference=FLAGS.inference, runtimes=_given("runtimes", list(FLAGS.runtimes)))
    print(table)
    if FLAGS.json:
        summary = dict(rows[0]) if FLAGS.what == "train" else {}
        print(json.dumps({"what": FLAGS.what, **summary, "results": rows}))
    return 0


def run():
    """Console-script entry point (kerasnets-bench)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
