"""The memory on disk: ``memory.pt`` (everything, atomically) and the episode format's ``tracks.json``.

Per-frame histories are stored run-length coded (:func:`~splatworld.memory.tracks.runs`); a file
of another format version, or a damaged one, raises :class:`~splatworld.errors.SplatworldError`
naming it.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from splatworld.atomic import atomic_write, atomic_write_text
from splatworld.errors import SplatworldError
from splatworld.memory.ground import Ground
from splatworld.memory.keyframes import KeyframeStore
from splatworld.memory.refine import RefinedSplats
from splatworld.memory.tracks import HISTORIES, ObjectTrack, TrackState, expand, runs
from splatworld.memory.voxels import VoxelGrid

MEMORY_FORMAT_VERSION = 9


def tracks_json(tracks: list[ObjectTrack]) -> dict:
    """Tracks in the episode format's ``tracks.json`` layout, one entry per observed frame."""
    out = []
    for t in tracks:
        before = [None] * t.first_frame
        out.append({"id": t.id, "poses": before + t.poses.tolist(), "labels": [0] * t.first_frame + t.labels.tolist(),
                    "states": before + t.states.tolist(), "beliefs": before + t.beliefs.tolist()})
    return {"objects": out}


def _saved(name: str, history) -> list:
    """A history as saved: a list, with each state as its :class:`TrackState` value (one string object
    per state, so the pickle shares them as it always has)."""
    values = history.tolist()
    return [TrackState(v).value for v in values] if name == "states" else values


def memory_state(memory) -> dict:
    """Everything a :class:`~splatworld.memory.SceneMemory` needs to go on as it would have."""
    tracks = []
    for t in memory.tracks:
        fields_ = {k: getattr(t, k) for k in ("id", "pose", "state", "belief", "last_seen", "first_frame",
                                             "observations", "contradictions", "view_points", "color")}
        fields_["state"] = t.state.value
        histories = {k: runs(_saved(k, getattr(t, k))) for k in HISTORIES}
        tracks.append({**fields_, "histories": histories, "model": t.model.state_dict(),
                       "refined": None if t.refined is None else t.refined.state_dict()})
    static = memory.static_map
    return {
        "format_version": MEMORY_FORMAT_VERSION,
        "config": asdict(memory.config),
        "agent_label": memory.agent_label,
        "static": static.grid.state_dict(),
        "refined": None if static.refined is None else static.refined.state_dict(),
        "keyframes": memory.keyframes.state_dict(),
        "tracks": tracks,
        "frame_count": memory.frame_count,
        "time": memory.time,
        "times": memory.times,
        "support_plane": static.support_plane,
        "support_region": static.support_region,
        "support_color": static.support_color,
        "background": (memory.background, memory.background_frames),
        "sky": (memory.sky, memory.sky_frames, memory.depth_range),
        "ground": (None if static.ground is None else asdict(static.ground), static.ground_candidates),
        "agent_color": (memory.agent_color, memory.agent_frames),
        "next_id": memory.next_id,
        "agent": (memory.agent.position, memory.agent.moved_at),
        "depthless_frames": memory.depthless_frames,
        "camera_path": (np.asarray(memory.camera_path).reshape(-1, 4, 4), list(memory.tracked)),
    }


def restore(memory, state: dict) -> None:
    """Fill a fresh ``memory`` (built with the saved config and agent label) from :func:`memory_state`.

    Raises:
        KeyError, TypeError, ValueError, zlib.error: a damaged state.
    """
    memory.static_map.grid = VoxelGrid.from_state_dict(state["static"])
    memory.keyframes = KeyframeStore.from_state_dict(state["keyframes"])
    memory.static_map.refined = None if state["refined"] is None else RefinedSplats.from_state_dict(state["refined"])
    for ts in state["tracks"]:
        fields_ = {k: v for k, v in ts.items() if k not in ("model", "histories", "refined")}
        histories = {k: expand(*ts["histories"][k]) for k in HISTORIES}
        refined = None if ts["refined"] is None else RefinedSplats.from_state_dict(ts["refined"])
        memory.tracks.append(ObjectTrack(model=VoxelGrid.from_state_dict(ts["model"]), refined=refined, **fields_,
                                         **histories))
    memory.frame_count, memory.time, memory.times = state["frame_count"], state["time"], state["times"]
    memory.static_map.support_plane, memory.next_id = state["support_plane"], state["next_id"]
    memory.depthless_frames = state.get("depthless_frames", 0)  # absent from memories saved before it was counted
    path, memory.tracked = state.get("camera_path", (np.zeros((0, 4, 4)), []))
    memory.camera_path = list(path)
    memory.static_map.support_region, memory.static_map.support_color = state["support_region"], state["support_color"]
    memory.background, memory.background_frames = state["background"]
    memory.sky, memory.sky_frames, memory.depth_range = state["sky"]
    ground, memory.static_map.ground_candidates = state["ground"]
    memory.static_map.ground = None if ground is None else Ground(**ground)
    memory.agent_color, memory.agent_frames = state["agent_color"]
    memory.agent.position, memory.agent.moved_at = state["agent"]


def read_state(path: Path) -> dict:
    """The saved state at ``path``, checked for this code's format version."""
    try:
        state = torch.load(path, weights_only=False)
    except Exception as exc:
        raise SplatworldError(f"{path}: not a saved SceneMemory ({exc})") from exc
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != MEMORY_FORMAT_VERSION:
        raise SplatworldError(f"{path}: memory format version {version!r}, this code reads {MEMORY_FORMAT_VERSION}")
    return state


DAMAGED = (KeyError, TypeError, ValueError, zlib.error)  # what a damaged state of the right version raises


def save_memory(memory, path: str | os.PathLike) -> Path:
    """Write the whole memory to ``path`` atomically."""
    return atomic_write(path, lambda tmp: torch.save(memory_state(memory), tmp))


def export_tracks(tracks: list[ObjectTrack], path: str | os.PathLike) -> Path:
    """Write :func:`tracks_json` to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(tracks_json(tracks)))
