"""The Gaussians container: one immutable bag of 3D Gaussian splats."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from splatworld.errors import ShapeError, check_shape
from splatworld.scene.transforms import as_matrix, quat_multiply, rotmat_to_quat

SH_C0 = 0.28209479177387814  # Y_0^0, the constant spherical-harmonic basis


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """DC SH coefficient ``[..., 3]`` that renders as ``rgb`` (3DGS convention: colour = C0 * dc + 0.5)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_sh0`."""
    return sh0 * SH_C0 + 0.5


@dataclass(frozen=True)
class Gaussians:
    """A set of N 3D Gaussians, in the 3DGS parameterisation.

    Attributes:
        means: ``[N, 3]`` centres, world frame (or an object's own frame).
        quats: ``[N, 4]`` orientations, wxyz, not necessarily normalised.
        log_scales: ``[N, 3]`` natural log of the standard deviations along the local axes.
        opacity_logits: ``[N]`` pre-sigmoid opacities.
        sh: ``[N, K, 3]`` spherical-harmonic colour coefficients, ``K = (degree + 1) ** 2``.
        object_ids: ``[N]`` int64; 0 = static scene, > 0 = an object.

    Instances are immutable; every operation returns a new container.

    >>> g = Gaussians.from_points(torch.zeros(2, 3), torch.full((2, 3), 0.5), scale=0.01)
    >>> len(g), g.sh_degree
    (2, 0)
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh: torch.Tensor
    object_ids: torch.Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        check_shape("means", self.means, (None, 3))
        check_shape("quats", self.quats, (n, 4))
        check_shape("log_scales", self.log_scales, (n, 3))
        check_shape("opacity_logits", self.opacity_logits, (n,))
        check_shape("sh", self.sh, (n, None, 3))
        check_shape("object_ids", self.object_ids, (n,))
        k = self.sh.shape[1]
        if math.isqrt(k) ** 2 != k:
            raise ShapeError(f"sh: K = {k} coefficients is not a square (degree + 1) ** 2")
        if self.object_ids.dtype != torch.int64:
            raise ShapeError(f"object_ids: expected dtype int64, got {self.object_ids.dtype}")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[1]) - 1

    @property
    def scales(self) -> torch.Tensor:
        """``[N, 3]`` standard deviations."""
        return self.log_scales.exp()

    @property
    def opacities(self) -> torch.Tensor:
        """``[N]`` opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def to(self, *args, **kwargs) -> Gaussians:
        """Move or cast the float tensors (``object_ids`` keep int64)."""
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            if f.name == "object_ids":
                out[f.name] = t.to(device=kwargs.get("device", t.device))
            else:
                out[f.name] = t.to(*args, **kwargs)
        return Gaussians(**out)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_points(
        cls,
        points: torch.Tensor,
        rgb: torch.Tensor,
        scale: float | torch.Tensor,
        *,
        opacity: float = 0.95,
        object_id: int = 0,
        quats: torch.Tensor | None = None,
    ) -> Gaussians:
        """Gaussians at ``points [N, 3]`` with colours ``rgb [N, 3]`` in [0, 1].

        Args:
            scale: a standard deviation shared by all, or ``[N]`` / ``[N, 3]`` per Gaussian.
            opacity: opacity in (0, 1) shared by all.
            object_id: id written to every Gaussian.
            quats: ``[N, 4]`` orientations; identity if omitted.
        """
        check_shape("points", points, (None, 3))
        n = points.shape[0]
        check_shape("rgb", rgb, (n, 3))
        scales = torch.as_tensor(scale, dtype=points.dtype)
        scales = scales.reshape(-1, 1) if scales.ndim == 1 else scales
        scales = torch.broadcast_to(scales, (n, 3)).clone()
        if quats is None:
            quats = torch.zeros(n, 4, dtype=points.dtype)
            quats[:, 0] = 1.0
        logit = math.log(opacity / (1.0 - opacity))
        return cls(
            means=points.clone(),
            quats=quats.to(points.dtype),
            log_scales=scales.log(),
            opacity_logits=torch.full((n,), logit, dtype=points.dtype),
            sh=rgb_to_sh0(rgb.to(points.dtype))[:, None, :],
            object_ids=torch.full((n,), object_id, dtype=torch.int64),
        )

    @classmethod
    def empty(cls, sh_degree: int = 0, dtype: torch.dtype = torch.float32) -> Gaussians:
        k = (sh_degree + 1) ** 2
        z = lambda *s: torch.zeros(s, dtype=dtype)  # noqa: E731
        return cls(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, k, 3), torch.zeros(0, dtype=torch.int64))

    # -------------------------------------------------------------- operations
    def transform(self, pose: torch.Tensor) -> Gaussians:
        """Apply a rigid transform (pose ``[7]`` xyz+wxyz, or a 4x4 matrix) to every Gaussian.

        Means are rotated and translated, orientations composed; scales, colours and
        ids are unchanged. View-dependent SH bands are not rotated (exact for degree 0).
        """
        m = as_matrix(pose.to(self.dtype))
        rot, trans = m[:3, :3], m[:3, 3]
        q = rotmat_to_quat(rot).expand_as(self.quats)
        return replace(self, means=self.means @ rot.T + trans, quats=quat_multiply(q, self.quats))

    def select(self, index: torch.Tensor) -> Gaussians:
        """Subset by a boolean mask ``[N]`` or an index tensor."""
        return Gaussians(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def with_object_id(self, object_id: int) -> Gaussians:
        return replace(self, object_ids=torch.full_like(self.object_ids, object_id))

    @staticmethod
    def concat(parts: list[Gaussians]) -> Gaussians:
        """Concatenate containers; lower SH degrees are zero-padded to the highest one."""
        if not parts:
            raise ShapeError("concat: empty list of Gaussians")
        k = max(p.sh.shape[1] for p in parts)
        out = {}
        for f in fields(Gaussians):
            tensors = [getattr(p, f.name) for p in parts]
            if f.name == "sh":
                tensors = [torch.nn.functional.pad(t, (0, 0, 0, k - t.shape[1])) for t in tensors]
            out[f.name] = torch.cat(tensors, dim=0)
        return Gaussians(**out)
