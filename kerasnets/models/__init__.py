"""The MNIST convnets and the contract every MNIST model keeps.

  convnets   the built-in models (each one keras.Sequential), building them by name,
             loading a .keras file safely, the MNIST-model contract (raw pixels in,
             10 probabilities out)
  layers     the one custom layer (FusedBatchNorm)
  design     the design card: each layer's parameters, multiply-accumulates and
             receptive field, worked out before training (kerasnets-design)
  user_code  a model named by reference (PATH.py:FUNCTION, package.module:FUNCTION):
             reading it, importing its code, the digest a run records

May import: kerasnets.errors, kerasnets.data. Never training or serving.
"""
