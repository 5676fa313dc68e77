"""An unbounded textured plane and the sky behind it, drawn per pixel by ray casting.

The memory's splats stop where its map stops; a floor seen near the table goes on to the horizon,
and a camera turned away from the table sees mostly floor and sky. This layer draws them behind
everything else (:func:`~splatworld.render.compositing.over`).
"""

from __future__ import annotations

import torch

from splatworld.errors import ShapeError
from splatworld.render.api import RenderOutput
from splatworld.scene.cameras import Camera



def render_plane(camera: Camera, plane, texture: torch.Tensor, period: float, mean_color, sky_color,
                 max_depth: float = 1e3, antialias: bool = False) -> RenderOutput:
    """The plane ``a x + b y + c z + d = 0`` (``plane [4]``, unit normal) where rays from ``camera``
    meet it in front within z-depth ``max_depth`` (a sensor's range: beyond it a camera sees no
    surface), the sky elsewhere.

    The plane's colour at world ``(x, y)`` is ``texture [T, T, 3]`` repeated every ``period`` metres
    along world x and y, sampled at each pixel centre's ray (nearest texel, as a point-sampling
    rasterizer such as PyBullet's draws it); ``period <= 0`` draws ``mean_color [3]`` everywhere.
    ``antialias``: where a pixel's footprint on the plane grows towards half a period (far away,
    grazing), the texture fades into its mean colour, as a mip-mapped texture would (a real
    camera integrates over its pixels: point samples of a far floor are noise there).

    Returns:
        rgb ``[H, W, 3]``; depth ``[H, W]`` z-depth of the plane (0 on the sky); alpha 1 on the
        plane and 0 on the sky (which still carries ``sky_color [3]`` in rgb); object_id 0 on the
        plane, -1 on the sky.
    """
    plane = torch.as_tensor(plane, dtype=torch.float64)
    if plane.shape != (4,):
        raise ShapeError(f"render_plane: plane must be [4] (a, b, c, d), got {tuple(plane.shape)}")
    if texture.ndim != 3 or texture.shape[0] != texture.shape[1] or texture.shape[2] != 3:
        raise ShapeError(f"render_plane: texture must be [T, T, 3], got {tuple(texture.shape)}")
    normal, offset = plane[:3], plane[3]
    centre = camera.center.double()
    height = float(centre @ normal + offset)  # signed distance of the camera from the plane
    # each pixel's ray, scaled to unit z-depth, in world axes (float32: 256x256 rays twice as fast)
    v, u = torch.meshgrid(torch.arange(camera.height, dtype=torch.float32) + 0.5,
                          torch.arange(camera.width, dtype=torch.float32) + 0.5, indexing="ij")
    in_camera = torch.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, torch.ones_like(u)], dim=-1)
    rays = in_camera @ camera.viewmat[:3, :3].float()  # R^T d for each ray d
    towards = rays @ normal.float()  # [H, W]
    depth = -height / torch.where(towards.abs() > 1e-12, towards, torch.full_like(towards, 1e-12))
    hit = (depth > 0) & (depth <= max_depth)
    depth = torch.where(hit, depth, torch.zeros_like(depth))
    mean = torch.as_tensor(mean_color, dtype=torch.float32)
    rgb = mean.expand(camera.height, camera.width, 3)
    if period > 0:
        xy = centre[:2].float() + depth[..., None] * rays[..., :2]
        cells = texture.shape[0]
        uv = torch.floor(torch.remainder(xy / period, 1.0) * cells).long().clamp(0, cells - 1)
        rgb = texture.float()[uv[..., 0], uv[..., 1]]
    if period > 0 and antialias:
        # a pixel's footprint on the plane: its distance over the focal length, stretched by the grazing angle
        length = rays.norm(dim=-1)
        grazing = (towards.abs() / length).clamp(min=1e-3)
        footprint = depth * length / (0.5 * (camera.fx + camera.fy)) / grazing
        fade = (footprint / (0.5 * period)).clamp(0, 1)[..., None]
        rgb = (1 - fade) * rgb + fade * mean
    sky = torch.as_tensor(sky_color, dtype=torch.float32).expand_as(rgb)
    rgb = torch.where(hit[..., None], rgb, sky)
    object_id = torch.where(hit, 0, -1).long()
    return RenderOutput(rgb, depth, hit.float(), object_id)


def render_sky(camera: Camera, sky_color) -> RenderOutput:
    """Nothing but ``sky_color [3]``: what a memory without a ground plane draws behind its map."""
    h, w = camera.height, camera.width
    rgb = torch.as_tensor(sky_color, dtype=torch.float32).expand(h, w, 3).clone()
    return RenderOutput(rgb, torch.zeros(h, w), torch.zeros(h, w), torch.full((h, w), -1, dtype=torch.int64))
