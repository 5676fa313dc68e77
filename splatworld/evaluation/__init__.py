"""Evaluation of predicted episodes against ground truth."""

from splatworld.evaluation.identity import identity_metrics
from splatworld.evaluation.permanence import reappearances

__all__ = ["identity_metrics", "reappearances"]
