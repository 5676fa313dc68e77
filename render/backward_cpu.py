"""Backward pass of the numba CPU backend, and the autograd functions that make it differentiable.

The gradients are those of the plain-torch reference
(:func:`~splatworld.render.projection.project_gaussians` and
:func:`~splatworld.render.raster_torch.rasterize_torch`) under autograd, computed analytically:

* **Compositing.** A pixel blends ``A = sum_k a_k T_k f_k`` (``f``: colour and depth, ``T_k =
  prod_{j<k} (1 - a_j)``) and keeps ``T`` (its final transmittance). For each Gaussian, in the same
  front-to-back order as the forward pass, ``dA/df_k = a_k T_k`` and ``dA/da_k = T_k f_k -
  (A - A_<=k) / (1 - a_k)``, ``dT/da_k = -T / (1 - a_k)``, where ``A_<=k`` is the running sum:
  one pass per tile, no division back through the transmittance. Gradients are written per
  tile intersection (no two threads touch the same record) and summed per Gaussian afterwards.
* **Projection.** EWA through ``conic = inv(J R_v R S S^T R^T R_v^T J^T + eps)``, the pinhole
  mean and the camera depth, one Gaussian per thread, with the same Jacobian clamping as the
  forward pass (a clamped coordinate passes no gradient through ``J``).

Colours (SH evaluation) and opacities (sigmoid) stay in torch: they are per-Gaussian and cheap,
and autograd carries their gradients to the parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from splatworld.render.projection import RasterSettings
from splatworld.render.raster_cpu import (_B, _CA, _CB, _CC, _G, _MX, _MY, _N_FIELDS, _OP, _R, _Z, Composited,
                                          _rows, _span, _tile_box, project_cpu, rasterize_cpu)
from splatworld.scene.cameras import Camera


@njit(parallel=True, cache=True, fastmath=True)
def _composite_backward(offsets, packed, width, height, tile, n_tx, power_max, alpha_min, alpha_max, t_min,
                        trans_final, acc_final, grad_acc, grad_trans, grad_packed):  # pragma: no cover - jitted
    # The forward kernel's loop (tile, depth order, ellipse rows and spans, stop rule), replayed.
    for t in prange(offsets.shape[0] - 1):
        x_lo, x_hi, y_lo, y_hi = _tile_box(t, n_tx, tile, width, height)
        tw = x_hi - x_lo
        n_pix = tw * (y_hi - y_lo)
        trans = np.ones(n_pix)
        prefix = np.zeros((n_pix, 4))
        done = np.zeros(n_pix, dtype=np.bool_)
        n_done = 0
        start = offsets[t]
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
            f0 = packed[k, _R]
            f1 = packed[k, _G]
            f2 = packed[k, _B]
            f3 = packed[k, _Z]
            g_mx = g_my = g_ca = g_cb = g_cc = g_op = 0.0
            g_f0 = g_f1 = g_f2 = g_f3 = 0.0
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
                    gauss = math.exp(-power)
                    raw = op * gauss
                    a = min(alpha_max, raw)
                    if a < alpha_min:
                        continue
                    t_k = trans[i]
                    next_t = t_k * (1.0 - a)
                    if next_t <= t_min:
                        done[i] = True
                        n_done += 1
                        continue
                    w = a * t_k
                    ga0 = grad_acc[py, px, 0]
                    ga1 = grad_acc[py, px, 1]
                    ga2 = grad_acc[py, px, 2]
                    ga3 = grad_acc[py, px, 3]
                    prefix[i, 0] += w * f0
                    prefix[i, 1] += w * f1
                    prefix[i, 2] += w * f2
                    prefix[i, 3] += w * f3
                    after = (ga0 * (acc_final[py, px, 0] - prefix[i, 0]) + ga1 * (acc_final[py, px, 1] - prefix[i, 1])
                             + ga2 * (acc_final[py, px, 2] - prefix[i, 2]) + ga3 * (acc_final[py, px, 3] - prefix[i, 3])
                             + grad_trans[py, px] * trans_final[py, px])
                    d_alpha = t_k * (ga0 * f0 + ga1 * f1 + ga2 * f2 + ga3 * f3) - after / (1.0 - a)
                    g_f0 += w * ga0
                    g_f1 += w * ga1
                    g_f2 += w * ga2
                    g_f3 += w * ga3
                    if raw <= alpha_max:  # a clamped alpha passes no gradient (torch.clamp_max)
                        g_op += d_alpha * gauss
                        d_power = -d_alpha * a
                        g_mx -= d_power * (ca * dx + cb * dy)
                        g_my -= d_power * (cc * dy + cb * dx)
                        g_ca += d_power * 0.5 * dx * dx
                        g_cb += d_power * dx * dy
                        g_cc += d_power * 0.5 * dy * dy
                    trans[i] = next_t
            grad_packed[k, _MX] = g_mx
            grad_packed[k, _MY] = g_my
            grad_packed[k, _CA] = g_ca
            grad_packed[k, _CB] = g_cb
            grad_packed[k, _CC] = g_cc
            grad_packed[k, _OP] = g_op
            grad_packed[k, _R] = g_f0
            grad_packed[k, _G] = g_f1
            grad_packed[k, _B] = g_f2
            grad_packed[k, _Z] = g_f3


@njit(parallel=True, cache=True)
def _sum_per_gaussian(drawn, starts, isects, grad_packed, out):  # pragma: no cover - jitted
    # Gaussian drawn[d] owns intersections isects[starts[d]:starts[d + 1]]: one thread per Gaussian.
    for d in prange(drawn.shape[0]):
        g = drawn[d]
        for e in range(starts[d], starts[d + 1]):
            k = isects[e]
            for f in range(grad_packed.shape[1]):
                out[g, f] += grad_packed[k, f]


@njit(inline="always")
def _matmul(a, b, out):  # pragma: no cover - jitted; small matrices, where BLAS calls cost more than the work
    for r in range(a.shape[0]):
        for c in range(b.shape[1]):
            acc = 0.0
            for k in range(a.shape[1]):
                acc += a[r, k] * b[k, c]
            out[r, c] = acc


@njit(parallel=True, cache=True)
def _project_backward(means, quats, log_scales, viewmat, fx, fy, cx, cy, width, height, eps2d, radii,
                      g_means2d, g_conics, g_depths, g_means, g_quats, g_log_scales):  # pragma: no cover - jitted
    tan_x = 0.5 * width / fx
    tan_y = 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_x
    lim_xn = cx / fx + 0.3 * tan_x
    lim_yp = (height - cy) / fy + 0.3 * tan_y
    lim_yn = cy / fy + 0.3 * tan_y
    for i in prange(means.shape[0]):
        if radii[i, 0] == 0:
            continue
        px, py, pz = means[i, 0], means[i, 1], means[i, 2]
        x = viewmat[0, 0] * px + viewmat[0, 1] * py + viewmat[0, 2] * pz + viewmat[0, 3]
        y = viewmat[1, 0] * px + viewmat[1, 1] * py + viewmat[1, 2] * pz + viewmat[1, 3]
        z = viewmat[2, 0] * px + viewmat[2, 1] * py + viewmat[2, 2] * pz + viewmat[2, 3]
        qn = math.sqrt(quats[i, 0] ** 2 + quats[i, 1] ** 2 + quats[i, 2] ** 2 + quats[i, 3] ** 2)
        qw, qx, qy, qz = quats[i, 0] / qn, quats[i, 1] / qn, quats[i, 2] / qn, quats[i, 3] / qn
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
        s = np.empty(3)
        for c in range(3):
            s[c] = math.exp(log_scales[i, c])
        # m = R_v R diag(s); camera covariance cov = m m^T
        m = np.zeros((3, 3))
        for r in range(3):
            for c in range(3):
                for k in range(3):
                    m[r, c] += viewmat[r, k] * rot[k, c]
                m[r, c] *= s[c]
        cov = np.empty((3, 3))
        _matmul(m, m.T, cov)
        rx, ry = x / z, y / z
        clamped_x = rx < -lim_xn or rx > lim_xp
        clamped_y = ry < -lim_yn or ry > lim_yp
        tx = z * min(max(rx, -lim_xn), lim_xp)
        ty = z * min(max(ry, -lim_yn), lim_yp)
        jac = np.zeros((2, 3))
        jac[0, 0] = fx / z
        jac[0, 2] = -fx * tx / (z * z)
        jac[1, 1] = fy / z
        jac[1, 2] = -fy * ty / (z * z)
        jc = np.empty((2, 3))
        _matmul(jac, cov, jc)
        cov2d = np.empty((2, 2))
        _matmul(jc, jac.T, cov2d)
        c00 = cov2d[0, 0] + eps2d
        c11 = cov2d[1, 1] + eps2d
        c01 = cov2d[0, 1]
        det = c00 * c11 - c01 * c01
        q00, q01, q11 = c11 / det, -c01 / det, c00 / det
        # conic = inv(Sigma2): dL/dSigma2 = -Q G Q, G the symmetric gradient of the conic's entries
        ga, gb, gc = g_conics[i, 0], 0.5 * g_conics[i, 1], g_conics[i, 2]
        qg00 = q00 * ga + q01 * gb
        qg01 = q00 * gb + q01 * gc
        qg10 = q01 * ga + q11 * gb
        qg11 = q01 * gb + q11 * gc
        h = np.empty((2, 2))
        h[0, 0] = -(qg00 * q00 + qg01 * q01)
        h[0, 1] = -(qg00 * q01 + qg01 * q11)
        h[1, 0] = -(qg10 * q00 + qg11 * q01)
        h[1, 1] = -(qg10 * q01 + qg11 * q11)
        hj = np.empty((2, 3))
        _matmul(h, jac, hj)
        d_cov = np.empty((3, 3))
        _matmul(jac.T, hj, d_cov)
        d_jac = np.empty((2, 3))  # 2 h J cov (h and cov are symmetric)
        _matmul(hj, cov, d_jac)
        d_jac *= 2.0
        # means: pinhole projection, depth, and the Jacobian's dependence on (x, y, z)
        gu, gv = g_means2d[i, 0], g_means2d[i, 1]
        dx = gu * fx / z
        dy = gv * fy / z
        dz = -(gu * fx * x + gv * fy * y) / (z * z) + g_depths[i]
        dz += -d_jac[0, 0] * fx / (z * z) - d_jac[1, 1] * fy / (z * z)
        if clamped_x:  # tx = z * const
            dz += d_jac[0, 2] * fx * tx / (z * z * z)
        else:  # tx = x
            dx += -d_jac[0, 2] * fx / (z * z)
            dz += d_jac[0, 2] * 2.0 * fx * tx / (z * z * z)
        if clamped_y:
            dz += d_jac[1, 2] * fy * ty / (z * z * z)
        else:
            dy += -d_jac[1, 2] * fy / (z * z)
            dz += d_jac[1, 2] * 2.0 * fy * ty / (z * z * z)
        for c in range(3):
            g_means[i, c] = viewmat[0, c] * dx + viewmat[1, c] * dy + viewmat[2, c] * dz
        # cov = m m^T: dL/dm = 2 d_cov m; m = R_v R diag(s)
        d_m = np.empty((3, 3))
        _matmul(d_cov, m, d_m)
        d_m *= 2.0
        d_rs = np.zeros((3, 3))  # dL/d(R diag(s)) = R_v^T d_m
        for r in range(3):
            for c in range(3):
                for k in range(3):
                    d_rs[r, c] += viewmat[k, r] * d_m[k, c]
        gr = np.empty((3, 3))
        for c in range(3):
            acc = 0.0
            for r in range(3):
                gr[r, c] = d_rs[r, c] * s[c]
                acc += d_rs[r, c] * rot[r, c]
            g_log_scales[i, c] = acc * s[c]
        # rotation matrix of the unit quaternion, then through the normalisation
        gw = 2.0 * (-qz * gr[0, 1] + qy * gr[0, 2] + qz * gr[1, 0] - qx * gr[1, 2] - qy * gr[2, 0] + qx * gr[2, 1])
        gx = 2.0 * (qy * gr[0, 1] + qz * gr[0, 2] + qy * gr[1, 0] - 2 * qx * gr[1, 1] - qw * gr[1, 2] + qz * gr[2, 0]
                    + qw * gr[2, 1] - 2 * qx * gr[2, 2])
        gy = 2.0 * (-2 * qy * gr[0, 0] + qx * gr[0, 1] + qw * gr[0, 2] + qx * gr[1, 0] + qz * gr[1, 2]
                    - qw * gr[2, 0] + qz * gr[2, 1] - 2 * qy * gr[2, 2])
        gz = 2.0 * (-2 * qz * gr[0, 0] - qw * gr[0, 1] + qx * gr[0, 2] + qw * gr[1, 0] - 2 * qz * gr[1, 1]
                    + qy * gr[1, 2] + qx * gr[2, 0] + qy * gr[2, 1])
        dot = gw * qw + gx * qx + gy * qy + gz * qz
        g_quats[i, 0] = (gw - qw * dot) / qn
        g_quats[i, 1] = (gx - qx * dot) / qn
        g_quats[i, 2] = (gy - qy * dot) / qn
        g_quats[i, 3] = (gz - qz * dot) / qn


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


class ProjectCPU(torch.autograd.Function):
    """EWA projection on the numba kernels: ``(means [N, 3], quats [N, 4], log_scales [N, 3])`` ->
    ``(means2d [N, 2], conics [N, 3], depths [N], radii [N, 2] int32)``, differentiable in the first three."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, camera: Camera, settings: RasterSettings):
        arrays = [_numpy(t) for t in (means, quats, log_scales)]
        logits = np.zeros(len(arrays[0]), arrays[0].dtype)
        viewmat = camera.viewmat.double().numpy()
        means2d, conics, depths, radii, _ = project_cpu(*arrays, logits, viewmat, camera.fx, camera.fy, camera.cx,
                                                        camera.cy, camera.width, camera.height, settings)
        ctx.arrays, ctx.camera, ctx.settings, ctx.viewmat, ctx.radii = arrays, camera, settings, viewmat, radii
        ctx.mark_non_differentiable(radii_t := torch.from_numpy(radii))
        return torch.from_numpy(means2d), torch.from_numpy(conics), torch.from_numpy(depths), radii_t

    @staticmethod
    def backward(ctx, g_means2d, g_conics, g_depths, _g_radii):
        means, quats, log_scales = ctx.arrays
        cam = ctx.camera
        out = [np.zeros(a.shape, np.float64) for a in (means, quats, log_scales)]
        _project_backward(means, quats, log_scales, ctx.viewmat, float(cam.fx), float(cam.fy), float(cam.cx),
                          float(cam.cy), int(cam.width), int(cam.height), ctx.settings.eps2d, ctx.radii,
                          *(_numpy(g).astype(np.float64) for g in (g_means2d, g_conics, g_depths)), *out)
        dtype = g_means2d.dtype
        return (*(torch.from_numpy(o).to(dtype) for o in out), None, None)


