"""Training a recipe into a run directory: the whole way from flags to an exported version.

  recipe        TrainConfig (a run's definition, plain values), the recorded flagfiles,
                the optimizer and schedule a recipe compiles to
  fit           Keras's fit loop over one TrainConfig, with resume from the backup
  distributed   the multi-worker loop (tf.distribute.MultiWorkerMirroredStrategy)
  run_dir       what a --model_dir holds and whether its run may continue
  records       what every loop records: the history row, the scores, results.json
  job           kerasnets-train as one call: the lock, the cluster, training, the export
  seed_sweep    one recipe at several seeds (kerasnets-sweep)
  compare       finished runs side by side: a row each, their curves (kerasnets-compare)
  hparams       a run's recipe and final figures as TensorBoard HParams

The highest library layer: may import kerasnets.errors, fileio, plots, data, models and
serving (a run ends in an export); nothing below imports it.
"""
