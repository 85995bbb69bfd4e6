"""The command-line front ends: one thin module per console script.

  kerasnets-train    train      kerasnets-export   export     kerasnets-predict  predict
  kerasnets-serve    serve      kerasnets-sweep    sweep      kerasnets-bench    bench
  kerasnets-toynet   toynet     kerasnets-data     data       kerasnets-design   design
  kerasnets-compare  compare    kerasnets-search   search

Each defines its flags at module top (the recipe and data flags come from
`recipe_flags` and `data_flags`, adopted so --help lists them), parses in
`main(argv)` and hands plain values to a function of the library; `command.run`
starts it (help, --recipe, the one error exit).

The top of the tree: may import the whole library and kerasnets.bench (which
kerasnets-bench runs); nothing in the library imports it.
"""

import os

# TensorFlow's C++ info and warning logs (per-op notices during training) bury the
# commands' own output. Quiet by default for the commands (the library leaves the
# environment alone); set the variable yourself to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
