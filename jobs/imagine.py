"""``splatworld imagine``: observe an episode's first frames, imagine the rest, write it as an episode.

Output (``out``, an episode directory in the episode format, appearing under its name when done):
``rgb/ depth/ instances/ transforms.json tracks.json`` for the imagined frames ``[k, until)``
(file numbers from 0; ``transforms.json`` keeps each frame's time and records ``observe_until``),
``memory.pt`` (the memory after observing), ``imagined.mp4``, and where the episode has ground
truth ``side_by_side.mp4`` (ground truth | imagined | per-pixel error) and ``summary.json`` with
the permanence summary (a memory that segments from geometry, ``segmentation=geometry``, is
matched to the true objects through the true label under most of each of its segments while it
observes). While it runs, everything is in ``out.partial``; a killed run started
again with the same settings goes on from its last checkpoint (same output, bit for bit).

``protocol=next_frame`` writes the same frames, each drawn from every frame before it and then
observed (:meth:`WorldModel.predict`, :meth:`WorldModel.observe_next`); ``memory.pt`` is then the
memory after the last frame. Checkpoints fall on frames where the memory refreshed its static map
(:attr:`SceneMemory.just_refreshed`), so that a resumed run goes on bit for bit.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from splatworld.atomic import atomic_write, atomic_write_text
from splatworld.dynamics.state import WorldState
from splatworld.dynamics.train import load_dynamics
from splatworld.errors import ConfigError, lookup
from splatworld.evaluation.imagined import compare_with_ground_truth, observe_labelled, print_summary
from splatworld.imagination.world_model import PROTOCOLS, ImaginedFrame, WorldModel
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.progress import progress_bar
from splatworld.render.video import FrameWriter
from splatworld.scene.episode import Episode
from splatworld.scene.episode_writer import EpisodeWriter

RESUME_FILE = "resume.pt"


def _settings(cfg: DictConfig, episode: Episode, until: int) -> dict:
    """What makes two runs the same run (a checkpoint of another run is never resumed, nor one
    whose dynamics state had other fields: a run left by an older version)."""
    return {"episode": str(episode.path.resolve()), "observe_until": int(cfg.observe_until), "until": until,
            "memory": str(Path(cfg.memory).resolve()) if cfg.memory else None, "model": cfg.model,
            "checkpoint": str(cfg.checkpoint), "backend": cfg.backend, "width": cfg.width, "height": cfg.height,
            "forget_after": cfg.forget_after, "protocol": cfg.protocol, "draw_agent": cfg.draw_agent,
            "segmentation": cfg.segmentation, "poses": cfg.poses,
            "state_fields": list(WorldState.TENSORS)}


def _resident_mb() -> float:
    """This process's resident memory (MB), from ``/proc`` (NaN where there is none)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return float("nan")
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")),
                float("nan"))


def _next_frames(world: WorldModel, episode: Episode, future) -> Iterator[ImaginedFrame]:
    """The next-frame protocol over ``future`` ``(info, camera)`` pairs: each frame predicted, then
    observed in full, then yielded (so a checkpoint taken on it holds the memory that observed it)."""
    for info, camera in future:
        frame = world.predict(info, camera)
        world.observe_next(episode[info.index])
        yield frame


