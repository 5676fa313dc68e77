"""Quasi-static pushing's two constants fitted on the memory's tracks, and what the fit is worth.

    python benchmarks/fit_pushing.py --dataset DIR/dataset.pt [--episodes DIR] [--frictions ...] [--scales ...]

A robot does not know the friction between its pusher and what it pushes, nor how an object's
weight spreads over its footprint; it can watch how its pushes went. This grid-searches the
pusher friction and the limit-surface scale (``DynamicsConfig.pusher_friction``,
``limit_surface_scale``) for the least ``--horizon``-step rollout loss against the memory's
tracks (:func:`splatworld.dynamics.train.rollout_loss`) over the windows in which the pusher
drives a tracked object, on the training sequences of a ``splatworld train-dynamics`` run
(``dataset.pt``). Then it scores the fitted constants against the defaults (the peer) on the
held-out episodes of ``configs/eval_dynamics.yaml``: the error at the end of each push against
PyBullet's poses. Last line: ``friction=... scale=... default_push_end_median=...
fitted_push_end_median=...`` (metres).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from splatworld.dynamics.evaluate import push_end_errors, push_events
from splatworld.dynamics.models import DynamicsConfig, make_model
from splatworld.dynamics.train import Unrolled, pushed_starts, rollout_loss
from splatworld.evaluation.identity import identity_metrics
from splatworld.jobs.config import load_config
from splatworld.jobs.train_dynamics import _sequence_from_state, observed_sequence


def fit(config: DynamicsConfig, sequences, horizon: int, max_tilt: float, frictions, scales) -> dict:
    """The rollout loss (cm^2 per object-step) of every (friction, scale) pair."""
    starts = [pushed_starts(make_model("quasi_static", config), seq, horizon, max_tilt) for seq in sequences]
    losses = {}
    for friction in frictions:
        for scale in scales:
            model = make_model("quasi_static", dataclasses.replace(config, pusher_friction=friction,
                                                                   limit_surface_scale=scale))
            total, count = 0.0, 0
            with torch.no_grad():
                for seq, frames in zip(sequences, starts):
                    if len(frames):
                        loss, n = rollout_loss(Unrolled(model), seq, frames, horizon, max_tilt=max_tilt)
                        total, count = total + float(loss) * n, count + n
            losses[(friction, scale)] = total / max(count, 1)
    return losses


def push_end_median(config: DynamicsConfig, folder: Path) -> float:
    """Median end-of-push error of quasi-static pushing on the held-out episodes (objects moved > 1 cm)."""
    cfg = load_config("eval_dynamics")
    model, errors = make_model("quasi_static", config), []
    for seed in cfg.seeds:
        seq, tracks, episode = observed_sequence(cfg.scenario, cfg.seconds, seed, folder, False)
        gt = episode.ground_truth()["objects"]
        assignment = identity_metrics(np.array([o["labels"] for o in gt]),
                                      np.array([t["labels"] for t in tracks["objects"]]))["assignment"]
        poses = torch.tensor([o["poses"] for o in gt], dtype=torch.float64).transpose(0, 1)
        err = push_end_errors(model, seq, poses, {t: g for g, t in assignment.items()}, push_events(poses, seq.dt))
        errors.append(err["position"][err["true_motion"] > cfg.moved_threshold])
    return float(np.median(np.concatenate(errors)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="a train-dynamics dataset.pt")
    parser.add_argument("--episodes", type=Path, default=Path("benchmarks/.episodes/heldout"))
    parser.add_argument("--frictions", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.8, 1.2])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 2.5])
    parser.add_argument("--horizon", type=int, default=10, help="steps of each fitted rollout")
    args = parser.parse_args()
    saved = torch.load(args.dataset, weights_only=False)
    sequences = [_sequence_from_state(s) for s in saved["train"]]
    default = DynamicsConfig()
    losses = fit(default, sequences, args.horizon, 0.1, args.frictions, args.scales)
    print("rollout loss (cm^2 per object-step), rows: pusher friction, columns: limit-surface scale")
    print(f"{'':>8}" + "".join(f"{s:>8g}" for s in args.scales))
    for f in args.frictions:
        print(f"{f:>8g}" + "".join(f"{losses[(f, s)]:>8.3f}" for s in args.scales))
    friction, scale = min(losses, key=losses.get)
    fitted = dataclasses.replace(default, pusher_friction=friction, limit_surface_scale=scale)
    base, best = push_end_median(default, args.episodes), push_end_median(fitted, args.episodes)
    print(f"held-out end of push, median: defaults ({default.pusher_friction}, {default.limit_surface_scale}) "
          f"{base * 1000:.1f} mm; fitted ({friction}, {scale}) {best * 1000:.1f} mm")
    print(f"friction={friction} scale={scale} default_push_end_median={base:.4f} fitted_push_end_median={best:.4f}")


if __name__ == "__main__":
    main()
