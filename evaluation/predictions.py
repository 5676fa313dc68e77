"""Predictions in any form a video world model writes: an episode directory, a folder of numbered
PNG / JPG frames, or an mp4.

A folder of frames or an mp4 holds the predicted frames in order and nothing else: the evaluator
gives them the ground truth's cameras and times (:func:`as_episode` writes them as an episode,
streaming the video, so every metric reads one format). Size, count and frame rate are checked
against what the task expects, and a mismatch is refused with one error naming expected and
actual; a different resolution is accepted only when asked (``resize=True``: the evaluator then
resizes each frame to the ground truth's, bilinear for RGB).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from splatworld.errors import EpisodeFormatError
from splatworld.scene.episode import Episode
from splatworld.scene.episode_writer import EpisodeWriter

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4",)


class PredictionError(EpisodeFormatError):
    """A prediction that cannot be scored: wrong size, length or frame rate, unreadable, missing."""


def prediction_kind(path: Path) -> str:
    """``episode``, ``frames`` or ``video``; raises :class:`PredictionError` for anything else."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    if path.is_dir() and (path / "transforms.json").exists():
        return "episode"
    if path.is_dir() and frame_files(path):
        return "frames"
    if not path.exists():
        raise PredictionError(path, "no such file or directory")
    raise PredictionError(path, "not an episode directory (transforms.json), a folder of numbered "
                                f"{'/'.join(IMAGE_SUFFIXES)} frames or an {'/'.join(VIDEO_SUFFIXES)} video")


def frame_files(folder: Path) -> list[Path]:
    """The numbered image files of ``folder`` in numeric order (``0.png``, ``000001.jpg``, ...)."""
    numbered = [(int(m.group(1)), p) for p in Path(folder).iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and (m := re.fullmatch(r"(\d+)", p.stem))]
    return [p for _, p in sorted(numbered)]


def video_frames(path: Path, fps: float) -> tuple[int | None, Iterator[np.ndarray]]:
    """The frame count ffmpeg reports (None if unknown) and a stream of ``[H, W, 3]`` uint8 frames."""
    try:
        reader = imageio.get_reader(path, format="FFMPEG")
        meta = reader.get_meta_data()
    except Exception as error:  # imageio raises several types for a broken file
        raise PredictionError(path, f"unreadable video: {error}") from error
    if abs(float(meta.get("fps", fps)) - fps) > 1e-3 * fps:
        reader.close()
        raise PredictionError(path, f"frame rate {meta.get('fps')} fps, expected {fps} fps")
    try:
        count = reader.count_frames()
    except Exception:  # noqa: BLE001 - some containers do not say; the stream is then counted as read
        count = None

    def stream():
        try:
            for frame in reader:
                yield np.ascontiguousarray(np.asarray(frame)[..., :3])
        except Exception as error:  # noqa: BLE001
            raise PredictionError(path, f"unreadable video: {error}") from error
        finally:
            reader.close()

    return count, stream()


def image_frames(folder: Path) -> tuple[int, Iterator[np.ndarray]]:
    files = frame_files(folder)

    def stream():
        for file in files:
            try:
                image = np.asarray(imageio.imread(file))
            except Exception as error:  # noqa: BLE001
                raise PredictionError(file, f"unreadable image: {error}") from error
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=-1)
            if image.dtype != np.uint8:
                raise PredictionError(file, f"expected 8-bit RGB, got {image.dtype}")
            yield image[..., :3]

    return len(files), stream()


def read_frames(path: Path, fps: float) -> tuple[int | None, Iterator[np.ndarray]]:
    """The frame count (None where a video does not say) and a stream of ``[H, W, 3]`` uint8 frames of
    a folder of numbered frames or an mp4 (whose frame rate must be ``fps``)."""
    return video_frames(path, fps) if prediction_kind(path) == "video" else image_frames(path)


def as_episode(path, truth: Episode, frames: list[int], out: Path, resize: bool = False) -> Path:
    """The prediction at ``path`` as an episode directory whose frame ``j`` is ground-truth frame
    ``frames[j]`` (its camera and time).

    An episode directory is returned as it is (its own size is checked). A folder of frames or an
    mp4 is written to ``out`` as an RGB-only episode, streamed.

    Raises:
        PredictionError: wrong frame count, size (unless ``resize``) or frame rate; unreadable input.
    """
    path = Path(path)
    kind = prediction_kind(path)
    expected = (truth.height, truth.width)
    if kind == "episode":
        episode = Episode(path, check_files=False)
        if not resize and (episode.height, episode.width) != expected:
            raise PredictionError(path, f"frames are {episode.width}x{episode.height}, expected "
                                        f"{truth.width}x{truth.height} (resize=true accepts another size)")
        return path
    count, stream = read_frames(path, truth.fps)
    if count is not None and count != len(frames):
        raise PredictionError(path, f"{count} frames, expected {len(frames)}")
    writer = None
    n = 0
    for n, image in enumerate(stream, start=1):
        if n > len(frames):
            raise PredictionError(path, f"more than the {len(frames)} frames expected")
        if writer is None:
            if not resize and image.shape[:2] != expected:
                raise PredictionError(path, f"frames are {image.shape[1]}x{image.shape[0]}, expected "
                                            f"{truth.width}x{truth.height} (resize=true accepts another size)")
            camera = truth.camera(0).resized(image.shape[1], image.shape[0])
            writer = EpisodeWriter(out, camera, truth.fps, extra={"prediction": str(path),
                                                                  "instance_ids_consistent": False})
        elif image.shape != (writer.meta["h"], writer.meta["w"], 3):
            raise PredictionError(path, f"frame {n - 1} is {image.shape[1]}x{image.shape[0]}, the first was "
                                        f"{writer.meta['w']}x{writer.meta['h']}", frame=n - 1)
        info = truth.info(frames[n - 1])
        writer.write(image, info.transform_matrix, info.time)
    if n != len(frames):
        raise PredictionError(path, f"{n} frames, expected {len(frames)}")
    return writer.close()
