"""A sparse voxel hash: running means of points and colours per occupied voxel.

Revisiting a place refines its voxels instead of adding new ones, so a map of a static
scene stays the size of the surfaces seen, however long the episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from splatworld.scene.gaussians import Gaussians

_OFFSET = 1 << 20  # voxel indices in (-2^20, 2^20) per axis, packed into 21 bits each
_MASK = (1 << 21) - 1


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
    """

    voxel_size: float
    max_weight: float = 30.0

    def __post_init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.points = np.zeros((0, 3))
        self.colors = np.zeros((0, 3))
        self.weights = np.zeros(0)
        self.last_seen = np.zeros(0)
        self.version = 0  # bumped by every change, for caches of derived data

    def __len__(self) -> int:
        return len(self.keys)

    def key_of(self, points: np.ndarray) -> np.ndarray:
        return pack_keys(np.floor(points / self.voxel_size).astype(np.int64))

    def integrate(self, points: np.ndarray, colors: np.ndarray, time: float = 0.0) -> None:
        """Fuse points ``[N, 3]`` with colours ``[N, 3]`` (one observation)."""
        if len(points) == 0:
            return
        self.version += 1
        keys = self.key_of(points)
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        p_mean = np.stack([np.bincount(inverse, points[:, k], len(uniq)) for k in range(3)], 1) / counts[:, None]
        c_mean = np.stack([np.bincount(inverse, colors[:, k], len(uniq)) for k in range(3)], 1) / counts[:, None]
        pos = np.searchsorted(self.keys, uniq)
        found = (pos < len(self.keys)) & (self.keys[np.minimum(pos, len(self.keys) - 1)] == uniq) \
            if len(self.keys) else np.zeros(len(uniq), bool)
        # existing voxels: running mean with one unit of weight per observation
        idx = pos[found]
        w = self.weights[idx][:, None]
        self.points[idx] = (self.points[idx] * w + p_mean[found]) / (w + 1)
        self.colors[idx] = (self.colors[idx] * w + c_mean[found]) / (w + 1)
        self.weights[idx] = np.minimum(self.weights[idx] + 1, self.max_weight)
        self.last_seen[idx] = time
        # new voxels
        new = ~found
        if new.any():
            at = pos[new]
            self.keys = np.insert(self.keys, at, uniq[new])
            self.points = np.insert(self.points, at, p_mean[new], axis=0)
            self.colors = np.insert(self.colors, at, c_mean[new], axis=0)
            self.weights = np.insert(self.weights, at, np.ones(new.sum()))
            self.last_seen = np.insert(self.last_seen, at, np.full(new.sum(), time))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """bool ``[N]``: the voxel holding each point is occupied."""
        if len(self.keys) == 0:
            return np.zeros(len(points), bool)
        keys = self.key_of(points)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[pos] == keys

    def remove(self, mask: np.ndarray) -> None:
        """Drop the voxels where ``mask [M]`` is true."""
        self.version += 1
        keep = ~mask
        self.keys, self.points, self.colors = self.keys[keep], self.points[keep], self.colors[keep]
        self.weights, self.last_seen = self.weights[keep], self.last_seen[keep]

    def to_gaussians(self, object_id: int = 0, min_weight: float = 1.0, scale: float = 0.6,
                     opacity: float = 0.95) -> Gaussians:
        """One isotropic Gaussian per voxel with at least ``min_weight`` (std = ``scale * voxel_size``)."""
        keep = self.weights >= min_weight
        return Gaussians.from_points(torch.from_numpy(self.points[keep]).float(),
                                     torch.from_numpy(self.colors[keep]).float().clamp(0, 1),
                                     scale * self.voxel_size, opacity=opacity, object_id=object_id)

    def state_dict(self) -> dict:
        return {"voxel_size": self.voxel_size, "max_weight": self.max_weight, "keys": self.keys,
                "points": self.points, "colors": self.colors, "weights": self.weights, "last_seen": self.last_seen}

    @classmethod
    def from_state_dict(cls, state: dict) -> VoxelGrid:
        grid = cls(float(state["voxel_size"]), float(state["max_weight"]))
        for name in ("keys", "points", "colors", "weights", "last_seen"):
            setattr(grid, name, np.asarray(state[name]))
        return grid
