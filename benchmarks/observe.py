"""Scene-memory benchmark on generated episodes with reshuffled labels: identity (IDF1, switches),
object permanence after hiding (re-identification, belief, remembered pose), speed and size.

    python benchmarks/observe.py [--scenarios occlusion out_of_view long] [--episodes DIR]

Episodes are generated into --episodes (default: a temporary folder) unless already there;
each run's tracks.json is written beside them.
The peer for speed is real time at the episode's frame rate. Last line:
``idf1_min=... switches_per_10min_max=... reid_rate=... pose_error_max=... belief_min=... observe_fps=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from splatworld.config import load_config
from splatworld.evaluation import identity_metrics, reappearances
from splatworld.memory import SceneMemory
from splatworld.scene.episode import Episode
from splatworld.sim.generate import generate_episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["occlusion", "out_of_view", "long"])
    parser.add_argument("--episodes", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = args.episodes or Path(tempfile.mkdtemp())
    rows, all_events = [], []
    total_frames, total_seconds = 0, 0.0
    for name in args.scenarios:
        path = root / f"{name}_seed{args.seed}"
        if not (path / "transforms.json").exists():
            generate_episode(load_config("generate", [f"scenario={name}", f"seed={args.seed}", f"out={path}"]))
        episode = Episode(path)
        memory = SceneMemory(agent_label=episode.agent_label)
        start = time.perf_counter()
        for i in range(len(episode)):
            memory.observe(episode[i])
        seconds = time.perf_counter() - start
        memory.export_tracks(root / f"{name}_seed{args.seed}_tracks.json")  # for a closer look
        gt = episode.ground_truth()["objects"]
        tracks = memory.tracks_json()["objects"]
        ident = identity_metrics(np.array([o["labels"] for o in gt]), np.array([t["labels"] for t in tracks]))
        events = [e for e in reappearances(gt, tracks, episode.fps) if e["hidden_seconds"] >= 1.0]
        all_events += events
        minutes = len(episode) / episode.fps / 60
        rows.append((name, len(episode), len(gt), len(tracks), ident["idf1"], ident["id_switches"] / minutes * 10,
                     len(events), np.mean([e["reidentified"] for e in events]) if events else float("nan"),
                     len(episode) / seconds, len(memory.static)))
        total_frames += len(episode)
        total_seconds += seconds
    print(f"{'scenario':<12}{'frames':>7}{'objects':>8}{'tracks':>7}{'IDF1':>7}{'sw/10min':>9}{'events':>7}"
          f"{'re-id':>7}{'fps':>6}{'static vox':>11}")
    for r in rows:
        print(f"{r[0]:<12}{r[1]:>7}{r[2]:>8}{r[3]:>7}{r[4]:>7.3f}{r[5]:>9.2f}{r[6]:>7}{r[7]:>7.3f}{r[8]:>6.1f}{r[9]:>11}")
    reid = np.mean([e["reidentified"] for e in all_events]) if all_events else float("nan")
    errors = [e["pose_error"] for e in all_events if e["reidentified"]]
    beliefs = [e["belief"] for e in all_events if e["reidentified"]]
    long_hidden = [e for e in all_events if e["hidden_seconds"] >= 60]
    print(f"hide-and-reappear events of untouched objects: {len(all_events)} ({len(long_hidden)} hidden >= 60 s); "
          f"pose error after re-id: median {np.median(errors) if errors else float('nan'):.4f} m, "
          f"max {max(errors) if errors else float('nan'):.4f} m")
    print(f"idf1_min={min(r[4] for r in rows):.4f} switches_per_10min_max={max(r[5] for r in rows):.2f} "
          f"reid_rate={reid:.4f} pose_error_max={max(errors) if errors else float('nan'):.4f} "
          f"belief_min={min(beliefs) if beliefs else float('nan'):.3f} observe_fps={total_frames / total_seconds:.1f}")


if __name__ == "__main__":
    main()
