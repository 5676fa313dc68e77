"""Batched learned-dynamics rollouts on CUDA against the same rollouts on the CPU, same run.

    python benchmarks/rollouts_cuda.py [--batches 256 4096 16384] [--horizon 40]

A planner's workload: the shipped checkpoint rolls ``B`` pusher command sequences (headings
swept through eight 5 cm cubes on a table, as a planner's candidates would) ``horizon`` steps
ahead. The peer is the CPU in the same run (all its cores); the CUDA trajectories are checked
against the CPU's. Last line: ``cuda_object_steps_per_s=... cpu_object_steps_per_s=...
speedup=... max_position_diff_m=... agree_fraction=...`` (at the largest batch).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from splatworld.dynamics.models import rollout
from splatworld.dynamics.state import Heightmap, WorldState, box_outline, footprint_half, support_under
from splatworld.dynamics.train import load_checkpoint

TABLE = 0.6


def table_scene(n_objects: int, seed: int) -> WorldState:
    """``n_objects`` upright 5 cm cubes on a 1 m table (2 cm heightmap, floor around it)."""
    rng = np.random.default_rng(seed)
    xs = np.arange(-1, 1, 0.02) + 0.01
    gx, gy = np.meshgrid(xs, xs)
    geometry = Heightmap(torch.tensor([-1.0, -1.0], dtype=torch.float64), 0.02,
                         torch.tensor(np.where((np.abs(gx) < 0.5) & (np.abs(gy) < 0.5), TABLE, 0.0)), 0.0)
    pos = torch.tensor([[x, y, TABLE + 0.025] for x, y in rng.uniform(-0.3, 0.3, (n_objects, 2))])[None]
    quat = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(1, n_objects, 4).clone()
    extent = torch.full((1, n_objects, 3), 0.05, dtype=torch.float64)
    rest = pos[..., 2] - support_under(geometry, pos[..., :2], footprint_half(quat, extent))
    zeros = torch.zeros(1, n_objects, dtype=torch.float64)
    return WorldState(pos, quat, torch.zeros(1, n_objects, 3, dtype=torch.float64), zeros, extent,
                      box_outline(extent), rest, torch.ones(1, n_objects, dtype=torch.bool),
                      torch.tensor([[-0.45, 0.0, TABLE + 0.05]], dtype=torch.float64),
                      torch.zeros(1, dtype=torch.float64), geometry)


def sweeping_commands(batch: int, horizon: int, seed: int) -> torch.Tensor:
    """``[B, H, 2]`` 15 cm/s commands at headings within +-35 degrees of +x, with jitter."""
    rng = np.random.default_rng(seed)
    heading = rng.uniform(-0.6, 0.6, (batch, 1))
    actions = 0.15 * np.concatenate([np.cos(heading), np.sin(heading)], -1)[:, None].repeat(horizon, 1)
    return torch.from_numpy(actions + rng.normal(0, 0.02, (batch, horizon, 2)))


def timed(fn, cuda: bool, repeats: int = 3, warmup: bool = True):
    """Median seconds of ``repeats`` calls (after one warm-up call), and the last result."""
    if warmup:
        fn()
    times, out = [], None
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 4096, 16384])
    parser.add_argument("--horizon", type=int, default=40)
    parser.add_argument("--objects", type=int, default=8)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("rollouts_cuda: needs CUDA (torch.cuda.is_available() is False)")
    print(f"GPU: {torch.cuda.get_device_name()}, CPU threads {torch.get_num_threads()}, "
          f"{args.objects} objects, horizon {args.horizon}")
    model_cpu = load_checkpoint()
    model_cuda = load_checkpoint().to("cuda")
    state = table_scene(args.objects, 0)
    state_cuda = state.to("cuda")
    print(f"{'batch':>7}{'cpu obj-steps/s':>18}{'cuda obj-steps/s':>18}{'speedup':>9}{'max diff (m)':>14}")
    for batch in args.batches:
        actions = sweeping_commands(batch, args.horizon, batch)
        work = batch * args.horizon * args.objects
        t_cpu, ref = timed(lambda: rollout(model_cpu, state, actions), cuda=False, repeats=1, warmup=False)
        t_cuda, out = timed(lambda: rollout(model_cuda, state_cuda, actions.to("cuda")), cuda=True)
        error = (out.position.cpu() - ref.position).norm(dim=-1).amax(dim=(1, 2))
        cpu_rate, cuda_rate = work / t_cpu, work / t_cuda
        print(f"{batch:>7}{cpu_rate:>18.0f}{cuda_rate:>18.0f}{cuda_rate / cpu_rate:>9.2f}{float(error.max()):>14.2e}")
    agree = float((error < 1e-5).float().mean())
    print(f"rollouts whose CUDA and CPU trajectories agree within 0.01 mm: {agree:.4f}")
    print(f"cuda_object_steps_per_s={cuda_rate:.0f} cpu_object_steps_per_s={cpu_rate:.0f} "
          f"speedup={cuda_rate / cpu_rate:.2f} max_position_diff_m={float(error.max()):.2e} agree_fraction={agree:.4f}")


if __name__ == "__main__":
    main()
