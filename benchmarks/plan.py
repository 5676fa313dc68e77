"""Planning benchmark: closed-loop ``push_to_goal`` over seeds, with the memory and memoryless,
and replanning speed of CEM and MPPI at 256 samples x 20 steps.

    python benchmarks/plan.py [--seeds 20 (0: speed only)] [--planner mppi] [--out DIR] [--modes full memoryless] [--threads 2] [--no-speed]

Each run is ``splatworld plan task=push_to_goal seed=N memory=MODE`` (its ``result.json`` and
``run.mp4`` under ``--out/MODE/seedN``; finished runs are read back, not rerun). Replanning
speed is measured on the planning state of seed 0 after the camera has moved in; the peer is
the other planner in the same run. Last line: ``success_full=... success_memoryless=...
out_of_view_collision_runs_full=... out_of_view_collision_runs_memoryless=... mppi_hz=... cem_hz=...
time_s_median_full=...``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from splatworld.jobs.config import load_config
from splatworld.planning.planners import PlannerConfig, make_planner
from splatworld.dynamics.train import load_dynamics
from splatworld.jobs.plan import run_push_to_goal


def closed_loop(out: Path, mode: str, seeds: int, planner: str) -> list[dict]:
    results = []
    for seed in range(seeds):
        folder = out / mode / f"seed{seed}"
        if (folder / "result.json").exists():
            results.append(json.loads((folder / "result.json").read_text()))
        else:
            cfg = load_config("plan", [f"seed={seed}", f"memory={mode}", f"planner={planner}", f"out={folder}",
                                       "progress=false"])
            results.append(run_push_to_goal(cfg))
        r = results[-1]
        print(f"  {mode:<10} seed {seed:2d} {r['target']:<6} success={r['success']!s:<5} time_s={r['time_s']:5.1f} "
              f"final_distance_m={r['final_distance_m']:.3f} collisions={r['collisions']} "
              f"(out of view {r['collisions_out_of_view']}) replan_hz={r['replan_hz']}", flush=True)
    return results


def replan_speed(repeats: int = 10) -> dict[str, float]:
    """Replans per second of each planner at 256 samples x 20 steps on a recorded planning state."""
    cfg = load_config("plan", ["seed=0", "time_limit=2.6", "video=false", "progress=false", "out=/tmp/splatworld_plan_speed"])
    captured = {}
    run_push_to_goal(cfg, on_plan=lambda state, cost, plan: captured.update(state=state, cost=cost))
    model = load_dynamics(cfg.model, cfg.checkpoint)
    out = {}
    for name, config in (("mppi", PlannerConfig(samples=256, iterations=1)),
                         ("cem", PlannerConfig(samples=128, iterations=2, elites=16))):
        planner = make_planner(name, model, config)
        planner.plan(captured["state"], captured["cost"])  # warm-up
        seconds = [planner.plan(captured["state"], captured["cost"]).seconds for _ in range(repeats)]
        out[name] = 1.0 / float(np.median(seconds))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--planner", default="mppi")
    parser.add_argument("--modes", nargs="+", default=["full", "memoryless"])
    parser.add_argument("--out", type=Path, default=Path("plan_benchmark"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 to run two benchmarks side by side)")
    parser.add_argument("--no-speed", action="store_true", help="skip the replanning speed measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()}")
    speed = {}
    if not args.no_speed:
        speed = replan_speed()
        print(f"replanning at 256 samples x 20 steps: mppi {speed['mppi']:.1f} Hz, cem (2 x 128) {speed['cem']:.1f} Hz, "
              f"ratio mppi/cem {speed['mppi'] / speed['cem']:.2f}")
    summary = {}
    for mode in args.modes if args.seeds > 0 else ():  # --seeds 0: the speed alone
        results = closed_loop(args.out, mode, args.seeds, args.planner)
        success = np.mean([r["success"] for r in results])
        ov = np.mean([r["collisions_out_of_view"] > 0 for r in results])
        any_collision = np.mean([r["collisions"] > 0 for r in results])
        times = [r["time_s"] for r in results if r["success"]]
        summary[mode] = (success, ov, float(np.median(times)) if times else float("nan"))
        print(f"{mode}: success {100 * success:.0f}% of {len(results)}, runs with an out-of-view collision "
              f"{100 * ov:.0f}%, with any collision {100 * any_collision:.0f}%, median time to success "
              f"{summary[mode][2]:.1f} s, median final distance {np.median([r['final_distance_m'] for r in results]):.3f} m")
    print(" ".join([f"success_{m}={s[0]:.2f} out_of_view_collision_runs_{m}={s[1]:.2f} time_s_median_{m}={s[2]:.1f}"
                    for m, s in summary.items()] + [f"{name}_hz={hz:.1f}" for name, hz in speed.items()]))


if __name__ == "__main__":
    main()
