"""``splatworld demo``: generate an episode, observe its start, imagine the rest, summarise."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from splatworld.jobs.config import load_config
from splatworld.jobs.imagine import imagine_episode
from splatworld.scene.episode import Episode
from splatworld.jobs.generate import generated_episode


def run_demo(cfg: DictConfig) -> Path:
    """The main demo as configured; returns the imagined episode directory."""
    out = Path(cfg.out)
    seconds = cfg.observe_seconds + cfg.imagine_seconds
    print(f"[1/2] PyBullet episode: {cfg.preset}, {seconds:g} s, seed {cfg.seed} (kept in {out / 'episode'})")
    path = generated_episode(out / "episode", cfg.preset, cfg.seed, seconds, cfg.progress)
    episode = Episode(path)
    observe_until = round(cfg.observe_seconds * episode.fps)
    print(f"[2/2] observe the first {cfg.observe_seconds:g} s, imagine the next {cfg.imagine_seconds:g} s")
    return imagine_episode(load_config("imagine", [
        f"episode={path}", f"observe_until={observe_until}", f"out={out / 'imagined'}", f"model={cfg.model}",
        f"backend={cfg.backend}", f"progress={str(cfg.progress).lower()}"]))
