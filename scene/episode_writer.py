"""Writer of the episode format, version 1 (``shared/episode-format.md``): frames streamed to PNGs
on a small thread pool, ``transforms.json`` and the side files written when the episode closes.
Its reader is :class:`splatworld.scene.episode.Episode`."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from splatworld.atomic import atomic_write
from splatworld.errors import EpisodeFormatError
from splatworld.scene.cameras import Camera
from splatworld.scene.episode import DEFAULT_AGENT_LABEL, FORMAT_VERSION


def _png_writer(file: Path, image: np.ndarray) -> None:
    atomic_write(file, lambda tmp: imageio.imwrite(tmp, image, compress_level=1), keep_extension=True)


class EpisodeWriter:
    """Write an episode frame by frame; ``transforms.json`` appears (atomically) on :meth:`close`.

    Images are encoded on a small thread pool (zlib releases the GIL). Depth is stored as
    uint16 ``round(metres / depth_unit_scale_factor)``; values beyond the uint16 range and
    non-finite ones become 0 (unknown).

    Args:
        path: the episode directory (created; an existing one is replaced on close).
        camera: intrinsics and size shared by all frames (its pose is ignored).
        fps: nominal frame rate.
        extra: more top-level keys (``agent_shape``, ``action_space``, ``instance_ids_consistent``, ...).
        resume: the frame entries (:attr:`frames`) of an interrupted writer of the same episode,
            whose images are all on disk (see :meth:`flush`): it goes on after them. None: start afresh.
    """

    def __init__(self, path, camera: Camera, fps: float, *, depth_unit_scale_factor: float = 0.001,
                 extra: dict | None = None, workers: int = 2, resume: list[dict] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        if resume is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        for sub in ("rgb", "depth", "instances"):
            (self.tmp / sub).mkdir(parents=True, exist_ok=True)
        self.meta = {"episode_format": FORMAT_VERSION, "camera_model": "PINHOLE", "fl_x": camera.fx,
                     "fl_y": camera.fy, "cx": camera.cx, "cy": camera.cy, "w": camera.width, "h": camera.height,
                     "fps": float(fps), "depth_unit_scale_factor": depth_unit_scale_factor,
                     "instance_ids_consistent": False, "agent_label": DEFAULT_AGENT_LABEL, **(extra or {})}
        self.frames: list[dict] = list(resume or [])
        self._pool = ThreadPoolExecutor(workers)
        self._pending = []

    def write(self, rgb: np.ndarray, c2w: np.ndarray, time: float, *, depth: np.ndarray | None = None,
              instances: np.ndarray | None = None, agent_pose=None, action=None) -> None:
        """Add one frame. ``c2w`` is camera-to-world with OpenGL / nerfstudio axes."""
        i = len(self.frames)
        h, w = self.meta["h"], self.meta["w"]
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise EpisodeFormatError(self.path, f"rgb must be uint8 [{h}, {w}, 3], got {rgb.dtype} "
                                                f"{list(rgb.shape)}", frame=i)
        entry = {"file_path": f"rgb/{i:06d}.png"}
        jobs = [(entry["file_path"], rgb)]
        if depth is not None:
            units = depth / self.meta["depth_unit_scale_factor"]
            units = np.where(np.isfinite(units) & (units < 65535.5), np.round(units), 0).astype(np.uint16)
            entry["depth_file_path"] = f"depth/{i:06d}.png"
            jobs.append((entry["depth_file_path"], units))
        if instances is not None:
            entry["instance_file_path"] = f"instances/{i:06d}.png"
            jobs.append((entry["instance_file_path"], np.asarray(instances).astype(np.uint16)))
        entry["transform_matrix"] = np.asarray(c2w, dtype=np.float64).tolist()
        entry["time"] = float(time)
        if agent_pose is not None:
            entry["agent_pose"] = [float(v) for v in agent_pose]
        if action is not None:
            entry["action"] = [float(v) for v in action]
        self.frames.append(entry)
        self._pending += [self._pool.submit(_png_writer, self.tmp / name, image) for name, image in jobs]
        while len(self._pending) > 16:  # bound memory; surfaces encoder errors early
            self._pending.pop(0).result()

    def write_image(self, name: str, image: np.ndarray) -> None:
        """Add an image outside the frame list (``name`` relative to the episode directory, e.g.
        ``counterfactual/000042_3.png``), written as a PNG with the frames."""
        (self.tmp / name).parent.mkdir(parents=True, exist_ok=True)
        self._pending.append(self._pool.submit(_png_writer, self.tmp / name, image))

    def flush(self) -> None:
        """Wait until every image written so far is on disk."""
        for f in self._pending:
            f.result()
        self._pending = []

    def close(self, ground_truth: dict | None = None, tracks: dict | None = None) -> Path:
        """Finish images, write the JSON files, and move the episode to its final path."""
        self.flush()
        self._pool.shutdown()
        for sub in ("depth", "instances"):
            if not any((self.tmp / sub).iterdir()):
                (self.tmp / sub).rmdir()
        for name, data in (("ground_truth.json", ground_truth), ("tracks.json", tracks)):
            if data is not None:
                (self.tmp / name).write_text(json.dumps(data))
        (self.tmp / "transforms.json").write_text(json.dumps({**self.meta, "frames": self.frames}, indent=1))
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path
