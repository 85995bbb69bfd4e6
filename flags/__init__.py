"""The recorded recipes: flagfiles read by name (--recipe=NAME), installed as kerasnets.recipes."""
