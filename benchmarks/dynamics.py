"""Dynamics benchmark: batched rollout speed, drift at rest over 5 minutes, and penetrations of
the scaffold over 1000 random rollouts (``--rollouts``), from a state the memory estimated on a `push` episode.

    python benchmarks/dynamics.py [--model learned|quasi_static|...] [--checkpoint FILE] [--episodes DIR] [--rollouts N]

The peer for speed is the constant-velocity model in the same run (same batch, same constraints).
Last line: ``object_steps_per_s=... constant_velocity_object_steps_per_s=... ratio=...
rest_drift_max=... penetrations=... penetration_max=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from splatworld.dynamics.data import state_at
from splatworld.dynamics.models import MODELS, DynamicsConfig, make_model, rollout
from splatworld.dynamics.state import obstacle_height, support_under
from splatworld.dynamics.train import load_dynamics
from splatworld.jobs.train_dynamics import observed_sequence
from splatworld.scene.transforms import quat_to_rotmat


STEP_HEIGHT = DynamicsConfig().step_height


def smooth_random_actions(batch: int, horizon: int, speed: float, seed: int) -> torch.Tensor:
    """``[B, H, 2]`` Ornstein-Uhlenbeck planar velocities, clipped to ``speed`` m/s."""
    rng = np.random.default_rng(seed)
    actions = np.zeros((batch, horizon, 2))
    v = rng.uniform(-speed, speed, (batch, 2))
    for h in range(horizon):
        v = 0.8 * v + 0.2 * rng.normal(0, speed, (batch, 2))
        actions[:, h] = np.clip(v, -speed, speed)
    return torch.from_numpy(actions)


def penetration_depths(state, position, quat) -> torch.Tensor:
    """``[..., N]`` how deep each object is below the support under it or inside a wall (m; <= 0
    when clear), for poses ``position [..., N, 3]``, ``quat [..., N, 4]`` of the objects of
    ``state``. An object's bottom is its hull's lowest vertex at that pose (with hulls: an object
    the rollout tipped over rests on another face, its centre lower), else the box centre less
    its rest height."""
    geometry, half = state.geometry, state.half_xy()
    while half.dim() < position.dim():
        half = half[:, None]
    if state.hull is None:
        bottom = position[..., 2] - state.rest_height.reshape(half.shape[:-1])
    else:
        hull = state.hull.reshape(*half.shape[:-1], *state.hull.shape[-2:])  # [B, (1,) N, V, 3]
        up = quat_to_rotmat(quat)[..., 2, :]  # the world z row: a vertex's height above the centre
        bottom = position[..., 2] + (hull * up[..., None, :]).sum(-1).min(-1).values
    support_depth = support_under(geometry, position[..., :2], half) - bottom
    wall_depth = obstacle_height(geometry, position[..., :2], half) - bottom - STEP_HEIGHT
    return torch.maximum(support_depth, wall_depth)


def penetrations(state, traj, tolerance: float = 0.002) -> tuple[np.ndarray, float]:
    """Per rollout: whether any object ends more than ``tolerance`` deeper in the support or in a
    wall than it started (a memory's start state is not exact), and the deepest such increase
    at any step (m)."""
    start = penetration_depths(state, state.position, state.quat).clamp(min=0)
    deeper = (penetration_depths(state, traj.position, traj.quat) - start[:, None]).masked_fill(~state.valid[:, None], -1.0)
    return (deeper[:, -1] > tolerance).any(-1).numpy(), float(deeper.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="learned", choices=sorted(MODELS))
    parser.add_argument("--checkpoint", default=None, help="learned: default the checkpoint shipped with the package")
    parser.add_argument("--episodes", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rollouts", type=int, default=1000,
                        help="random 10-second rollouts for the penetration check (the bar's 1000; fewer for a slow model)")
    args = parser.parse_args()
    folder = args.episodes or Path(tempfile.mkdtemp())
    seq, _, _ = observed_sequence("push", 60, args.seed, folder)
    dynamics = load_dynamics(args.model, args.checkpoint)
    peer = make_model("constant_velocity", dynamics.config)
    # a frame with the agent close to an object: rollouts start in contact
    agent_gap = torch.linalg.norm(seq.agent[:, None, :2] - seq.position[..., :2], dim=-1).masked_fill(~seq.valid, 9)
    start = int(torch.argmin(agent_gap.min(-1).values[1:]) + 1)
    state = state_at(seq, start)
    n_valid = int(state.valid.sum())
    print(f"start frame {start}: {n_valid} objects, agent {state.agent[0].numpy().round(3)}")

    speeds = {}
    for name, model in ((args.model, dynamics), ("constant_velocity", peer)):
        actions = smooth_random_actions(256, 20, 0.15, 0)
        rollout(model, state, actions[:, :2])  # warm-up
        t0 = time.perf_counter()
        repeats = 5
        for _ in range(repeats):
            rollout(model, state, actions)
        speeds[name] = repeats * 256 * 20 * n_valid / (time.perf_counter() - t0)
        print(f"{name}: {speeds[name]:,.0f} object-steps/s (256 rollouts x 20 steps x {n_valid} objects)")

    # 5 minutes at rest with the agent still: nothing may move. The start frame's estimated
    # velocities are zeroed: an object the memory saw moving there (a sphere rolling on after the
    # push) may coast, and a model that carries velocities rightly lets it
    at_rest = state.replace(velocity=torch.zeros_like(state.velocity), yaw_rate=torch.zeros_like(state.yaw_rate))
    rest = rollout(dynamics, at_rest, torch.zeros(1, 3000, 2, dtype=torch.float64))
    drift = float(torch.linalg.norm(rest.position[0, -1] - state.position[0], dim=-1)[state.valid[0]].max())
    print(f"5-minute rollout at rest, agent still: max object drift {drift * 1000:.3f} mm")

    # random 10-second rollouts of the pusher through the scene
    actions = smooth_random_actions(args.rollouts, 100, 0.15, 1)
    traj = rollout(dynamics, state, actions)
    inside, deepest = penetrations(state.repeat(args.rollouts), traj)
    moved = torch.linalg.norm(traj.position[:, -1] - state.position, dim=-1).max(-1).values
    print(f"{args.rollouts} random rollouts: {int((moved > 0.01).sum())} moved an object > 1 cm; "
          f"{int(inside.sum())} end with an object > 2 mm deeper inside the table or a wall than it started; "
          f"deepest increase at any step {max(deepest, 0.0) * 1000:.2f} mm")
    print(f"object_steps_per_s={speeds[args.model]:.0f} constant_velocity_object_steps_per_s="
          f"{speeds['constant_velocity']:.0f} ratio={speeds[args.model] / speeds['constant_velocity']:.2f} "
          f"rest_drift_max={drift:.6f} penetrations={int(inside.sum())} penetration_max={max(deepest, 0.0):.4f}")


if __name__ == "__main__":
    main()
