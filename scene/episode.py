"""Reader and writer of the episode format, version 1 (``shared/episode-format.md``).

An episode is a nerfstudio-style ``transforms.json`` plus PNG frames (RGB; uint16 depth and
instance labels) and optional ``ground_truth.json`` / ``tracks.json``. The reader validates
the whole ``transforms.json`` (and that every referenced file exists) when it opens an
episode, and each image's size and dtype when it loads that frame: frames are loaded lazily,
so a 10-minute episode is never in memory at once. Every violation raises
:class:`~splatworld.errors.EpisodeFormatError` naming the file, the frame and the key.

Imagination protocol: :meth:`Episode.protocol_view` gives frames ``[0, k)`` in full and, for
``[k, T)``, only camera pose, time, agent pose and action. A benchmark *task* is that view on disk:
``transforms.json`` has the top-level key ``task_observe_until`` (``k``) and its frames from ``k``
on carry no image paths (reading their images raises).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from splatworld.errors import EpisodeFormatError
from splatworld.scene.cameras import Camera

FORMAT_VERSION = 1
DEFAULT_AGENT_LABEL = 65535
_TOP_REQUIRED = {"camera_model": str, "fl_x": float, "fl_y": float, "cx": float, "cy": float, "w": int, "h": int,
                 "fps": float, "frames": list}


@dataclass(frozen=True)
class FrameInfo:
    """The non-image fields of one frame (all the imagination protocol reveals of a future frame).

    Attributes:
        index: frame number.
        time: seconds.
        transform_matrix: ``[4, 4]`` camera-to-world, OpenGL / nerfstudio axes.
        agent_pose: ``[7]`` xyz + wxyz, or None.
        action: the command applied from this frame to the next, or None.
    """

    index: int
    time: float
    transform_matrix: np.ndarray
    agent_pose: np.ndarray | None
    action: np.ndarray | None


@dataclass(frozen=True)
class Frame:
    """One loaded frame.

    Attributes:
        info: the frame's non-image fields.
        camera: its camera (OpenCV world-to-camera inside).
        rgb: ``[H, W, 3]`` uint8.
        depth: ``[H, W]`` float32 z-depth in metres (0 = unknown), or None.
        instances: ``[H, W]`` int64 labels (0 = static scene, ``agent_label`` = agent), or None.
    """

    info: FrameInfo
    camera: Camera
    rgb: np.ndarray
    depth: np.ndarray | None
    instances: np.ndarray | None


def _number(value, kind, file, key, frame=None):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or not math.isfinite(float(value)):
        raise EpisodeFormatError(file, f"expected a finite {kind.__name__}, got {value!r}", frame=frame, key=key)
    return kind(value)


def _vector(value, length, file, key, frame):
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if arr is None or arr.shape != (length,) or not np.isfinite(arr).all():
        raise EpisodeFormatError(file, f"expected {length} finite numbers, got {value!r}", frame=frame, key=key)
    return arr


def _rigid(value, file, frame) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != (4, 4):
        raise EpisodeFormatError(file, "expected a 4x4 matrix", frame=frame, key="transform_matrix")
    if not np.isfinite(m).all():
        raise EpisodeFormatError(file, "non-finite entries", frame=frame, key="transform_matrix")
    rot = m[:3, :3]
    if (np.abs(rot @ rot.T - np.eye(3)).max() > 1e-4 or abs(np.linalg.det(rot) - 1) > 1e-4
            or np.abs(m[3] - [0, 0, 0, 1]).max() > 1e-6):
        raise EpisodeFormatError(file, "not a rigid transform (rotation not orthonormal with det 1, or last "
                                       "row not [0, 0, 0, 1])", frame=frame, key="transform_matrix")
    return m


class Episode:
    """A validated, lazily loaded episode directory.

    Args:
        path: the episode directory (holding ``transforms.json``).
        check_files: also check that every referenced image file exists (on by default).

    Raises:
        EpisodeFormatError: anything the format forbids, named by file, frame and key.
    """

    def __init__(self, path: str | os.PathLike, check_files: bool = True):
        self.path = Path(path)
        tf = self.path / "transforms.json"
        self._tf = tf
        if not tf.is_file():
            raise EpisodeFormatError(tf, "missing (not an episode directory)")
        try:
            meta = json.loads(tf.read_text())
        except (OSError, ValueError) as exc:
            raise EpisodeFormatError(tf, f"unreadable JSON ({exc})") from exc
        if not isinstance(meta, dict):
            raise EpisodeFormatError(tf, "top level is not an object")
        version = meta.get("episode_format")
        if version != FORMAT_VERSION:
            raise EpisodeFormatError(tf, f"unsupported version {version!r} (this reader knows 1)",
                                     key="episode_format")
        for key, kind in _TOP_REQUIRED.items():
            if key not in meta:
                raise EpisodeFormatError(tf, "missing", key=key)
            if kind in (int, float):
                meta[key] = _number(meta[key], kind, tf, key)
            elif not isinstance(meta[key], kind):
                raise EpisodeFormatError(tf, f"expected {kind.__name__}", key=key)
        if meta["camera_model"] not in ("PINHOLE", "OPENCV"):
            raise EpisodeFormatError(tf, f"unknown camera model {meta['camera_model']!r}", key="camera_model")
        if meta["w"] <= 0 or meta["h"] <= 0:
            raise EpisodeFormatError(tf, "image size must be positive", key="w")
        self.meta = meta
        self.agent_label = int(meta.get("agent_label", DEFAULT_AGENT_LABEL))
        self.action_dim = None
        if "action_space" in meta:
            self.action_dim = _number(meta["action_space"].get("dim"), int, tf, "action_space.dim")
        frames = meta["frames"]
        if not frames:
            raise EpisodeFormatError(tf, "no frames", key="frames")
        self._infos, self._files = [], []
        has_depth = "depth_file_path" in frames[0]
        has_inst = "instance_file_path" in frames[0]
        if has_depth and "depth_unit_scale_factor" not in meta:
            raise EpisodeFormatError(tf, "missing (needed with depth)", key="depth_unit_scale_factor")
        self.depth_scale = float(meta.get("depth_unit_scale_factor", 0.001))
        previous_time = -math.inf
        self.task_observe_until = meta.get("task_observe_until")
        if self.task_observe_until is not None:
            self.task_observe_until = _number(self.task_observe_until, int, tf, "task_observe_until")
        for i, fr in enumerate(frames):
            if not isinstance(fr, dict):
                raise EpisodeFormatError(tf, "frame is not an object", frame=i)
            future = self.task_observe_until is not None and i >= self.task_observe_until
            for key, present in (("depth_file_path", has_depth), ("instance_file_path", has_inst)):
                if (key in fr) != (present and not future):
                    raise EpisodeFormatError(tf, "present in some frames only (all or none)" if not future else
                                             "a task's future frame has no images", frame=i, key=key)
            for key in ("transform_matrix", "time") if future else ("file_path", "transform_matrix", "time"):
                if key not in fr:
                    raise EpisodeFormatError(tf, "missing", frame=i, key=key)
            time = _number(fr["time"], float, tf, "time", i)
            if time <= previous_time:
                raise EpisodeFormatError(tf, f"times must increase strictly ({time} after {previous_time})",
                                         frame=i, key="time")
            previous_time = time
            agent_pose = _vector(fr["agent_pose"], 7, tf, "agent_pose", i) if "agent_pose" in fr else None
            action = None
            if "action" in fr:
                if self.action_dim is None:
                    raise EpisodeFormatError(tf, "action given but no top-level action_space", frame=i,
                                             key="action")
                action = _vector(fr["action"], self.action_dim, tf, "action", i)
            files = {k: self.path / fr[k] for k in ("file_path", "depth_file_path", "instance_file_path")
                     if k in fr and not future}
            if check_files:
                for key, file in files.items():
                    if not file.is_file():
                        raise EpisodeFormatError(file, "missing file", frame=i, key=key)
            self._infos.append(FrameInfo(i, time, _rigid(fr["transform_matrix"], tf, i), agent_pose, action))
            self._files.append(files)
        self.has_depth, self.has_instances = has_depth, has_inst

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._infos)

    @property
    def width(self) -> int:
        return self.meta["w"]

    @property
    def height(self) -> int:
        return self.meta["h"]

    @property
    def fps(self) -> float:
        return self.meta["fps"]

    @property
    def instance_ids_consistent(self) -> bool:
        return bool(self.meta.get("instance_ids_consistent", False))

    def info(self, index: int) -> FrameInfo:
        return self._infos[index]

    def camera(self, index: int) -> Camera:
        """Frame ``index``'s camera, converted to OpenCV world-to-camera."""
        m = self.meta
        c2w = torch.from_numpy(self._infos[index].transform_matrix)
        return Camera.from_nerfstudio(m["fl_x"], m["fl_y"], m["cx"], m["cy"], m["w"], m["h"], c2w)

    def _image(self, index: int, key: str, dtype, channels: int | None) -> np.ndarray:
        file = self._files[index][key]
        try:
            image = imageio.imread(file, format="PNG-PIL")
        except Exception as exc:  # imageio raises many types for a bad file
            raise EpisodeFormatError(file, f"unreadable image ({exc})", frame=index, key=key) from exc
        shape = (self.height, self.width) + ((channels,) if channels else ())
        if image.shape != shape:
            raise EpisodeFormatError(file, f"expected shape {list(shape)}, got {list(image.shape)}", frame=index,
                                     key=key)
        if image.dtype != dtype:
            raise EpisodeFormatError(file, f"expected dtype {np.dtype(dtype).name}, got {image.dtype}",
                                     frame=index, key=key)
        return image

    def _observed(self, index: int) -> int:
        """``index`` in ``[0, len)`` (negative counts from the end), checked to be a frame with images."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.path}: frame {index} out of range [0, {len(self)})")
        index %= len(self)
        if "file_path" not in self._files[index]:
            raise EpisodeFormatError(self._tf, f"frame {index} is a future frame of a task (observed frames: "
                                               f"[0, {self.task_observe_until})): it has no images", frame=index)
        return index

    def rgb(self, index: int) -> np.ndarray:
        """Frame ``index``'s ``[H, W, 3]`` uint8 RGB alone (its depth and instances are not read)."""
        return self._image(self._observed(index), "file_path", np.uint8, 3)

    def __getitem__(self, index: int) -> Frame:
        index = self._observed(index)
        depth = instances = None
        if self.has_depth:
            depth = self._image(index, "depth_file_path", np.uint16, None).astype(np.float32) * self.depth_scale
        if self.has_instances:
            instances = self._image(index, "instance_file_path", np.uint16, None).astype(np.int64)
        return Frame(self._infos[index], self.camera(index), self._image(index, "file_path", np.uint8, 3), depth,
                     instances)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def protocol_view(self, observe_until: int) -> ProtocolView:
        """The imagination protocol's view: frames ``[0, k)`` in full, later ones as :class:`FrameInfo` only."""
        if not 0 < observe_until <= len(self):
            raise EpisodeFormatError(self._tf, f"observe_until={observe_until} outside [1, {len(self)}]")
        return ProtocolView(self, observe_until)

    # ------------------------------------------------------------- side files
    def ground_truth(self) -> dict | None:
        """``ground_truth.json`` (validated against the frame count), or None if absent."""
        return self._side_file("ground_truth.json", required=("poses", "labels"))

    def tracks(self) -> dict | None:
        """``tracks.json`` (validated against the frame count), or None if absent."""
        return self._side_file("tracks.json", required=("poses", "labels"))

    def _side_file(self, name: str, required: tuple[str, ...]) -> dict | None:
        file = self.path / name
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise EpisodeFormatError(file, f"unreadable JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
            raise EpisodeFormatError(file, "expected an object with an 'objects' list", key="objects")
        for obj in data["objects"]:
            oid = obj.get("id") if isinstance(obj, dict) else None
            for key in required + (("visible_fraction",) if "visible_fraction" in obj else ()):
                if key not in obj:
                    raise EpisodeFormatError(file, f"object {oid}: missing", key=key)
                if len(obj[key]) != len(self):
                    raise EpisodeFormatError(file, f"object {oid}: {len(obj[key])} entries for {len(self)} frames",
                                             key=key)
        return data


class ProtocolView:
    """Frames ``[0, k)`` in full, ``[k, T)`` as camera / time / agent / action only."""

    def __init__(self, episode: Episode, observe_until: int):
        self.episode, self.observe_until = episode, observe_until

    def __len__(self) -> int:
        return len(self.episode)

    def observed(self, index: int) -> Frame:
        if not 0 <= index < self.observe_until:
            raise IndexError(f"frame {index} is not observed (the protocol reveals frames [0, {self.observe_until}))")
        return self.episode[index]

    def future(self, index: int) -> tuple[FrameInfo, Camera]:
        """Non-image fields and camera of any frame (observed or future)."""
        return self.episode.info(index), self.episode.camera(index)
