"""Fast CPU backend: numba kernels for projection, tile binning and compositing (forward).

Each kernel follows its plain-torch twin rule for rule
(:func:`splatworld.render.projection.project_gaussians`,
:func:`splatworld.render.raster_torch.bin_gaussians` and
:func:`splatworld.render.raster_torch.rasterize_torch`); ``tests/test_render.py``
checks the pairs against each other. Work is split over tiles with ``prange``. The backward
kernels are in :mod:`splatworld.render.backward_cpu`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

if numba.config.THREADING_LAYER == "default":
    # Debian's TBB is too old for numba (it warns, then falls back); OpenMP is always there.
    numba.config.THREADING_LAYER = "omp"

from splatworld.render.projection import Projected, RasterSettings

# Packed per-intersection record, in tile order, so the inner loop reads memory sequentially.
_MX, _MY, _CA, _CB, _CC, _OP, _R, _G, _B, _Z = range(10)
_N_FIELDS = 10


@njit(parallel=True, cache=True)
def _project(means, quats, log_scales, opacity_logits, viewmat, fx, fy, cx, cy, width, height,
             eps2d, near, far, cutoff, means2d, conics, depths, radii, opacities):  # pragma: no cover - jitted
    n = means.shape[0]
    tan_x = 0.5 * width / fx
    tan_y = 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_x
    lim_xn = cx / fx + 0.3 * tan_x
    lim_yp = (height - cy) / fy + 0.3 * tan_y
    lim_yn = cy / fy + 0.3 * tan_y
    for i in prange(n):
        opacities[i] = 1.0 / (1.0 + math.exp(-opacity_logits[i]))
        radii[i, 0] = 0
        radii[i, 1] = 0
        px, py, pz = means[i, 0], means[i, 1], means[i, 2]
        x = viewmat[0, 0] * px + viewmat[0, 1] * py + viewmat[0, 2] * pz + viewmat[0, 3]
        y = viewmat[1, 0] * px + viewmat[1, 1] * py + viewmat[1, 2] * pz + viewmat[1, 3]
        z = viewmat[2, 0] * px + viewmat[2, 1] * py + viewmat[2, 2] * pz + viewmat[2, 3]
        depths[i] = z
        if not (z > near and z < far):
            continue
        qw, qx, qy, qz = quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]
        qn = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        qw, qx, qy, qz = qw / qn, qx / qn, qy / qn, qz / qn
        rot = np.empty((3, 3))
        rot[0, 0] = 1 - 2 * (qy * qy + qz * qz)
        rot[0, 1] = 2 * (qx * qy - qw * qz)
        rot[0, 2] = 2 * (qx * qz + qw * qy)
        rot[1, 0] = 2 * (qx * qy + qw * qz)
        rot[1, 1] = 1 - 2 * (qx * qx + qz * qz)
        rot[1, 2] = 2 * (qy * qz - qw * qx)
        rot[2, 0] = 2 * (qx * qz - qw * qy)
        rot[2, 1] = 2 * (qy * qz + qw * qx)
        rot[2, 2] = 1 - 2 * (qx * qx + qy * qy)
        # M = viewmat_R @ R @ diag(s): camera-frame covariance is M M^T.
        m = np.empty((3, 3))
        for r in range(3):
            for c in range(3):
                acc = 0.0
                for k in range(3):
                    acc += viewmat[r, k] * rot[k, c]
                m[r, c] = acc * math.exp(log_scales[i, c])
        cov = np.empty((3, 3))
        for r in range(3):
            for c in range(3):
                cov[r, c] = m[r, 0] * m[c, 0] + m[r, 1] * m[c, 1] + m[r, 2] * m[c, 2]
        tx = z * min(max(x / z, -lim_xn), lim_xp)
        ty = z * min(max(y / z, -lim_yn), lim_yp)
        j00 = fx / z
        j02 = -fx * tx / (z * z)
        j11 = fy / z
        j12 = -fy * ty / (z * z)
        # cov2d = J cov J^T with J = [[j00, 0, j02], [0, j11, j12]]
        c00 = j00 * (j00 * cov[0, 0] + j02 * cov[2, 0]) + j02 * (j00 * cov[0, 2] + j02 * cov[2, 2]) + eps2d
        c01 = j00 * (j11 * cov[0, 1] + j12 * cov[0, 2]) + j02 * (j11 * cov[2, 1] + j12 * cov[2, 2])
        c11 = j11 * (j11 * cov[1, 1] + j12 * cov[2, 1]) + j12 * (j11 * cov[1, 2] + j12 * cov[2, 2]) + eps2d
        det = c00 * c11 - c01 * c01
        if not det > 0:
            continue
        u = fx * x / z + cx
        v = fy * y / z + cy
        rx = math.ceil(cutoff * math.sqrt(c00))
        ry = math.ceil(cutoff * math.sqrt(c11))
        means2d[i, 0] = u
        means2d[i, 1] = v
        conics[i, 0] = c11 / det
        conics[i, 1] = -c01 / det
        conics[i, 2] = c00 / det
        if u + rx <= 0 or u - rx >= width or v + ry <= 0 or v - ry >= height:
            continue
        radii[i, 0] = rx
        radii[i, 1] = ry


@njit(cache=True)
def _tile_rect(mx, my, rx, ry, tile, n_tx, n_ty):  # pragma: no cover - jitted
    x0 = min(max(math.floor((mx - rx) / tile), 0), n_tx)
    x1 = min(max(math.floor((mx + rx) / tile) + 1, 0), n_tx)
    y0 = min(max(math.floor((my - ry) / tile), 0), n_ty)
    y1 = min(max(math.floor((my + ry) / tile) + 1, 0), n_ty)
    return x0, x1, y0, y1


@njit(inline="always")
def _tile_box(t, n_tx, tile, width, height):  # pragma: no cover - jitted
    """Pixel box ``x_lo, x_hi, y_lo, y_hi`` (ends exclusive) of tile ``t``."""
    x_lo = (t % n_tx) * tile
    y_lo = (t // n_tx) * tile
    return x_lo, min(x_lo + tile, width), y_lo, min(y_lo + tile, height)


@njit(inline="always")
def _rows(my, ca, cb, cc, power_max, y_lo, y_hi):  # pragma: no cover - jitted
    """Rows of ``[y_lo, y_hi)`` the cutoff ellipse reaches: ``|dy| <= sqrt(2 power_max Sigma_yy)``,
    ``Sigma = conic^-1``."""
    half_h = math.sqrt(2.0 * power_max * ca / (ca * cc - cb * cb))
    return max(y_lo, int(math.floor(my - half_h - 0.5))), min(y_hi, int(math.ceil(my + half_h - 0.5)) + 1)


@njit(inline="always")
def _span(mx, dy, ca, cb, cc, power_max, x_lo, x_hi):  # pragma: no cover - jitted
    """Columns of ``[x_lo, x_hi)`` where ``0.5 (ca dx^2 + cc dy^2) + cb dx dy <= power_max`` on the
    row at offset ``dy`` (an empty range where the row misses the ellipse)."""
    disc = cb * cb * dy * dy - ca * (cc * dy * dy - 2.0 * power_max)
    if disc < 0.0:
        return x_lo, x_lo
    root = math.sqrt(disc)
    return (max(x_lo, int(math.floor(mx + (-cb * dy - root) / ca - 0.5))),
            min(x_hi, int(math.ceil(mx + (-cb * dy + root) / ca - 0.5)) + 1))


@njit(cache=True)
def _bin(drawn, means2d, radii, conics, opacities, colors, depths, tile, n_tx, n_ty):  # pragma: no cover
    counts = np.zeros(n_tx * n_ty + 1, dtype=np.int64)
    starts = np.zeros(drawn.shape[0] + 1, dtype=np.int64)
    for d in range(drawn.shape[0]):
        g = drawn[d]
        x0, x1, y0, y1 = _tile_rect(means2d[g, 0], means2d[g, 1], radii[g, 0], radii[g, 1], tile, n_tx, n_ty)
        starts[d + 1] = starts[d] + (x1 - x0) * (y1 - y0)
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                counts[ty * n_tx + tx + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    packed = np.empty((offsets[-1], _N_FIELDS), dtype=colors.dtype)
    gaussian = np.empty(offsets[-1], dtype=np.int64)
    isects = np.empty(offsets[-1], dtype=np.int64)  # by Gaussian: drawn[d]'s are isects[starts[d]:starts[d + 1]]
    e = 0
    for g in drawn:
        x0, x1, y0, y1 = _tile_rect(means2d[g, 0], means2d[g, 1], radii[g, 0], radii[g, 1], tile, n_tx, n_ty)
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                k = cursor[ty * n_tx + tx]
                cursor[ty * n_tx + tx] = k + 1
                isects[e] = k
                e += 1
                packed[k, _MX] = means2d[g, 0]
                packed[k, _MY] = means2d[g, 1]
                packed[k, _CA] = conics[g, 0]
                packed[k, _CB] = conics[g, 1]
                packed[k, _CC] = conics[g, 2]
                packed[k, _OP] = opacities[g]
                packed[k, _R] = colors[g, 0]
                packed[k, _G] = colors[g, 1]
                packed[k, _B] = colors[g, 2]
                packed[k, _Z] = depths[g]
                gaussian[k] = g
    return offsets, packed, gaussian, starts, isects


@njit(parallel=True, cache=True, fastmath=True)
def _composite(offsets, packed, gaussian, object_ids, width, height, tile, n_tx, n_ty, background, power_max,
               alpha_min, alpha_max, t_min, rgb, depth, alpha, id_map, trans_out, acc_out):  # pragma: no cover
    # Gaussian-major inside a tile: each Gaussian visits only the pixels of its cutoff
    # ellipse (solved per row), while per-pixel state keeps the front-to-back order,
    # so every pixel sees exactly the sequence the pixel-major torch twin does.
    for t in prange(n_tx * n_ty):
        x_lo, x_hi, y_lo, y_hi = _tile_box(t, n_tx, tile, width, height)
        tw = x_hi - x_lo
        n_pix = tw * (y_hi - y_lo)
        trans = np.ones(n_pix)
        acc = np.zeros((n_pix, 4))
        best_w = np.zeros(n_pix)
        best = np.full(n_pix, -1, dtype=np.int64)
        done = np.zeros(n_pix, dtype=np.bool_)
        n_done = 0
        start = offsets[t]
        # Binned in index order; a stable sort by depth gives the torch twin's order (ties by index).
        depth_order = np.argsort(packed[start:offsets[t + 1], _Z], kind="mergesort")
        for j in range(depth_order.shape[0]):
            k = start + depth_order[j]
            if n_done == n_pix:
                break
            mx = packed[k, _MX]
            my = packed[k, _MY]
            ca = packed[k, _CA]
            cb = packed[k, _CB]
            cc = packed[k, _CC]
            op = packed[k, _OP]
            y0, y1 = _rows(my, ca, cb, cc, power_max, y_lo, y_hi)
            for py in range(y0, y1):
                dy = py + 0.5 - my
                x0, x1 = _span(mx, dy, ca, cb, cc, power_max, x_lo, x_hi)
                for px in range(x0, x1):
                    i = (py - y_lo) * tw + (px - x_lo)
                    if done[i]:
                        continue
                    dx = px + 0.5 - mx
                    power = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if power < 0.0 or power > power_max:
                        continue
                    a = min(alpha_max, op * math.exp(-power))
                    if a < alpha_min:
                        continue
                    next_t = trans[i] * (1.0 - a)
                    if next_t <= t_min:
                        done[i] = True
                        n_done += 1
                        continue
                    w = a * trans[i]
                    acc[i, 0] += w * packed[k, _R]
                    acc[i, 1] += w * packed[k, _G]
                    acc[i, 2] += w * packed[k, _B]
                    acc[i, 3] += w * packed[k, _Z]
                    if w > best_w[i]:
                        best_w[i] = w
                        best[i] = object_ids[gaussian[k]]
                    trans[i] = next_t
        for py in range(y_lo, y_hi):
            for px in range(x_lo, x_hi):
                i = (py - y_lo) * tw + (px - x_lo)
                opaque = 1.0 - trans[i]
                trans_out[py, px] = trans[i]
                for c in range(4):
                    acc_out[py, px, c] = acc[i, c]
                for c in range(3):
                    rgb[py, px, c] = acc[i, c] + trans[i] * background[c]
                alpha[py, px] = opaque
                depth[py, px] = acc[i, 3] / opaque if opaque > 0.0 else 0.0
                id_map[py, px] = best[i]


def project_cpu(means, quats, log_scales, opacity_logits, viewmat, fx, fy, cx, cy, width, height,
                settings: RasterSettings) -> tuple[np.ndarray, ...]:
    """numba twin of :func:`~splatworld.render.projection.project_gaussians` on numpy arrays.

    Returns ``means2d [N, 2], conics [N, 3], depths [N], radii [N, 2] int32, opacities [N]``, in the
    dtype of ``means`` (float32 or float64; the arithmetic is float64 either way).
    """
    n, dtype = means.shape[0], means.dtype
    means2d = np.zeros((n, 2), dtype)
    conics = np.zeros((n, 3), dtype)
    depths = np.zeros(n, dtype)
    radii = np.zeros((n, 2), np.int32)
    opacities = np.zeros(n, dtype)
    _project(means, quats, log_scales, opacity_logits, np.ascontiguousarray(viewmat, dtype=np.float64),
             float(fx), float(fy), float(cx), float(cy), int(width), int(height), settings.eps2d,
             settings.near_plane, settings.far_plane, settings.sigma_cutoff,
             means2d, conics, depths, radii, opacities)
    return means2d, conics, depths, radii, opacities


class Composited(NamedTuple):
    """What :func:`rasterize_cpu` keeps for the backward pass.

    Attributes:
        offsets: ``[n_tiles + 1]`` tile ``t`` owns intersections ``offsets[t]:offsets[t + 1]``.
        packed: ``[n_isects, 10]`` per-intersection record (mean, conic, opacity, colour, depth).
        gaussian: ``[n_isects]`` the Gaussian of each intersection.
        drawn, starts, isects: the same by Gaussian: ``drawn [D]`` the Gaussians with intersections,
            ``drawn[d]``'s are ``isects[starts[d]:starts[d + 1]]``.
        trans: ``[H, W]`` float64 final transmittance of each pixel.
        acc: ``[H, W, 4]`` float64 blended colour and depth, before the background.
    """

    offsets: np.ndarray
    packed: np.ndarray
    gaussian: np.ndarray
    drawn: np.ndarray
    starts: np.ndarray
    isects: np.ndarray
    trans: np.ndarray
    acc: np.ndarray


def rasterize_cpu(projected: Projected, colors: np.ndarray, object_ids: np.ndarray, width: int, height: int,
                  background: np.ndarray, settings: RasterSettings) -> tuple:
    """numba twin of :func:`~splatworld.render.raster_torch.rasterize_torch` on numpy arrays.

    Returns rgb ``[H, W, 3]``, depth ``[H, W]``, alpha ``[H, W]`` (in the dtype of ``colors``), ids
    ``[H, W]`` int64 and the :class:`Composited` state the backward pass needs.
    """
    ts = settings.tile_size
    n_tx, n_ty = math.ceil(width / ts), math.ceil(height / ts)
    means2d, conics, depths, radii, opacities = (np.asarray(a) for a in projected)
    dtype = colors.dtype
    drawn = np.flatnonzero(radii[:, 0] > 0)  # culled Gaussians have both radii 0
    offsets, packed, gaussian, starts, isects = _bin(drawn, means2d, radii, conics, opacities.astype(dtype, copy=False), colors,
                                     depths.astype(dtype, copy=False), ts, n_tx, n_ty)
    rgb = np.empty((height, width, 3), dtype)
    depth = np.empty((height, width), dtype)
    alpha = np.empty((height, width), dtype)
    id_map = np.empty((height, width), np.int64)
    trans = np.empty((height, width), np.float64)
    acc = np.empty((height, width, 4), np.float64)
    _composite(offsets, packed, gaussian, object_ids, width, height, ts, n_tx, n_ty,
               np.asarray(background, np.float64), settings.power_max, settings.alpha_min, settings.alpha_max,
               settings.transmittance_min, rgb, depth, alpha, id_map, trans, acc)
    return rgb, depth, alpha, id_map, Composited(offsets, packed, gaussian, drawn, starts, isects, trans, acc)


def num_threads() -> int:
    """Threads numba uses for ``prange`` loops."""
    return numba.get_num_threads()
