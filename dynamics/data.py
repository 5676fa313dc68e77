"""Transitions for training and evaluating dynamics, from a memory's own tracks.

A :class:`Sequence` holds one episode's per-frame object states as the memory estimated them
(box centres, orientations, velocities by finite differences), the agent's poses and
actions, and the scaffold as a :class:`Heightmap`. :func:`state_at` turns frame ``k`` into
a batch-1 :class:`WorldState`; :func:`window_batch` gathers multi-step windows for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError

from splatworld.dynamics.state import (HULL_VERTICES, OUTLINE_DIRECTIONS, Heightmap, WorldState, box_outline,
                                       convex_hull, footprint_half, footprint_outline, support_under)
from splatworld.errors import SplatworldError
from splatworld.memory.view import MemoryView
from splatworld.scene.transforms import pose_to_matrix, quat_conjugate, quat_multiply, quat_to_rotmat, rotmat_to_quat


@dataclass
class Sequence:
    """One episode as ``T`` frames of ``N`` object slots (float64 tensors).

    position ``[T, N, 3]``, quat ``[T, N, 4]``, yaw ``[T, N]`` (turn about world z, accumulated),
    tilt ``[T, N]`` (radians tipped off world z since the previous frame), extent ``[N, 3]``,
    outline ``[N, K]`` (:func:`~splatworld.dynamics.state.footprint_outline`), hull ``[N, V, 3]``
    (:func:`~splatworld.dynamics.state.convex_hull`, or None),
    seen ``[T, N]`` bool (the object was observed at that frame, so its pose is measured, not
    remembered), valid ``[T, N]`` (born), agent ``[T, 3]``, action ``[T, 2]``, dt, geometry.
    """

    position: torch.Tensor
    quat: torch.Tensor
    yaw: torch.Tensor
    tilt: torch.Tensor
    extent: torch.Tensor
    outline: torch.Tensor
    seen: torch.Tensor
    valid: torch.Tensor
    agent: torch.Tensor
    action: torch.Tensor
    dt: float
    geometry: Heightmap
    hull: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.position.shape[0]


def rotation_increment(q_from: torch.Tensor, q_to: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The world-frame rotation ``q_to * q_from^-1`` (``[..., 4]`` wxyz) split into a turn about
    world z and a tilt off it (swing-twist): ``(yaw [...], tilt [...])`` in radians, yaw in
    ``(-pi, pi]``. Unlike differences of Euler yaws, both stay well defined for an object lying
    on its side, whose Euler yaw jumps by up to pi from one frame to the next."""
    step = quat_multiply(q_to, quat_conjugate(q_from))
    w, z = step[..., 0], step[..., 3]  # the twist about z is (w, z); the swing's size is |(w, z)|
    sign = torch.where(w < 0, -1.0, 1.0).to(w)  # q and -q are the same rotation: take the short way
    yaw = 2 * torch.atan2(z * sign, w * sign)
    tilt = 2 * torch.acos(torch.sqrt(w * w + z * z).clamp(max=1.0))
    return yaw, tilt


def sequence_from_poses(poses: np.ndarray, extent: np.ndarray, seen: np.ndarray, agent: np.ndarray,
                        action: np.ndarray, dt: float, geometry: Heightmap, outline: np.ndarray | None = None,
                        hull: np.ndarray | None = None) -> Sequence:
    """From box-centre poses ``[T, N, 7]`` (NaN where an object is not born yet) of boxes ``extent
    [N, 3]`` with footprint outlines ``outline [N, K]`` (the boxes' own when None) and convex hulls
    ``hull [N, V, 3]`` (box frame; none when None). An object's
    ``yaw`` is its turn about world z accumulated frame by frame (:func:`rotation_increment`)
    from 0 at its first frame, and ``tilt`` ``[T, N]`` how far it tipped off z since the frame
    before (0 at the first frame)."""
    poses = torch.as_tensor(np.asarray(poses, dtype=np.float64))
    valid = torch.isfinite(poses).all(-1)
    poses = torch.where(valid[..., None], poses, torch.tensor([0.0, 0, 0, 1, 0, 0, 0], dtype=torch.float64))
    quat = poses[..., 3:] / torch.linalg.norm(poses[..., 3:], dim=-1, keepdim=True)
    yaw_step, tilt_step = rotation_increment(quat[:-1], quat[1:])
    both = valid[:-1] & valid[1:]
    zero = torch.zeros_like(quat[:1, :, 0])
    yaw = torch.cat([zero, torch.where(both, yaw_step, 0.0).cumsum(0)])
    tilt = torch.cat([zero, torch.where(both, tilt_step, 0.0)])
    extent = torch.as_tensor(np.asarray(extent, np.float64))
    outline = box_outline(extent) if outline is None else torch.as_tensor(np.asarray(outline, np.float64))
    return Sequence(poses[..., :3], quat, yaw, tilt, extent, outline,
                    torch.as_tensor(np.asarray(seen, bool)) & valid, valid,
                    torch.as_tensor(np.asarray(agent, np.float64)), torch.as_tensor(np.asarray(action, np.float64)),
                    float(dt), geometry, None if hull is None else torch.as_tensor(np.asarray(hull, np.float64)))


