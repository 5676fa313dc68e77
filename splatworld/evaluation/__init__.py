"""Evaluation of predicted episodes against ground truth."""

from splatworld.evaluation.identity import identity_metrics

__all__ = ["identity_metrics"]
