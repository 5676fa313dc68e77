"""``splatworld benchmark``: the presets end to end, for this model and the baselines.

For each preset: generate the PyBullet episode (kept and reused), observe its first
``observe_seconds``, imagine the rest with this model (``splatworld``) and write the three
baselines' predictions (:mod:`splatworld.evaluation.baselines`), then evaluate all four side by side
into ``out/<preset>/`` (report.json, report.md, plots). A summary over presets goes to
``out/benchmark.md`` and ``out/benchmark.json``; the last line printed holds the headline figures
as ``key=value`` pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from splatworld.evaluation.baselines import BASELINES, imagine_prediction, last_frame
from splatworld.evaluation.evaluate import EvaluationConfig
from splatworld.evaluation.permanence import TAU_BINS
from splatworld.evaluation.report import evaluate, opr_bins
from splatworld.scene.episode import Episode
from splatworld.sim.generate import generated_episode

MODEL = "splatworld"


def _predict(name: str, episode: Path, k: int, out: Path, progress: bool) -> Path:
    """The prediction ``name`` for ``episode`` observed up to ``k``, written once into ``out``."""
    if (out / "transforms.json").exists():
        return out  # finished by an earlier run
    if name == "last_frame":
        return last_frame(episode, k, out, progress)
    memory = None if name == MODEL else out.parent / MODEL / "memory.pt"  # the baselines reuse its observation
    return imagine_prediction(name, episode, k, out, memory, progress)


def run_benchmark(cfg: DictConfig) -> dict:
    """Run the benchmark as configured; returns ``{preset: report}``."""
    out = Path(cfg.out)
    config = EvaluationConfig(workers=cfg.workers, progress=cfg.progress)
    reports = {}
    for preset in cfg.presets:
        episode = generated_episode(out / "episodes", preset, cfg.seed, cfg.seconds, cfg.progress)
        k = round(cfg.observe_seconds * Episode(episode, check_files=False).fps)
        names = [MODEL, *BASELINES]
        preds = []
        for name in names:
            print(f"[{preset}] {name}")
            preds.append(str(_predict(name, episode, k, out / preset / name, cfg.progress)))
        reports[preset] = evaluate(str(episode), preds, str(out / preset), names, config)
    summary = {preset: {name: {"opr_all": r["opr_all"],
                               **{f"opr_{b}": opr_bins(r).get(b, {}).get("opr") for _, b in TAU_BINS}}
                        for name, r in report["predictions"].items()} for preset, report in reports.items()}
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1))
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = ["| preset | prediction | OPR all | " + " | ".join(f"OPR {b}" for _, b in TAU_BINS) + " |",
             "| --- | --- | --- |" + " --- |" * len(TAU_BINS)]
    for preset, rows in summary.items():
        for name, row in rows.items():
            lines.append(f"| {preset} | {name} | {fmt(row['opr_all'])} | "
                         + " | ".join(fmt(row[f'opr_{b}']) for _, b in TAU_BINS) + " |")
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(" ".join(f"opr_{name}_{preset}={'nan' if row['opr_all'] is None else round(row['opr_all'], 4)}"
                   for preset, rows in summary.items() for name, row in rows.items()))
    return reports