def _yaw_matrix(yaw: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``yaw`` about z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def yaw_box(points: np.ndarray, prefer_axis: float = 0.01) -> tuple[float, np.ndarray, np.ndarray]:
    """The bounding box of ``points [M, 3]`` turned about z to the least footprint area.

    Returns ``(yaw, centre [3], size [3])``: the box's yaw in ``[-pi/4, pi/4)`` and centre in the
    points' frame, and its size along its own axes. An axis-aligned box (yaw 0) is kept unless a
    turned one is smaller by more than ``prefer_axis`` (a fraction), so round shapes keep yaw 0.
    Searches whole degrees, then tenths around the best."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or not len(points):
        raise SplatworldError(f"yaw_box: points must be [M, 3] with M > 0, got {points.shape}")
    xy = points[:, :2]
    try:  # a footprint's extent is its convex hull's: search over a few dozen points, not thousands
        xy = xy[ConvexHull(xy).vertices]
    except QhullError:  # fewer than 3 points, or all on a line: search over them all
        pass

    def areas(yaws: np.ndarray) -> np.ndarray:
        c, s = np.cos(yaws), np.sin(yaws)
        u = xy[:, 0, None] * c + xy[:, 1, None] * s  # [M, A] coordinates along each box's x axis
        v = -xy[:, 0, None] * s + xy[:, 1, None] * c
        return np.ptp(u, axis=0) * np.ptp(v, axis=0)

    coarse = np.deg2rad(np.arange(-45.0, 45.0))
    best = coarse[np.argmin(areas(coarse))]
    fine = best + np.deg2rad(np.arange(-1.0, 1.01, 0.1))
    fine_areas = areas(fine)
    yaw = float(fine[np.argmin(fine_areas)])
    if fine_areas.min() > (1 - prefer_axis) * areas(np.zeros(1))[0]:
        yaw = 0.0
    yaw = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
    rotation = _yaw_matrix(yaw)
    local = points @ rotation  # coordinates in the box's axes
    lo, hi = local.min(axis=0), local.max(axis=0)
    return yaw, rotation @ ((lo + hi) / 2), hi - lo


def box_frame(points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """object_from_box ``[4, 4]``, size ``[3]``, footprint outline ``[K]`` and convex hull ``[V, 3]``
    (:func:`~splatworld.dynamics.state.convex_hull`) of the least-footprint yaw-turned bounding box of
    a model's ``points [P, 3]``, in its own frame. (A memory object's frame
    is world-aligned at birth, so a box along that frame would be too big for an object standing turned.)"""
    yaw, centre, size = yaw_box(points)
    rotation = _yaw_matrix(yaw)
    frame = torch.eye(4, dtype=torch.float64)
    frame[:3, :3] = torch.from_numpy(rotation)
    frame[:3, 3] = torch.from_numpy(centre)
    local = (points - centre) @ rotation
    return frame, torch.from_numpy(size), footprint_outline(local), convex_hull(local, size)


@dataclass(frozen=True)
class MemorySlots:
    """Which remembered object each state slot holds: ``ids`` (track ids) and ``object_from_box
    [N, 4, 4]``, each box's frame in its object's own frame (a state holds boxes, a memory object poses)."""

    ids: tuple[int, ...]
    object_from_box: torch.Tensor

    def object_poses(self, position: torch.Tensor, quat: torch.Tensor) -> dict[int, np.ndarray]:
        """world_from_object ``[4, 4]`` by track id, from box centres ``position [N, 3]`` and ``quat [N, 4]``."""
        world_from_box = torch.eye(4, dtype=torch.float64).repeat(len(self.ids), 1, 1)
        world_from_box[:, :3, :3] = quat_to_rotmat(quat)
        world_from_box[:, :3, 3] = position
        return dict(zip(self.ids, (world_from_box @ torch.linalg.inv(self.object_from_box)).numpy()))


def state_from_memory(view: MemoryView, agent_position, dt: float,
                      geometry: Heightmap | None = None) -> tuple[WorldState, MemorySlots]:
    """The batch-1 :class:`WorldState` of what a memory's ``view`` holds: every object not displaced
    (box centre and orientation at its remembered pose, velocity from its last two frames, zero when
    it was not moving or not seen), the agent at ``agent_position [3]``, the scaffold as a heightmap
    (``geometry``, a :meth:`Heightmap.from_memory` of it made earlier, if given: a caller stepping
    along with the memory refreshes it less often than every frame).
    Returns the state and the :class:`MemorySlots` that map its slots back to the memory's objects."""
    tracks = view.remembered()
    frames, extents, outlines, hulls, positions, quats, velocities, yaw_rates = [], [], [], [], [], [], [], []
    for track in tracks:
        frame, extent, outline, hull = box_frame(track.model_points)
        outlines.append(outline)
        hulls.append(hull)
        mats = pose_to_matrix(torch.from_numpy(track.recent_poses)) @ frame  # [2, 4, 4] world_from_box
        boxes = mats[:, :3, 3]
        q = rotmat_to_quat(mats[:, :3, :3])
        frames.append(frame)
        extents.append(extent)
        positions.append(boxes[1])
        quats.append(q[1])
        velocities.append((boxes[1] - boxes[0]) / dt)
        yaw_rates.append(rotation_increment(q[0], q[1])[0] / dt)
    geometry = Heightmap.from_memory(view) if geometry is None else geometry
    n = len(tracks)
    stack = (lambda xs, size: torch.stack(xs)[None] if xs else torch.zeros(1, 0, size, dtype=torch.float64))
    position, quat, extent = stack(positions, 3), stack(quats, 4), stack(extents, 3)
    outline = stack(outlines, OUTLINE_DIRECTIONS)
    rest = position[..., 2] - support_under(geometry, position[..., :2], footprint_half(quat, extent))
    state = WorldState(position, quat, stack(velocities, 3),
                       torch.stack(yaw_rates)[None] if n else torch.zeros(1, 0, dtype=torch.float64),
                       extent, outline, rest, torch.ones(1, n, dtype=torch.bool),
                       torch.as_tensor(np.asarray(agent_position, dtype=np.float64)[:3]).reshape(1, 3),
                       torch.tensor([float(view.time)], dtype=torch.float64), geometry,
                       torch.stack(hulls)[None] if n else torch.zeros(1, 0, HULL_VERTICES, 3, dtype=torch.float64))
    return state, MemorySlots(tuple(t.id for t in tracks),
                              torch.stack(frames) if n else torch.zeros(0, 4, 4, dtype=torch.float64))


