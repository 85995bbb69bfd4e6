"""The best design (trial #10) of the study 'kerasnets-search' in runs/search8k, in the
form kerasnets-search writes as DIR/best_design.py (the study's own file was not kept).

Name it as a model wherever kerasnets takes one, for example over seeds with the
search's recipe flags and the learning rate it chose:
  kerasnets-sweep --recipe=... --model=docs/searches/s1_best_design.py:build --learning_rate=0.1836827796178234 \
      --seeds=0-7 --out_dir=...
"""

import optuna

from kerasnets.search import spaces

SPACE = 'five_block'
PARAMS = {'blur': True, 'c1': 4, 'c2': 20, 'c3': 4, 'c4': 16, 'c5': 12, 'learning_rate': 0.1836827796178234, 'pools': '3,4'}


def build():
    return spaces.load(SPACE).build(optuna.trial.FixedTrial(PARAMS))
