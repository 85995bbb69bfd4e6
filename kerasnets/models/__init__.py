"""The MNIST convnets and the contract every MNIST model keeps.

  convnets   the built-in models (each one keras.Sequential), building them by name,
             loading a .keras file safely, the MNIST-model contract (raw pixels in,
             10 probabilities out)
  layers     the one custom layer (FusedBatchNorm)

May import: kerasnets.errors, kerasnets.data. Never training or serving.
"""
