"""A read-only snapshot of the memory: what dynamics, imagination and planning read of it.

:meth:`SceneMemory.view` copies what they need, so a view stays as it was taken while the memory
goes on observing, and a layer above the memory never reaches into its tracks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splatworld.memory.tracks import TrackState


@dataclass(frozen=True)
class ObjectView:
    """One remembered object when the view was taken.

    Attributes:
        id: the memory's object id (its label in rendered id maps).
        pose: ``[4, 4]`` world_from_object.
        model_points: ``[P, 3]`` the object's model in its own frame.
        recent_poses: ``[2, 7]`` its recorded poses at the last two frames (the last one twice
            right after birth): where its velocity comes from.
        state, belief, last_seen: visibility state, existence belief, time it was last seen (s).
    """

    id: int
    pose: np.ndarray
    model_points: np.ndarray
    recent_poses: np.ndarray
    state: TrackState
    belief: float
    last_seen: float


@dataclass(frozen=True)
class MemoryView:
    """The memory at :attr:`time`.

    Attributes:
        time: the last observed frame's time (s).
        objects: every remembered object, displaced ones too (their :attr:`ObjectView.state` says so).
        static_points: ``[M, 3]`` the static scaffold's voxel centres.
        support_plane: ``[4]`` the support plane ``a x + b y + c z + d = 0`` (normal up), or None.
        support_region: ``[4]`` x0, y0, x1, y1 of the plane's observed part.
        static_refresh: how many times the static map has been refreshed: derived geometry made at
            the same count is still current.
    """

    time: float
    objects: tuple[ObjectView, ...]
    static_points: np.ndarray
    support_plane: np.ndarray | None
    support_region: np.ndarray
    static_refresh: int

    def remembered(self) -> list[ObjectView]:
        """The objects a model moves and draws: not displaced, with a model."""
        return [o for o in self.objects if o.state != TrackState.DISPLACED and len(o.model_points)]

    def by_id(self) -> dict[int, ObjectView]:
        return {o.id: o for o in self.objects}
