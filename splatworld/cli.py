"""``splatworld COMMAND key=value ...``: hydra-style command line.

Each command composes its packaged config (``splatworld/configs/COMMAND.yaml``)
with the given overrides, so ``splatworld orbit frames=30 out=/tmp/x`` works the
same from a source checkout and from an installed wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from omegaconf.errors import MissingMandatoryValue

from splatworld.jobs.config import load_config
from splatworld.errors import ConfigError, SplatworldError


def _demo(cfg) -> int:
    from splatworld.jobs.demo import run_demo

    run_demo(cfg)
    return 0


def _orbit(cfg) -> int:
    from splatworld.jobs.orbit import run_orbit

    run_orbit(cfg)
    return 0


def _generate(cfg) -> int:
    from splatworld.sim.generate import generate_episode

    out = generate_episode(cfg)
    print(f"episode written to {out}")
    return 0


def _observe(cfg) -> int:
    from splatworld.jobs.observe import observe_episode

    observe_episode(cfg)
    return 0


def _refine(cfg) -> int:
    from splatworld.jobs.refine import refine_memory

    refine_memory(cfg)
    return 0


def _view(cfg) -> int:
    from splatworld.jobs.view import view_memory

    view_memory(cfg)
    return 0


def _train_dynamics(cfg) -> int:
    from splatworld.jobs.train_dynamics import train

    train(cfg)
    return 0


def _eval_dynamics(cfg) -> int:
    from splatworld.jobs.eval_dynamics import evaluate_dynamics, headline

    report = evaluate_dynamics(cfg)
    print((Path(cfg.out) / "report.md").read_text())
    print(f"plot: {Path(cfg.out) / 'errors.png'}")
    print(headline(report))
    return 0


def _imagine(cfg) -> int:
    from splatworld.jobs.imagine import imagine_episode

    imagine_episode(cfg)
    return 0


def _evaluate(cfg) -> int:
    from splatworld.evaluation.evaluate import EvaluationConfig
    from splatworld.evaluation.report import evaluate

    preds = [cfg.pred] if isinstance(cfg.pred, str) else list(cfg.pred)
    config = EvaluationConfig(**{k: cfg[k] for k in ("min_iou", "revisit_distance", "revisit_angle_deg",
                                                     "psnr_drop_db", "motion_seconds", "workers", "progress",
                                                     "resize")})
    evaluate(cfg.gt, [str(p) for p in preds], cfg.out, None if cfg.names is None else list(cfg.names), config,
             cfg.observe_until)
    out = Path(cfg.out)
    print((out / "report.md").read_text())
    print(f"-> {out} (report.json, report.md, permanence.png, drift.png)")
    return 0


def _benchmark(cfg) -> int:
    from splatworld.jobs.benchmark import run_benchmark

    run_benchmark(cfg)
    return 0


def _benchmark_export(cfg) -> int:
    from splatworld.jobs.benchmark import export

    out = export(cfg)
    print(f"-> {out} (suite.json, tasks/: hand these out; ground_truth/: keep)")
    return 0


def _benchmark_score(cfg) -> int:
    from splatworld.jobs.benchmark import headline, score

    if cfg.suite is None or cfg.predictions is None:
        raise ConfigError("benchmark score: give suite=DIR and predictions=DIR (predictions/<model>/<task id>)")
    board = score(cfg)
    print((Path(cfg.out) / "leaderboard.md").read_text())
    print(f"-> {cfg.out} (leaderboard.md, leaderboard.json, permanence_*.png, scores/)")
    print(headline(board))
    return 0


def _plan(cfg) -> int:
    from splatworld.jobs.plan import run_push_to_goal

    result = run_push_to_goal(cfg)
    out = Path(cfg.out)
    print(f"{result['task']} seed {result['seed']} ({result['planner']}, memory={result['memory']}): "
          f"success={result['success']} time_s={result['time_s']} final_distance_m={result['final_distance_m']:.3f} "
          f"collisions={result['collisions']} (out of view: {result['collisions_out_of_view']}) "
          f"replan_hz={result['replan_hz']}")
    print(f"-> {out / 'result.json'}" + (f", {out / 'run.mp4'}" if cfg.video else ""))
    return 0


COMMANDS: dict[str, tuple[str, Callable, str]] = {
    "demo": ("demo", _demo, "the main demo: a PyBullet episode observed for 30 s, then 5 minutes imagined"),
    "orbit": ("orbit", _orbit, "build a PyBullet tabletop as Gaussians and render an orbit video"),
    "generate": ("generate", _generate, "simulate a PyBullet episode: scenario=NAME seconds=S seed=N out=DIR"),
    "observe": ("observe", _observe, "build the scene memory from an episode: episode=DIR out=DIR [until=K]"),
    "refine": ("refine", _refine, "train a saved memory's static splats on its keyframes: memory=FILE [steps=N]"),
    "imagine": ("imagine", _imagine, "observe frames [0, K) and imagine the rest: episode=DIR observe_until=K out=DIR"),
    "evaluate": ("evaluate", _evaluate, "score predicted episodes against ground truth: gt=DIR pred=DIR out=DIR"),
    "benchmark": ("benchmark", _benchmark, "the permanence suite end to end, this model and the baselines: out=DIR"),
    "benchmark export": ("benchmark", _benchmark_export, "export the permanence suite (tasks + ground truth): out=DIR"),
    "benchmark score": ("benchmark", _benchmark_score,
                        "score predictions/<model>/<task> on a suite: suite=DIR predictions=DIR out=DIR"),
    "train-dynamics": ("train_dynamics", _train_dynamics, "fit the learned dynamics on observed episodes: out=DIR"),
    "eval-dynamics": ("eval_dynamics", _eval_dynamics, "dynamics error vs ground truth on held-out episodes: out=DIR"),
    "view": ("view", _view, "the memory in a browser: memory=FILE [episode=DIR imagined=DIR port=8080 record=FILE]"),
    "plan": ("plan", _plan, "closed-loop MPC on the memory, PyBullet as the world: task=push_to_goal seed=N out=DIR"),
}


def _usage() -> str:
    lines = ["usage: splatworld COMMAND [key=value ...]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, overrides = argv[0], argv[1:]
    if overrides and f"{command} {overrides[0]}" in COMMANDS:  # a sub-command: `benchmark export ...`
        command, overrides = f"{command} {overrides[0]}", overrides[1:]
    if command not in COMMANDS:
        print(f"splatworld: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    config_name, fn, _ = COMMANDS[command]
    try:
        return fn(load_config(config_name, overrides))
    except SplatworldError as exc:
        print(f"splatworld {command}: error: {exc}", file=sys.stderr)
        return 2
    except MissingMandatoryValue as exc:
        print(f"splatworld {command}: error: give {exc.full_key}=... (it has no default)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
