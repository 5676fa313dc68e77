"""Evaluation of predicted episodes against ground truth."""

from splatworld.evaluation.identity import identity_metrics, majority_labels, to_true_labels
from splatworld.evaluation.image import depth_edges, psnr, revisited_frames
from splatworld.evaluation.permanence import reappearances
from splatworld.evaluation.poses import (aligned_pose_errors, centre_errors, fit_alignment, still_motion,
                                         trajectory_errors)

__all__ = ["aligned_pose_errors", "centre_errors", "fit_alignment", "still_motion", "trajectory_errors", "depth_edges", "identity_metrics", "majority_labels", "psnr", "reappearances", "revisited_frames", "to_true_labels"]
