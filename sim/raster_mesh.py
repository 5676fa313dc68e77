"""Exact silhouettes of triangle meshes (pixel-centre coverage), for visible fractions."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _cover(uv, faces, width, height, mask):  # pragma: no cover - jitted
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0, x1, y1, x2, y2 = uv[a, 0], uv[a, 1], uv[b, 0], uv[b, 1], uv[c, 0], uv[c, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area == 0.0:
            continue
        lo_x = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
        hi_x = min(int(np.ceil(max(x0, x1, x2) - 0.5)), width - 1)
        lo_y = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
        hi_y = min(int(np.ceil(max(y0, y1, y2) - 0.5)), height - 1)
        for py in range(lo_y, hi_y + 1):
            y = py + 0.5
            for px in range(lo_x, hi_x + 1):
                x = px + 0.5
                w0 = (x1 - x) * (y2 - y) - (x2 - x) * (y1 - y)
                w1 = (x2 - x) * (y0 - y) - (x0 - x) * (y2 - y)
                w2 = (x0 - x) * (y1 - y) - (x1 - x) * (y0 - y)
                if (w0 >= 0 and w1 >= 0 and w2 >= 0) or (w0 <= 0 and w1 <= 0 and w2 <= 0):
                    mask[py, px] = True


def silhouette(vertices_cam: np.ndarray, faces: np.ndarray, fx: float, fy: float, cx: float, cy: float,
               width: int, height: int, near: float = 1e-3) -> np.ndarray:
    """Pixels ``[H, W]`` bool whose centres a mesh covers, ignoring occlusion.

    Args:
        vertices_cam: ``[V, 3]`` vertices in the OpenCV camera frame.
        faces: ``[F, 3]`` vertex indices.

    Triangles with a vertex at or behind ``near`` are skipped (tabletop objects are never
    that close to the camera).
    """
    z = vertices_cam[:, 2]
    keep = (z[faces] > near).all(axis=1)
    zs = np.where(z > near, z, 1.0)
    uv = np.stack([fx * vertices_cam[:, 0] / zs + cx, fy * vertices_cam[:, 1] / zs + cy], axis=1)
    mask = np.zeros((height, width), dtype=np.bool_)
    _cover(uv, np.ascontiguousarray(faces[keep], dtype=np.int64), width, height, mask)
    return mask
