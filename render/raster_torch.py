"""Plain-torch tile rasterizer: vectorized binning and front-to-back compositing.

The reference implementation of the compositing rules (see :class:`RasterSettings`):
for each pixel, Gaussians are visited in increasing depth; a Gaussian contributes
where its Mahalanobis power ``0.5 d^T S^-1 d`` lies in ``[0, power_max]`` and its
alpha ``min(alpha_max, opacity * exp(-power))`` is at least ``alpha_min``; the pixel
stops before the first Gaussian that would bring its transmittance to
``transmittance_min`` or below. Differentiable with autograd.
"""

from __future__ import annotations

import math

import torch

from splatworld.render.projection import Projected, RasterSettings


def tile_rects(means2d: torch.Tensor, radii: torch.Tensor, tile: int, n_tx: int, n_ty: int) -> torch.Tensor:
    """Tile ranges ``[N, 4]`` (x0, x1, y0, y1; ends exclusive) covered by each Gaussian's bound."""
    lo = torch.floor((means2d - radii) / tile)
    hi = torch.floor((means2d + radii) / tile) + 1
    x0, y0 = lo[:, 0].clamp(0, n_tx), lo[:, 1].clamp(0, n_ty)
    x1, y1 = hi[:, 0].clamp(0, n_tx), hi[:, 1].clamp(0, n_ty)
    return torch.stack([x0, x1, y0, y1], dim=-1).long()


