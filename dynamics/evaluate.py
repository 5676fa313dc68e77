"""Dynamics error against ground-truth poses over a horizon (:func:`horizon_errors`); the
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
    pred_move = end.position[:, -1, slots] - state.position[:, slots]
    true_move = gt_poses[starts + horizon][:, gts, :3] - gt_poses[starts][:, gts, :3]
    pred_rot = quat_multiply(end.quat[:, -1, slots], quat_conjugate(state.quat[:, slots]))
    true_rot = quat_multiply(gt_poses[starts + horizon][:, gts, 3:], quat_conjugate(gt_poses[starts][:, gts, 3:]))
    born = state.valid[:, slots]
    return {"position": torch.linalg.norm(pred_move - true_move, dim=-1)[born].numpy(),
            "rotation": rotation_angle(quat_to_rotmat(pred_rot).transpose(-1, -2) @ quat_to_rotmat(true_rot))[born].numpy(),
            "true_motion": torch.linalg.norm(true_move, dim=-1)[born].numpy()}


