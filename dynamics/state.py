"""The dynamics' world state: batched, immutable, plus a static-geometry handle.

Conventions: world z-up metres, quaternions wxyz, ``B`` rollouts (batch), ``N`` object slots
(padded; ``valid`` marks the real ones). An object's ``position`` is the centre of its box,
``extent`` the box's full size in the object's frame, ``outline`` its footprint's support
function in the box frame: how far the object reaches from the box centre along ``K`` directions
(:func:`outline_angles`). A box describes a ball or a teddy badly; the outline says where
its sides really are, and so when a pusher touches it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError

from splatworld.errors import ShapeError, check_shape
from splatworld.scene.transforms import quat_to_rotmat


@dataclass(frozen=True)
class Heightmap:
    """Height of the highest static surface over an x-y grid: the scaffold's support surfaces
    (table top, floor) and obstacles (walls, boxes) as one 2.5D map.

    Attributes:
        origin: ``[2]`` x-y of the corner of cell (0, 0).
        cell: cell edge (m).
        heights: ``[H, W]`` (row = y, column = x) highest static point per cell; cells never
            seen hold ``floor``.
        floor: height outside the map and where nothing was seen.
    """

    origin: torch.Tensor
    cell: float
    heights: torch.Tensor
    floor: float = 0.0

    def height_at(self, xy: torch.Tensor) -> torch.Tensor:
        """Heights ``[...]`` at points ``xy [..., 2]`` (nearest cell; ``floor`` outside the map)."""
        ij = torch.floor((xy - self.origin.to(xy)) / self.cell).long()
        h, w = self.heights.shape
        inside = (ij[..., 0] >= 0) & (ij[..., 0] < w) & (ij[..., 1] >= 0) & (ij[..., 1] < h)
        flat = (ij[..., 1].clamp(0, h - 1) * w + ij[..., 0].clamp(0, w - 1))
        heights = self.heights.to(xy).reshape(-1)[flat]
        return torch.where(inside, heights, torch.full_like(heights, self.floor))

    def to(self, device: torch.device | str) -> Heightmap:
        """The same map with its tensors on ``device``."""
        return dataclasses.replace(self, origin=self.origin.to(device), heights=self.heights.to(device))

    @classmethod
    def from_points(cls, points: np.ndarray, cell: float = 0.02, floor: float | None = None,
                    fill: tuple[np.ndarray, np.ndarray] | None = None) -> Heightmap:
        """The highest of ``points [M, 3]`` per cell. ``fill``: ``(plane [4], region [4])`` a support
        plane ``a x + b y + c z + d = 0`` and its x0, y0, x1, y1 region, for cells never seen there
        (under objects, say)."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or not len(points):
            raise ShapeError(f"Heightmap.from_points: points must be [M, 3] with M > 0, got {points.shape}")
        floor = float(np.percentile(points[:, 2], 1)) if floor is None else floor
        lo = points[:, :2].min(axis=0) - cell
        shape = np.ceil((points[:, :2].max(axis=0) + cell - lo) / cell).astype(int)  # x, y
        ij = np.floor((points[:, :2] - lo) / cell).astype(int)
        heights = np.full((shape[1], shape[0]), -np.inf)
        np.maximum.at(heights, (ij[:, 1], ij[:, 0]), points[:, 2])
        if fill is not None:
            (a, b, c, d), (x0, y0, x1, y1) = fill
            ys, xs = np.nonzero(~np.isfinite(heights))
            cx, cy = lo[0] + (xs + 0.5) * cell, lo[1] + (ys + 0.5) * cell
            on = (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
            heights[ys[on], xs[on]] = -(a * cx[on] + b * cy[on] + d) / c
        heights[~np.isfinite(heights)] = floor
        return cls(torch.tensor(lo), float(cell), torch.tensor(heights), floor)

    @classmethod
    def from_memory(cls, view, cell: float = 0.02) -> Heightmap:
        """The static scaffold of a memory's :class:`~splatworld.memory.MemoryView`, its support
        plane completing table patches it never saw."""
        if not len(view.static_points):
            raise ShapeError("Heightmap.from_memory: the memory has no static scaffold yet")
        fill = None if view.support_plane is None else (view.support_plane, view.support_region)
        return cls.from_points(view.static_points, cell, fill=fill)


OUTLINE_DIRECTIONS = 16  # K: evenly spaced directions an object's footprint outline is sampled along


def outline_angles(k: int = OUTLINE_DIRECTIONS) -> torch.Tensor:
    """``[K]`` angles (rad) of the outline's directions, from the box's x axis, counter-clockwise."""
    return torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)


