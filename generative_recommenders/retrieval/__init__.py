"""Exact retrieval over the whole catalogue: a candidate index and chunked brute-force top-k."""

from generative_recommenders.retrieval.brute_force import (
    BruteForceTopK,
    MIPSBruteForceTopK,
    MoLBruteForceTopK,
)
from generative_recommenders.retrieval.index import CandidateIndex

__all__ = ["BruteForceTopK", "CandidateIndex", "MIPSBruteForceTopK", "MoLBruteForceTopK"]
