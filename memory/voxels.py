"""A sparse voxel hash: running means of points and colours per occupied voxel.

Revisiting a place refines its voxels instead of adding new ones, so a map of a static
scene stays the size of the surfaces seen, however long the episode.

A grid may also keep each voxel's running second moment: the covariance of the surface
patch seen in it. Its Gaussian then takes the patch's shape (flat on a plane, thin along a
board's edge, shrunk to the covered part of a voxel at a silhouette) instead of a ball the
size of the voxel, which draws every edge of a coarse map a voxel too wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from splatworld.errors import ConfigError
from splatworld.scene.gaussians import Gaussians
from splatworld.scene.transforms import rotmat_to_quat

_OFFSET = 1 << 20  # voxel indices in (-2^20, 2^20) per axis, packed into 21 bits each
_MASK = (1 << 21) - 1
_MIN_STD = 0.05  # smallest standard deviation of a voxel's points along any axis, in voxels


def pack_keys(ijk: np.ndarray) -> np.ndarray:
    """int64 keys ``[N]`` of integer voxel indices ``[N, 3]``."""
    u = ijk.astype(np.int64) + _OFFSET
    return (u[:, 0] << 42) | (u[:, 1] << 21) | u[:, 2]


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_keys`."""
    return np.stack([(keys >> 42) & _MASK, (keys >> 21) & _MASK, keys & _MASK], axis=1) - _OFFSET


