"""The persistent scene memory: static scaffold, object models and tracks over time.

:class:`SceneMemory` runs the per-frame steps, each in its own module: segments and association
(:mod:`.association`), a track's update (:mod:`.tracking`), visibility (:mod:`.visibility`), the
static map (:mod:`.static_map`) and the ground under it (:mod:`.ground`), keyframes (:mod:`.keyframes`), saving and loading (:mod:`.persistence`).
"""

from splatworld.memory.config import MemoryConfig
from splatworld.memory.ground import Ground, fit_ground, fit_texture
from splatworld.memory.scene_memory import SceneMemory
from splatworld.memory.static_map import StaticMap
from splatworld.memory.tracks import STATES, ObjectTrack, Segment, TrackState
from splatworld.memory.view import MemoryView, ObjectView
from splatworld.memory.voxels import VoxelGrid

__all__ = ["Ground", "MemoryConfig", "fit_ground", "fit_texture", "MemoryView", "ObjectTrack", "ObjectView", "STATES", "SceneMemory", "Segment", "StaticMap",
           "TrackState", "VoxelGrid"]
