"""``python -m generative_recommenders.bench`` (``make bench``): training, evaluation and data speed,
and training memory against the number of valid events.

Prints the tables and writes ``bench.json`` (schema in :mod:`.report`); every figure is measured in
the same run on this machine. Each training setting and each memory point runs in its own child
process so its peak memory is its own. ``--parts`` selects what runs (default: everything).
"""
