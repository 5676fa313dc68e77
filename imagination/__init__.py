"""Imagination: the world model (memory + dynamics + renderer); the ``splatworld imagine`` job is
:mod:`splatworld.jobs.imagine`."""

from splatworld.imagination.world_model import PROTOCOLS, ImaginedFrame, WorldModel

__all__ = ["PROTOCOLS", "ImaginedFrame", "WorldModel"]
