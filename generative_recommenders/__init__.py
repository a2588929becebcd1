"""generative-recommenders: a trainer for generative-retrieval sequential recommenders."""

__version__ = "0.1.0"
