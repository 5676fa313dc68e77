"""Scene data without time: Gaussians, cameras, PLY files and builders."""

from splatworld.scene.cameras import Camera, Cameras, look_at, opencv_to_nerfstudio, nerfstudio_to_opencv
from splatworld.scene.gaussians import Gaussians
from splatworld.scene.ply import read_ply, write_ply
from splatworld.scene.transforms import (
    pose_to_matrix,
    quat_conjugate,
    quat_multiply,
    quat_to_rotmat,
    rotmat_to_quat,
)

__all__ = [
    "Camera",
    "Cameras",
    "Gaussians",
    "look_at",
    "nerfstudio_to_opencv",
    "opencv_to_nerfstudio",
    "pose_to_matrix",
    "quat_conjugate",
    "quat_multiply",
    "quat_to_rotmat",
    "read_ply",
    "rotmat_to_quat",
    "write_ply",
]