def state_at(seq: Sequence, frames) -> WorldState:
    """The state at ``frames`` (int or ``[B]`` indices >= 1): velocities from the previous frame."""
    k = torch.as_tensor(frames).reshape(-1)
    if (k < 1).any() or (k >= len(seq)).any():
        raise SplatworldError(f"state_at: frames must be in [1, {len(seq)}), got {k.tolist()}")
    dt = seq.dt
    pos, prev = seq.position[k], seq.position[k - 1]
    valid = seq.valid[k] & seq.valid[k - 1]
    velocity = torch.where(valid[..., None], (pos - prev) / dt, torch.zeros_like(pos))
    yaw_rate = torch.where(valid, (seq.yaw[k] - seq.yaw[k - 1]) / dt, torch.zeros_like(seq.yaw[k]))
    rest = pos[..., 2] - support_under(seq.geometry, pos[..., :2], footprint_half(seq.quat[k], seq.extent))
    return WorldState(pos, seq.quat[k], velocity, yaw_rate, seq.extent.expand(len(k), -1, -1).clone(),
                      seq.outline.expand(len(k), -1, -1).clone(), rest,
                      seq.valid[k], seq.agent[k], k.double() * dt,
                      seq.geometry, None if seq.hull is None else seq.hull.expand(len(k), -1, -1, -1).clone())


def window_batch(seq: Sequence, frames: torch.Tensor, horizon: int = 1, noise: float = 0.0, generator=None,
                 max_tilt: float = 0.1):
    """Training windows of ``horizon`` steps from frames ``k [B]``: ``(state, actions [B, H, 2],
    target_xy [B, H, N, 2], target_yaw [B, H, N], mask [B, H, N])``: the state at k, the
    recorded agent commands, and each object's x-y position and yaw turned since k after each
    step, as the memory tracked them. The mask keeps objects seen at k-1 and k (their velocity
    is measured) and at the step's end, that tipped by at most ``max_tilt`` (rad) in any step
    of the window up to there: the models move objects in the plane, so an object falling
    over is no target for them.

    ``noise`` (m): objects start shifted in x-y by Gaussian noise of this std (velocities kept)
    while the targets stay, so the model learns to correct the small errors a rollout makes
    instead of compounding them."""
    frames = torch.as_tensor(frames).reshape(-1)
    if (frames + horizon >= len(seq)).any():
        raise SplatworldError(f"window_batch: frames + horizon {horizon} must be < {len(seq)}, got {frames.tolist()}")
    state = state_at(seq, frames)
    ahead = frames[:, None] + torch.arange(1, horizon + 1)  # [B, H] the frame each step ends at
    if noise > 0:
        shift = torch.randn(state.position[..., :2].shape, generator=generator, dtype=state.position.dtype) * noise
        state = state.replace(position=state.position + torch.nn.functional.pad(shift, (0, 1)))
    target_xy = seq.position[ahead][..., :2]
    target_yaw = seq.yaw[ahead] - seq.yaw[frames][:, None]
    tipped = seq.tilt[ahead].cummax(dim=1).values > max_tilt
    mask = (seq.seen[frames - 1] & seq.seen[frames] & (seq.tilt[frames] <= max_tilt))[:, None]
    mask = mask & seq.seen[ahead] & seq.valid[ahead] & ~tipped
    actions = seq.action[frames[:, None] + torch.arange(horizon)]
    return state, actions, target_xy, target_yaw, mask
