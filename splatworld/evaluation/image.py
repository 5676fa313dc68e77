"""Image consistency: PSNR on a region, and which frames revisit an earlier viewpoint."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

from splatworld.errors import ShapeError


def psnr(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB) of two images ``[H, W, 3]`` over ``mask [H, W]``.

    uint8 images are compared on a 0-255 scale, float images on 0-1. Identical pixels give
    ``inf``; an empty mask gives NaN (nothing to compare).
    """
    if prediction.shape != target.shape or prediction.ndim != 3:
        raise ShapeError(f"psnr: images must be [H, W, C] of one shape, got {prediction.shape} and {target.shape}")
    peak = 255.0 if target.dtype == np.uint8 else 1.0
    diff = prediction.astype(np.float64) - target.astype(np.float64)
    if mask is not None:
        if mask.shape != target.shape[:2]:
            raise ShapeError(f"psnr: mask {mask.shape} does not match images {target.shape[:2]}")
        diff = diff[mask]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def depth_edges(depth: np.ndarray, jump: float = 0.05, width: int = 2) -> np.ndarray:
    """bool ``[H, W]``: pixels within ``width`` pixels of a depth jump larger than ``jump`` (relative)
    between 4-neighbours, or of a pixel with no depth. Silhouettes, where a rasteriser's hard
    edge and a splat's soft one always differ, are there."""
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ShapeError(f"depth_edges: depth must be [H, W], got {d.shape}")
    safe = np.where(d > 0, d, np.inf)
    edge = np.zeros(d.shape, bool)
    for axis in (0, 1):
        a, b = np.moveaxis(safe, axis, 0)[:-1], np.moveaxis(safe, axis, 0)[1:]
        with np.errstate(invalid="ignore"):
            jumps = ~(np.abs(a - b) <= jump * np.minimum(a, b))  # inf - inf (no depth) counts too
        np.moveaxis(edge, axis, 0)[:-1] |= jumps
        np.moveaxis(edge, axis, 0)[1:] |= jumps
    return binary_dilation(edge, iterations=width) if width else edge


def revisited_frames(camera_to_world: np.ndarray, min_gap: int, max_distance: float = 0.05,
                     max_angle_deg: float = 5.0) -> list[tuple[int, int]]:
    """Pairs ``(k, j)``: frame ``k`` views from where frame ``j <= k - min_gap`` did.

    Viewpoints match when the camera centres are within ``max_distance`` metres and the
    viewing directions within ``max_angle_deg``. ``j`` is the earliest such frame.

    Args:
        camera_to_world: ``[T, 4, 4]`` camera poses (any convention whose third column is the
            optical axis up to sign, e.g. nerfstudio or OpenCV).
    """
    c2w = np.asarray(camera_to_world, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ShapeError(f"revisited_frames: camera_to_world must be [T, 4, 4], got {c2w.shape}")
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]
    cos_limit = np.cos(np.radians(max_angle_deg))
    pairs = []
    for k in range(min_gap, len(c2w)):
        near = np.linalg.norm(centres[: k - min_gap + 1] - centres[k], axis=1) <= max_distance
        aligned = axes[: k - min_gap + 1] @ axes[k] >= cos_limit
        hits = np.flatnonzero(near & aligned)
        if len(hits):
            pairs.append((k, int(hits[0])))
    return pairs
