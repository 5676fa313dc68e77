"""How predictable the held-out pushes are: PyBullet's own outcome under small errors in the state.

    python benchmarks/push_predictability.py [--episodes DIR] [--seeds 100 101 102 103] [--shifts 2 5 10]

For every push of the `push_heldout` episodes (:func:`splatworld.dynamics.evaluate.push_events`,
objects that moved more than 1 cm), the generator's world is set to the true state at the push's
start and the recorded pusher commands are replayed (:class:`splatworld.sim.replay.PushReplay`):
- unchanged, to check the replay (its end against the episode's);
- with the pushed object moved ``shift`` mm along +x, -x, +y, -y: how far its end moves,
  less the shift itself. A memory whose estimate is that far off hands any dynamics model a
  push that ends this far from the truth, however good its physics.
The peer of each shifted figure is the unshifted replay in the same run. Last line:
``replay_error_median=... shift_<mm>_median=... shift_<mm>_p90=... pushes=...`` (metres).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from splatworld.dynamics.evaluate import push_events
from splatworld.jobs.config import load_config
from splatworld.jobs.generate import generated_episode
from splatworld.scene.episode import Episode
from splatworld.sim.replay import PushReplay
from splatworld.progress import progress_bar

DIRECTIONS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", default="benchmarks/.episodes/heldout")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: eval_dynamics.yaml's")
    parser.add_argument("--shifts", type=float, nargs="+", default=[2.0, 5.0, 10.0], help="mm")
    args = parser.parse_args()
    cfg = load_config("eval_dynamics")
    scenario = load_config("generate", [f"scenario={cfg.scenario}"]).scenario
    replay_errors, changes = [], {s: [] for s in args.shifts}
    for seed in args.seeds or list(cfg.seeds):
        episode = Episode(generated_episode(Path(args.episodes), cfg.scenario, seed, cfg.seconds))
        gt = episode.ground_truth()["objects"]
        poses = torch.tensor([o["poses"] for o in gt], dtype=torch.float64).transpose(0, 1)  # [T, N, 7]
        agent = np.array([episode.info(k).agent_pose[:2] for k in range(len(episode))])
        actions = np.array([episode.info(k).action for k in range(len(episode))])
        world = PushReplay(scenario, seed, episode.fps)
        if world.names != [o["name"] for o in gt]:
            raise SystemExit(f"seed {seed}: the rebuilt world holds {world.names}, the episode {[o['name'] for o in gt]}")
        events = [e for e in push_events(poses, 1.0 / episode.fps)
                  if torch.linalg.norm(poses[e[2], e[0], :2] - poses[e[1], e[0], :2]) > 0.01]
        for g, start, end in progress_bar(events, desc=f"replay seed {seed}", unit="push"):
            state = poses[start].numpy()
            replayed = world.push(state, agent[start], actions[start:end])[g, :2]
            replay_errors.append(float(np.linalg.norm(replayed - poses[end, g, :2].numpy())))
            for shift in args.shifts:
                for direction in DIRECTIONS:
                    offset = direction * shift / 1000
                    moved = state.copy()
                    moved[g, :2] += offset
                    shifted = world.push(moved, agent[start], actions[start:end])[g, :2] - offset
                    changes[shift].append(float(np.linalg.norm(shifted - replayed)))
        world.close()
    n = len(replay_errors)
    print(f"{n} pushes; replay against the episode: median {np.median(replay_errors) * 1000:.1f} mm, "
          f"p90 {np.percentile(replay_errors, 90) * 1000:.1f} mm")
    print(f"{'object moved by':<18}{'end moves: median':>20}{'p90':>10}{'max':>10}")
    for shift, values in changes.items():
        print(f"{shift:>10.1f} mm{'':<5}{np.median(values) * 1000:>17.1f} mm{np.percentile(values, 90) * 1000:>7.1f} mm"
              f"{np.max(values) * 1000:>7.1f} mm")
    fields = {"replay_error_median": np.median(replay_errors)}
    for shift, values in changes.items():
        fields[f"shift_{shift:g}mm_median"] = np.median(values)
        fields[f"shift_{shift:g}mm_p90"] = np.percentile(values, 90)
    print(" ".join(f"{k}={v:.4f}" for k, v in fields.items()) + f" pushes={n}")


if __name__ == "__main__":
    main()