def imagine_episode(cfg: DictConfig) -> Path:
    """Run ``splatworld imagine`` as configured; returns the output episode directory."""
    episode = Episode(cfg.episode)
    k = int(cfg.observe_until)
    until = len(episode) if cfg.until is None else int(cfg.until)
    if not 0 < k < until <= len(episode):
        raise ConfigError(f"need 0 < observe_until ({k}) < until ({until}) <= {len(episode)} frames of {cfg.episode}")
    lookup(PROTOCOLS, cfg.protocol, "protocol")
    next_frame = cfg.protocol == "next_frame"
    width, height = int(cfg.width or episode.width), int(cfg.height or episode.height)
    out = Path(cfg.out)
    partial = out.with_name(out.name + ".partial")
    settings = _settings(cfg, episode, until)
    resume = torch.load(partial / RESUME_FILE, weights_only=False) if (partial / RESUME_FILE).exists() else None
    if resume is not None and resume["settings"] != settings:
        resume = None  # another run's leftovers: start afresh

    memory_config = MemoryConfig(backend=cfg.backend, segmentation=cfg.segmentation, poses=cfg.poses)
    world = WorldModel(SceneMemory(memory_config, episode.agent_label),
                       load_dynamics(cfg.model, cfg.checkpoint), backend=cfg.backend, forget_after=cfg.forget_after,
                       agent_shape=episode.meta.get("agent_shape") if cfg.draw_agent else None)
    scored = cfg.compare and episode.ground_truth() is not None
    to_true = None  # under geometric segments, each observed frame's own labels -> the true ones
    started = time.perf_counter()
    if resume is not None:
        world.memory = SceneMemory.load(partial / "memory.pt")
        world.load_state_dict(resume["world"])
        to_true = resume["to_true"]
        print(f"resuming {out} at frame {resume['next']} of [{k}, {until})")
    else:
        shutil.rmtree(partial, ignore_errors=True)
        if cfg.memory:
            world.memory = SceneMemory.load(cfg.memory)
            if world.memory.frame_count != k:
                raise ConfigError(f"memory={cfg.memory} observed {world.memory.frame_count} frames, "
                                  f"but observe_until={k}")
            if scored and world.memory.config.segmentation == "geometry":
                raise ConfigError(f"memory={cfg.memory} segments from geometry: its tracks can be matched to the "
                                  f"true objects only while it observes (its own labels are not saved); leave "
                                  f"memory out to observe here, or set compare=false")
            world.begin(episode.info(k - 1))
        elif scored:
            to_true = observe_labelled(world, episode, k, progress=cfg.progress)
        else:
            world.observe(episode, k, progress=cfg.progress)
    observe_seconds = time.perf_counter() - started

    meta = {"observe_until": k, "imagined_from": str(episode.path), "agent_label": episode.agent_label,
            "protocol": cfg.protocol,
            **{key: episode.meta[key] for key in ("agent_shape", "action_space") if key in episode.meta}}
    writer = EpisodeWriter(out, episode.camera(0).resized(width, height), episode.fps, extra=meta,
                           resume=None if resume is None else resume["frames"])
    if resume is None:
        world.memory.save(partial / "memory.pt")
    ids = [t.id for t in world.memory.tracks]
    tracks = resume["tracks"] if resume is not None else {i: {"poses": [], "labels": []} for i in ids}
    first = k if resume is None else resume["next"]

    def checkpoint(next_index: int) -> None:
        writer.flush()  # every frame listed is on disk
        if next_frame:  # the memory goes on changing: it is part of the checkpoint
            world.memory.save(partial / "memory.pt")
        state = {"settings": settings, "next": next_index, "frames": writer.frames, "tracks": tracks,
                 "world": world.state_dict(), "to_true": to_true}
        atomic_write(partial / RESUME_FILE, lambda tmp: torch.save(state, tmp))

    resident = {}  # MB, at the first minute of imagination and at the end: a stream holds flat memory
    minute = k + round(60 * episode.fps)
    future = ((episode.info(i), episode.camera(i).resized(width, height)) for i in range(first, until))
    started = time.perf_counter()
    stream = _next_frames(world, episode, future) if next_frame else world.imagine(future)
    bar = progress_bar(stream, total=until - first, initial=0, desc="predict" if next_frame else "imagine", unit="frame",
               disable=not cfg.progress)
    last_checkpoint = first
    for frame in bar:
        info = episode.info(frame.index)
        writer.write(frame.rgb, info.transform_matrix, frame.time, depth=frame.depth, instances=frame.instances,
                     agent_pose=info.agent_pose, action=info.action)
        drawn = set(np.unique(frame.instances).tolist())
        for i in ids:
            tracks[i]["poses"].append(frame.poses.get(i))
            tracks[i]["labels"].append(i if i in drawn else 0)
        due = frame.index + 1 - last_checkpoint >= cfg.checkpoint_every and frame.index + 1 < until
        if due and (not next_frame or world.memory.just_refreshed):
            checkpoint(frame.index + 1)
            last_checkpoint = frame.index + 1
        if frame.index + 1 == minute:
            resident["after_1_min"] = _resident_mb()
    imagine_seconds = time.perf_counter() - started
    resident["at_end"] = _resident_mb()
    (partial / RESUME_FILE).unlink(missing_ok=True)
    if next_frame:
        world.memory.save(partial / "memory.pt")
    writer.close(tracks={"objects": [{"id": i, **tracks[i]} for i in ids]})

    frames = until - first
    done = "predicted and observed" if next_frame else "imagined"
    print(f"observed {k} frames in {observe_seconds:.1f} s; {done} {frames} frames ({frames / episode.fps:.0f} s "
          f"of video) in {imagine_seconds:.1f} s: {frames / imagine_seconds:.1f} frames/s, "
          f"{frames / episode.fps / imagine_seconds:.2f}x real time")
    imagined = Episode(out)
    if cfg.video:
        with FrameWriter(out / "imagined.mp4", fps=episode.fps) as video:
            for i in progress_bar(range(len(imagined)), desc="imagined.mp4", unit="frame", disable=not cfg.progress):
                video.write(imagined[i].rgb)
    if "after_1_min" in resident:
        print(f"resident memory: {resident['after_1_min']:.0f} MB after the first imagined minute, "
              f"{resident['at_end']:.0f} MB at the end ({resident['at_end'] / resident['after_1_min']:.2f}x)")
    summary = {"observed_frames": k, "imagined_frames": until - k, "fps": episode.fps}  # no timings: reproducible
    if scored:
        summary.update(compare_with_ground_truth(episode, imagined, world.memory, k,
                                                 out / "side_by_side.mp4" if cfg.video else None,
                                                 progress=cfg.progress, to_true=to_true))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print_summary(summary, out)
    return out
