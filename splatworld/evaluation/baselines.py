"""Baseline predictions for the permanence benchmark, each written as a predicted episode.

- ``last_frame``: repeats the last observed frame (RGB, depth and instances) for every future
  frame, as a video model that stops would; its labels are consistent, so its masks are scored.
- ``memoryless``: this world model with objects forgotten once unseen for 1 s
  (``splatworld imagine forget_after=1``).
- ``static_world``: this memory with no dynamics (``splatworld imagine model=static``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from splatworld.config import load_config
from splatworld.errors import ConfigError
from splatworld.imagination.run import imagine_episode
from splatworld.scene.episode import Episode, EpisodeWriter

BASELINES = ("last_frame", "memoryless", "static_world")


def last_frame(episode_path, observe_until: int, out, progress: bool = True) -> Path:
    """Write frames ``[observe_until, T)`` of ``episode_path``, each a copy of frame
    ``observe_until - 1`` at the future frame's camera pose and time, as an episode at ``out``.
    Each instance label of that frame becomes one track (poses unknown: null)."""
    episode = Episode(episode_path)
    k = int(observe_until)
    if not 0 < k < len(episode):
        raise ConfigError(f"observe_until={k} must lie in [1, {len(episode)}) for {episode_path}")
    last = episode[k - 1]
    meta = {"observe_until": k, "imagined_from": str(episode.path), "agent_label": episode.agent_label,
            "instance_ids_consistent": True,
            **{key: episode.meta[key] for key in ("agent_shape", "action_space") if key in episode.meta}}
    writer = EpisodeWriter(out, episode.camera(0), episode.fps, extra=meta)
    for i in tqdm(range(k, len(episode)), desc="last_frame", unit="frame", disable=not progress):
        info = episode.info(i)
        writer.write(last.rgb, info.transform_matrix, info.time, depth=last.depth,
                     instances=None if last.instances is None else last.instances.astype(np.uint16),
                     agent_pose=info.agent_pose, action=info.action)
    tracks = None
    if last.instances is not None:
        labels = sorted(set(np.unique(last.instances).tolist()) - {0, episode.agent_label})
        n = len(episode) - k
        tracks = {"objects": [{"id": label, "poses": [None] * n, "labels": [label] * n} for label in labels]}
    return writer.close(tracks=tracks)


IMAGINED = {"splatworld": [], "memoryless": ["forget_after=1.0"], "static_world": ["model=static"]}
"""``splatworld imagine`` overrides of this model and of the baselines that are this model altered."""


def imagine_prediction(name: str, episode_path, observe_until: int, out, memory=None,
                       progress: bool = True) -> Path:
    """Write the imagined episode of ``name`` (a key of :data:`IMAGINED`) at ``out``: from a saved
    ``memory`` of the same observed frames if given, else observing them afresh."""
    if name not in IMAGINED:
        raise ConfigError(f"unknown imagined prediction {name!r}; valid: {', '.join(IMAGINED)}")
    return imagine_episode(load_config("imagine", [
        f"episode={episode_path}", f"observe_until={observe_until}", f"out={out}", "compare=false",
        f"progress={str(progress).lower()}", *IMAGINED[name]] + ([f"memory={memory}"] if memory else [])))