def footprint_outline(points: np.ndarray, k: int = OUTLINE_DIRECTIONS) -> torch.Tensor:
    """``[K]`` support function of the x-y footprint of ``points [M, 3]`` (in the box frame): the
    largest coordinate of any point along each direction of :func:`outline_angles`."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or not len(points):
        raise ShapeError(f"footprint_outline: points must be [M, 3] with M > 0, got {points.shape}")
    angles = outline_angles(k).numpy()
    return torch.from_numpy((points[:, :2] @ np.stack([np.cos(angles), np.sin(angles)])).max(axis=0))


HULL_VERTICES = 32  # V: at most this many vertices of an object's convex hull are kept


def convex_hull(points: np.ndarray, extent: np.ndarray, k: int = HULL_VERTICES) -> torch.Tensor:
    """``[k, 3]`` vertices of the convex hull of ``points [M, 3]`` (in the box frame): the hull's own
    vertices, thinned to ``k`` by farthest-point sampling from the lowest, the last repeated to fill
    ``k`` rows. Points that span no volume (fewer than four, or flat) give the corners of the box
    ``extent [3]``."""
    points = np.asarray(points, dtype=np.float64)
    try:
        vertices = points[ConvexHull(points).vertices]
    except (QhullError, ValueError, IndexError):
        corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        vertices = corners * np.asarray(extent, dtype=np.float64) / 2
    chosen = [int(np.argmin(vertices[:, 2]))]
    distance = np.linalg.norm(vertices - vertices[chosen[0]], axis=1)
    while len(chosen) < min(k, len(vertices)):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(vertices - vertices[chosen[-1]], axis=1))
    chosen += [chosen[-1]] * (k - len(chosen))
    return torch.from_numpy(vertices[chosen])


def box_outline(extent: torch.Tensor, k: int = OUTLINE_DIRECTIONS) -> torch.Tensor:
    """``[..., K]`` the outline of boxes ``extent [..., 3]`` (centred, in their own frame)."""
    angles = outline_angles(k).to(extent)
    return (extent[..., :1].abs() / 2 * angles.cos().abs() + extent[..., 1:2].abs() / 2 * angles.sin().abs())


def box_yaw(quat: torch.Tensor) -> torch.Tensor:
    """``[...]`` the world heading (rad) of the x axis of boxes turned by ``quat [..., 4]``
    (wxyz), projected onto the x-y plane."""
    w, x, y, z = quat.unbind(-1)
    return torch.atan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z))


def outline_support(outline: torch.Tensor, quat: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``[..., M]`` how far objects with outlines ``outline [..., K]`` and orientations ``quat
    [..., 4]`` reach from their box centres along world directions ``angle [..., M]`` (rad),
    interpolated linearly between the outline's directions."""
    k = outline.shape[-1]
    where = torch.remainder(angle - box_yaw(quat)[..., None], 2 * math.pi) * (k / (2 * math.pi))
    below = torch.floor(where)
    lo = below.long().remainder(k)
    lead = torch.broadcast_shapes(outline.shape[:-1], where.shape[:-1])
    table = outline.expand(*lead, k)
    lo = lo.expand(*lead, lo.shape[-1])
    return torch.lerp(table.gather(-1, lo), table.gather(-1, (lo + 1).remainder(k)), (where - below).expand_as(lo).to(table))


FOOTPRINT_PROBES = torch.tensor([[0.0, 0.0], [1, 1], [1, -1], [-1, 1], [-1, -1]])  # centre and corners, in half sizes


