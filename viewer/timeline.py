"""What the viewer shows at each frame, read once from a memory, an episode and an imagined episode.

Frames ``[0, k)`` are the ones the memory observed (``k`` = its frame count): objects are where
its tracks put them, in the state and with the belief they had then. Frames ``[k, T)`` are the
imagined ones (from the imagined episode's ``tracks.json``) or, without one, the memory's last
word on each object. Ground truth, the camera path and the images come from the episodes.

Everything per frame is a small array built up front (poses ``[T, 7]`` per object: about 3 MB
for ten objects over ten minutes); images are read from disk when a frame is shown, and each
object's splats are kept once, in its own frame, by the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from kornia.geometry.linalg import inverse_transformation

from splatworld.errors import ConfigError, EpisodeFormatError
from splatworld.memory import SceneMemory
from splatworld.memory.tracks import TrackState
from splatworld.scene.cameras import nerfstudio_to_opencv
from splatworld.scene.episode import Episode

IMAGINED = "imagined"  # the state of an object at an imagined frame where the model drew it
IMAGINED_HIDDEN = "imagined, not drawn"  # ... where the model left it out (out of view or hidden)


@dataclass(frozen=True)
class ObjectTimeline:
    """One remembered object over the timeline.

    Attributes:
        id: the memory's object id.
        box_center, box_size: ``[3]`` its model's bounding box in its own frame (m).
        poses: ``[T, 7]`` world_from_object (xyz + wxyz), NaN at frames before it was born.
        states: ``[T]`` a :class:`TrackState` value, :data:`IMAGINED`, :data:`IMAGINED_HIDDEN` or ``""``
            (not born yet).
        beliefs: ``[T]`` existence belief, NaN where the memory held none (not born, imagined).
    """

    id: int
    box_center: np.ndarray
    box_size: np.ndarray
    poses: np.ndarray
    states: np.ndarray
    beliefs: np.ndarray


@dataclass(frozen=True)
class TruthObject:
    """One object of ``ground_truth.json``: ``poses [T, 7]`` of the centre of its ``extent [3]`` box."""

    id: int
    name: str
    extent: np.ndarray
    poses: np.ndarray


@dataclass
class Timeline:
    """The viewer's frames.

    Attributes:
        times: ``[T]`` seconds.
        observed_until: ``k``: frames ``[0, k)`` were observed by the memory, ``[k, T)`` imagined (or
            beyond what the memory saw).
        cameras: ``[T, 4, 4]`` OpenCV camera-to-world of each frame (NaN where no episode gives it).
        fov_y: vertical field of view (rad); aspect: width / height.
        objects: the memory's objects with a model.
        truth: the ground-truth objects (empty without an episode holding ``ground_truth.json``).
        images: per frame, the episode that holds its image and the index there (None: no image).
        imagined: frames from ``observed_until`` on are an imagined episode's.
    """

    times: np.ndarray
    observed_until: int
    cameras: np.ndarray
    fov_y: float
    aspect: float
    objects: list[ObjectTimeline]
    truth: list[TruthObject]
    images: list[tuple[Episode, int] | None]
    imagined: bool

    def __len__(self) -> int:
        return len(self.times)

    def image(self, frame: int) -> np.ndarray | None:
        """``[H, W, 3]`` uint8: the observed (or imagined, past ``observed_until``) image of ``frame``."""
        source = self.images[frame]
        return None if source is None else source[0].rgb(source[1])

    def phase(self, frame: int) -> str:
        """What ``frame`` is: observed, imagined, or after the memory's last frame."""
        if frame < self.observed_until:
            return "observed"
        return "imagined" if self.imagined else "after the memory's last frame"

    @classmethod
    def read(cls, memory: SceneMemory, episode: Episode | None = None, imagined: Episode | None = None) -> Timeline:
        """The timeline of ``memory`` over ``episode`` (the observed one, with its ground truth) and
        ``imagined`` (an episode written by ``splatworld imagine`` from this memory).

        Raises:
            ConfigError: the memory observed nothing, or the episodes do not fit it (named).
        """
        k = memory.frame_count
        if k == 0:
            raise ConfigError("view: the memory has observed no frame")
        if episode is not None and len(episode) < k:
            raise ConfigError(f"view: {episode.path} has {len(episode)} frames; the memory observed {k}")
        if imagined is not None:
            start = int(imagined.meta.get("observe_until", k))
            if start != k:
                raise ConfigError(f"view: {imagined.path} was imagined from frame {start}; the memory observed {k}")
        frames = k + len(imagined) if imagined is not None else len(episode) if episode is not None else k
        if episode is not None and imagined is not None and frames > len(episode):
            raise ConfigError(f"view: {imagined.path} runs to frame {frames}, past {episode.path} ({len(episode)})")

        times = np.full(frames, np.nan)
        times[:k] = memory.times[:k]
        c2w = np.full((frames, 4, 4), np.nan)
        images: list[tuple[Episode, int] | None] = [None] * frames
        sources = [(episode, 0)] if episode is not None else []
        sources += [(imagined, k)] if imagined is not None else []
        for source, offset in sources:
            n = min(len(source), frames - offset)
            times[offset:offset + n] = [source.info(i).time for i in range(n)]
            c2w[offset:offset + n] = _opencv_c2w(np.stack([source.info(i).transform_matrix for i in range(n)]))
            images[offset:offset + n] = [(source, i) for i in range(n)]
        if np.isnan(times).any():  # frames past the memory with no episode to time them: keep its frame rate
            step = float(np.diff(times[:k]).mean()) if k > 1 else 0.1
            times = np.where(np.isnan(times), times[k - 1] + step * (np.arange(frames) - k + 1), times)

        fov_y, aspect = _field_of_view(episode or imagined, memory)
        predicted = _imagined_tracks(imagined) if imagined is not None else {}
        objects = [_object_timeline(t, frames, k, predicted.get(t.id)) for t in memory.tracks if len(t.model)]
        truth = _truth(episode, frames) if episode is not None else []
        return cls(times, k, c2w, fov_y, aspect, objects, truth, images, imagined is not None)


