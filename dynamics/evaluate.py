"""Dynamics error against ground-truth poses over a horizon (:func:`horizon_errors`) and at the end
of each push (:func:`push_events`, :func:`push_end_errors`); the
``splatworld eval-dynamics`` job that runs it on held-out episodes is :mod:`splatworld.jobs.eval_dynamics`."""

from __future__ import annotations

import numpy as np
import torch

from splatworld.dynamics.data import state_at
from splatworld.dynamics.models import rollout
from splatworld.scene.transforms import quat_conjugate, quat_multiply, quat_to_rotmat, rotation_angle


def horizon_errors(model, seq, gt_poses: torch.Tensor, track_to_gt: dict[int, int], horizon: int,
                   every: int) -> dict[str, np.ndarray]:
    """Errors of one model at one horizon (steps) over start frames ``1, 1 + every, ...``.

    Args:
        gt_poses: ``[T, G, 7]`` true box-centre poses. track_to_gt: sequence slot -> gt index.
    Returns ``position`` (m), ``rotation`` (degrees) and ``true_motion`` (m) per (start, object).
    """
    starts = torch.arange(1, len(seq) - horizon, every)
    if not len(starts) or not track_to_gt:
        return {k: np.zeros(0) for k in ("position", "rotation", "true_motion")}
    state = state_at(seq, starts)
    actions = torch.stack([seq.action[starts + t] for t in range(horizon)], dim=1)
    end = rollout(model, state, actions)
    slots = torch.tensor(sorted(track_to_gt))
    gts = torch.tensor([track_to_gt[int(s)] for s in slots])
    errors = _motion_errors(state.position[:, slots], state.quat[:, slots], end.position[:, -1, slots],
                            end.quat[:, -1, slots], gt_poses[starts][:, gts], gt_poses[starts + horizon][:, gts])
    born = state.valid[:, slots]
    return {key: errors[key][born].numpy() for key in ("position", "rotation", "true_motion")}


def _motion_errors(position: torch.Tensor, quat: torch.Tensor, end_position: torch.Tensor, end_quat: torch.Tensor,
                   true_start: torch.Tensor, true_end: torch.Tensor) -> dict[str, torch.Tensor]:
    """How a predicted motion, from ``position [..., 3]``, ``quat [..., 4]`` to ``end_position``,
    ``end_quat``, differs from the true one, between poses ``true_start`` and ``true_end [..., 7]``:
    ``position`` (m, between the displacements), ``rotation`` (degrees, between the rotations),
    ``true_motion`` (m), and the displacements ``predicted_move`` and ``true_move [..., 3]``."""
    predicted_move = end_position - position
    true_move = true_end[..., :3] - true_start[..., :3]
    predicted_turn = quat_multiply(end_quat, quat_conjugate(quat))
    true_turn = quat_multiply(true_end[..., 3:], quat_conjugate(true_start[..., 3:]))
    return {"position": torch.linalg.norm(predicted_move - true_move, dim=-1),
            "rotation": rotation_angle(quat_to_rotmat(predicted_turn).transpose(-1, -2) @ quat_to_rotmat(true_turn)),
            "true_motion": torch.linalg.norm(true_move, dim=-1), "predicted_move": predicted_move, "true_move": true_move}



def push_events(gt_poses: torch.Tensor, dt: float, speed: float = 0.01, join_s: float = 1.0, lead_s: float = 0.5,
                settle_s: float = 1.0) -> list[tuple[int, int, int]]:
    """The pushes in true poses ``gt_poses [T, G, 7]``: per object, each stretch in which it moves
    faster than ``speed`` (m/s), stretches less than ``join_s`` apart joined into one. Returns
    ``(object, start, end)`` frames: from ``lead_s`` before it sets off (the pusher not yet on it)
    to ``settle_s`` after it stops (at rest again), clipped to ``[1, T - 1]``."""
    steps = torch.linalg.norm(gt_poses[1:, :, :3] - gt_poses[:-1, :, :3], dim=-1) / dt  # [T-1, G]
    moving = (steps > speed).numpy()
    join, lead, settle = (max(1, round(s / dt)) for s in (join_s, lead_s, settle_s))
    last = len(gt_poses) - 1
    events = []
    for g in range(moving.shape[1]):
        frames = np.flatnonzero(moving[:, g])  # step k moves the object from frame k to k + 1
        if not len(frames):
            continue
        breaks = np.flatnonzero(np.diff(frames) > join)
        for first, final in zip(np.r_[frames[0], frames[breaks + 1]], np.r_[frames[breaks], frames[-1]]):
            events.append((g, max(1, int(first) - lead), min(last, int(final) + 1 + settle)))
    return sorted(events, key=lambda e: (e[1], e[0]))


def push_end_errors(model, seq, gt_poses: torch.Tensor, track_to_gt: dict[int, int], events, fall: float = 0.05
                    ) -> dict[str, np.ndarray]:
    """Errors at the end of each push (:func:`push_events`) whose object the memory tracks at its
    start: the model rolled out from the memory's state at the start with the recorded agent
    commands to the push's end, against the true displacement over the same frames.

    Returns per push ``position`` (m), ``rotation`` (degrees), ``true_motion`` (m), and whether
    the object truly fell (``true_fell``: ended more than ``fall`` m lower, off its support) and
    whether the model has it fall (``predicted_fell``)."""
    gt_to_slot = {g: s for s, g in track_to_gt.items()}
    chosen = [(gt_to_slot[g], start, end) for g, start, end in events
              if g in gt_to_slot and bool(seq.valid[start, gt_to_slot[g]])]
    keys = ("position", "rotation", "true_motion", "true_fell", "predicted_fell")
    if not chosen:
        return {k: np.zeros(0) for k in keys}
    slots, starts, ends = (torch.tensor(c) for c in zip(*chosen))
    horizon = int((ends - starts).max())
    ahead = (starts[:, None] + torch.arange(horizon)).clamp(max=len(seq) - 1)
    actions = torch.where((ahead < ends[:, None])[..., None], seq.action[ahead], torch.zeros(()))  # still past the end
    state = state_at(seq, starts)
    traj = rollout(model, state, actions)
    rows = torch.arange(len(slots))
    last = ends - starts - 1
    gts = torch.tensor([track_to_gt[int(s)] for s in slots])
    errors = _motion_errors(state.position[rows, slots], state.quat[rows, slots], traj.position[rows, last, slots],
                            traj.quat[rows, last, slots], gt_poses[starts, gts], gt_poses[ends, gts])
    return {"position": errors["position"].numpy(), "rotation": errors["rotation"].numpy(),
            "true_motion": errors["true_motion"].numpy(), "true_fell": (errors["true_move"][:, 2] < -fall).numpy(),
            "predicted_fell": (errors["predicted_move"][:, 2] < -fall).numpy()}