def box_half(quat: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` half sizes of the world-axis-aligned bounds of boxes ``extent [..., 3]`` turned by
    ``quat [..., 4]`` (wxyz)."""
    return (quat_to_rotmat(quat).abs() @ (extent / 2).unsqueeze(-1)).squeeze(-1)


def footprint_half(quat: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` half sizes of the world-axis-aligned x-y footprint of boxes ``extent [..., 3]``
    turned by ``quat [..., 4]`` (wxyz)."""
    return box_half(quat, extent)[..., :2]


def _highest_under(geometry: Heightmap, xy: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """``[...]`` the highest static surface at the centre and corners of footprints ``xy [..., 2]``
    with half sizes ``half [..., 2]``."""
    return geometry.height_at(xy[..., None, :] + FOOTPRINT_PROBES.to(xy) * half[..., None, :]).max(-1).values


def support_under(geometry: Heightmap, xy: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """``[...]`` the highest static surface under the central half of each footprint: what an
    object there rests on. (A 2 cm heightmap is coarse at table edges; an object falls once this
    central part is over the drop.)"""
    return _highest_under(geometry, xy, half / 2)


def obstacle_height(geometry: Heightmap, xy: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """``[...]`` the highest static surface under each whole footprint, 5 mm inside its edges
    (a neighbouring surface touching an edge is not under it): walls an object there is inside."""
    return _highest_under(geometry, xy, (half - 0.005).clamp(min=0.0))


@dataclass(frozen=True)
class WorldState:
    """Objects and agent of ``B`` rollouts at one time. Functions return new states, never mutate.

    Attributes:
        position: ``[B, N, 3]`` box centres.
        quat: ``[B, N, 4]`` orientation, wxyz.
        velocity: ``[B, N, 3]`` m/s.
        yaw_rate: ``[B, N]`` rad/s about world z.
        extent: ``[B, N, 3]`` box size in the object frame.
        outline: ``[B, N, K]`` support function of each footprint in its box frame (m,
            :func:`footprint_outline`; :func:`box_outline` for plain boxes).
        rest_height: ``[B, N]`` height of the centre above the support surface when resting
            (measured from the observation, so an over-sized model does not lift or sink it).
        valid: ``[B, N]`` bool, real objects.
        agent: ``[B, 3]`` agent (pusher) position.
        time: ``[B]`` seconds.
        geometry: the static scaffold, shared by the batch.
        hull: ``[B, N, V, 3]`` vertices of each object's convex hull in its box frame
            (:func:`convex_hull`), or None where only the outlines are known.
    """

    position: torch.Tensor
    quat: torch.Tensor
    velocity: torch.Tensor
    yaw_rate: torch.Tensor
    extent: torch.Tensor
    outline: torch.Tensor
    rest_height: torch.Tensor
    valid: torch.Tensor
    agent: torch.Tensor
    time: torch.Tensor
    geometry: Heightmap
    hull: torch.Tensor | None = None

    OBJECT_TENSORS = ("position", "quat", "velocity", "yaw_rate", "extent", "outline", "rest_height", "valid")
    TENSORS = OBJECT_TENSORS + ("agent", "time")
    OPTIONAL_OBJECT_TENSORS = ("hull",)  # None, or per object like OBJECT_TENSORS

    def present(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``names`` and of :attr:`OPTIONAL_OBJECT_TENSORS` this state holds a tensor for."""
        return names + tuple(k for k in self.OPTIONAL_OBJECT_TENSORS if getattr(self, k) is not None)

    def __post_init__(self) -> None:
        b, n = self.position.shape[:2] if self.position.dim() == 3 else (-1, -1)
        for name, shape in (("position", (b, n, 3)), ("quat", (b, n, 4)), ("velocity", (b, n, 3)),
                            ("yaw_rate", (b, n)), ("extent", (b, n, 3)), ("outline", (b, n, -1)), ("rest_height", (b, n)),
                            ("valid", (b, n)), ("agent", (b, 3)), ("time", (b,)), ("hull", (b, n, -1, 3))):
            if getattr(self, name) is None:
                continue
            check_shape(f"WorldState.{name}", getattr(self, name), tuple(None if s < 0 else s for s in shape))

    @property
    def batch(self) -> int:
        return self.position.shape[0]

    @property
    def n_objects(self) -> int:
        return self.position.shape[1]

    def replace(self, **changes) -> WorldState:
        return dataclasses.replace(self, **changes)

    def repeat(self, batch: int) -> WorldState:
        """A batch-1 state copied ``batch`` times (for B candidate action sequences)."""
        if self.batch != 1:
            raise ShapeError(f"WorldState.repeat: needs a batch of 1, got {self.batch}")
        return self.replace(**{k: getattr(self, k).expand(batch, *getattr(self, k).shape[1:]).clone()
                               for k in self.present(self.TENSORS)})

    @property
    def device(self) -> torch.device:
        return self.position.device

    def to(self, device: torch.device | str) -> WorldState:
        """The same state, its tensors and its geometry on ``device`` (rollouts run where the state is)."""
        return self.replace(geometry=self.geometry.to(device), **{k: getattr(self, k).to(device) for k in self.present(self.TENSORS)})

    def half_xy(self) -> torch.Tensor:
        """``[B, N, 2]`` half sizes of each box's world-axis-aligned x-y footprint."""
        return footprint_half(self.quat, self.extent)

    def support(self, angle: torch.Tensor) -> torch.Tensor:
        """``[B, N, M]`` how far each object reaches from its box centre along world directions
        ``angle [B, N, M]`` or ``[M]`` (rad): :func:`outline_support`."""
        return outline_support(self.outline, self.quat, angle)

    def bottom(self) -> torch.Tensor:
        """``[B, N]`` height of each object's resting contact (centre minus rest height)."""
        return self.position[..., 2] - self.rest_height


@dataclass(frozen=True)
class Trajectory:
    """What changes over a rollout, stacked over ``H`` steps: ``position [B, H, N, 3]``,
    ``quat [B, H, N, 4]``, ``velocity [B, H, N, 3]``, ``yaw_rate [B, H, N]``, ``agent [B, H, 3]``,
    ``time [B, H]``. The constant parts (extents, validity, geometry) stay in the start state."""

    position: torch.Tensor
    quat: torch.Tensor
    velocity: torch.Tensor
    yaw_rate: torch.Tensor
    agent: torch.Tensor
    time: torch.Tensor

    @classmethod
    def stack(cls, states: list[WorldState]) -> Trajectory:
        return cls(**{f.name: torch.stack([getattr(s, f.name) for s in states], dim=1)
                      for f in dataclasses.fields(cls)})
