"""``splatworld observe``: run the memory over an episode and save what it built."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from splatworld.errors import ConfigError
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.memory.segmentation import agent_dimensions
from splatworld.progress import progress_bar
from splatworld.scene.episode import Episode
from splatworld.scene.ply import write_ply


def observe_episode(cfg: DictConfig) -> SceneMemory:
    """Observe frames ``[0, until)`` of ``cfg.episode``; write memory.pt, tracks.json, scene.ply, summary.json."""
    episode = Episode(cfg.episode)
    until = len(episode) if cfg.until is None else int(cfg.until)
    if not 0 < until <= len(episode):
        raise ConfigError(f"until={until} outside [1, {len(episode)}] for {cfg.episode}")
    config = MemoryConfig(backend=cfg.backend, segmentation=cfg.segmentation,
                          **agent_dimensions(episode.meta.get("agent_shape")))
    memory = SceneMemory(config, agent_label=episode.agent_label)
    start = time.perf_counter()
    for i in progress_bar(range(until), desc="observe", unit="frame", disable=not cfg.progress):
        memory.observe(episode[i])
    seconds = time.perf_counter() - start
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    memory.save(out / "memory.pt")
    memory.export_tracks(out / "tracks.json")
    write_ply(out / "scene.ply", memory.gaussians_at())
    states = Counter(t.state for t in memory.tracks)
    summary = {"frames": until, "objects": len(memory.tracks), "states": dict(states),
               "static_gaussians": len(memory.static), "object_gaussians": sum(len(t.model) for t in memory.tracks),
               "keyframes": len(memory.keyframes), "depthless_frames": memory.depthless_frames,
               "seconds_per_frame": seconds / until}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"observed {until} frames in {seconds:.1f} s ({until / seconds:.1f} frames/s, "
          f"{1000 * seconds / until:.0f} ms/frame)")
    print(f"objects: {len(memory.tracks)} ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}); "
          f"Gaussians: {summary['static_gaussians']} static, {summary['object_gaussians']} in objects; "
          f"{summary['keyframes']} keyframes")
    if memory.depthless_frames:
        print(f"warning: {memory.depthless_frames} frames had depth on under "
              f"{memory.config.min_depth_fraction:.0%} of their pixels: they moved no object and took no keyframe")
    print(f"-> {out / 'memory.pt'}, {out / 'tracks.json'}, {out / 'scene.ply'}")
    return memory
