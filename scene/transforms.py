"""Rigid transforms. Quaternions are ``[w, x, y, z]``; poses ``[x, y, z, qw, qx, qy, qz]``."""

from __future__ import annotations

import numpy as np
import torch
from kornia.geometry.conversions import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion

from splatworld.errors import check_shape


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of (not necessarily unit) wxyz quaternions.

    Args:
        quats: ``[..., 4]`` wxyz; normalised here.

    Returns:
        ``[..., 3, 3]``.
    """
    check_shape("quats", quats, (..., 4))
    return quaternion_to_rotation_matrix(torch.nn.functional.normalize(quats, dim=-1))


def rotmat_to_quat(rotmats: torch.Tensor) -> torch.Tensor:
    """wxyz unit quaternions ``[..., 4]`` of rotation matrices ``[..., 3, 3]``, with ``w >= 0``."""
    check_shape("rotmats", rotmats, (..., 3, 3))
    q = rotation_matrix_to_quaternion(rotmats)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """The conjugate of wxyz quaternions ``[..., 4]``: the inverse rotation of unit ones."""
    check_shape("q", q, (..., 4))
    return q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=q.dtype, device=q.device)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of wxyz quaternions ``[..., 4]`` (rotation ``b`` first)."""
    check_shape("a", a, (..., 4))
    check_shape("b", b, (..., 4))
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def rotation_angle(rotmats: torch.Tensor) -> torch.Tensor:
    """Angles ``[...]`` (degrees) of rotations ``[..., 3, 3]``: ``acos((trace - 1) / 2)``, clipped
    to [-1, 1] (the angle between two rotations is that of ``R1^T R2``).

    Example:
        >>> round(float(rotation_angle(quat_to_rotmat(torch.tensor([0.0, 0.0, 0.0, 1.0])))), 6)
        180.0
    """
    trace = rotmats.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.acos(((trace - 1) / 2).clamp(-1.0, 1.0)))


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation ``[3, 3]`` nearest a matrix ``[3, 3]`` in the Frobenius norm (SVD, with the
    determinant's sign fixed so that it is a rotation, not a reflection)."""
    u, _, vt = np.linalg.svd(matrix)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def pose_to_matrix(pose: torch.Tensor) -> torch.Tensor:
    """4x4 homogeneous matrices ``[..., 4, 4]`` from poses ``[..., 7]`` (xyz + wxyz)."""
    check_shape("pose", pose, (..., 7))
    out = torch.zeros(pose.shape[:-1] + (4, 4), dtype=pose.dtype, device=pose.device)
    out[..., :3, :3] = quat_to_rotmat(pose[..., 3:])
    out[..., :3, 3] = pose[..., :3]
    out[..., 3, 3] = 1.0
    return out


def matrix_to_pose(matrix: torch.Tensor) -> torch.Tensor:
    """Poses ``[..., 7]`` (xyz + wxyz) of rigid 4x4 matrices ``[..., 4, 4]``."""
    check_shape("matrix", matrix, (..., 4, 4))
    return torch.cat([matrix[..., :3, 3], rotmat_to_quat(matrix[..., :3, :3])], dim=-1)


def as_matrix(pose: torch.Tensor) -> torch.Tensor:
    """Accept a pose ``[7]`` or a rigid matrix ``[4, 4]``; return ``[4, 4]``."""
    if pose.shape == (7,):
        return pose_to_matrix(pose)
    check_shape("pose", pose, (4, 4))
    return pose
