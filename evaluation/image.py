"""Image consistency: PSNR and SSIM on a region, depth AbsRel, and which frames revisit an earlier viewpoint."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from splatworld.errors import ShapeError
from splatworld.render.losses import SSIM_RADIUS, ssim_map


def _check_images(name: str, prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> None:
    if prediction.shape != target.shape or prediction.ndim != 3:
        raise ShapeError(f"{name}: images must be [H, W, C] of one shape, got {prediction.shape} and {target.shape}")
    if mask is not None and mask.shape != target.shape[:2]:
        raise ShapeError(f"{name}: mask {mask.shape} does not match images {target.shape[:2]}")


def mse(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared difference of two images ``[H, W, C]`` over ``mask [H, W]``, in the images' own
    units (0-255 for uint8); NaN for an empty mask."""
    _check_images("mse", prediction, target, mask)
    diff = prediction.astype(np.float64) - target.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    return float(np.mean(diff**2)) if diff.size else float("nan")


def psnr_of_mse(mse_value: float, peak: float) -> float:
    """PSNR (dB) of a mean squared error: ``inf`` for 0, NaN for NaN."""
    return float("inf") if mse_value == 0 else float(10.0 * np.log10(peak**2 / mse_value))


def psnr(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB) of two images ``[H, W, 3]`` over ``mask [H, W]``.

    uint8 images are compared on a 0-255 scale, float images on 0-1. Identical pixels give
    ``inf``; an empty mask gives NaN (nothing to compare).
    """
    _check_images("psnr", prediction, target, mask)
    return psnr_of_mse(mse(prediction, target, mask), 255.0 if target.dtype == np.uint8 else 1.0)


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as the SSIM authors' grey-level images


def luma(image: np.ndarray) -> np.ndarray:
    """Grey level ``[H, W]`` float64 of an RGB image ``[H, W, 3]`` (BT.601 weights, the image's own scale)."""
    return np.asarray(image, dtype=np.float64) @ _LUMA


def ssim_means(prediction: np.ndarray, target: np.ndarray, masks: list[np.ndarray | None],
               dtype: torch.dtype = torch.float64) -> list[float]:
    """Mean SSIM of two RGB images ``[H, W, 3]`` on their grey level (:func:`luma`) over each of
    ``masks`` (``[H, W]`` bool, or None for the whole image), from one SSIM map computed in ``dtype``.
    Only pixels whose 11x11 window lies inside the image count. uint8 images are on a 0-255 scale,
    float images on 0-1. NaN where nothing is compared (empty mask, or an image under 11 pixels)."""
    for mask in masks:
        _check_images("ssim", prediction, target, mask)
    r = SSIM_RADIUS
    if min(target.shape[:2]) <= 2 * r:
        return [float("nan")] * len(masks)
    peak = 255.0 if target.dtype == np.uint8 else 1.0
    values = ssim_map(torch.from_numpy(luma(prediction)).to(dtype)[None],
                      torch.from_numpy(luma(target)).to(dtype)[None], peak)[0].double().numpy()
    chosen = [values if mask is None else values[mask[r:-r, r:-r]] for mask in masks]
    return [float(v.mean()) if v.size else float("nan") for v in chosen]


def ssim(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of two RGB images over ``mask`` (:func:`ssim_means` with one mask, in float64)."""
    return ssim_means(prediction, target, [mask])[0]


def depth_abs_rel(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean ``|d_pred - d_true| / d_true`` over pixels where both depths ``[H, W]`` are known (> 0);
    NaN where there are none."""
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ShapeError(f"depth_abs_rel: depths must be [H, W] of one shape, got {prediction.shape} and "
                         f"{target.shape}")
    known = (prediction > 0) & (target > 0)
    if not known.any():
        return float("nan")
    p, t = prediction[known].astype(np.float64), target[known].astype(np.float64)
    return float(np.mean(np.abs(p - t) / t))


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


def revisited_frames(camera_to_world: np.ndarray, min_gap: int = 1, max_distance: float = 0.05,
                     max_angle_deg: float = 5.0, must_leave: bool = False, first: int = 0,
                     frames=None) -> list[tuple[int, int]]:
    """Pairs ``(k, j)``: frame ``k`` views from where frame ``first <= j <= k - min_gap`` did.

    Viewpoints match when the camera centres are within ``max_distance`` metres and the
    viewing directions within ``max_angle_deg``. ``j`` is the earliest such frame. With
    ``must_leave`` the camera must also have left in between: some frame after ``j`` and before
    ``k`` does not match ``k`` (a camera creeping along does not revisit the frame before).

    Args:
        camera_to_world: ``[T, 4, 4]`` camera poses (any convention whose third column is the
            optical axis up to sign, e.g. nerfstudio or OpenCV).
        frames: the frames ``k`` to look at (default: all).
    """
    c2w = np.asarray(camera_to_world, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ShapeError(f"revisited_frames: camera_to_world must be [T, 4, 4], got {c2w.shape}")
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]
    cos_limit = np.cos(np.radians(max_angle_deg))
    pairs = []
    for k in range(len(c2w)) if frames is None else frames:
        if k - min_gap < first:
            continue
        near = np.linalg.norm(centres[first:k] - centres[k], axis=1) <= max_distance
        match = near & (axes[first:k] @ axes[k] >= cos_limit)
        candidates = match[: k - min_gap - first + 1]
        if must_leave:
            away = np.flatnonzero(~match)
            candidates = candidates[: away[-1]] if len(away) else candidates[:0]
        hits = np.flatnonzero(candidates)
        if len(hits):
            pairs.append((int(k), int(hits[0]) + first))
    return pairs
