"""Stream frames to an mp4 (imageio-ffmpeg) or a folder of PNGs, in constant memory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

import imageio.v2 as imageio
import numpy as np
import torch

from splatworld.errors import ShapeError
from splatworld.progress import progress_bar


def to_uint8(frame) -> np.ndarray:
    """``[H, W, 3]`` uint8 from a float image in [0, 1] (tensor or array) or a uint8 image."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ShapeError(f"frame: expected shape [H, W, 3], got {list(frame.shape)}")
    if frame.dtype == np.uint8:
        return frame
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class FrameWriter:
    """Write frames one at a time to ``path``: an ``.mp4`` file or a directory of PNGs.

    The output appears under its final name only when :meth:`close` succeeds (it is
    written under a temporary name, then renamed), so a killed run never leaves a
    truncated video where a complete one was. Use as a context manager.

    Args:
        path: ``something.mp4`` or a directory (PNG frames ``000000.png``, ...).
        fps: frames per second (mp4 only).
        quality: imageio-ffmpeg quality 0-10 (mp4 only).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0, quality: float = 8.0):
        self.path = Path(path)
        self.is_video = self.path.suffix.lower() == ".mp4"
        self.count = 0
        self._shape = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.is_video:
            self._tmp = self.path.with_name(self.path.stem + ".partial.mp4")
            self._writer = imageio.get_writer(self._tmp, fps=fps, codec="libx264", quality=quality,
                                              pixelformat="yuv420p", macro_block_size=1)
        else:
            self._tmp = self.path.with_name(self.path.name + ".partial")
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp.mkdir(parents=True)

    def write(self, frame) -> None:
        """Append one frame (``[H, W, 3]``, float in [0, 1] or uint8); all frames share one size."""
        image = to_uint8(frame)
        if self._shape is None:
            self._shape = image.shape
        elif image.shape != self._shape:
            raise ShapeError(f"frame {self.count}: shape {list(image.shape)} differs from the first frame's "
                             f"{list(self._shape)}")
        if self.is_video:
            self._writer.append_data(image)
        else:
            imageio.imwrite(self._tmp / f"{self.count:06d}.png", image)
        self.count += 1

    def close(self) -> Path:
        """Finish the file and move it to its final name."""
        if self.is_video:
            self._writer.close()
            os.replace(self._tmp, self.path)
        else:
            if self.path.exists():
                shutil.rmtree(self.path)
            os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial output, leaving any previous file at ``path`` untouched."""
        if self.is_video:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(frames: Iterable, path: str | os.PathLike, fps: float = 10.0, total: int | None = None,
                desc: str = "frames", progress: bool = True) -> Path:
    """Stream an iterable of frames to ``path`` (mp4 or PNG folder) with a progress bar.

    Frames are pulled one at a time, so a generator of rendered frames is never
    held in memory at once.
    """
    with FrameWriter(path, fps=fps) as writer:
        for frame in progress_bar(frames, total=total, desc=desc, unit="frame", disable=not progress):
            writer.write(frame)
    return Path(path)
