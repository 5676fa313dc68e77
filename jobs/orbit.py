"""``splatworld orbit``: a PyBullet tabletop turned into Gaussians, rendered along an orbit."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from splatworld.render import orbit_path, render, resolve_backend, write_video
from splatworld.scene import write_ply
from splatworld.sim import gaussians_from_pybullet, tabletop_world
from splatworld.sim.pybullet_scene import TABLE_TOP_Z


def run_orbit(cfg: DictConfig) -> Path:
    """Build the scene, write ``scene.ply`` and ``orbit.mp4`` into ``cfg.out``; return the mp4 path."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = resolve_backend(cfg.backend)
    world = tabletop_world(n_objects=cfg.n_objects, seed=cfg.seed)
    try:
        gaussians = gaussians_from_pybullet(world, total=cfg.n_gaussians, seed=cfg.seed)
    finally:
        world.close()
    ply = write_ply(out / "scene.ply", gaussians)
    cameras = orbit_path(cfg.frames, center=(0.0, 0.0, TABLE_TOP_Z), radius=cfg.radius, height=cfg.camera_height,
                         fov_y_deg=cfg.fov_y_deg, width=cfg.width, height_px=cfg.height)
    start = time.perf_counter()
    frames = (render(gaussians, cam, background=list(cfg.background), backend=backend).rgb for cam in cameras)
    video = write_video(frames, out / "orbit.mp4", fps=cfg.fps, total=len(cameras), desc=f"render ({backend})")
    seconds = time.perf_counter() - start
    print(f"{len(gaussians)} Gaussians -> {ply}")
    print(f"{len(cameras)} frames at {cfg.width}x{cfg.height} with backend '{backend}' in {seconds:.1f} s "
          f"({len(cameras) / seconds:.1f} frames/s, video encoding included) -> {video}")
    return video
