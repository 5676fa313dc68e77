"""The ground: the floor plane under the scaffold, and the colour pattern observed on it.

A floor is planar and unbounded; the memory sees a few square metres of it near the table and
draws it to the horizon (:func:`~splatworld.render.ground.render_plane`) with what it saw: a
texture repeating with the period that best explains the observed colours (the tiles of a tiled
floor), or its mean colour when no period explains them. Nothing is invented beyond that.

Convention: the texture repeats along the world x and y axes (a floor's tiles are assumed aligned
with the world frame the episode's poses are given in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from splatworld.memory.registration import ransac_plane

PERIODS = np.arange(0.06, 3.0, 0.01)  # m: candidate periods of the floor's pattern (refined to 1 mm)
FIT_CELLS = 16  # cells per period (per axis) when periods are compared: the same freedom for each
MIN_EXPLAINED = 0.5  # fraction of the colour variance a period must explain to be used
MIN_FLOOR_POINTS = 200


@dataclass(frozen=True)
class Ground:
    """The floor the memory knows.

    Attributes:
        plane: ``[4]`` ``a x + b y + c z + d = 0``, unit normal up.
        texture: ``[T, T, 3]`` colours of one period of the pattern (``[1, 1, 3]``: none found).
        period: metres the texture repeats after along world x and y (0: no pattern).
        mean_color: ``[3]`` the floor's mean observed colour.
        explained: fraction of the observed colour variance the pattern explains.
        points: how many observed floor points it was fitted to.
    """

    plane: np.ndarray
    texture: np.ndarray
    period: float
    mean_color: np.ndarray
    explained: float
    points: int


def _explained(xy: np.ndarray, colors: np.ndarray, mean: np.ndarray, total: float, period: float, cells: int,
               means: bool = True) -> tuple[float, np.ndarray | None]:
    """Fraction of the colour variance explained by one mean colour per cell of the pattern folded
    at ``period`` (``cells`` per axis), and (``means``) those means ``[cells, cells, 3]`` (NaN where
    empty). ``mean [3]`` and ``total``: the colours' mean and summed squared deviation from it,
    the same for every period."""
    folded = xy / period
    # x - floor(x) is numpy's remainder(x, 1) bit for bit (both the rounded exact fraction), 25x faster
    ij = np.minimum(((folded - np.floor(folded)) * cells).astype(np.int64), cells - 1)
    flat = ij[:, 0] * cells + ij[:, 1]
    counts = np.bincount(flat, minlength=cells * cells).astype(np.float64)
    sums = np.stack([np.bincount(flat, colors[:, k], cells * cells) for k in range(3)], axis=1)
    filled = counts > 0
    between = ((sums[filled] - counts[filled, None] * mean) ** 2 / counts[filled, None]).sum()
    explained = float(between / total) if total > 0 else 0.0
    if not means:
        return explained, None
    per_cell = np.full((cells * cells, 3), np.nan)
    per_cell[filled] = sums[filled] / counts[filled, None]
    return explained, per_cell.reshape(cells, cells, 3)


def fit_texture(xy: np.ndarray, colors: np.ndarray, cell: float) -> tuple[np.ndarray, float, float]:
    """The repeating pattern of colours ``[N, 3]`` seen at floor points ``xy [N, 2]``:
    ``(texture [T, T, 3], period, explained)``, the texture at about ``cell`` metres per texel.

    The period is the smallest candidate (:data:`PERIODS`, at most two thirds of the observed
    extent: a pattern must be seen to repeat) whose folded pattern explains nearly as much
    variance as the best one (multiples of the true period explain as much), refined to 1 mm;
    below :data:`MIN_EXPLAINED` there is no pattern: ``([[mean]], 0, explained)``.
    """
    mean = colors.mean(axis=0)
    total = float(((colors - mean) ** 2).sum())

    def score(period: float) -> float:
        return _explained(xy, colors, mean, total, period, FIT_CELLS, means=False)[0]

    candidates = PERIODS[PERIODS <= float((xy.max(axis=0) - xy.min(axis=0)).min()) / 1.5]
    scores = np.array([score(p) for p in candidates])
    best = float(scores.max(initial=0.0))
    if best < MIN_EXPLAINED:
        return mean[None, None], 0.0, best
    near = candidates[np.flatnonzero(scores >= best - 0.05)[0]] + np.arange(-0.01, 0.0105, 0.001)
    period = float(near[int(np.argmax([score(p) for p in near]))])
    coarse = _explained(xy, colors, mean, total, period, FIT_CELLS)[1]
    cells = max(FIT_CELLS, int(round(period / cell)))
    explained, fine = _explained(xy, colors, mean, total, period, cells)
    # texels no point fell in take the coarse pattern's colour there
    coarse_up = coarse[(np.arange(cells) * FIT_CELLS) // cells][:, (np.arange(cells) * FIT_CELLS) // cells]
    fine = np.where(np.isnan(fine), coarse_up, fine)
    return np.where(np.isnan(fine), mean, fine), period, explained


def fit_ground(points: np.ndarray, colors: np.ndarray, below: float, cell: float,
               rng: np.random.Generator) -> Ground | None:
    """The floor among static points ``[N, 3]`` (colours ``[N, 3]``): the horizontal plane with the
    most points lower than ``below`` (the support plane's height minus a margin), by RANSAC, and
    its pattern (:func:`fit_texture`). None when too few points lie on such a plane."""
    low = points[:, 2] < below
    if low.sum() < MIN_FLOOR_POINTS:
        return None
    plane, inliers = ransac_plane(points[low], 0.01, 200, rng)
    if plane[2] < 0.95 or inliers.sum() < MIN_FLOOR_POINTS:
        return None
    on = np.flatnonzero(low)[inliers]
    texture, period, explained = fit_texture(points[on, :2], colors[on], cell)
    return Ground(plane, texture, period, colors[on].mean(axis=0), explained, len(on))


def ground_texture(ground: Ground) -> torch.Tensor:
    """The texture as a float tensor, for :func:`~splatworld.render.ground.render_plane`."""
    return torch.from_numpy(np.ascontiguousarray(ground.texture))
