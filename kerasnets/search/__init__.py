"""Searching a design under a parameter budget, on Optuna (kerasnets-search).

  spaces    what a trial samples: `five_block` (our design family: each block's width,
            where the two pools go and whether they blur, the peak learning rate) or a
            user's PATH.py:FUNCTION(trial) returning a Keras model
  study     the study's storage (SQLite in the search directory by default, a database
            such as PostgreSQL across machines), its settings, and the lock under which a
            worker claims one of the study's --trials
  run       one worker's search: the budget checked on each design's card before it
            trains, trials trained on a validation split of the training images (pruned
            by Optuna from their per-epoch accuracy), the best design trained and tested
  summary   every trial as rows (summary.csv, summary.json) and trials.png

Above kerasnets.training (each trial is an ordinary run directory): may import
kerasnets.errors, fileio, plots, data, models and training; nothing in the library
imports it, and nothing here imports cli or bench.
"""
