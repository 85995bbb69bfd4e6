"""kerasnets-bench: throughput benchmarks that print tables (and, with --json, a JSON line).

  kerasnets-bench --what=input   the tf.data pipeline alone, images/s with and
                                 without augmentation at several batch sizes

Figures are measured after a warm-up and vary between machines; compare ratios
taken in the same run, never absolute numbers from different machines.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Sequence

from absl import app, flags

from kerasnets import data, pipeline


def bench_input(mnist, batch_sizes: Sequence[int], steps: int, warmup: int = 10) -> list[dict]:
    """images/s of the training pipeline for every (augment, batch size)."""
    (x_train, y_train), _ = mnist
    results = []
    for augment in (None, pipeline.Augment()):
        for batch_size in batch_sizes:
            epochs = -(-(warmup + steps) // pipeline.steps_per_epoch(len(x_train), batch_size)) + 1
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


FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        mnist = data.load_mnist(FLAGS.data_dir, FLAGS.mnist_path)
    except data.MnistDataError as e:
        print(f"kerasnets-bench: error: {e}", file=sys.stderr)
        return 1
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    results = bench_input(mnist, batch_sizes, FLAGS.steps)
    print(format_input_table(results))
    if FLAGS.json:
        print(json.dumps({"what": FLAGS.what, "results": results}))
    return 0


def run():
    """Console-script entry point (kerasnets-bench)."""
    data.define_data_flags()
    flags.DEFINE_enum("what", "input", ["input"], "What to measure.")
    flags.DEFINE_list("batch_sizes", ["32", "128", "512"], "Batch sizes to measure (integers > 0).")
    flags.DEFINE_integer("steps", 200, "Timed batches per measurement (>= 1).", lower_bound=1)
    flags.DEFINE_bool("json", False, "Also print the results as one JSON line at the end.")
    flags.register_validator(
        "batch_sizes", lambda v: bool(v) and all(s.isdigit() and int(s) > 0 for s in v),
        "--batch_sizes must be a comma list of integers > 0, e.g. 32,128,512")
    app.run(main)


if __name__ == "__main__":
    run()
