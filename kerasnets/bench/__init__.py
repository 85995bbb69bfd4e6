"""The benchmarks behind kerasnets-bench (kerasnets.cli.bench), together in one place.

  run                kerasnets-bench as one call: a benchmark's rows and table
  throughput         the input pipeline, training steps and inference paths
  time_to_accuracy   a recipe trained at several seeds: accuracy and seconds
  serve_load         a kerasnets-serve process under concurrent clients
  startup            each command's start, beside TensorFlow's import
  jax_backend        the recipes on Keras's JAX backend (the GPU figures)
  torch_course       the course's network in PyTorch (imports only with torch)

A front end beside kerasnets.cli: may import the whole library, and jax_backend (itself a
command) takes cli's flag definitions; nothing in the library imports it.
"""
