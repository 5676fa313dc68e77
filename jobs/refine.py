"""``splatworld refine``: photometric refinement of a saved memory's static splats on its keyframes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig

from splatworld.errors import ConfigError
from splatworld.memory import SceneMemory
from splatworld.memory.refine import RefineConfig
from splatworld.progress import progress_bar


def refine_memory(cfg: DictConfig) -> SceneMemory:
    """Load ``cfg.memory``, refine ``cfg.steps`` steps, save to ``cfg.out`` (default: in place) with a
    ``refine.json`` beside it (losses, splat counts, time)."""
    if int(cfg.steps) < 1:
        raise ConfigError(f"refine: steps must be >= 1, got {cfg.steps}")
    source = Path(cfg.memory)
    if not source.is_file():
        raise ConfigError(f"refine: no memory file at {source}")
    memory = SceneMemory.load(source)
    if not len(memory.keyframes):
        raise ConfigError(f"refine: {source} holds no keyframes to refine on")
    before = len(memory.static_gaussians())
    bar = progress_bar(total=int(cfg.steps), desc="refine", unit="step", disable=not cfg.progress)

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    started = time.perf_counter()
    losses = memory.refine(int(cfg.steps), RefineConfig(backend=cfg.backend), seed=int(cfg.seed), on_step=on_step)
    seconds = time.perf_counter() - started
    bar.close()
    out = Path(cfg.out) if cfg.out else source
    out.parent.mkdir(parents=True, exist_ok=True)
    memory.save(out)
    report = {"steps": len(losses), "seconds": seconds, "keyframes": len(memory.keyframes),
              "static_splats_before": before, "static_splats_after": len(memory.static_gaussians()),
              "loss_first_50": sum(losses[:50]) / len(losses[:50]), "loss_last_50": sum(losses[-50:]) / len(losses[-50:])}
    (out.parent / "refine.json").write_text(json.dumps(report, indent=1))
    print(f"refined {len(losses)} steps on {len(memory.keyframes)} keyframes in {seconds:.1f} s "
          f"({1000 * seconds / len(losses):.0f} ms/step); loss {report['loss_first_50']:.4f} -> "
          f"{report['loss_last_50']:.4f}; static splats {before} -> {report['static_splats_after']}")
    print(f"-> {out}, {out.parent / 'refine.json'}")
    return memory
