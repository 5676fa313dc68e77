"""CUDA renderer benchmark: our ``gsplat`` backend against gsplat's own ``rasterization()`` called
directly in the same run, with the ``cpu`` (numba) backend and the torch reference on the same
scene, at 256x256 on a 50k-Gaussian tabletop and at 1920x1080 on a 1M-Gaussian tabletop.

    python benchmarks/render_cuda.py [--ply scene.ply] [--frames 100]

The tabletop is the PyBullet scene of ``benchmarks/render.py`` (``--ply``: a 3DGS PLY instead,
e.g. ``splatworld orbit``'s ``scene.ply``, where PyBullet is not installed). The 1M scene
densifies it as 3DGS densification would: each Gaussian split into 20, drawn from its own
distribution, each a 20^(1/3) smaller. Timings wait for the GPU (``torch.cuda.synchronize``).

Peers: ``gsplat_direct`` draws RGB and expected depth with gsplat's SH evaluation, the outputs of
``render(..., object_ids=False)``; ``gsplat_direct_ids`` draws the same one-hot id channels our
id map needs. Last line: ``fps_256=... direct_fps_256=... ratio_256=... fps_1080=...
direct_fps_1080=... ratio_1080=... ids_ratio_1080=... cpu_fps_1080=... torch_s_per_frame_1080=... max_rgb_diff_256=... max_rgb_diff_1080=...``
(the last two: gsplat against the float64 torch reference on the first view, under gsplat's bound).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from splatworld.render import GSPLAT_SIGMA_CUTOFF, RasterSettings, orbit_path, render
from splatworld.scene import Gaussians, read_ply
from splatworld.scene.transforms import quat_to_rotmat

TABLE_TOP_Z = 0.625  # splatworld.sim.pybullet_scene.TABLE_TOP_Z, without importing PyBullet


def tabletop(ply: str | None, n: int, seed: int) -> Gaussians:
    if ply:
        return read_ply(ply)
    from splatworld.sim import gaussians_from_pybullet, tabletop_world

    world = tabletop_world(n_objects=5, seed=seed)
    try:
        return gaussians_from_pybullet(world, total=n, seed=seed)
    finally:
        world.close()


def densify(g: Gaussians, factor: int, seed: int) -> Gaussians:
    """Each Gaussian split into ``factor``, centred at samples of its own distribution and
    ``factor^(1/3)`` times smaller: as many Gaussians covering the same surfaces."""
    gen = torch.Generator().manual_seed(seed)
    rot = quat_to_rotmat(g.quats.double()).float()
    eps = torch.randn(len(g), factor, 3, generator=gen)
    means = g.means[:, None] + ((rot[:, None] * g.scales[:, None, None, :]) @ eps[..., None])[..., 0]
    rep = lambda t: t.repeat_interleave(factor, 0)  # noqa: E731
    return Gaussians(means.reshape(-1, 3), rep(g.quats), rep(g.log_scales) - math.log(factor) / 3,
                     rep(g.opacity_logits), rep(g.sh), rep(g.object_ids))


def frames_per_second(draw, cameras, cuda: bool) -> float:
    draw(cameras[0])  # warm-up: kernels loaded, caches filled
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for cam in cameras:
        draw(cam)
    if cuda:
        torch.cuda.synchronize()
    return len(cameras) / (time.perf_counter() - start)


def direct(g: Gaussians, ids: bool):
    """gsplat's ``rasterization()`` as a user would call it: RGB + expected depth from SH (or, with
    ``ids``, the channels our id map composites: RGB and one-hot ids but the first)."""
    from gsplat import rasterization

    from splatworld.render.projection import sh_colors

    unique, inverse = torch.unique(g.object_ids, return_inverse=True)
    one_hot = torch.nn.functional.one_hot(inverse, len(unique))[:, 1:].float()

    def draw(cam):
        kw = {}
        if ids:
            kw["colors"] = torch.cat([sh_colors(g, cam.center), one_hot], -1)
        else:
            kw.update(colors=g.sh, sh_degree=g.sh_degree)
        return rasterization(g.means, g.quats, g.scales, g.opacities, viewmats=cam.viewmat.to("cuda", torch.float32)[None],
                             Ks=cam.K.to("cuda", torch.float32)[None], width=cam.width, height=cam.height,
                             eps2d=0.3, render_mode="RGB+ED", **kw)
    return draw


def measure(g: Gaussians, width: int, height: int, frames: int, slow_frames: int) -> dict[str, float]:
    cameras = orbit_path(frames, center=(0.0, 0.0, TABLE_TOP_Z), radius=1.6, height=0.9, fov_y_deg=55.0,
                         width=width, height_px=height)
    gc = g.to(device="cuda")
    out = {
        "gsplat_direct": frames_per_second(direct(gc, ids=False), cameras, True),
        "gsplat": frames_per_second(lambda c: render(gc, c, backend="gsplat", object_ids=False), cameras, True),
        "gsplat_direct_ids": frames_per_second(direct(gc, ids=True), cameras, True),
        "gsplat_ids": frames_per_second(lambda c: render(gc, c, backend="gsplat"), cameras, True),
        "cpu": frames_per_second(lambda c: render(g, c, backend="cpu"), cameras[:slow_frames], False),
        "torch_cuda": frames_per_second(lambda c: render(gc, c, backend="torch"), cameras[:slow_frames], True),
    }
    # parity on the first view: gsplat against the float64 torch reference under gsplat's bound
    settings = RasterSettings(sigma_cutoff=GSPLAT_SIGMA_CUTOFF)
    ref = render(g.to(device="cuda", dtype=torch.float64), cameras[0], backend="torch", settings=settings)
    ours = render(gc, cameras[0], backend="gsplat", settings=settings)
    parity = {"max_rgb_diff": float((ours.rgb.double() - ref.rgb).abs().max()),
              "id_agreement": float((ours.object_id == ref.object_id).double().mean())}
    print(f"{len(g)} Gaussians, {width}x{height}, {frames}-frame orbit ({slow_frames} for cpu and torch)")
    print(f"  gsplat vs float64 torch reference, view 0: max |RGB| {parity['max_rgb_diff']:.2e}, "
          f"ids equal on {parity['id_agreement']:.4f} of pixels")
    print(f"  {'renderer':<20}{'frames/s':>10}{'ms/frame':>10}")
    for name, fps in out.items():
        print(f"  {name:<20}{fps:>10.1f}{1000 / fps:>10.2f}")
    print(f"  our wrapper / direct: {out['gsplat'] / out['gsplat_direct']:.3f} (RGB+depth), "
          f"{out['gsplat_ids'] / out['gsplat_direct_ids']:.3f} (with the id map)")
    return out | parity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ply", help="a 3DGS PLY to use as the 50k tabletop (default: build it with PyBullet)")
    parser.add_argument("--frames", type=int, default=100, help="orbit frames per gsplat measurement")
    parser.add_argument("--slow-frames", type=int, default=3, help="frames for the cpu and torch backends")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("render_cuda: needs CUDA (torch.cuda.is_available() is False)")
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    small = tabletop(args.ply, 50_000, args.seed)
    a = measure(small, 256, 256, args.frames, args.slow_frames)
    big = densify(small, 20, args.seed)
    b = measure(big, 1920, 1080, args.frames, args.slow_frames)
    print(f"fps_256={a['gsplat']:.1f} direct_fps_256={a['gsplat_direct']:.1f} "
          f"ratio_256={a['gsplat'] / a['gsplat_direct']:.3f} fps_1080={b['gsplat']:.1f} "
          f"direct_fps_1080={b['gsplat_direct']:.1f} ratio_1080={b['gsplat'] / b['gsplat_direct']:.3f} "
          f"ids_ratio_1080={b['gsplat_ids'] / b['gsplat_direct_ids']:.3f} cpu_fps_1080={b['cpu']:.2f} "
          f"torch_s_per_frame_1080={1 / b['torch_cuda']:.2f} max_rgb_diff_256={a['max_rgb_diff']:.1e} "
          f"max_rgb_diff_1080={b['max_rgb_diff']:.1e}")


if __name__ == "__main__":
    main()
