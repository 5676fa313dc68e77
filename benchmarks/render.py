"""Renderer benchmark: a 50k-Gaussian PyBullet tabletop at 256x256, every available backend,
against PyBullet's TinyRenderer drawing the same scene from the same cameras in the same run.

    python benchmarks/render.py [--frames 60] [--gaussians 50000] [--size 256]

The last line holds the headline figures for the default CPU backend:
``fps=... tinyrenderer_fps=... ratio=...``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from splatworld.render import available_backends, orbit_path, render
from splatworld.sim import gaussians_from_pybullet, render_tinyrenderer, tabletop_world
from splatworld.sim.pybullet_scene import TABLE_TOP_Z


def frames_per_second(draw, cameras, repeats: int = 1) -> float:
    draw(cameras[0])  # warm-up: JIT compilation, caches
    start = time.perf_counter()
    for _ in range(repeats):
        for cam in cameras:
            draw(cam)
    return repeats * len(cameras) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="orbit frames per backend")
    parser.add_argument("--torch-frames", type=int, default=5, help="frames for the slow torch reference")
    parser.add_argument("--gaussians", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    world = tabletop_world(n_objects=5, seed=args.seed)
    gaussians = gaussians_from_pybullet(world, total=args.gaussians, seed=args.seed)
    cameras = orbit_path(args.frames, center=(0.0, 0.0, TABLE_TOP_Z), radius=1.6, height=0.9, fov_y_deg=55.0,
                         width=args.size, height_px=args.size)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, CUDA {torch.cuda.is_available()}")
    print(f"scene: {len(gaussians)} Gaussians, {args.size}x{args.size}, {args.frames}-frame orbit")

    results = {}
    for backend in available_backends():
        cams = cameras[: args.torch_frames] if backend == "torch" else cameras
        results[backend] = frames_per_second(lambda c, b=backend: render(gaussians, c, background=(1, 1, 1),
                                                                         backend=b), cams)
    tiny = frames_per_second(lambda c: render_tinyrenderer(world, c), cameras)
    world.close()

    print(f"{'renderer':<16}{'frames/s':>10}{'ms/frame':>10}{'vs TinyRenderer':>18}")
    for name, fps in [*results.items(), ("tinyrenderer", tiny)]:
        print(f"{name:<16}{fps:>10.1f}{1000 / fps:>10.1f}{fps / tiny:>17.2f}x")
    fast = results["cpu"]
    print(f"fps={fast:.1f} tinyrenderer_fps={tiny:.1f} ratio={fast / tiny:.2f} torch_s_per_frame="
          f"{1 / results['torch']:.3f}")


if __name__ == "__main__":
    main()
