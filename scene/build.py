"""Build Gaussians from meshes (surface sampling) and from RGB-D frames (back-projection)."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from splatworld.errors import ConfigError, ShapeError, check_shape
from splatworld.scene.cameras import Camera
from splatworld.scene.gaussians import Gaussians, rgb_to_sh0
from splatworld.scene.transforms import rotmat_to_quat


def _frames_from_normals(normals: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[N, 3, 3]`` whose third column is the unit normal ``[N, 3]``."""
    helper = torch.zeros_like(normals)
    use_x = normals[:, 0].abs() < 0.9
    helper[use_x, 0] = 1.0
    helper[~use_x, 1] = 1.0
    tangent = torch.nn.functional.normalize(torch.linalg.cross(helper, normals), dim=-1)
    bitangent = torch.linalg.cross(normals, tangent)
    return torch.stack([tangent, bitangent, normals], dim=-1)


def gaussians_from_mesh(
    mesh: trimesh.Trimesh,
    count: int,
    *,
    rgb=None,
    tint=None,
    object_id: int = 0,
    opacity: float = 0.98,
    coverage: float = 0.75,
    flatness: float = 0.15,
    seed: int = 0,
) -> Gaussians:
    """Flat Gaussians sampled uniformly by area on a mesh surface.

    Each Gaussian is a disc tangent to its face: in-plane standard deviation
    ``coverage * sqrt(area / count)`` (so neighbouring discs overlap and the surface
    renders opaque), and ``flatness`` times that along the face normal.

    Args:
        mesh: a triangle mesh, in the frame the Gaussians should live in.
        count: number of Gaussians.
        rgb: one colour ``[3]`` in [0, 1] for all; if omitted, the mesh's texture or
            vertex / face colours are sampled (grey when it has none).
        tint: optional ``[3]`` factor multiplied into the colours.
        object_id: id written to every Gaussian (0 = static scene).
        seed: sampling seed; the same seed gives the same Gaussians.
    """
    if count <= 0:
        raise ShapeError(f"count must be positive, got {count}")
    if mesh.area <= 0:
        raise ShapeError("mesh has zero surface area")
    want_colour = rgb is None and mesh.visual.kind is not None
    sampled = trimesh.sample.sample_surface(mesh, count, sample_color=want_colour, seed=seed)
    points, faces = sampled[0], sampled[1]
    if rgb is not None:
        colours = np.broadcast_to(np.asarray(rgb, dtype=np.float64), (count, 3))
    elif want_colour and sampled[2] is not None:
        colours = np.asarray(sampled[2], dtype=np.float64)[:, :3] / 255.0
    else:
        colours = np.full((count, 3), 0.5)
    if tint is not None:
        colours = colours * np.asarray(tint, dtype=np.float64)[:3]
    normals = torch.from_numpy(np.asarray(mesh.face_normals[faces], dtype=np.float32))
    in_plane = coverage * float(np.sqrt(mesh.area / count))
    scales = torch.tensor([in_plane, in_plane, flatness * in_plane], dtype=torch.float32).expand(count, 3)
    return Gaussians.from_points(
        torch.from_numpy(np.asarray(points, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(colours, dtype=np.float32)),
        scales,
        opacity=opacity,
        object_id=object_id,
        quats=rotmat_to_quat(_frames_from_normals(normals)).to(torch.float32),
    )


def gaussians_from_shape(shape: dict, count: int, rgb, object_id: int = 0) -> Gaussians:
    """Gaussians on the surface of a primitive in the episode format's ``agent_shape`` layout
    (``{"type": "cylinder", "radius": r, "height": h}`` along z, ``{"type": "sphere", "radius": r}``
    or ``{"type": "box", "half_extents": [x, y, z]}``), centred at the origin of its own frame,
    in one colour ``rgb [3]`` (see :func:`gaussians_from_mesh`).

    Raises:
        ConfigError: an unknown type or a missing or non-positive size, naming the key.
    """
    kind = shape.get("type") if isinstance(shape, dict) else None
    sizes = {"cylinder": ("radius", "height"), "sphere": ("radius",), "box": ("half_extents",)}
    if kind not in sizes:
        raise ConfigError(f"agent_shape.type: {kind!r}; valid: {', '.join(sizes)}")
    for key in sizes[kind]:
        value = np.asarray(shape.get(key, 0.0), dtype=np.float64)
        if not np.all(value > 0) or value.shape not in ((), (3,)):
            raise ConfigError(f"agent_shape.{key}: must be positive, got {shape.get(key)!r}")
    if kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=float(shape["radius"]), height=float(shape["height"]), sections=32)
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=float(shape["radius"]))
    else:
        mesh = trimesh.creation.box(extents=2 * np.asarray(shape["half_extents"], dtype=np.float64))
    return gaussians_from_mesh(mesh, count, rgb=rgb, object_id=object_id)


def gaussians_from_rgbd(
    rgb: torch.Tensor,
    depth: torch.Tensor,
    camera: Camera,
    *,
    instances: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    stride: int = 1,
    scale_factor: float = 0.7,
    max_scale: float = 0.05,
    opacity: float = 0.95,
) -> Gaussians:
    """Back-project an RGB-D frame into isotropic Gaussians, one per valid pixel.

    Each Gaussian's standard deviation is ``scale_factor`` times the distance to its
    nearest neighbour among the back-projected points (open3d KD-tree), capped at
    ``max_scale`` metres.

    Args:
        rgb: ``[H, W, 3]`` uint8 or float in [0, 1].
        depth: ``[H, W]`` z-depth in metres; 0 = unknown. Non-finite values raise.
        camera: the frame's camera (its size must be ``W x H``).
        instances: optional ``[H, W]`` integer labels, written as ``object_ids``.
        mask: optional ``[H, W]`` bool: only these pixels are used.
        stride: use every ``stride``-th pixel in each direction.
    """
    h, w = camera.height, camera.width
    check_shape("rgb", rgb, (h, w, 3))
    check_shape("depth", depth, (h, w))
    if not torch.isfinite(depth).all():
        raise ShapeError("depth has non-finite values (NaN or inf); use 0 for unknown depth")
    colours = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    valid = depth > 0
    if mask is not None:
        check_shape("mask", mask, (h, w))
        valid &= mask.bool()
    if instances is not None:
        check_shape("instances", instances, (h, w))
    if stride > 1:
        keep = torch.zeros_like(valid)
        keep[::stride, ::stride] = True
        valid &= keep
    points = camera.backproject(depth.double())[valid].float()
    if len(points) == 0:
        return Gaussians.empty()
    if len(points) == 1:
        spacing = torch.full((1,), max_scale / scale_factor)
    else:
        import open3d as o3d  # here, not at module import: its 230 MB library is only needed for this

        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.double().numpy()))
        spacing = torch.from_numpy(np.asarray(cloud.compute_nearest_neighbor_distance(), dtype=np.float32))
    scales = (scale_factor * spacing).clamp(min=1e-4, max=max_scale)
    out = Gaussians.from_points(points, colours[valid], scales, opacity=opacity)
    if instances is not None:
        out = Gaussians(out.means, out.quats, out.log_scales, out.opacity_logits, out.sh,
                        instances[valid].to(torch.int64))
    return out


__all__ = ["gaussians_from_mesh", "gaussians_from_rgbd", "rgb_to_sh0"]
