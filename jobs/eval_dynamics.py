"""``splatworld eval-dynamics``: dynamics error vs PyBullet ground truth on held-out episodes, for every model.

    splatworld eval-dynamics [checkpoint=FILE] out=DIR

Each model is rolled out from the memory's state at a start frame with the recorded agent
commands; the error at horizon ``h`` is the difference between the predicted and the true
displacement of each object over ``[k, k + h]`` (the memory's object frame is its own, so
displacements, not absolute positions, are compared), and the angle between the predicted
and true rotations over the same span. Windows where an object truly moved more than
``moved_threshold`` are "pushed"; those where it moved under 1 mm are "at rest".

Two more measures, the ones imagination lives on: the error at the end of each push
(:func:`~splatworld.dynamics.evaluate.push_events`: from half a second before an object sets off
to a second after it stops), with whether it fell off the table and whether the model has it
fall; and the whole episode rolled out from its first frame (``sequence``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from splatworld.atomic import atomic_write_text
from splatworld.dynamics.evaluate import horizon_errors, push_end_errors, push_events
from splatworld.dynamics.models import make_model
from splatworld.dynamics.train import load_checkpoint
from splatworld.evaluation import identity_metrics
from splatworld.jobs.train_dynamics import observed_sequence


def evaluate_dynamics(cfg: DictConfig) -> dict:
    """Run the evaluation as configured; write report.json, report.md and errors.png into ``out``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(cfg.episodes) if cfg.episodes else out / "episodes"
    learned = load_checkpoint(cfg.checkpoint)
    models = {name: learned if name == "learned" else make_model(name, learned.config) for name in cfg.models}
    runs = []
    for seed in cfg.seeds:
        seq, tracks, episode = observed_sequence(cfg.scenario, cfg.seconds, seed, folder, cfg.progress)
        gt = episode.ground_truth()["objects"]
        assignment = identity_metrics(np.array([o["labels"] for o in gt]),
                                      np.array([t["labels"] for t in tracks["objects"]]))["assignment"]
        gt_poses = torch.tensor([[o["poses"][k] for o in gt] for k in range(len(seq))], dtype=torch.float64)
        runs.append((seq, gt_poses, {t: g for g, t in assignment.items()}))
    dt = runs[0][0].dt
    every = max(1, round(cfg.start_every_s / dt))
    table, pushes = {}, {}
    for name, model in models.items():
        spans = [(f"{seconds:g}s", seconds, max(1, round(seconds / dt)), every) for seconds in cfg.horizons_s]
        if cfg.sequence:  # the whole episode from its first frame: one start
            spans.append(("sequence", (len(runs[0][0]) - 2) * dt, len(runs[0][0]) - 2, len(runs[0][0])))
        for key, seconds, steps, stride in spans:
            parts = [horizon_errors(model, seq, gt_poses, mapping, steps, stride) for seq, gt_poses, mapping in runs]
            err = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            pushed, rest = err["true_motion"] > cfg.moved_threshold, err["true_motion"] < 1e-3
            table[f"{name}_{key}"] = {
                "model": name, "horizon_s": seconds, "span": key,
                **_spread("pushed_position", err["position"][pushed]),
                "pushed_rotation_median_deg": float(np.median(err["rotation"][pushed])) if pushed.any() else None,
                "rest_position_max": float(err["position"][rest].max()) if rest.any() else None,
                "all_position_median": float(np.median(err["position"])) if len(err["position"]) else None,
                "n_pushed": int(pushed.sum()), "n_rest": int(rest.sum()), "n": int(len(pushed))}
        parts = [push_end_errors(model, seq, gt_poses, mapping, push_events(gt_poses, dt))
                 for seq, gt_poses, mapping in runs]
        err = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        moved = err["true_motion"] > cfg.moved_threshold
        pushes[name] = {**_spread("position", err["position"][moved]),
                        "rotation_median_deg": float(np.median(err["rotation"][moved])) if moved.any() else None,
                        "table_correct": float(np.mean(err["true_fell"] == err["predicted_fell"])) if len(moved) else None,
                        "fell": int(err["true_fell"].sum()), "predicted_fell": int(err["predicted_fell"].sum()),
                        "n": int(moved.sum()), "n_all": int(len(moved)),
                        "errors": np.sort(err["position"][moved]).tolist()}
    report = {"seeds": list(cfg.seeds), "scenario": cfg.scenario, "checkpoint": str(cfg.checkpoint or "default"),
              "results": table, "push_ends": pushes}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(table, pushes, cfg))
    _plot(table, pushes, cfg, out / "errors.png")
    return report


