"""Camera paths."""

from __future__ import annotations

import math

from splatworld.scene.cameras import Camera, look_at


def orbit_path(
    n_frames: int,
    *,
    center=(0.0, 0.0, 0.0),
    radius: float = 1.0,
    height: float = 0.5,
    fov_y_deg: float = 60.0,
    width: int = 256,
    height_px: int = 256,
    turns: float = 1.0,
    start_angle_deg: float = 0.0,
) -> list[Camera]:
    """Cameras on a horizontal circle around ``center``, all looking at it.

    Args:
        n_frames: number of cameras.
        radius: circle radius in metres (in the x-y plane).
        height: camera height above ``center`` in metres.
        turns: how many full turns the path makes.
    """
    cx, cy, cz = center
    cams = []
    for i in range(n_frames):
        a = math.radians(start_angle_deg) + 2 * math.pi * turns * i / max(n_frames, 1)
        eye = (cx + radius * math.cos(a), cy + radius * math.sin(a), cz + height)
        cams.append(Camera.from_fov(fov_y_deg, width, height_px, look_at(eye, center)))
    return cams

