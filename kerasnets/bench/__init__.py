"""The benchmarks behind kerasnets-bench (kerasnets.cli.bench), together in one place.

  run                kerasnets-bench as one call: a benchmark's rows and table
  throughput         the input pipeline, training steps and inference paths
  time_to_accuracy   a recipe trained at several seeds: accuracy and seconds
  serve_load         a kerasnets-serve process under concurrent clients
  jax_backend        the recipes on Keras's JAX backend (the GPU figures)
  torch_course       the course's network in PyTorch (imports only with torch)
"""