@dataclass
class VoxelGrid:
    """Occupied voxels with running means of their points and colours.

    Attributes:
        voxel_size: edge length in metres.
        keys: ``[M]`` sorted packed voxel indices.
        points: ``[M, 3]`` mean position of the points seen in each voxel.
        colors: ``[M, 3]`` mean RGB in [0, 1].
        weights: ``[M]`` observation weight, capped at ``max_weight`` so that the map keeps adapting.
        last_seen: ``[M]`` time (s) each voxel was last observed.
        moments: ``[M, 6]`` running mean of ``x x^T`` (xx, xy, xz, yy, yz, zz) of the points seen in each
            voxel, kept when ``covariance`` is set (``[0, 6]`` otherwise).
    """

    voxel_size: float
    max_weight: float = 30.0
    covariance: bool = False

    def __post_init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.points = np.zeros((0, 3))
        self.colors = np.zeros((0, 3))
        self.weights = np.zeros(0)
        self.last_seen = np.zeros(0)
        self.moments = np.zeros((0, 6))
        self.version = 0  # bumped by every change, for caches of derived data

    def __len__(self) -> int:
        return len(self.keys)

    def key_of(self, points: np.ndarray) -> np.ndarray:
        return pack_keys(np.floor(points / self.voxel_size).astype(np.int64))

    def integrate(self, points: np.ndarray, colors: np.ndarray, time: float = 0.0,
                  spread: np.ndarray | None = None) -> None:
        """Fuse points ``[N, 3]`` with colours ``[N, 3]`` (one observation).

        Args:
            spread: ``[N]`` variance (m^2, per axis) of the surface patch each point stands for (a
                pixel's footprint), added to its second moment; 0 if omitted. Used with ``covariance``.
        """
        if len(points) == 0:
            return
        self.version += 1
        keys = self.key_of(points)
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)

        def voxel_mean(values: np.ndarray) -> np.ndarray:  # [N, C] -> [U, C]
            return np.stack([np.bincount(inverse, values[:, k], len(uniq)) for k in range(values.shape[1])],
                            1) / counts[:, None]

        p_mean, c_mean = voxel_mean(points), voxel_mean(colors)
        m_mean = voxel_mean(_second_moments(points, spread)) if self.covariance else None
        pos = np.searchsorted(self.keys, uniq)
        found = (pos < len(self.keys)) & (self.keys[np.minimum(pos, len(self.keys) - 1)] == uniq) \
            if len(self.keys) else np.zeros(len(uniq), bool)
        # existing voxels: running mean with one unit of weight per observation
        idx = pos[found]
        w = self.weights[idx][:, None]
        self.points[idx] = (self.points[idx] * w + p_mean[found]) / (w + 1)
        self.colors[idx] = (self.colors[idx] * w + c_mean[found]) / (w + 1)
        if self.covariance:
            self.moments[idx] = (self.moments[idx] * w + m_mean[found]) / (w + 1)
        self.weights[idx] = np.minimum(self.weights[idx] + 1, self.max_weight)
        self.last_seen[idx] = time
        # new voxels
        new = ~found
        if new.any():
            at = pos[new]
            self.keys = np.insert(self.keys, at, uniq[new])
            self.points = np.insert(self.points, at, p_mean[new], axis=0)
            self.colors = np.insert(self.colors, at, c_mean[new], axis=0)
            if self.covariance:
                self.moments = np.insert(self.moments, at, m_mean[new], axis=0)
            self.weights = np.insert(self.weights, at, np.ones(new.sum()))
            self.last_seen = np.insert(self.last_seen, at, np.full(new.sum(), time))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """bool ``[N]``: the voxel holding each point is occupied."""
        return self._lookup(self.key_of(points))[1]

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For packed ``keys [N]``: each one's index among the occupied voxels (clamped; meaningful
        where found) and whether it is occupied."""
        if len(self.keys) == 0:
            return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return pos, self.keys[pos] == keys

    def remove(self, mask: np.ndarray) -> None:
        """Drop the voxels where ``mask [M]`` is true."""
        self.version += 1
        keep = ~mask
        self.keys, self.points, self.colors = self.keys[keep], self.points[keep], self.colors[keep]
        self.weights, self.last_seen = self.weights[keep], self.last_seen[keep]
        if self.covariance:
            self.moments = self.moments[keep]

    def weaken(self, mask: np.ndarray) -> int:
        """Halve (rounding down) the weight of the voxels where ``mask [M]`` is true: evidence
        against them. Those left with none are dropped; returns how many."""
        if not mask.any():
            return 0
        self.version += 1
        self.weights[mask] = np.floor(self.weights[mask] / 2)
        gone = self.weights <= 0
        if gone.any():
            self.remove(gone)
        return int(gone.sum())

    def support(self) -> np.ndarray:
        """``[M]`` each voxel's weight over the largest weight among it and its 26 neighbours, in
        (0, 1]. Depth noise scatters a few of a surface's points into the voxels beside it; those
        are hit a fraction as often as the surface itself (Kinect at 1.5 m: weight 1-4 beside
        20-30), while a part of the object seen in few views has neighbours seen as rarely."""
        if not len(self.keys):
            return np.zeros(0)
        ijk = unpack_keys(self.keys)
        strongest = self.weights.copy()
        for offset in np.stack(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij"), -1).reshape(-1, 3):
            if not offset.any():
                continue
            pos, found = self._lookup(pack_keys(ijk + offset))
            strongest[found] = np.maximum(strongest[found], self.weights[pos[found]])
        return self.weights / np.maximum(strongest, 1e-12)

    def covariances(self) -> np.ndarray:
        """``[M, 3, 3]`` covariance of the points seen in each voxel (needs ``covariance``)."""
        if not self.covariance:
            raise ConfigError("this voxel grid keeps no second moments: build it with covariance=True")
        m = self.moments
        second = np.stack([m[:, [0, 1, 2]], m[:, [1, 3, 4]], m[:, [2, 4, 5]]], axis=1)
        return second - self.points[:, :, None] * self.points[:, None, :]

    def to_gaussians(self, object_id: int = 0, min_weight: float = 1.0, scale: float = 0.6,
                     opacity: float = 0.95, edge_scale: float | None = None,
                     select: np.ndarray | None = None) -> Gaussians:
        """One Gaussian per voxel with at least ``min_weight`` (and, if given, ``select [M]`` true).

        ``scale`` is the standard deviation of a fully covered voxel, in voxels: without
        ``covariance`` every Gaussian is that ball; with it, each principal axis of the voxel's
        point covariance gets ``scale * sqrt(12)`` of its standard deviation (a voxel's width
        uniformly covered has a standard deviation of ``width / sqrt(12)``), so a voxel gets the
        shape of what was seen in it.

        ``edge_scale`` (with ``covariance``): along a surface axis (the two largest) on which a
        neighbouring voxel is missing on either side, the voxel lies at an edge of what was seen
        (a silhouette, a depth discontinuity), and the axis gets ``edge_scale * sqrt(12)`` of its
        standard deviation instead: ``scale`` overlaps neighbours to close the gaps between them,
        which at an edge draws the surface past where it ends (over what lies behind it).
        """
        keep = self.weights >= min_weight
        if select is not None:
            keep &= select
        points = torch.from_numpy(self.points[keep]).float()
        colors = torch.from_numpy(self.colors[keep]).float().clamp(0, 1)
        if not self.covariance:
            return Gaussians.from_points(points, colors, scale * self.voxel_size, opacity=opacity, object_id=object_id)
        variances, axes = np.linalg.eigh(self.covariances()[keep])
        axes[:, :, 2] *= np.sign(np.linalg.det(axes))[:, None]  # a rotation: eigh may return a reflection
        floor = (_MIN_STD * self.voxel_size) ** 2  # a voxel seen at one point every time is not a hole
        factors = np.full(variances.shape, scale)
        if edge_scale is not None:
            centres = self.points[keep]
            for k in (1, 2):
                step = axes[:, :, k] * self.voxel_size
                edge = ~(self.contains(centres + step) & self.contains(centres - step))
                factors[edge, k] = edge_scale
        stds = factors * math.sqrt(12.0) * np.sqrt(np.maximum(variances, floor))
        return Gaussians.from_points(points, colors, torch.from_numpy(stds).float(), opacity=opacity,
                                     object_id=object_id, quats=rotmat_to_quat(torch.from_numpy(axes)).float())

    def state_dict(self) -> dict:
        return {"voxel_size": self.voxel_size, "max_weight": self.max_weight, "covariance": self.covariance,
                "keys": self.keys, "points": self.points, "colors": self.colors, "weights": self.weights,
                "last_seen": self.last_seen, "moments": self.moments}

    @classmethod
    def from_state_dict(cls, state: dict) -> VoxelGrid:
        grid = cls(float(state["voxel_size"]), float(state["max_weight"]), bool(state["covariance"]))
        for name in ("keys", "points", "colors", "weights", "last_seen", "moments"):
            setattr(grid, name, np.asarray(state[name]))
        return grid


def _second_moments(points: np.ndarray, spread: np.ndarray | None) -> np.ndarray:
    """``[N, 6]`` (xx, xy, xz, yy, yz, zz) of points ``[N, 3]``, plus ``spread [N]`` on the diagonal."""
    x, y, z = points.T
    moments = np.stack([x * x, x * y, x * z, y * y, y * z, z * z], axis=1)
    if spread is not None:
        moments[:, [0, 3, 5]] += np.asarray(spread)[:, None]
    return moments
