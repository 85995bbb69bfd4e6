"""The best design (trial #2) of the study 'kerasnets-search' in runs/search_fast, in the
form kerasnets-search writes as DIR/best_design.py (the study's own file was not kept).

Name it as a model wherever kerasnets takes one, for example over seeds with the
search's recipe flags and the learning rate it chose:
  kerasnets-sweep --recipe=... --model=docs/searches/s2_best_design.py:build --learning_rate=0.12483296048682786 \
      --seeds=0-7 --out_dir=...
"""

import optuna

from kerasnets.search import spaces

SPACE = 'five_block'
PARAMS = {'blur': True, 'c1': 4, 'c2': 24, 'c3': 16, 'c4': 16, 'c5': 8, 'learning_rate': 0.12483296048682786, 'pools': '3,4'}


def build():
    return spaces.load(SPACE).build(optuna.trial.FixedTrial(PARAMS))
