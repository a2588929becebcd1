"""Searches over training runs on Ray Tune: hyperparameters (:mod:`.tuning`) and loss formulas
(:mod:`.loss_search`). This layer sits above ``config``: it only composes whole training runs."""
