"""Predictions for the permanence benchmark, each written as a predicted episode, behind one
interface (:class:`Predictor`).

- ``last_frame`` (:class:`LastFrame`): repeats the last observed frame (RGB, depth and instances)
  for every future frame, as a video model that stops would; its labels are consistent, so its
  masks are scored. Under ``return`` each query's frame is a copy of frame ``b - 1``. As a mode of
  ``splatworld imagine``'s next-frame protocol it draws each frame as the one before it, its
  instances labelled with the ids a memory tracked them under (the episode's own labels change
  from frame to frame).
- this world model and the baselines that are it altered (``memoryless``: objects forgotten once
  unseen for 1 s; ``static_world``: no dynamics) run as ``splatworld imagine`` (under ``return``:
  :func:`~splatworld.imagination.imagine_returns`): the benchmark job's
  :class:`~splatworld.jobs.benchmark.Imagined`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from splatworld.errors import ConfigError, lookup
from splatworld.evaluation.returns import ReturnWriter
from splatworld.imagination import PROTOCOLS
from splatworld.memory import SceneMemory
from splatworld.progress import progress_bar
from splatworld.scene.episode import Episode
from splatworld.scene.episode_writer import EpisodeWriter



class Predictor(Protocol):
    """Writes its prediction of a benchmark task (:mod:`splatworld.evaluation.suite`) at ``out`` and
    returns ``out``: under ``imagination`` the task's frames ``[k, T)`` as an episode, under
    ``return`` one frame per query (:mod:`splatworld.evaluation.returns`). ``reference_memory``: the
    memory this benchmark's model saved after observing the same frames (a predictor may reuse it)."""

    name: str

    def predict(self, task: Path, out: Path, *, reference_memory: Path | None = None,
                progress: bool = True) -> Path: ...


@dataclass(frozen=True)
class LastFrame:
    """:func:`last_frame` (imagination) or :func:`last_frame_returns` (return) as a :class:`Predictor`."""

    name: str = "last_frame"

    def predict(self, task: Path, out: Path, *, reference_memory: Path | None = None,
                progress: bool = True) -> Path:
        episode = Episode(task)
        if episode.meta.get("protocol") == "return":
            return last_frame_returns(episode, [tuple(q) for q in episode.meta["queries"]], out, progress)
        return last_frame(task, episode.task_observe_until, out, progress)


def last_frame_returns(episode: Episode, queries: list[tuple[int, int]], out, progress: bool = True) -> Path:
    """``last_frame`` under the return protocol: the frame of each query ``(b, c)`` is a copy of
    frame ``b - 1`` (where the object is hidden: it cannot score by copying)."""
    writer = ReturnWriter(out)
    for n, (b, _) in enumerate(progress_bar(queries, desc="last_frame: return", unit="query", disable=not progress)):
        frame = episode[b - 1]
        writer.write(n, frame.rgb, frame.instances)
    return writer.close()


def last_frame(episode_path, observe_until: int, out, progress: bool = True, protocol: str = "imagination",
               memory=None) -> Path:
    """Write frames ``[observe_until, T)`` of ``episode_path`` as an episode at ``out``, each at
    the future frame's camera pose and time. Under the imagination protocol each is a copy of frame
    ``observe_until - 1``, and each instance label of that frame becomes one track. Under
    ``next_frame`` each is a copy of the frame before it, its labels replaced by the ids ``memory``
    (a saved :class:`SceneMemory` that observed them) tracked them under. Poses unknown: null."""
    episode = Episode(episode_path)
    k = int(observe_until)
    if not 0 < k < len(episode):
        raise ConfigError(f"observe_until={k} must lie in [1, {len(episode)}) for {episode_path}")
    lookup(PROTOCOLS, protocol, "protocol")
    n = len(episode) - k
    if protocol == "imagination":
        last = episode[k - 1]
        labels = [] if last.instances is None else sorted(set(np.unique(last.instances).tolist())
                                                          - {0, episode.agent_label})
        copies = ((last, {label: label for label in labels}) for _ in range(n))
    else:
        if memory is None:
            raise ConfigError("last_frame under the next-frame protocol needs the memory that tracked the episode")
        tracked = SceneMemory.load(memory).tracks_json()["objects"]
        if any(len(t["labels"]) < len(episode) - 1 for t in tracked):
            raise ConfigError(f"{memory} observed fewer than the {len(episode) - 1} frames last_frame copies")
        labels = [t["id"] for t in tracked]
        copies = ((episode[i - 1], {t["labels"][i - 1]: t["id"] for t in tracked if t["labels"][i - 1]})
                  for i in range(k, len(episode)))
    meta = {"observe_until": k, "imagined_from": str(episode.path), "agent_label": episode.agent_label,
            "instance_ids_consistent": True, "protocol": protocol,
            **{key: episode.meta[key] for key in ("agent_shape", "action_space") if key in episode.meta}}
    writer = EpisodeWriter(out, episode.camera(0), episode.fps, extra=meta)
    drawn = {label: [] for label in labels}
    has_instances = False
    for i, (frame, relabel) in zip(progress_bar(range(k, len(episode)), desc="last_frame", unit="frame",
                                        disable=not progress), copies):
        info = episode.info(i)
        instances = None
        has_instances = frame.instances is not None  # the episode has instances in every frame or none
        if has_instances:
            table = np.zeros(int(frame.instances.max()) + 1, dtype=np.uint16)
            for label, target in relabel.items():
                if label < len(table):
                    table[label] = target
            instances = table[frame.instances]
            present = set(np.unique(instances).tolist())
            for label in labels:
                drawn[label].append(label if label in present else 0)
        writer.write(frame.rgb, info.transform_matrix, info.time, depth=frame.depth, instances=instances,
                     agent_pose=info.agent_pose, action=info.action)
    tracks = None if not has_instances else \
        {"objects": [{"id": label, "poses": [None] * n, "labels": drawn[label]} for label in labels]}
    return writer.close(tracks=tracks)


