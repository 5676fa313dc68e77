"""What the memory remembers of one object: its track (model, pose, state, belief, histories),
the segments it is matched to, and the run-length code its per-frame histories are saved in."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch

from splatworld.memory.refine import RefinedSplats
from splatworld.memory.voxels import VoxelGrid
from splatworld.scene.transforms import matrix_to_pose, pose_to_matrix


class TrackState(str, Enum):
    """What the last frame said of a remembered object.

    ``VISIBLE``: a segment was matched to it. ``OCCLUDED``: in view, something observed in front
    of it or nothing contradicts it. ``OUT_OF_VIEW``: less than half of its footprint in the image.
    ``CONTRADICTED``: its place is in view and the depth shows what is behind it (belief drops).
    ``DISPLACED``: contradicted ``displace_after`` times in a row, left out of drawing and
    association until it is re-identified. Values are the strings of ``tracks.json``."""

    VISIBLE = "visible"
    OCCLUDED = "occluded"
    OUT_OF_VIEW = "out_of_view"
    CONTRADICTED = "contradicted"
    DISPLACED = "displaced"


STATES = tuple(state.value for state in TrackState)
_HISTORY_ROWS = {"poses": ((7,), np.float64), "labels": ((), np.int64), "states": ((), f"U{max(map(len, STATES))}"),
                 "beliefs": ((), np.float64)}
HISTORIES = tuple(_HISTORY_ROWS)  # a track's per-frame histories


class History:
    """A per-frame history that grows by appending (amortised O(1)): rows of one shape and dtype in
    a numpy buffer. Indexing, slicing and iteration read :attr:`array`, the rows so far."""

    def __init__(self, row_shape: tuple = (), dtype=np.float64, rows=()):
        rows = np.asarray(rows, dtype=dtype).reshape(-1, *row_shape)
        self._data = np.zeros((max(2 * len(rows), 16), *row_shape), dtype=dtype)
        self._data[:len(rows)] = rows
        self._n = len(rows)

    @property
    def array(self) -> np.ndarray:
        return self._data[:self._n]

    def append(self, row) -> None:
        if self._n == len(self._data):
            self._data = np.concatenate([self._data, np.zeros_like(self._data)])
        self._data[self._n] = row
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key):
        return self.array[key]

    def __iter__(self):
        return iter(self.array)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)

    def tolist(self) -> list:
        return self.array.tolist()


def robust_size(points: np.ndarray) -> float:
    """The largest size (m) of the 2nd-98th percentile box of ``points [N, 3]`` (N >= 1): stray
    points (flying pixels at depth edges, a voxel smeared into a model) left out."""
    lo, hi = np.percentile(points, [2, 98], axis=0)
    return float((hi - lo).max())


@dataclass
class Segment:
    """One instance label of one frame: its pixels, back-projected points and colours."""

    label: int
    mask: np.ndarray  # [H, W] bool
    points: np.ndarray  # [N, 3] world
    colors: np.ndarray  # [N, 3]
    centroid: np.ndarray
    color: np.ndarray  # mean RGB
    extent: float  # largest axis-aligned size

    @classmethod
    def of(cls, label: int, mask: np.ndarray, points: np.ndarray, colors: np.ndarray) -> Segment:
        """The segment of pixels ``mask [H, W]`` with world ``points [N, 3]`` and ``colors [N, 3]``:
        its median as centroid, mean colour, and the largest size of its 2nd-98th percentile box."""
        return cls(int(label), mask, points, colors, np.median(points, axis=0), colors.mean(axis=0),
                   robust_size(points))


@dataclass
class ObjectTrack:
    """One remembered object: a model in its own frame (voxels; their refined splats once
    :meth:`SceneMemory.refine` ran) and its pose over time."""

    id: int
    model: VoxelGrid
    pose: np.ndarray  # [4, 4] world_from_object, as remembered now
    state: TrackState = TrackState.VISIBLE
    belief: float = 0.5
    last_seen: float = 0.0
    first_frame: int = 0
    observations: int = 0
    contradictions: int = 0
    view_points: int = 0  # points of the last segment matched to it (what it showed when last seen)
    color: np.ndarray = field(default_factory=lambda: np.zeros(3))
    refined: RefinedSplats | None = None  # the model's splats after photometric refinement, own frame
    # per frame since birth (a list given is converted): pose [7], label (0: none), state, belief
    poses: History = field(default_factory=list)
    labels: History = field(default_factory=list)
    states: History = field(default_factory=list)
    beliefs: History = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = TrackState(self.state)
        for name, (shape, dtype) in _HISTORY_ROWS.items():
            if not isinstance(getattr(self, name), History):
                setattr(self, name, History(shape, dtype, getattr(self, name)))

    @property
    def centroid_local(self) -> np.ndarray:
        return self.model.points.mean(axis=0) if len(self.model) else np.zeros(3)

    @property
    def centroid(self) -> np.ndarray:
        return self.pose[:3, :3] @ self.centroid_local + self.pose[:3, 3]

    @property
    def box_centre(self) -> np.ndarray:
        """The centre ``[3]`` of the model's axis-aligned box, in its own frame (the origin while it
        has no model): a point at the middle of the object, unlike the origin (where the track was
        born), so it stays put whatever rotation the track gives a symmetric object."""
        if not len(self.model):
            return np.zeros(3)
        return (self.model.points.min(axis=0) + self.model.points.max(axis=0)) / 2

    @property
    def world_points(self) -> np.ndarray:
        """The model's points ``[M, 3]`` in the world, at the remembered pose."""
        return self.model.points @ self.pose[:3, :3].T + self.pose[:3, 3]

    @property
    def extent(self) -> np.ndarray:
        if not len(self.model):
            return np.zeros(3)
        return self.model.points.max(axis=0) - self.model.points.min(axis=0)

    @property
    def size(self) -> float:
        """The largest size (m) of the model's 2nd-98th percentile box: what :attr:`Segment.extent`
        measures of a view (:attr:`extent` spans every voxel, a stray one smeared in included)."""
        return robust_size(self.model.points) if len(self.model) else 0.0

    @property
    def seen_last_two(self) -> bool:
        """The track was visible (owned a label) in each of its last two recorded frames."""
        return len(self.labels) >= 2 and bool(self.labels[-1] and self.labels[-2])

    def record(self, pose: np.ndarray, label: int) -> None:
        """Append this frame to the histories: ``pose`` (the pose now as ``[7]``: :func:`record_all`
        converts every track's at once), ``label`` (0: none), state and belief."""
        self.poses.append(pose)
        self.labels.append(label)
        self.states.append(self.state.value)
        self.beliefs.append(round(self.belief, 4))

    def pose_at(self, frame: int) -> np.ndarray | None:
        """world_from_object ``[7]`` at an observed frame (the last one after it; None before birth)."""
        k = frame - self.first_frame
        return np.asarray(self.poses[min(k, len(self.poses) - 1)]) if k >= 0 and self.poses else None

    def pose_matrix_at(self, frame: int) -> np.ndarray:
        """world_from_object ``[4, 4]`` at recorded history entry ``frame`` (an index into ``poses``)."""
        return pose_to_matrix(torch.from_numpy(self.poses[frame].copy())).numpy()

    def summary(self) -> dict:
        return {"id": self.id, "pose": matrix_to_pose(torch.from_numpy(self.pose)).tolist(),
                "extent": self.extent.tolist(), "state": self.state.value, "belief": self.belief,
                "last_seen": self.last_seen, "observations": self.observations}


def record_all(tracks: list[ObjectTrack], labels: dict[int, int]) -> None:
    """Append a frame to every track's histories, with the label each owns in it (``labels``:
    track id -> label; 0 for the others); their poses converted to ``[7]`` in one batch."""
    if not tracks:
        return
    poses = matrix_to_pose(torch.from_numpy(np.stack([t.pose for t in tracks]))).numpy()
    for track, pose in zip(tracks, poses):
        track.record(pose, labels.get(track.id, 0))


def to_object_frame(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """World points ``[N, 3]`` in the frame of a world_from_object ``pose [4, 4]``."""
    return (points - pose[:3, 3]) @ pose[:3, :3]


def runs(history: list) -> tuple[int, list[int], list]:
    """Run-length code of a per-frame history (most entries repeat the previous one: objects at
    rest keep their pose): its length, the start of each run and each run's value."""
    starts, values = [], []
    for i, value in enumerate(history):
        if not values or value != values[-1]:
            starts.append(i)
            values.append(value)
    return len(history), starts, values


def expand(length: int, starts: list[int], values: list) -> list:
    """Inverse of :func:`runs`."""
    ends = [*starts[1:], length]
    return [v for v, a, b in zip(values, starts, ends) for _ in range(b - a)]
