"""Part 1, the backprop workbench: the 2-2-2 sigmoid network trained by plain gradient descent.

  toynet       the setting (inputs, targets, biases, initial weights), checked when made, the
               study's checks (learning rates, steps) and the names of what is recorded,
               free of TensorFlow
  chain_rule   the forward pass, the hand-derived gradients and their check against
               tf.GradientTape at every step; gradient descent and the learning-rate study
  workbench    the study's four files (CSV, PNG, the live workbook, the page), written together
  workbook     the same computation as live spreadsheet formulas, with charts
  html_page    backprop.html: the network to edit and step in a browser

May import: kerasnets.errors, kerasnets.checks, kerasnets.fileio, kerasnets.plots. Part 2 (data, models,
training, serving) never imports it, and it imports none of them.
"""
