"""Plain-torch EWA projection of 3D Gaussians and SH colour evaluation (differentiable).

This is the reference every backend follows. The rules match gsplat's
``fully_fused_projection`` (pinhole, ``eps2d`` low-pass blur, near/far culling,
Jacobian clamping at 1.3x the field of view) except that the screen-space bound is
``sigma_cutoff`` standard deviations per axis (3 by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from splatworld.scene.cameras import Camera
from splatworld.scene.gaussians import SH_C0, Gaussians
from splatworld.scene.transforms import quat_to_rotmat


GSPLAT_SIGMA_CUTOFF = math.sqrt(2.0 * math.log(255.0))
"""gsplat's bound in our terms: it reaches each Gaussian over the pixels where its alpha is at least
1/255 (an opacity-aware bound of at most sqrt(2 ln 255) ~ 3.33 sigma), which is ``sigma_cutoff``
at this value, where the alpha threshold always binds first."""


@dataclass(frozen=True)
class RasterSettings:
    """Rules shared by every backend.

    Attributes:
        tile_size: tile edge in pixels for binning (does not change the image).
        eps2d: screen-space blur added to each 2D covariance's diagonal (pixels^2).
        near_plane, far_plane: z-depth range (metres) of Gaussians that are drawn.
        sigma_cutoff: a Gaussian touches the pixels within this many standard deviations.
        alpha_min: contributions with a smaller alpha are skipped.
        alpha_max: alpha is clamped to this value.
        transmittance_min: a pixel stops when its transmittance would fall to this value.
    """

    tile_size: int = 16
    eps2d: float = 0.3
    near_plane: float = 0.01
    far_plane: float = 1e10
    sigma_cutoff: float = 3.0
    alpha_min: float = 1.0 / 255.0
    alpha_max: float = 0.999
    transmittance_min: float = 1e-4

    @property
    def power_max(self) -> float:
        """Largest ``0.5 * d^T Sigma^-1 d`` inside the cutoff ellipse."""
        return 0.5 * self.sigma_cutoff**2


class Projected(NamedTuple):
    """Screen-space Gaussians, one row per input Gaussian.

    Attributes:
        means2d: ``[N, 2]`` pixel coordinates (pixel centres at half-integers).
        conics: ``[N, 3]`` upper triangle ``(a, b, c)`` of the inverse 2D covariance.
        depths: ``[N]`` camera z of the centres.
        radii: ``[N, 2]`` int32 half-extents in pixels; 0 = culled.
        opacities: ``[N]`` in (0, 1).
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor
    opacities: torch.Tensor


def covariance_3d(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Covariances ``[..., 3, 3] = R S S^T R^T`` from wxyz quaternions ``[..., 4]`` and std devs ``[..., 3]``."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(gaussians: Gaussians, camera: Camera, settings: RasterSettings) -> Projected:
    """Project Gaussians into ``camera`` (EWA splatting), in the Gaussians' dtype."""
    dtype = gaussians.dtype
    w, h = camera.width, camera.height
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    cov = covariance_3d(gaussians.quats, gaussians.scales)
    view = camera.viewmat.to(gaussians.means.device, dtype)
    rv, tv = view[:3, :3], view[:3, 3]
    means_c = gaussians.means @ rv.T + tv
    cov_c = rv @ cov @ rv.T
    x, y, z = means_c.unbind(-1)
    in_depth = (z > settings.near_plane) & (z < settings.far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # keeps culled rows finite for autograd
    tan_x, tan_y = 0.5 * w / fx, 0.5 * h / fy
    tx = z * torch.clamp(x / z, min=-(cx / fx + 0.3 * tan_x), max=(w - cx) / fx + 0.3 * tan_x)
    ty = z * torch.clamp(y / z, min=-(cy / fy + 0.3 * tan_y), max=(h - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * tx / z**2, zero, fy / z, -fy * ty / z**2], dim=-1).reshape(-1, 2, 3)
    cov2d = jac @ cov_c @ jac.transpose(-1, -2)
    c00 = cov2d[:, 0, 0] + settings.eps2d
    c11 = cov2d[:, 1, 1] + settings.eps2d
    c01 = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
    det = c00 * c11 - c01 * c01
    ok = in_depth & (det > 0)
    det = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c11 / det, -c01 / det, c00 / det], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    radii = torch.ceil(settings.sigma_cutoff * torch.stack([c00, c11], dim=-1).clamp(min=0).sqrt()).detach()
    inside = (
        (means2d[:, 0] + radii[:, 0] > 0) & (means2d[:, 0] - radii[:, 0] < w)
        & (means2d[:, 1] + radii[:, 1] > 0) & (means2d[:, 1] - radii[:, 1] < h)
    )
    radii = torch.where((ok & inside.detach())[:, None], radii, torch.zeros_like(radii)).to(torch.int32)
    return Projected(means2d, conics, means_c[:, 2], radii, gaussians.opacities)


# Real spherical-harmonic basis constants, 3DGS / gsplat convention (degrees 1-3).
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real SH basis ``[..., (degree + 1) ** 2]`` at unit directions ``[..., 3]`` (degree <= 3)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [_C2[0] * xy, _C2[1] * yz, _C2[2] * (2.0 * zz - xx - yy), _C2[3] * xz, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * xy * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_colors(gaussians: Gaussians, camera_center: torch.Tensor) -> torch.Tensor:
    """View-dependent RGB ``[N, 3]`` seen from ``camera_center [3]`` (3DGS: ``max(SH + 0.5, 0)``)."""
    degree = gaussians.sh_degree
    if degree == 0:
        return torch.clamp_min(gaussians.sh[:, 0, :] * SH_C0 + 0.5, 0.0)
    dirs = torch.nn.functional.normalize(gaussians.means - camera_center.to(gaussians.means.device, gaussians.dtype), dim=-1)
    basis = sh_basis(dirs, degree)
    return torch.clamp_min((basis[:, :, None] * gaussians.sh).sum(dim=1) + 0.5, 0.0)
