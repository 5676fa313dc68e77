"""The static scene: a voxel scaffold fused inside the workspace, its support plane, and the
geometric queries planners and dynamics ask of it (occupancy, signed distance, support height)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from splatworld.memory.config import MemoryConfig
from splatworld.memory.ground import Ground, fit_ground
from splatworld.memory.refine import RefineConfig, RefinedSplats, View, refine
from splatworld.memory.registration import plane_height, ransac_plane
from splatworld.memory.voxels import VoxelGrid
from splatworld.scene.cameras import Camera
from splatworld.scene.gaussians import Gaussians


GROUND_EXPLAINED = 0.9  # share of the floor's colour variance its pattern must explain to replace its voxels
_SUPPORT_SEARCH_PLANES = 6  # planes fitted in turn in the search for the support plane (200 RANSAC draws each)


def largest_patch(xy: np.ndarray, cell: float) -> float:
    """The area (m^2) of the largest 8-connected piece of the ``cell``-sized squares that points
    ``xy [N, 2]`` fall in: the tops of a few occluders of one height, which RANSAC fits with one
    plane, are several small pieces; a table top is one."""
    if not len(xy):
        return 0.0
    keys = np.floor(xy / cell).astype(np.int64)
    keys -= keys.min(axis=0)
    grid = np.zeros(keys.max(axis=0) + 1, bool)
    grid[tuple(keys.T)] = True
    labels, count = ndimage.label(grid, structure=np.ones((3, 3), bool))
    return float(np.bincount(labels.ravel())[1:].max()) * cell ** 2


class StaticMap:
    """The static scaffold (:attr:`grid`) and its support plane (the table top).

    Attributes:
        grid: colour and covariance voxels of the static pixels, fused where the workspace box allows.
        support_plane: ``[4]`` ``a x + b y + c z + d = 0`` with the normal up, or None before one is found.
        support_region: ``[4]`` x0, y0, x1, y1 of the plane's observed part.
        support_color: ``[3]`` median colour of the plane.
        ground: the floor under the support plane and its pattern (:func:`fit_ground`), or None.
        refined: the scaffold's splats as photometric refinement left them (:meth:`refine`), or None.
    """

    def __init__(self, cfg: MemoryConfig):
        self.cfg = cfg
        self.grid = VoxelGrid(cfg.static_voxel, covariance=True)
        self.support_plane: np.ndarray | None = None
        self.support_region = np.zeros(4)
        self.support_color = np.full(3, 0.5)
        self.ground: Ground | None = None
        self.ground_candidates = 0  # floor candidates the ground was fitted to
        self.refined: RefinedSplats | None = None
        self._drawn: tuple[tuple, Gaussians] | None = None  # (grid version, refinement steps, size), gaussians()
        self._layout_cache: tuple[int, tuple] | None = None  # (grid version, _layout())
        self._kdtree: tuple[int, cKDTree] | None = None
        self._raised: tuple | None = None  # (grid version and plane, k-d tree of the voxels standing out of it)

    def integrate(self, points: np.ndarray, colors: np.ndarray, static: np.ndarray, depth: np.ndarray,
                  camera: Camera, time: float) -> None:
        """Fuse the frame's static pixels (``static [H, W]``) inside the workspace, every
        ``static_stride``-th in each direction (``points [H, W, 3]`` world, ``colors [H, W, 3]``)."""
        cfg = self.cfg
        lo, hi = np.asarray(cfg.workspace[:3]), np.asarray(cfg.workspace[3:])
        stride = np.zeros_like(static)
        stride[::cfg.static_stride, ::cfg.static_stride] = True
        fuse = static & stride & (points >= lo).all(axis=-1) & (points <= hi).all(axis=-1)
        # each fused pixel stands for a patch a stride of pixels wide at its depth (variance width^2 / 12)
        footprint = cfg.static_stride * depth[fuse] / math.sqrt(camera.fx * camera.fy)
        self.grid.integrate(points[fuse], colors[fuse], time, spread=footprint**2 / 12)

    def fit_support_plane(self) -> None:
        """The highest large horizontal plane of the scaffold (the table top), by RANSAC: a plane
        tilted by more than ``support_max_tilt_deg`` is not taken, however high, nor one whose
        largest piece (:func:`largest_patch`) is under ``support_min_area``. Planes are found one
        after another; once one is taken, only the points above it are searched on, so layers of
        the floor (fused from drifted camera poses, each with more points than the table) cannot
        use up the search below the table (on `long` seed 1 three of them did, and the floor
        became the support plane)."""
        if len(self.grid) < 200:
            return
        self._layout_cache = self._drawn = None  # the splats depend on the plane (completion) and the ground
        rng = np.random.default_rng(0)  # same input, same plane
        points = self.grid.points
        best, level = None, math.cos(math.radians(self.cfg.support_max_tilt_deg))
        band = 0.01  # a plane's inliers lie within this of it; "above" a plane is beyond its band
        for _ in range(_SUPPORT_SEARCH_PLANES):
            if len(points) < 100:
                break
            plane, inliers = ransac_plane(points, band, 200, rng)
            if (plane[2] > level and (best is None or -plane[3] / plane[2] > -best[3] / best[2])
                    and largest_patch(points[inliers, :2], self.cfg.static_voxel) >= self.cfg.support_min_area):
                best = plane
                points = points[points @ plane[:3] + plane[3] >= band]
            else:
                points = points[~inliers]
        self.support_plane = best
        if best is not None:
            on_plane = np.abs(self.grid.points @ best[:3] + best[3]) < band
            xy = self.grid.points[on_plane, :2]
            self.support_region = np.concatenate(np.percentile(xy, [1, 99], axis=0))  # x0, y0, x1, y1
            self.support_color = np.median(self.grid.colors[on_plane], axis=0)
            self._fit_ground(-best[3] / best[2])

    def _fit_ground(self, support_z: float) -> None:
        """Refit :attr:`ground` below the support plane at height ``support_z`` when the points
        that may lie on the floor grew by a tenth since the last fit (a fit takes a few tenths of a
        second; the floor is seen early and then mostly revisited)."""
        below = support_z - 0.1
        count = int((self.grid.points[:, 2] < below).sum())
        if self.ground is not None and count < 1.1 * self.ground_candidates:
            return
        self.ground_candidates = count
        self.ground = fit_ground(self.grid.points, self.grid.colors, below, self.cfg.static_voxel,
                                 np.random.default_rng(0))

    def support_fill(self) -> np.ndarray:
        """Centres ``[F, 3]`` of the patches completing the support plane where it was never seen
        (under objects, say): one per static-voxel cell of the plane's observed x-y region that
        holds no static voxel."""
        if self.support_plane is None:
            return np.zeros((0, 3))
        x0, y0, x1, y1 = self.support_region
        step = self.cfg.static_voxel
        gx, gy = np.meshgrid(np.arange(x0, x1, step) + step / 2, np.arange(y0, y1, step) + step / 2)
        xy = np.stack([gx.ravel(), gy.ravel()], axis=1)
        points = np.concatenate([xy, plane_height(self.support_plane, xy)[:, None]], axis=1)
        missing = ~(self.grid.contains(points) | self.grid.contains(points - [0, 0, step / 2]))
        return points[missing]

    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The scaffold's splats as they are now (cached by grid version): which grid voxels are
        drawn (``keep [M]``), the support plane's completion (:meth:`support_fill`, ``[F, 3]``),
        and each splat's anchor ``[N, 3]`` (the surface point it stands for) and voxel key ``[N]``,
        the kept voxels' first. Voxels on a ground whose pattern explains its colours
        (:data:`GROUND_EXPLAINED`) are left to the ground layer, which draws the same colours
        sharper and to the horizon."""
        if self._layout_cache is None or self._layout_cache[0] != self.grid.version:
            keep = self.grid.weights >= 1.0
            if self.ground is not None and self.ground.explained >= GROUND_EXPLAINED:
                keep &= np.abs(self.grid.points @ self.ground.plane[:3] + self.ground.plane[3]) > self.cfg.static_voxel
            fill_points = self.support_fill()
            anchors = np.concatenate([self.grid.points[keep], fill_points])
            keys = np.concatenate([self.grid.keys[keep], self.grid.key_of(fill_points)])
            self._layout_cache = (self.grid.version, (keep, fill_points, anchors, keys))
        return self._layout_cache[1]

    def scaffold(self, subset: np.ndarray | None = None) -> tuple[Gaussians, torch.Tensor, np.ndarray]:
        """The voxels as Gaussians, as they are now, with unseen support-plane patches completed;
        each splat's anchor ``[N, 3]`` and voxel key ``[N]`` (:meth:`_layout`). ``subset``
        (bool ``[N]``): only those splats. A voxel's splat takes an eigen-decomposition of its
        covariance, and once the scaffold is refined only the voxels seen since are drawn from it."""
        keep, fill_points, anchors, keys = self._layout()
        subset = np.ones(len(keys), bool) if subset is None else subset
        kept = np.flatnonzero(keep)
        select = np.zeros(len(self.grid), bool)
        select[kept[subset[:len(kept)]]] = True
        seen = self.grid.to_gaussians(object_id=0, min_weight=1.0, scale=self.cfg.static_splat_scale,
                                      edge_scale=self.cfg.static_edge_scale, select=select)
        fill = fill_points[subset[len(kept):]]
        fill_colors = np.repeat(self.support_color[None], len(fill), axis=0)
        fill_splats = Gaussians.from_points(torch.from_numpy(fill).float(), torch.from_numpy(fill_colors).float(),
                                            0.6 * self.cfg.static_voxel)
        return Gaussians.concat([seen, fill_splats]), torch.from_numpy(anchors[subset]).float(), keys[subset]

    def _unrefined(self) -> np.ndarray:
        """bool ``[N]`` over :meth:`scaffold`: splats of voxels refinement has not taken up yet."""
        keys = self._layout()[3]
        return np.ones(len(keys), bool) if self.refined is None else ~np.isin(keys, self.refined.keys)

    def gaussians(self) -> Gaussians:
        """The static scene as Gaussians: the refined splats (:meth:`refine`) and the scaffold's
        splats of voxels seen since, or the whole scaffold before any refinement."""
        state = (self.grid.version, None if self.refined is None else (self.refined.steps, len(self.refined)))
        if self._drawn is None or self._drawn[0] != state:
            fresh = self.scaffold(self._unrefined())[0]
            self._drawn = (state, fresh if self.refined is None else Gaussians.concat([self.refined.gaussians(), fresh]))
        return self._drawn[1]

    def refine(self, views: Sequence[View], steps: int, cfg: RefineConfig, rng: np.random.Generator,
               on_step=None) -> list[float]:
        """Photometric refinement (:func:`~splatworld.memory.refine.refine`) of the static splats
        on ``views``; voxels seen since the last refinement join it first. Returns the losses."""
        fresh = self._unrefined()
        if self.refined is None:
            self.refined = RefinedSplats.empty()
        self.refined.retain(self._layout()[3])
        self.refined.adopt(*self.scaffold(fresh))
        return refine(self.refined, views, steps, cfg, rng, on_step)

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        """bool ``[N]``: points inside an occupied static voxel."""
        return self.grid.contains(np.asarray(points, dtype=np.float64).reshape(-1, 3))

    def near(self, points: np.ndarray, distance: float, plane: np.ndarray) -> np.ndarray:
        """bool ``[N]``: points within ``distance`` of the surface of a static voxel (its centre plus
        half a voxel) that stands out of the support ``plane [4]`` (more than a voxel above it: the
        table itself is near every object standing on it)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        key = (self.grid.version, tuple(np.round(plane, 4)))
        if self._raised is None or self._raised[0] != key:
            raised = self.grid.points[self.grid.points @ plane[:3] + plane[3] > self.cfg.static_voxel]
            self._raised = (key, cKDTree(raised) if len(raised) else None)
        tree = self._raised[1]
        if tree is None or not len(points):
            return np.zeros(len(points), bool)
        dist, _ = tree.query(points, distance_upper_bound=distance + self.cfg.static_voxel / 2)
        return np.isfinite(dist)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Approximate signed distance ``[N]`` (m) to the static surfaces: distance to the nearest
        static voxel centre minus half a voxel; negative within 6 cm under the highest static
        surface seen at the point's x-y (table tops and occluder tops are slabs)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not len(self.grid):
            return np.full(len(points), np.inf)
        if self._kdtree is None or self._kdtree[0] != self.grid.version:
            self._kdtree = (self.grid.version, cKDTree(self.grid.points))
        dist, _ = self._kdtree[1].query(points)
        sdf = dist - self.cfg.static_voxel / 2
        top = self.support_height(points[:, :2])
        inside = (points[:, 2] < top - self.cfg.static_voxel / 2) & (points[:, 2] > top - 0.06)
        return np.where(inside, -np.abs(sdf), sdf)

    def support_height(self, xy: np.ndarray, radius: float = 0.03) -> np.ndarray:
        """Height ``[N]`` of the highest static surface under each ``xy`` point (NaN where none seen)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        pts = self.grid.points
        if not len(pts):
            return np.full(len(xy), np.nan)
        tree = cKDTree(pts[:, :2])
        out = np.full(len(xy), np.nan)
        for i, near in enumerate(tree.query_ball_point(xy, radius)):
            if near:
                out[i] = pts[near, 2].max()
        return out
