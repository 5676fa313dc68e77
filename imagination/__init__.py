"""Imagination: the world model (memory + dynamics + renderer); the ``splatworld imagine`` job is
:mod:`splatworld.jobs.imagine`."""

from splatworld.imagination.world_model import PROTOCOLS, ImaginedFrame, WorldModel, imagine_returns

__all__ = ["PROTOCOLS", "ImaginedFrame", "WorldModel", "imagine_returns"]
