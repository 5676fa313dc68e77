"""Pinhole cameras.

Inside the code a camera is OpenCV: world-to-camera ``viewmat`` (x right, y down,
looking along +z). On disk (episode format, nerfstudio ``transforms.json``) a pose
is camera-to-world with OpenGL axes (x right, y up, looking along -z). The two
differ by a flip of the camera's y and z axes; convert once, at load time, with
:func:`nerfstudio_to_opencv` and back with :func:`opencv_to_nerfstudio`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from kornia.geometry.linalg import inverse_transformation

from splatworld.errors import ShapeError, check_shape

# Right-multiplying a camera-to-world matrix by this flips the camera's y and z axes.
_GL_CV_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def nerfstudio_to_opencv(c2w_gl: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera ``[..., 4, 4]`` from nerfstudio camera-to-world ``[..., 4, 4]`` (OpenGL axes)."""
    check_shape("c2w", c2w_gl, (..., 4, 4))
    c2w_cv = c2w_gl @ _GL_CV_FLIP.to(c2w_gl)
    return inverse_transformation(c2w_cv.reshape(-1, 4, 4)).reshape(c2w_gl.shape)


def opencv_to_nerfstudio(viewmat: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`nerfstudio_to_opencv`."""
    check_shape("viewmat", viewmat, (..., 4, 4))
    c2w_cv = inverse_transformation(viewmat.reshape(-1, 4, 4)).reshape(viewmat.shape)
    return c2w_cv @ _GL_CV_FLIP.to(viewmat)


def in_image(uv, z, width: int, height: int):
    """bool ``[...]``: pixel coordinates ``uv [..., 2]`` with depth ``z [...]`` in front of the camera
    and inside a ``width`` x ``height`` image (pixel centres at half-integers; torch or numpy)."""
    return (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)


def _world_to_camera(viewmat: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Points in camera coordinates: one camera ``viewmat [4, 4]`` for all ``points [..., 3]``, or one
    per leading entry (``viewmat [F, 4, 4]``, ``points [F, ..., 3]``)."""
    vm = viewmat.to(points.dtype)
    if vm.ndim == 2:
        return points @ vm[:3, :3].T + vm[:3, 3]
    flat = points.reshape(points.shape[0], -1, 3)
    return (flat @ vm[:, :3, :3].transpose(1, 2) + vm[:, None, :3, 3]).reshape(points.shape)


def _project(viewmat: torch.Tensor, fx: float, fy: float, cx: float, cy: float,
             points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates ``[..., 2]`` and z-depth ``[...]`` of world points ``[..., 3]`` (one formula
    for :class:`Camera` and :class:`Cameras`, which need not build a camera per frame)."""
    pc = _world_to_camera(viewmat, points)
    z = pc[..., 2]
    uv = torch.stack([fx * pc[..., 0] / z + cx, fy * pc[..., 1] / z + cy], dim=-1)
    return uv, z


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics in pixels and an OpenCV world-to-camera matrix.

    Attributes:
        fx, fy, cx, cy: intrinsics in pixels (pixel centres at half-integers).
        width, height: image size in pixels.
        viewmat: ``[4, 4]`` world-to-camera, OpenCV axes.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    viewmat: torch.Tensor

    def __post_init__(self) -> None:
        check_shape("viewmat", self.viewmat, (4, 4))
        if self.width <= 0 or self.height <= 0:
            raise ShapeError(f"camera size must be positive, got {self.width}x{self.height}")
        if not torch.isfinite(self.viewmat).all():
            raise ShapeError("viewmat has non-finite entries")

    @classmethod
    def from_fov(cls, fov_y_deg: float, width: int, height: int, viewmat: torch.Tensor) -> Camera:
        """Square-pixel camera with a vertical field of view in degrees, principal point at the centre."""
        f = 0.5 * height / torch.tan(torch.deg2rad(torch.tensor(fov_y_deg / 2.0))).item()
        return cls(f, f, width / 2.0, height / 2.0, width, height, viewmat)

    @classmethod
    def from_nerfstudio(cls, fx, fy, cx, cy, width, height, c2w_gl: torch.Tensor) -> Camera:
        """Camera from nerfstudio intrinsics and a camera-to-world ``transform_matrix`` (OpenGL axes)."""
        c2w = torch.as_tensor(c2w_gl, dtype=torch.float64)
        return cls(float(fx), float(fy), float(cx), float(cy), int(width), int(height), nerfstudio_to_opencv(c2w))

    def resized(self, width: int, height: int) -> Camera:
        """The same view at another image size (intrinsics scaled with it)."""
        sx, sy = width / self.width, height / self.height
        return Camera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height), self.viewmat)

    @property
    def K(self) -> torch.Tensor:
        """``[3, 3]`` intrinsic matrix."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=self.viewmat.dtype
        )

    @property
    def c2w_nerfstudio(self) -> torch.Tensor:
        """``[4, 4]`` camera-to-world with OpenGL axes, as written to ``transforms.json``."""
        return opencv_to_nerfstudio(self.viewmat)

    @property
    def center(self) -> torch.Tensor:
        """``[3]`` camera centre in world coordinates."""
        rot, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -rot.T @ t

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """Points ``[..., 3]`` in the camera frame (OpenCV)."""
        return _world_to_camera(self.viewmat, points)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel coordinates ``[..., 2]`` and z-depth ``[...]`` of world points ``[..., 3]``."""
        return _project(self.viewmat, self.fx, self.fy, self.cx, self.cy, points)

    def in_image(self, points: torch.Tensor) -> torch.Tensor:
        """bool ``[...]``: world points ``[..., 3]`` in front of the camera that project inside the image."""
        uv, z = self.project(points)
        return in_image(uv, z, self.width, self.height)

    def backproject(self, depth: torch.Tensor) -> torch.Tensor:
        """World points ``[H, W, 3]`` of a z-depth image ``[H, W]`` (pixel centres)."""
        check_shape("depth", depth, (self.height, self.width))
        v, u = torch.meshgrid(
            torch.arange(self.height, dtype=depth.dtype) + 0.5,
            torch.arange(self.width, dtype=depth.dtype) + 0.5,
            indexing="ij",
        )
        pc = torch.stack([(u - self.cx) / self.fx * depth, (v - self.cy) / self.fy * depth, depth], dim=-1)
        vm = self.viewmat.to(depth.dtype)
        # one [H*W, 3] @ [3, 3] product: as a batched [H, W, 3] product it takes 20x longer
        return ((pc - vm[:3, 3]).reshape(-1, 3) @ vm[:3, :3]).reshape(pc.shape)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenCV world-to-camera ``[4, 4]`` (float64) for a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that appears up in the image (z-up world by default).
    """
    eye, target, up = (torch.as_tensor(v, dtype=torch.float64) for v in (eye, target, up))
    forward = target - eye
    if forward.norm() < 1e-12:
        raise ShapeError("look_at: eye and target coincide")
    z = forward / forward.norm()
    x = torch.linalg.cross(z, up)
    if x.norm() < 1e-9:  # looking straight along `up`: pick any perpendicular
        x = torch.linalg.cross(z, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    rot = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = rot
    out[:3, 3] = -rot @ eye
    return out


@dataclass(frozen=True)
class Cameras:
    """``C`` pinhole cameras of one image size and intrinsics, batched (an episode's cameras, one
    per frame): ``intrinsics`` (a :class:`Camera` whose intrinsics and size they share) and OpenCV
    world-to-camera ``viewmats [C, 4, 4]``."""

    intrinsics: Camera
    viewmats: torch.Tensor

    def __post_init__(self) -> None:
        check_shape("viewmats", self.viewmats, (None, 4, 4))

    @classmethod
    def from_nerfstudio(cls, meta: dict, camera_to_world) -> Cameras:
        """The cameras of a ``transforms.json`` (``meta``: its ``fl_x fl_y cx cy w h``) with
        camera-to-world matrices ``[C, 4, 4]`` (OpenGL axes, as on disk)."""
        viewmats = nerfstudio_to_opencv(torch.as_tensor(camera_to_world, dtype=torch.float64))
        intrinsics = Camera(float(meta["fl_x"]), float(meta["fl_y"]), float(meta["cx"]), float(meta["cy"]),
                            int(meta["w"]), int(meta["h"]), torch.eye(4, dtype=torch.float64))
        return cls(intrinsics, viewmats)

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, index: int) -> Camera:
        return replace(self.intrinsics, viewmat=self.viewmats[index])

    def project(self, index, points) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel coordinates ``[..., 2]`` and z-depth ``[...]`` of world points ``[..., 3]`` (array-like)
        in camera ``index``; or, with ``index`` a sequence of ``F`` cameras, of points ``[F, ..., 3]``
        each in its own camera (one batched product, not a loop over frames)."""
        k = self.intrinsics
        index = index if isinstance(index, int) else torch.as_tensor(index, dtype=torch.long)
        return _project(self.viewmats[index], k.fx, k.fy, k.cx, k.cy, torch.as_tensor(points, dtype=torch.float64))

    def in_image(self, index, points) -> torch.Tensor:
        """bool ``[...]``: world points ``[..., 3]`` in front of camera ``index`` (or of each camera of
        a sequence, as in :meth:`project`) that project inside the image."""
        uv, z = self.project(index, points)
        return in_image(uv, z, self.intrinsics.width, self.intrinsics.height)