def _spread(prefix: str, errors: np.ndarray) -> dict:
    """Median and 90th percentile of ``errors`` (None when empty) as ``<prefix>_median`` and ``<prefix>_p90``."""
    if not len(errors):
        return {f"{prefix}_median": None, f"{prefix}_p90": None}
    return {f"{prefix}_median": float(np.median(errors)), f"{prefix}_p90": float(np.percentile(errors, 90))}


def _fmt(value, scale=1000.0, digits=1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _markdown(table: dict, pushes: dict, cfg: DictConfig) -> str:
    lines = [f"# Dynamics on held-out `{cfg.scenario}` episodes (seeds {list(cfg.seeds)})", "",
             f"Pushed: objects that truly moved more than {cfg.moved_threshold * 100:g} cm over the horizon; "
             "at rest: less than 1 mm.", "",
             "| model | horizon | pushed: position median (mm) | pushed: p90 (mm) | pushed: rotation median (deg) | "
             "at rest: position max (mm) | all: position median (mm) | pushed / rest / all |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in table.values():
        span = "whole episode" if row["span"] == "sequence" else f"{row['horizon_s']:g} s"
        lines.append(f"| {row['model']} | {span} | {_fmt(row['pushed_position_median'])} | "
                     f"{_fmt(row['pushed_position_p90'])} | "
                     f"{_fmt(row['pushed_rotation_median_deg'], 1.0)} | {_fmt(row['rest_position_max'])} | "
                     f"{_fmt(row['all_position_median'])} | {row['n_pushed']} / {row['n_rest']} / {row['n']} |")
    lines += ["", f"At the end of each push (objects that moved more than {cfg.moved_threshold * 100:g} cm; "
              "on/off table over every push):", "",
              "| model | position median (mm) | p90 (mm) | rotation median (deg) | on/off table correct | "
              "fell / predicted to fall | pushes |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in pushes.items():
        correct = "-" if row["table_correct"] is None else f"{row['table_correct']:.1%}"
        lines.append(f"| {name} | {_fmt(row['position_median'])} | {_fmt(row['position_p90'])} | "
                     f"{_fmt(row['rotation_median_deg'], 1.0)} | {correct} | {row['fell']} / {row['predicted_fell']} | "
                     f"{row['n']} |")
    return "\n".join(lines) + "\n"


def _plot(table: dict, pushes: dict, cfg: DictConfig, path: Path) -> None:
    """Left: pushed objects' median error against the horizon; right: the distribution of the error
    at the end of each push."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (horizons, ends) = plt.subplots(1, 2, figsize=(11, 4))
    for name in cfg.models:
        rows = [r for r in table.values() if r["model"] == name and r["span"] != "sequence"
                and r["pushed_position_median"] is not None]
        if rows:
            horizons.plot([r["horizon_s"] for r in rows], [r["pushed_position_median"] * 100 for r in rows], "o-",
                          label=name)
        errors = np.asarray(pushes[name]["errors"]) * 100
        if len(errors):
            ends.plot(errors, np.arange(1, len(errors) + 1) / len(errors), label=name)
    _axes(horizons, "horizon (s)", "position error, pushed objects, median (cm)", f"held-out {cfg.scenario} episodes",
          log_y=True)
    _axes(ends, "position error at the end of a push (cm)", "fraction of pushes", "end of each push", log_y=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _axes(ax, xlabel: str, ylabel: str, title: str, log_y: bool) -> None:
    """Labels, log scales and a legend where there is something to scale; a note where there is not."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not ax.lines:
        ax.text(0.5, 0.5, "no pushed objects", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def headline(report: dict) -> str:
    """``key=value`` pairs in metres: pushed-object position error medians per model and horizon, then
    the learned model's error at the end of a push (median, p90) and its on/off-table agreement,
    then how many pushes were scored."""
    pairs = [f"{key}={row['pushed_position_median']:.4f}" for key, row in report["results"].items()
             if row["pushed_position_median"] is not None]
    learned = report["push_ends"].get("learned")
    if learned and learned["position_median"] is not None:
        pairs += [f"push_end_median={learned['position_median']:.4f}", f"push_end_p90={learned['position_p90']:.4f}",
                  f"table_correct={learned['table_correct']:.4f}"]
    pairs.append(f"pushes={max((row['n'] for row in report['push_ends'].values()), default=0)}")
    return " ".join(pairs)
