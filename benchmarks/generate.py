"""Episode generation speed: frames/s at 256x256 including physics, ground truth and PNG writing,
next to TinyRenderer alone drawing the same frames (its floor) in the same run.

    python benchmarks/generate.py [--scenario push] [--seconds 30]

Last line: ``generate_fps=... tinyrenderer_fps=... ratio=...``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from splatworld.jobs.config import load_config
from splatworld.scene.episode import Episode
from splatworld.sim.generate import build_tabletop, generate_episode
from splatworld.sim.pybullet_scene import render_tinyrenderer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="push")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config("generate", [f"scenario={args.scenario}", f"seconds={args.seconds}", f"seed={args.seed}",
                                       f"out={tmp}/ep", "progress=false"])
        start = time.perf_counter()
        generate_episode(cfg)
        seconds = time.perf_counter() - start
        episode = Episode(f"{tmp}/ep")
        n = len(episode)
        scene = build_tabletop(cfg.scenario, args.seed)
        cameras = [episode.camera(i) for i in range(n)]
        start = time.perf_counter()
        for cam in cameras:
            render_tinyrenderer(scene.world, cam, near=0.05, far=30.0)
        tiny = n / (time.perf_counter() - start)
        scene.world.close()
    fps = n / seconds
    print(f"{os.cpu_count()} cores; scenario {args.scenario}: {n} frames at {cfg.width}x{cfg.height}")
    print(f"generate (physics + TinyRenderer + ground truth + PNG): {fps:.1f} frames/s")
    print(f"TinyRenderer alone, same cameras:                      {tiny:.1f} frames/s")
    print(f"generate_fps={fps:.1f} tinyrenderer_fps={tiny:.1f} ratio={fps / tiny:.2f}")


if __name__ == "__main__":
    main()