def bin_gaussians(projected: Projected, width: int, height: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth-sorted per-tile lists of Gaussians.

    Returns:
        ``offsets [n_tiles + 1]`` and ``gaussian_ids [n_isects]``: tile ``t`` holds
        ``gaussian_ids[offsets[t]:offsets[t + 1]]`` in increasing depth (ties by index).
    """
    n_tx, n_ty = math.ceil(width / tile), math.ceil(height / tile)
    valid = (projected.radii > 0).all(dim=-1).nonzero()[:, 0]
    order = valid[torch.sort(projected.depths.detach()[valid], stable=True).indices]
    rects = tile_rects(projected.means2d.detach()[order], projected.radii[order].to(projected.depths.dtype),
                       tile, n_tx, n_ty)
    widths = rects[:, 1] - rects[:, 0]
    per_gaussian = widths * (rects[:, 3] - rects[:, 2])
    dev = order.device
    owner = torch.repeat_interleave(torch.arange(len(order), device=dev), per_gaussian)
    start = torch.cumsum(per_gaussian, 0) - per_gaussian
    local = torch.arange(len(owner), device=dev) - start[owner]
    tx = rects[owner, 0] + local % widths[owner]
    ty = rects[owner, 2] + torch.div(local, widths[owner], rounding_mode="floor")
    tile_ids = ty * n_tx + tx
    sort = torch.sort(tile_ids, stable=True)  # stable: keeps depth order inside each tile
    counts = torch.bincount(tile_ids, minlength=n_tx * n_ty)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), torch.cumsum(counts, 0)])
    return offsets, order[owner[sort.indices]]


def rasterize_torch(
    projected: Projected,
    colors: torch.Tensor,
    object_ids: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor,
    settings: RasterSettings,
    chunk: int = 32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians into images.

    Args:
        colors: ``[N, C]`` per-Gaussian RGB (or any ``C`` channels composited alike).
        object_ids: ``[N]`` int64.
        background: ``[C]`` behind everything.
        chunk: Gaussians per tile composited per step (memory vs. speed).

    Returns:
        rgb ``[H, W, C]``, expected depth ``[H, W]`` (0 where alpha = 0),
        alpha ``[H, W]``, object id ``[H, W]`` int64 (-1 where nothing was drawn).
    """
    ts = settings.tile_size
    n_tx, n_ty = math.ceil(width / ts), math.ceil(height / ts)
    n_tiles, n_pix = n_tx * n_ty, ts * ts
    dtype, dev = colors.dtype, colors.device
    offsets, gids = bin_gaussians(projected, width, height, ts)
    counts = offsets[1:] - offsets[:-1]

    tiles = torch.arange(n_tiles, device=dev)
    tile_x = (tiles % n_tx) * ts
    tile_y = torch.div(tiles, n_tx, rounding_mode="floor") * ts
    local = torch.arange(n_pix, device=dev)
    px = (tile_x[:, None] + local % ts).to(dtype) + 0.5  # [n_tiles, n_pix] pixel centres
    py = (tile_y[:, None] + torch.div(local, ts, rounding_mode="floor")).to(dtype) + 0.5

    trans = torch.ones(n_tiles, n_pix, dtype=dtype, device=dev)
    done = torch.zeros(n_tiles, n_pix, dtype=torch.bool, device=dev)
    acc_rgb = torch.zeros(n_tiles, n_pix, colors.shape[-1], dtype=dtype, device=dev)
    acc_depth = torch.zeros(n_tiles, n_pix, dtype=dtype, device=dev)
    best_w = torch.zeros(n_tiles, n_pix, dtype=dtype, device=dev)
    best_id = torch.full((n_tiles, n_pix), -1, dtype=torch.long, device=dev)
    m2d, con, opa, dep = projected.means2d, projected.conics, projected.opacities, projected.depths

    steps = int(counts.max().item()) if n_tiles and len(gids) else 0
    for k0 in range(0, steps, chunk):
        open_tiles = ((counts > k0) & ~done.all(dim=1)).nonzero()[:, 0]
        if len(open_tiles) == 0:
            break
        j = torch.arange(chunk, device=dev)
        in_range = (k0 + j)[None, :] < counts[open_tiles, None]  # [A, C]
        g = gids[(offsets[open_tiles, None] + k0 + j).clamp(max=max(len(gids) - 1, 0))]
        dx = px[open_tiles][:, :, None] - m2d[g][:, None, :, 0]  # [A, P, C]
        dy = py[open_tiles][:, :, None] - m2d[g][:, None, :, 1]
        c = con[g][:, None, :, :]
        power = 0.5 * (c[..., 0] * dx * dx + c[..., 2] * dy * dy) + c[..., 1] * dx * dy
        alpha = torch.clamp_max(opa[g][:, None, :] * torch.exp(-power), settings.alpha_max)
        ok = (in_range[:, None, :] & (power >= 0) & (power <= settings.power_max)
              & (alpha >= settings.alpha_min) & ~done[open_tiles][:, :, None])
        t0 = trans[open_tiles]
        a = torch.where(ok, alpha, torch.zeros_like(alpha))
        t_incl = t0[:, :, None] * torch.cumprod(1 - a, dim=-1)
        stop = ok & (t_incl <= settings.transmittance_min)
        a = torch.where(ok & ~stop, a, torch.zeros_like(a))
        cp = torch.cumprod(1 - a, dim=-1)
        t_excl = t0[:, :, None] * torch.cat([torch.ones_like(cp[..., :1]), cp[..., :-1]], dim=-1)
        weights = a * t_excl  # [A, P, C]
        acc_rgb = acc_rgb.index_add(0, open_tiles, torch.einsum("apc,ack->apk", weights, colors[g]))
        acc_depth = acc_depth.index_add(0, open_tiles, (weights * dep[g][:, None, :]).sum(-1))
        trans = trans.index_copy(0, open_tiles, t0 * cp[..., -1])
        done = done.index_copy(0, open_tiles, done[open_tiles] | stop.any(dim=-1))
        w_max, j_max = weights.detach().max(dim=-1)
        better = w_max > best_w[open_tiles]
        chosen = object_ids[torch.gather(g, 1, j_max)]
        best_w = best_w.index_copy(0, open_tiles, torch.where(better, w_max, best_w[open_tiles]))
        best_id = best_id.index_copy(0, open_tiles, torch.where(better, chosen, best_id[open_tiles]))

    def to_image(t: torch.Tensor) -> torch.Tensor:
        img = t.reshape(n_ty, n_tx, ts, ts, *t.shape[2:]).transpose(1, 2)
        return img.reshape(n_ty * ts, n_tx * ts, *t.shape[2:])[:height, :width]

    alpha_img = 1 - to_image(trans)
    acc_depth_img = to_image(acc_depth)
    depth = torch.where(alpha_img > 0, acc_depth_img / alpha_img.clamp_min(1e-10), torch.zeros_like(alpha_img))
    rgb = to_image(acc_rgb) + (1 - alpha_img)[..., None] * background.to(dev, dtype)
    return rgb, depth, alpha_img, to_image(best_id)
