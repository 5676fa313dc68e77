"""Physics-IQ motion scores (Motamed et al., 2025): where and when things move, compared.

Motion masks follow the Physics-IQ benchmark's ``binary_mask_generator.py``: each frame is turned
grey (BT.601) and blurred by OpenCV's 5-tap Gaussian, a running average of the frames (weight 0.3
for the newest) is kept, a pixel moves where the blurred frame differs from the rounded average by
more than 10 grey levels, and the mask is opened then closed by a 5x5 square. The first frame has
no motion. The scores are that benchmark's four (``calculate_and_write_metrics_to_csv.py``):

- spatial IoU: IoU of the two "moved at any time" masks (union over frames);
- spatiotemporal IoU: the per-frame mask IoU, averaged over frames;
- weighted spatial IoU: with ``w = fraction of frames a pixel moves``, ``sum(min(w1, w2)) /
  sum(max(w1, w2))``;
- MSE: the per-frame mean squared difference of the RGB frames scaled to [0, 1], averaged.

An empty union counts as a perfect match (IoU 1), as there.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, correlate1d

from splatworld.errors import ShapeError
from splatworld.evaluation.image import mse

_BLUR = np.array([0.0625, 0.25, 0.375, 0.25, 0.0625])  # OpenCV's fixed 5-tap Gaussian (sigma 0 given)
_SQUARE = np.ones((5, 5), bool)
AVERAGE_WEIGHT = 0.3
THRESHOLD = 10


def _grey_blurred(rgb: np.ndarray) -> np.ndarray:
    grey = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])
    blurred = correlate1d(correlate1d(grey, _BLUR, axis=0, mode="mirror"), _BLUR, axis=1, mode="mirror")
    return np.rint(blurred)


def motion_masks(frames) -> np.ndarray:
    """bool ``[T, H, W]`` motion masks of ``T`` RGB frames ``[H, W, 3]`` uint8 (an iterable: frames
    are read one at a time)."""
    masks, average = [], None
    for k, rgb in enumerate(frames):
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ShapeError(f"motion_masks: frame {k} must be [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
        grey = _grey_blurred(rgb)
        if average is None:
            average = grey
            masks.append(np.zeros(grey.shape, bool))
            continue
        average = (1 - AVERAGE_WEIGHT) * average + AVERAGE_WEIGHT * grey
        moving = np.abs(grey - np.clip(np.rint(average), 0, 255)) > THRESHOLD
        # OpenCV's morphology never erodes from outside the image nor dilates into it
        opened = binary_dilation(binary_erosion(moving, _SQUARE, border_value=1), _SQUARE, border_value=0)
        masks.append(binary_erosion(binary_dilation(opened, _SQUARE, border_value=0), _SQUARE, border_value=1))
    return np.stack(masks) if masks else np.zeros((0, 0, 0), bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def motion_scores(truth_masks: np.ndarray, predicted_masks: np.ndarray, mse_per_frame: np.ndarray) -> dict:
    """The four Physics-IQ scores from motion masks ``[T, H, W]`` of ground truth and prediction and
    the per-frame RGB MSE ``[T]`` (on [0, 1])."""
    if truth_masks.shape != predicted_masks.shape or truth_masks.ndim != 3:
        raise ShapeError(f"motion_scores: masks must be [T, H, W] of one shape, got {truth_masks.shape} and "
                         f"{predicted_masks.shape}")
    if len(mse_per_frame) != len(truth_masks):
        raise ShapeError(f"motion_scores: {len(mse_per_frame)} MSE values for {len(truth_masks)} frames")
    w_truth, w_pred = truth_masks.mean(axis=0), predicted_masks.mean(axis=0)
    top = np.maximum(w_truth, w_pred).sum()
    return {"spatial_iou": _iou(truth_masks.any(axis=0), predicted_masks.any(axis=0)),
            "spatiotemporal_iou": float(np.mean([_iou(a, b) for a, b in zip(truth_masks, predicted_masks)])),
            "weighted_spatial_iou": 1.0 if top == 0 else float(np.minimum(w_truth, w_pred).sum() / top),
            "mse": float(np.mean(mse_per_frame))}


def frame_mse(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean squared difference of two uint8 RGB frames scaled to [0, 1] (Physics-IQ's MSE)."""
    return mse(prediction, target) / 255.0**2
