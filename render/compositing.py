"""Compositing render outputs: one layer over another, and the memory's picture of objects over a
static backdrop (a render stage, as pytorch3d's compositors follow its rasterizer)."""

from __future__ import annotations

import torch

from splatworld.render.api import RenderOutput


def over(front: RenderOutput, back: RenderOutput, where: torch.Tensor | None = None) -> RenderOutput:
    """Alpha-composite ``front`` (rendered on a black background) over ``back`` at pixels ``where``
    (bool ``[H, W]``, default everywhere); ``back`` shows alone elsewhere."""
    weight = front.alpha if where is None else torch.where(where, front.alpha, torch.zeros_like(front.alpha))
    shown = weight > 0
    rgb = torch.where(shown[..., None], front.rgb + (1 - weight[..., None]) * back.rgb, back.rgb)
    take = weight > 0.5
    return RenderOutput(rgb, torch.where(take, front.depth, back.depth), weight + (1 - weight) * back.alpha,
                        torch.where(take, front.object_id, back.object_id))


def composite(backdrop: RenderOutput, objects: RenderOutput, depth_margin: float,
              free: RenderOutput | None = None) -> RenderOutput:
    """``objects`` over a ``backdrop`` (the static scene, with a keyframe layer drawn over the
    scaffold where there is one: its pixels are the sharper picture of the same surfaces) where
    they are not more than ``depth_margin`` behind it (an occluder hides them), or not behind the
    ``free`` layer (pixels seen clear up to their depth, so nothing static can hide them there)."""
    in_front = (objects.depth < backdrop.depth + depth_margin) | (backdrop.alpha < 0.5)
    if free is not None:
        in_front |= (free.alpha > 0.5) & (objects.depth < free.depth + depth_margin)
    return over(objects, backdrop, in_front)
