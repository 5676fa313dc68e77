"""Pose accuracy of a track whose object frame is its own: align once, then compare."""

from __future__ import annotations

import numpy as np
import torch

from splatworld.errors import check_shape
from splatworld.scene.transforms import nearest_rotation, pose_to_matrix, rotation_angle


def fit_alignment(gt_poses, track_poses) -> np.ndarray:
    """The constant object-frame change ``X [4, 4]`` with ``T_gt[k] ~ T_track[k] @ X`` over ``K`` frames.

    A tracker may pick any frame for an object (origin at its first centroid, say). Rotation: the
    chordal L2 mean of ``R_track^T R_gt``; translation: the mean of ``R_track^T (t_gt - t_track)``.

    Args:
        gt_poses: ``[K, 7]`` world_from_object, position then quaternion wxyz (K >= 1).
        track_poses: ``[K, 7]`` same layout, the same frames.
    """
    gt = torch.as_tensor(np.asarray(gt_poses, dtype=np.float64))
    tr = torch.as_tensor(np.asarray(track_poses, dtype=np.float64))
    check_shape("gt_poses", gt, (None, 7))
    check_shape("track_poses", tr, (gt.shape[0], 7))
    g, t = pose_to_matrix(gt).numpy(), pose_to_matrix(tr).numpy()
    rel = np.einsum("kji,kjl->kil", t[:, :3, :3], g[:, :3, :3])  # R_track^T R_gt
    x = np.eye(4)
    x[:3, :3] = nearest_rotation(rel.sum(axis=0))
    x[:3, 3] = np.einsum("kji,kj->ki", t[:, :3, :3], g[:, :3, 3] - t[:, :3, 3]).mean(axis=0)
    return x


def aligned_pose_errors(gt_poses, track_poses) -> tuple[np.ndarray, np.ndarray]:
    """Position (m) and rotation (degrees) errors ``[K]`` of a track after one constant alignment
    (:func:`fit_alignment`, fitted over all ``K`` frames).

    Args:
        gt_poses: ``[K, 7]`` world_from_object, position then quaternion wxyz.
        track_poses: ``[K, 7]`` same layout, the same frames.
    """
    gt = torch.as_tensor(np.asarray(gt_poses, dtype=np.float64))
    tr = torch.as_tensor(np.asarray(track_poses, dtype=np.float64))
    check_shape("gt_poses", gt, (None, 7))
    check_shape("track_poses", tr, (gt.shape[0], 7))
    if not len(gt):
        return np.zeros(0), np.zeros(0)
    x = fit_alignment(gt, tr)
    g, t = pose_to_matrix(gt).numpy(), pose_to_matrix(tr).numpy()
    predicted = t @ x
    position_error = np.linalg.norm(predicted[:, :3, 3] - g[:, :3, 3], axis=1)
    residual = np.einsum("kji,kjl->kil", predicted[:, :3, :3], g[:, :3, :3])
    return position_error, rotation_angle(torch.from_numpy(residual)).numpy()


def centre_errors(gt_poses, track_centres) -> np.ndarray:
    """Position error (m) ``[K]`` of a point a tracker keeps on an object (its model's centre, say),
    after one constant alignment that never goes through the tracker's rotation.

    A track's origin is wherever it was born (its first centroid, off the object's centre), so
    when the tracker cannot see a rotation (a sphere, a cube turned onto another face) the wrong
    rotation carries that offset around and :func:`aligned_pose_errors` counts it as position
    error. Here the tracker's point ``c[k]`` is compared with the object's true pose alone:
    ``c[k] ~ t_gt[k] + R_gt[k] d + w``, with ``d`` a constant in the object's frame (where on the
    object the point sits) and ``w`` a constant in the world (the part of the object the tracker
    never sees, e.g. its bottom, biases its centre the same way whatever the object's pose),
    both fitted by least squares over the ``K`` frames.

    Args:
        gt_poses: ``[K, 7]`` world_from_object, position then quaternion wxyz.
        track_centres: ``[K, 3]`` the tracker's point in the world, the same frames.
    """
    gt = torch.as_tensor(np.asarray(gt_poses, dtype=np.float64))
    centres = np.asarray(track_centres, dtype=np.float64)
    check_shape("gt_poses", gt, (None, 7))
    check_shape("track_centres", torch.from_numpy(centres), (gt.shape[0], 3))
    if not len(gt):
        return np.zeros(0)
    g = pose_to_matrix(gt).numpy()
    design = np.concatenate([g[:, :3, :3], np.broadcast_to(np.eye(3), (len(g), 3, 3))], axis=2)  # [K, 3, 6]
    offset = centres - g[:, :3, 3]
    solution = np.linalg.lstsq(design.reshape(-1, 6), offset.reshape(-1), rcond=None)[0]
    return np.linalg.norm(offset - design @ solution, axis=1)


def still_motion(gt_poses, track_poses, still: float = 0.0005, moved: float = 0.001,
                 turned_deg: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How a track moved while its object stood still, over ``K`` frames it held the object (in
    order): for each of the ``K - 1`` steps between them, whether the truth stood still (moved
    under ``still`` m), whether the track moved anyway (over ``moved`` m or ``turned_deg``), and
    how far its position went (m). A memory's objects move only when something moves them.

    Args:
        gt_poses: ``[K, 7]`` world_from_object, position then quaternion wxyz.
        track_poses: ``[K, 7]`` same layout, the same frames.
    Returns:
        ``still [K - 1]`` bool, ``moved [K - 1]`` bool, ``distance [K - 1]`` m.
    """
    gt = torch.as_tensor(np.asarray(gt_poses, dtype=np.float64))
    tr = torch.as_tensor(np.asarray(track_poses, dtype=np.float64))
    check_shape("gt_poses", gt, (None, 7))
    check_shape("track_poses", tr, (gt.shape[0], 7))
    if len(gt) < 2:
        return np.zeros(0, bool), np.zeros(0, bool), np.zeros(0)
    t = pose_to_matrix(tr).numpy()
    gt_step = np.linalg.norm(np.diff(gt[:, :3].numpy(), axis=0), axis=1)
    distance = np.linalg.norm(np.diff(t[:, :3, 3], axis=0), axis=1)
    turn = rotation_angle(torch.from_numpy(np.einsum("kji,kjl->kil", t[:-1, :3, :3], t[1:, :3, :3]))).numpy()
    return gt_step < still, (distance > moved) | (turn > turned_deg), distance


def trajectory_errors(estimated, truth) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame camera position error (m) and rotation error (degrees) ``[T]`` of an estimated
    camera path against the true one, both camera-to-world ``[T, 4, 4]`` in the same world frame
    (no alignment: the first frame's given pose fixes it). The camera axes may be OpenCV or
    nerfstudio, the same in both: the angle between two rotations does not depend on them.

    The absolute trajectory error (ATE) RMSE is ``sqrt(mean(position ** 2))``.
    """
    est = torch.as_tensor(np.asarray(estimated, dtype=np.float64))
    true = torch.as_tensor(np.asarray(truth, dtype=np.float64))
    check_shape("estimated", est, (None, 4, 4))
    check_shape("truth", true, (est.shape[0], 4, 4))
    position = torch.linalg.norm(est[:, :3, 3] - true[:, :3, 3], dim=-1)
    return position.numpy(), rotation_angle(true[:, :3, :3].transpose(-1, -2) @ est[:, :3, :3]).numpy()
