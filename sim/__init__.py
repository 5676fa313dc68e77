"""The PyBullet ground-truth world: scenes, TinyRenderer cameras, Gaussians of bodies."""

from splatworld.sim.pybullet_scene import (
    gaussians_from_pybullet,
    pybullet_projection_matrix,
    pybullet_view_matrix,
    render_tinyrenderer,
    tabletop_world,
)

__all__ = [
    "gaussians_from_pybullet",
    "pybullet_projection_matrix",
    "pybullet_view_matrix",
    "render_tinyrenderer",
    "tabletop_world",
]
