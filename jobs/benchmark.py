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
from pathlib import Path

from omegaconf import DictConfig

from splatworld.errors import lookup
from splatworld.jobs.config import load_config
from splatworld.evaluation.baselines import BASELINES, last_frame
from splatworld.evaluation.evaluate import EvaluationConfig
from splatworld.evaluation.permanence import TAU_BINS
from splatworld.evaluation.report import evaluate, opr_bins
from splatworld.imagination import PROTOCOLS
from splatworld.jobs.imagine import imagine_episode
from splatworld.scene.episode import Episode
from splatworld.jobs.generate import generated_episode

MODEL = "splatworld"


def _predict(name: str, episode: Path, k: int, out: Path, protocol: str, progress: bool) -> Path:
    """The prediction ``name`` for ``episode`` observed up to ``k`` under ``protocol``, written once
    into ``out`` (a sibling ``splatworld`` folder holds this model's, written first)."""
    if (out / "transforms.json").exists():
        return out  # finished by an earlier run
    model_memory = out.parent / MODEL / "memory.pt"
    if name == "last_frame":  # next-frame: its identities are those this model's memory tracked
        return last_frame(episode, k, out, progress, protocol, model_memory if protocol == "next_frame" else None)
    # imagination: the baselines reuse this model's observation (next-frame: its memory observed on)
    memory = model_memory if name != MODEL and protocol == "imagination" else None
    return imagine_prediction(name, episode, k, out, memory, progress, protocol)


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
        names = [MODEL, *BASELINES]
        for protocol in cfg.protocols:
            folder = out / preset / protocol
            preds = []
            for name in names:
                print(f"[{preset}, {protocol}] {name}")
                preds.append(str(_predict(name, episode, k, folder / name, protocol, cfg.progress)))
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


IMAGINED = {"splatworld": [], "memoryless": ["forget_after=1.0"], "static_world": ["model=static"]}
"""``splatworld imagine`` overrides of this model and of the baselines that are this model altered."""


def imagine_prediction(name: str, episode_path, observe_until: int, out, memory=None,
                       progress: bool = True, protocol: str = "imagination") -> Path:
    """Write the predicted episode of ``name`` (a key of :data:`IMAGINED`) at ``out`` under
    ``protocol``: from a saved ``memory`` of the same observed frames if given, else observing them afresh."""
    overrides = lookup(IMAGINED, name, "imagined prediction")
    return imagine_episode(load_config("imagine", [
        f"episode={episode_path}", f"observe_until={observe_until}", f"out={out}", "compare=false",
        f"progress={str(progress).lower()}", f"protocol={protocol}", *overrides]
        + ([f"memory={memory}"] if memory else [])))