class RasterizeCPU(torch.autograd.Function):
    """Tile compositing on the numba kernels: ``(means2d, conics, depths, opacities, colors [N, 3])``
    -> ``(rgb [H, W, 3], depth [H, W], alpha [H, W], object_id [H, W])``, differentiable in the five
    inputs (as :func:`~splatworld.render.raster_torch.rasterize_torch` under autograd)."""

    @staticmethod
    def forward(ctx, means2d, conics, depths, opacities, colors, radii, object_ids, width: int, height: int,
                background: torch.Tensor, settings: RasterSettings):
        dtype = colors.dtype
        np_dtype = _numpy(colors[:0]).dtype
        projected = (_numpy(means2d).astype(np_dtype), _numpy(conics).astype(np_dtype),
                     _numpy(depths).astype(np_dtype), _numpy(radii), _numpy(opacities).astype(np_dtype))
        rgb, depth, alpha, object_id, state = rasterize_cpu(
            projected, _numpy(colors), _numpy(object_ids), width, height, _numpy(background).astype(np.float64),
            settings)
        ctx.state, ctx.size, ctx.settings, ctx.n, ctx.dtype = state, (width, height), settings, len(colors), dtype
        ctx.background = _numpy(background).astype(np.float64)
        ids = torch.from_numpy(object_id)
        ctx.mark_non_differentiable(ids)
        return torch.from_numpy(rgb), torch.from_numpy(depth), torch.from_numpy(alpha), ids

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_alpha, _g_ids):
        state: Composited = ctx.state
        width, height = ctx.size
        s: RasterSettings = ctx.settings
        g_rgb, g_depth, g_alpha = (np.zeros(shape) if g is None else _numpy(g).astype(np.float64)
                                   for g, shape in ((g_rgb, (height, width, 3)), (g_depth, (height, width)),
                                                    (g_alpha, (height, width))))
        # rgb = A_rgb + T bg, alpha = 1 - T, depth = A_z / (1 - T) where 1 - T > 0
        opaque = 1.0 - state.trans
        drawn = opaque > 0
        safe = np.where(drawn, opaque, 1.0)
        grad_acc = np.empty((height, width, 4))
        grad_acc[..., :3] = g_rgb
        grad_acc[..., 3] = np.where(drawn, g_depth / safe, 0.0)
        grad_trans = g_rgb @ ctx.background - g_alpha + np.where(drawn, g_depth * state.acc[..., 3] / safe**2, 0.0)
        grad_packed = np.zeros((len(state.gaussian), _N_FIELDS))
        n_tx = math.ceil(width / s.tile_size)
        _composite_backward(state.offsets, state.packed, width, height, s.tile_size, n_tx, s.power_max, s.alpha_min,
                            s.alpha_max, s.transmittance_min, state.trans, state.acc, grad_acc, grad_trans,
                            grad_packed)
        per_gaussian = np.zeros((ctx.n, _N_FIELDS))
        _sum_per_gaussian(state.drawn, state.starts, state.isects, grad_packed, per_gaussian)
        grads = torch.from_numpy(per_gaussian).to(ctx.dtype)
        return (grads[:, [_MX, _MY]], grads[:, [_CA, _CB, _CC]], grads[:, _Z], grads[:, _OP],
                grads[:, [_R, _G, _B]], None, None, None, None, None, None)
