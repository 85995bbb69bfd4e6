"""Part 2's data, before any model: MNIST offline, image files as digits, the tf.data input.

  offline    MNIST on a machine without a network: found, proven sound, cached
  images     any PNG, JPEG, GIF or BMP (or a drawing) brought to MNIST's form, with Pillow
  pipeline   the tf.data pipeline: seeded, epoch-addressable, batched augmentation
  augmentation  the augmentation's setting (Augment) and its ranges, free of TensorFlow: the
             recipe's --rotation, --shift and --scale hold to them

May import: kerasnets.errors, kerasnets.checks, kerasnets.fileio. Never a model, a run or a server.
"""
