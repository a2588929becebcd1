"""Full-catalogue evaluation: rank metrics and the distributed evaluator."""

from generative_recommenders.evaluation.evaluator import Evaluator

__all__ = ["Evaluator"]
