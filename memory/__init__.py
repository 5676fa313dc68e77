"""The persistent scene memory: static scaffold, object models and tracks over time."""

from splatworld.memory.scene_memory import STATES, MemoryConfig, ObjectTrack, SceneMemory
from splatworld.memory.voxels import VoxelGrid

__all__ = ["MemoryConfig", "ObjectTrack", "STATES", "SceneMemory", "VoxelGrid"]
