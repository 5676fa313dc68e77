"""Transitions for training and evaluating dynamics, from a memory's own tracks.

A :class:`Sequence` holds one episode's per-frame object states as the memory estimated them
(box centres, orientations, velocities by finite differences), the agent's poses and
actions, and the scaffold as a :class:`Heightmap`. :func:`state_at` turns frame ``k`` into
a batch-1 :class:`WorldState`; :func:`transition_batch` gathers frames for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from splatworld.dynamics.state import Heightmap, WorldState, footprint_half, support_under
from splatworld.errors import SplatworldError
from splatworld.scene.transforms import pose_to_matrix, rotmat_to_quat


@dataclass
class Sequence:
    """One episode as ``T`` frames of ``N`` object slots (float64 tensors).

    position ``[T, N, 3]``, quat ``[T, N, 4]``, yaw ``[T, N]`` (unwrapped), extent ``[N, 3]``,
    seen ``[T, N]`` bool (the object was observed at that frame, so its pose is measured, not
    remembered), valid ``[T, N]`` (born), agent ``[T, 3]``, action ``[T, 2]``, dt, geometry.
    """

    position: torch.Tensor
    quat: torch.Tensor
    yaw: torch.Tensor
    extent: torch.Tensor
    seen: torch.Tensor
    valid: torch.Tensor
    agent: torch.Tensor
    action: torch.Tensor
    dt: float
    geometry: Heightmap

    def __len__(self) -> int:
        return self.position.shape[0]


def _yaw_of(quat: torch.Tensor) -> torch.Tensor:
    w, x, y, z = quat.unbind(-1)
    return torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def _unwrap(angles: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.unwrap(angles.numpy(), axis=0))


def sequence_from_poses(poses: np.ndarray, extent: np.ndarray, seen: np.ndarray, agent: np.ndarray,
                        action: np.ndarray, dt: float, geometry: Heightmap) -> Sequence:
    """From box-centre poses ``[T, N, 7]`` (NaN where an object is not born yet)."""
    poses = torch.as_tensor(np.asarray(poses, dtype=np.float64))
    valid = torch.isfinite(poses).all(-1)
    poses = torch.where(valid[..., None], poses, torch.tensor([0.0, 0, 0, 1, 0, 0, 0], dtype=torch.float64))
    quat = poses[..., 3:] / torch.linalg.norm(poses[..., 3:], dim=-1, keepdim=True)
    return Sequence(poses[..., :3], quat, _unwrap(_yaw_of(quat)), torch.as_tensor(np.asarray(extent, np.float64)),
                    torch.as_tensor(np.asarray(seen, bool)) & valid, valid,
                    torch.as_tensor(np.asarray(agent, np.float64)), torch.as_tensor(np.asarray(action, np.float64)),
                    float(dt), geometry)


def sequence_from_memory(memory, episode) -> Sequence:
    """The tracks a :class:`~splatworld.memory.SceneMemory` estimated over ``episode``.

    A track's box is the bounding box of its final model, in its own frame; its position each
    frame is that box's centre in the world. Frames where the episode has no agent pose or action
    raise, since the dynamics are conditioned on them."""
    n_frames = memory.frame_count
    infos = [episode.info(i) for i in range(n_frames)]
    missing = [i.index for i in infos if i.agent_pose is None or i.action is None]
    if missing:
        raise SplatworldError(f"{episode.path}: frame {missing[0]} has no agent_pose or action")
    tracks = memory.tracks  # every track is born with model points
    poses = np.full((n_frames, len(tracks), 7), np.nan)
    seen = np.zeros((n_frames, len(tracks)), bool)
    extent = np.zeros((len(tracks), 3))
    for j, track in enumerate(tracks):
        lo, hi = track.model.points.min(axis=0), track.model.points.max(axis=0)
        centre = torch.from_numpy((lo + hi) / 2)
        extent[j] = hi - lo
        mats = pose_to_matrix(torch.tensor(track.poses, dtype=torch.float64))  # [T_j, 4, 4] world_from_object
        centres = mats[:, :3, :3] @ centre + mats[:, :3, 3]
        quats = rotmat_to_quat(mats[:, :3, :3])
        k = track.first_frame
        poses[k:k + len(mats), j] = torch.cat([centres, quats], -1).numpy()
        seen[k:k + len(mats), j] = np.asarray(track.labels) != 0
    agent = np.array([i.agent_pose[:3] for i in infos])
    action = np.array([i.action for i in infos])
    return sequence_from_poses(poses, extent, seen, agent, action, 1.0 / episode.fps, Heightmap.from_memory(memory))


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
    return WorldState(pos, seq.quat[k], velocity, yaw_rate, seq.extent.expand(len(k), -1, -1).clone(), rest,
                      seq.valid[k], seq.agent[k], k.double() * dt,
                      seq.geometry)


def transition_batch(seq: Sequence, frames: torch.Tensor, noise: float = 0.0, generator=None):
    """Training targets for frames ``[B]``: ``(state, action [B, 2], delta_xy [B, N, 2],
    delta_yaw [B, N], mask [B, N])``; the mask keeps objects seen at k-1, k and k+1.

    ``noise`` (m): objects are shifted in x-y by Gaussian noise of this std (velocities kept) and
    the target is the step from the shifted place to the true next one, so the model learns to
    correct the small errors a rollout makes instead of compounding them."""
    state = state_at(seq, frames)
    delta_xy = seq.position[frames + 1, :, :2] - seq.position[frames, :, :2]
    if noise > 0:
        shift = torch.randn(delta_xy.shape, generator=generator, dtype=delta_xy.dtype) * noise
        state = state.replace(position=state.position + torch.nn.functional.pad(shift, (0, 1)))
        delta_xy = delta_xy - shift
    delta_yaw = seq.yaw[frames + 1] - seq.yaw[frames]
    mask = seq.seen[frames - 1] & seq.seen[frames] & seq.seen[frames + 1] & seq.valid[frames + 1]
    return state, seq.action[frames], delta_xy, delta_yaw, mask
