"""Rasterizer backends, camera paths and video writing."""

from splatworld.render.api import (Rendered, RenderOutput, available_backends, default_backend, render,
                                  render_with_screen_space, resolve_backend)
from splatworld.render.ground import render_plane, render_sky
from splatworld.render.paths import orbit_path
from splatworld.render.projection import GSPLAT_SIGMA_CUTOFF, RasterSettings
from splatworld.render.video import FrameWriter, write_video

__all__ = [
    "GSPLAT_SIGMA_CUTOFF",
    "FrameWriter",
    "RasterSettings",
    "RenderOutput",
    "Rendered",
    "available_backends",
    "default_backend",
    "orbit_path",
    "render",
    "render_plane",
    "render_sky",
    "render_with_screen_space",
    "resolve_backend",
    "write_video",
]
