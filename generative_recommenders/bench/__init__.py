"""``python -m generative_recommenders.bench`` (``make bench``): training, evaluation and data speed.

Prints one table and writes ``bench.json`` (schema in :mod:`.report`); every figure is measured in
the same run on this machine. Each training setting runs in its own child process so its peak
memory is its own.
"""
