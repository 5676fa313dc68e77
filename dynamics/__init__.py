"""Action-conditioned object dynamics, learned from the memory's own tracks.

``step(state, action) -> state`` over a batched, immutable :class:`WorldState`;
``rollout(model, state, actions[B, H, 2])`` for B candidate action sequences at once.
Models: ``static``, ``constant_velocity``, ``quasi_static`` and ``learned``
(:class:`InteractionModel`), all followed by the same geometry constraints of the scaffold
(:func:`apply_constraints`); and ``physics`` (:class:`PhysicsModel`), rigid bodies of the
memory's object hulls stepped by Bullet, which keeps its own constraints.
"""

from splatworld.dynamics.models import (MODELS, ConstantVelocityModel, DynamicsConfig, DynamicsModel,
                                        InteractionModel, StaticModel, apply_constraints, make_model, rollout)
from splatworld.dynamics.physics import PhysicsConfig, PhysicsModel
from splatworld.dynamics.state import Heightmap, Trajectory, WorldState

__all__ = ["MODELS", "ConstantVelocityModel", "DynamicsConfig", "DynamicsModel", "Heightmap", "InteractionModel",
           "PhysicsConfig", "PhysicsModel", "StaticModel", "Trajectory", "WorldState", "apply_constraints", "make_model", "rollout"]
