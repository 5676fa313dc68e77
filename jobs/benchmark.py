"""``splatworld benchmark``: the presets end to end, for this model and the baselines.

For each preset and protocol: generate the PyBullet episode (kept and reused), observe its first
``observe_seconds``, predict the rest with this model (``splatworld``) and the three baselines
(:mod:`splatworld.evaluation.baselines`), then evaluate all four side by side into
``out/<preset>/<protocol>/`` (report.json, report.md, plots). A summary goes to ``out/benchmark.md``
and ``out/benchmark.json``; the last line printed holds the headline figures as ``key=value`` pairs.

Protocols (``protocols=[...]``):

- ``imagination``: the episode format's imagination protocol. After the observed part, every frame
  is imagined open loop from the camera path and the agent's commands alone.
- ``next_frame``: every frame after the observed part is predicted from all frames before it, then
  observed. An object hidden for tau seconds must still be remembered after tau seconds of frames
  that do not show it; open-loop drift of objects pushed in view does not accumulate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from splatworld.errors import lookup
from splatworld.evaluation.baselines import LastFrame, Predictor
from splatworld.evaluation.evaluate import EvaluationConfig
from splatworld.evaluation.permanence import TAU_BINS
from splatworld.evaluation.report import evaluate, opr_bins
from splatworld.imagination import PROTOCOLS
from splatworld.jobs.config import load_config
from splatworld.jobs.generate import generated_episode
from splatworld.jobs.imagine import imagine_episode
from splatworld.scene.episode import Episode



@dataclass(frozen=True)
class Imagined:
    """This world model as ``splatworld imagine`` runs it, or altered: a :class:`Predictor`.
    Under the imagination protocol it reuses the reference memory's observation of the same
    frames where given (under next-frame, each observes on by itself)."""

    name: str
    model: str = "learned"
    forget_after: float | None = None

    def predict(self, episode: Path, observe_until: int, out: Path, protocol: str, *,
                reference_memory: Path | None = None, progress: bool = True) -> Path:
        overrides = [f"episode={episode}", f"observe_until={observe_until}", f"out={out}", "compare=false",
                     f"progress={str(progress).lower()}", f"protocol={protocol}", f"model={self.model}"]
        if self.forget_after is not None:
            overrides.append(f"forget_after={self.forget_after}")
        if reference_memory is not None and protocol == "imagination":
            overrides.append(f"memory={reference_memory}")
        return imagine_episode(load_config("imagine", overrides))


MODEL = Imagined("splatworld")
PREDICTORS: tuple[Predictor, ...] = (MODEL, LastFrame(), Imagined("memoryless", forget_after=1.0),
                                     Imagined("static_world", model="static"))
"""This model first (the others may reuse the memory it saves), then the baselines."""


def _predict(predictor: Predictor, episode: Path, k: int, out: Path, protocol: str, progress: bool) -> Path:
    """``predictor``'s prediction of ``episode`` observed up to ``k`` under ``protocol``, written once
    into ``out`` (a sibling folder holds this model's, written first)."""
    if (out / "transforms.json").exists():
        return out  # finished by an earlier run
    reference = None if predictor is MODEL else out.parent / MODEL.name / "memory.pt"
    return predictor.predict(episode, k, out, protocol, reference_memory=reference, progress=progress)


def run_benchmark(cfg: DictConfig) -> dict:
    """Run the benchmark as configured; returns ``{(preset, protocol): report}``."""
    out = Path(cfg.out)
    config = EvaluationConfig(workers=cfg.workers, progress=cfg.progress)
    for protocol in cfg.protocols:  # every name checked before any work
        lookup(PROTOCOLS, protocol, "protocol")
    reports = {}
    for preset in cfg.presets:
        episode = generated_episode(out / "episodes", preset, cfg.seed, cfg.seconds, cfg.progress)
        k = round(cfg.observe_seconds * Episode(episode, check_files=False).fps)
        names = [p.name for p in PREDICTORS]
        for protocol in cfg.protocols:
            folder = out / preset / protocol
            preds = []
            for predictor in PREDICTORS:
                print(f"[{preset}, {protocol}] {predictor.name}")
                preds.append(str(_predict(predictor, episode, k, folder / predictor.name, protocol, cfg.progress)))
            reports[preset, protocol] = evaluate(str(episode), preds, str(folder), names, config)
    summary = [{"preset": preset, "protocol": protocol, "prediction": name, "opr_all": r["opr_all"],
                **{f"opr_{b}": opr_bins(r).get(b, {}).get("opr") for _, b in TAU_BINS}}
               for (preset, protocol), report in reports.items() for name, r in report["predictions"].items()]
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1))
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = ["| preset | protocol | prediction | OPR all | " + " | ".join(f"OPR {b}" for _, b in TAU_BINS) + " |",
             "| --- | --- | --- | --- |" + " --- |" * len(TAU_BINS)]
    for row in summary:
        lines.append(f"| {row['preset']} | {row['protocol']} | {row['prediction']} | {fmt(row['opr_all'])} | "
                     + " | ".join(fmt(row[f'opr_{b}']) for _, b in TAU_BINS) + " |")
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(" ".join(f"opr_{row['prediction']}_{row['preset']}_{row['protocol']}="
                   f"{'nan' if row['opr_all'] is None else round(row['opr_all'], 4)}" for row in summary))
    return reports
