"""kerasnets-train as one call: the run directory held, the recipe trained, the model exported.

`train_and_export` is the whole command (kerasnets.cli.train only parses flags): it
checks a referenced model on one batch, locks --model_dir, asks run_dir whether the run there may start or continue before
anything loads, sets up the TF_CONFIG cluster for --strategy=multiworker, trains with
the loop the strategy needs (kerasnets.training.fit or kerasnets.training.distributed)
and, with an export base, writes the final model as the next version. It sits above
both loops and run_dir, which both loops use, so none of them imports another's caller.
"""

from __future__ import annotations

import os
from typing import Callable

from kerasnets import fileio
from kerasnets.training import run_dir
from kerasnets.training.recipe import TrainConfig


def train_and_export(config: TrainConfig, model_dir: str, data_dir: str | None = None,
                     mnist_path: str | None = None, overwrite: bool = False,
                     export_base: str | None = None, collective_timeout: float = 120.0,
                     log: Callable[[str], None] = print) -> dict | None:
    """kerasnets-train as one call: holds `model_dir` (a second run on it is refused), trains
    `config` into it (on the TF_CONFIG cluster with --strategy=multiworker), and with
    `export_base` exports the final model as the next version. Returns the results dict
    (None on a multi-worker job's other workers, whose outputs the chief writes)."""
    model_dir = os.path.abspath(model_dir)
    digest = check_model(config)
    lock_dir, cluster = model_dir, None
    if config.strategy == "multiworker":
        from kerasnets.training import distributed
        cluster = distributed.cluster_spec()
        if cluster[1]:  # a non-chief worker works in its own subdirectory
            lock_dir = distributed.worker_dir(model_dir, cluster[1])
    with fileio.exclusive_directory(lock_dir, "kerasnets-train", run_dir.LOCK_FILE, "--model_dir"):
        # before anything loads; another worker also reads the chief's directory, where it
        # shares it, so a finished job is refused by every worker, not only the chief
        reason = run_dir.problem(lock_dir, config, overwrite) or (
            lock_dir != model_dir and run_dir.problem(model_dir, config, overwrite)) or (
            not overwrite and run_dir.code_problem(model_dir, config, digest))
        if reason:
            raise run_dir.RunDirError(reason)
        return _train_and_export(config, model_dir, cluster, data_dir, mnist_path, overwrite,
                                 export_base, collective_timeout, log)


def check_model(config: TrainConfig) -> dict | None:
    """A referenced model (--model=PATH.py:FUNCTION) built and tried on one batch before
    the run directory is touched (ModelReferenceError in one line if it cannot be used);
    returns the digest of what it builds (run_dir.model_digest), so a run its code no
    longer matches is refused before MNIST loads. None for a built-in model, and for a
    multi-worker job, which checks it once its cluster is up (run_dir.start: the strategy
    must be made before TensorFlow's runtime starts, and building a model starts it)."""
    from kerasnets.models import user_code

    if not user_code.is_reference(config.model) or config.strategy == "multiworker":
        return None
    from kerasnets.training import fit

    fit.set_threads(config.intra_op_threads)  # fixed once the runtime starts
    return run_dir.model_digest(config.model)


def _train_and_export(config: TrainConfig, model_dir: str, cluster: tuple[int, int] | None,
                      data_dir: str | None, mnist_path: str | None, overwrite: bool,
                      export_base: str | None, collective_timeout: float,
                      log: Callable[[str], None]) -> dict | None:
    from kerasnets.data import offline
    from kerasnets.models import convnets
    from kerasnets.serving import export

    strategy = None
    if cluster is not None:
        from kerasnets.training import distributed
        strategy = distributed.start_cluster(config, collective_timeout)
    mnist, source = offline.resolve_mnist(data_dir, mnist_path)
    log(f"MNIST: {source}")
    if strategy is None:
        from kerasnets.training import fit
        results = fit.train(config, mnist, model_dir, log=log, overwrite=overwrite)
    else:
        results = distributed.train_multiworker(config, mnist, model_dir, strategy, log=log,
                                                overwrite=overwrite)
        if results is None:
            workers, index = cluster
            log(f"worker {index} of {workers}: done (the chief, worker 0, wrote the outputs)")
            return None
    log(f"wrote {model_dir}: {', '.join(run_dir.OUTPUT_FILES)}, tensorboard/ "
        f"(best test accuracy {100 * results['best_test_accuracy']:.2f}%)")
    if export_base:
        export.tf_logger_quiet()
        model = convnets.load_model(os.path.join(model_dir, "model.keras"))
        log(f"exported version {export.export_version(model, export_base)}")
    return results
