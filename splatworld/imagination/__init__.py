"""Imagination: the world model (memory + dynamics + renderer) and the ``splatworld imagine`` job."""

from splatworld.imagination.world_model import ImaginedFrame, WorldModel

__all__ = ["ImaginedFrame", "WorldModel"]