def _opencv_c2w(transform_matrices: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world ``[N, 4, 4]`` of nerfstudio camera-to-world ``[N, 4, 4]``."""
    viewmats = nerfstudio_to_opencv(torch.from_numpy(transform_matrices))
    return inverse_transformation(viewmats).numpy()


def _field_of_view(episode: Episode | None, memory: SceneMemory) -> tuple[float, float]:
    if episode is not None:
        m = episode.meta
        return 2 * np.arctan2(m["h"] / 2, m["fl_y"]), m["w"] / m["h"]
    if len(memory.keyframes):
        camera = memory.keyframes.frames[0].camera
        return 2 * np.arctan2(camera.height / 2, camera.fy), camera.width / camera.height
    return np.deg2rad(55.0), 1.0


def _imagined_tracks(imagined: Episode) -> dict[int, dict]:
    tracks = imagined.tracks()
    if tracks is None:
        raise EpisodeFormatError(imagined.path / "tracks.json", "missing: the viewer needs the imagined object poses")
    return {int(o["id"]): o for o in tracks["objects"]}


def _object_timeline(track, frames: int, k: int, predicted: dict | None) -> ObjectTimeline:
    """``track``'s poses, states and beliefs over ``frames``: its histories up to ``k``, then
    ``predicted`` (an imagined ``tracks.json`` entry) or its last recorded values."""
    poses = np.full((frames, 7), np.nan)
    states = np.full(frames, "", dtype=object)
    beliefs = np.full(frames, np.nan)
    a = track.first_frame
    b = min(a + len(track.poses), frames)
    poses[a:b] = track.poses[:b - a]
    states[a:b] = track.states[:b - a]
    beliefs[a:b] = track.beliefs[:b - a]
    if predicted is not None:
        for j, (pose, label) in enumerate(zip(predicted["poses"], predicted["labels"])):
            if pose is not None:
                poses[k + j] = pose
                states[k + j] = IMAGINED if label else IMAGINED_HIDDEN
    elif b < frames and b > a:
        poses[b:], states[b:], beliefs[b:] = poses[b - 1], states[b - 1], beliefs[b - 1]
    points = track.model.points
    low, high = points.min(axis=0), points.max(axis=0)
    size = high - low + track.model.voxel_size
    return ObjectTimeline(track.id, (low + high) / 2, size, poses, states, beliefs)


def _truth(episode: Episode, frames: int) -> list[TruthObject]:
    gt = episode.ground_truth()
    if gt is None:
        return []
    return [TruthObject(int(o["id"]), str(o.get("name", o["id"])), np.asarray(o["extent"], dtype=np.float64),
                        np.asarray(o["poses"], dtype=np.float64)[:frames]) for o in gt["objects"]]


STATE_COLORS: dict[str, tuple[int, int, int]] = {
    TrackState.VISIBLE.value: (39, 174, 96),
    TrackState.OCCLUDED.value: (230, 126, 34),
    TrackState.OUT_OF_VIEW.value: (41, 128, 185),
    TrackState.CONTRADICTED.value: (192, 57, 43),
    TrackState.DISPLACED.value: (127, 140, 141),
    IMAGINED: (142, 68, 173),
    IMAGINED_HIDDEN: (187, 143, 206),
}
"""The colour of an object's box in each state."""


def read_inputs(memory: str | Path, episode: str | Path | None = None,
                imagined: str | Path | None = None) -> tuple[SceneMemory, Timeline]:
    """Load a memory file and the optional episodes, and their :class:`Timeline`."""
    path = Path(memory)
    if not path.is_file():
        raise ConfigError(f"view: no memory file at {path}")
    loaded = SceneMemory.load(path)
    observed = _episode(episode)
    predicted = _episode(imagined)
    return loaded, Timeline.read(loaded, observed, predicted)


def _episode(path: str | Path | None) -> Episode | None:
    if path is None:
        return None
    path = Path(path)
    if (path / "transforms.json").is_file():
        return Episode(path, check_files=False)
    inner = sorted(p.parent for p in path.glob("*/transforms.json"))
    if len(inner) == 1:  # `splatworld demo` keeps its episode one folder down
        return Episode(inner[0], check_files=False)
    raise ConfigError(f"view: no episode (transforms.json) in {path}")
