"""Composable costs over batched rollouts.

A cost term is a callable ``term(start, trajectory, actions) -> [B]``: ``start`` the
:class:`~splatworld.dynamics.WorldState` the rollouts began from (batch 1 or B),
``trajectory`` the :class:`~splatworld.dynamics.Trajectory` of ``H`` steps, ``actions``
``[B, H, 2]`` the planar agent velocities (m/s). Lower is better. :class:`CostSum` adds
weighted terms; :meth:`CostSum.breakdown` reports each one (for logs and overlays).

Terms for planar pushing: :class:`GoalDistance` (an object to a goal point),
:class:`PushApproach` (the agent behind the object, facing the goal: the shaping that makes a
short horizon find pushes), :class:`Collision` (the agent or the pushed object near any other
remembered object, seen or not, and any other object moved), :class:`StayOnTable` (agent inside
a region, no object falls) and :class:`Smoothness` (action changes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from splatworld.dynamics.state import Trajectory, WorldState, footprint_half
from splatworld.scene.transforms import quat_to_rotmat

CostTerm = Callable[[WorldState, Trajectory, torch.Tensor], torch.Tensor]


def _slot_xy(trajectory: Trajectory, slot: int) -> torch.Tensor:
    return trajectory.position[:, :, slot, :2]  # [B, H, 2]


def _goal(goal, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(goal, dtype=like.dtype).reshape(2)


@dataclass(frozen=True)
class GoalDistance:
    """Distance (m) of object ``slot`` to ``goal`` (x, y): mean over the horizon plus
    ``terminal`` times its value at the last step."""

    slot: int
    goal: tuple[float, float]
    terminal: float = 2.0

    def __call__(self, start, trajectory, actions):
        dist = torch.linalg.norm(_slot_xy(trajectory, self.slot) - _goal(self.goal, actions), dim=-1)  # [B, H]
        return dist.mean(-1) + self.terminal * dist[:, -1]


@dataclass(frozen=True)
class PushApproach:
    """Mean distance (m) of the agent from the push point of object ``slot``: behind it as seen
    from ``goal``, ``standoff`` beyond contact (the reach of its oriented box along the push
    direction plus the agent's radius).
    Near the goal (within ``near``) the term fades out: there is nothing left to push."""

    slot: int
    goal: tuple[float, float]
    agent_radius: float
    standoff: float = 0.0
    near: float = 0.01

    def __call__(self, start, trajectory, actions):
        xy = _slot_xy(trajectory, self.slot)
        to_goal = _goal(self.goal, actions) - xy
        dist = torch.linalg.norm(to_goal, dim=-1, keepdim=True)
        direction = to_goal / dist.clamp(min=1e-6)
        # the oriented box's reach along the push: sum over its axes of |direction . axis| * half size
        axes = quat_to_rotmat(trajectory.quat[:, :, self.slot])[..., :2, :]  # [B, H, 2 (x, y), 3 axes]
        half = start.extent[:, None, self.slot] / 2  # [B or 1, 1, 3]
        reach = ((direction[..., None] * axes).sum(-2).abs() * half).sum(-1, keepdim=True)
        push_point = xy - direction * (reach + self.agent_radius + self.standoff)
        gap = torch.linalg.norm(trajectory.agent[..., :2] - push_point, dim=-1)
        return (gap * (dist[..., 0] > self.near)).mean(-1)


@dataclass(frozen=True)
class Collision:
    """Contact with objects other than ``allowed`` (the slots the agent may push).

    Per step and object: ``((margin - clearance) / margin)^2`` where the agent's clearance to it
    (footprints) or the clearance of each allowed object to it falls under ``margin``, plus its
    predicted displacement from the start in cm (something the dynamics say got pushed). Summed
    over the horizon and objects. Every valid slot counts, observed or only remembered.
    """

    allowed: tuple[int, ...]
    agent_radius: float
    margin: float = 0.03

    def __call__(self, start, trajectory, actions):
        position = trajectory.position  # [B, H, N, 3]
        b, h, n = position.shape[:3]
        others = start.valid.expand(b, n).clone()
        others[:, list(self.allowed)] = False
        if not others.any():
            return torch.zeros(b, dtype=actions.dtype)
        half = footprint_half(trajectory.quat, start.extent[:, None].expand(b, h, n, 3))  # [B, H, N, 2]
        rel = trajectory.agent[:, :, None, :2] - position[..., :2]
        agent_gap = torch.linalg.norm((rel.abs() - half).clamp(min=0), dim=-1) - self.agent_radius  # [B, H, N]
        penalty = ((self.margin - agent_gap).clamp(min=0) / self.margin) ** 2
        for slot in self.allowed:
            pair = position[:, :, slot, None, :2] - position[..., :2]
            gap = torch.linalg.norm((pair.abs() - half[:, :, slot, None] - half).clamp(min=0), dim=-1)
            penalty = penalty + ((self.margin - gap).clamp(min=0) / self.margin) ** 2
        moved = torch.linalg.norm(position[..., :2] - start.position[:, None, :, :2], dim=-1) * 100.0
        return ((penalty + moved) * others[:, None]).sum((-1, -2)).to(actions.dtype)


@dataclass(frozen=True)
class StayOnTable:
    """The agent outside ``region`` (x0, y0, x1, y1), in m summed over steps, plus every object
    whose centre drops more than ``drop`` below where it started (it fell), in m summed over steps."""

    region: tuple[float, float, float, float]
    drop: float = 0.02

    def __call__(self, start, trajectory, actions):
        x0, y0, x1, y1 = self.region
        xy = trajectory.agent[..., :2]
        out = ((x0 - xy[..., 0]).clamp(min=0) + (xy[..., 0] - x1).clamp(min=0) +
               (y0 - xy[..., 1]).clamp(min=0) + (xy[..., 1] - y1).clamp(min=0)).sum(-1)
        fall = (start.position[:, None, :, 2] - trajectory.position[..., 2] - self.drop).clamp(min=0)
        return out + (fall * start.valid[:, None]).sum((-1, -2)).to(out.dtype)


@dataclass(frozen=True)
class Smoothness:
    """Sum of squared changes between consecutive actions ((m/s)^2), the first against
    ``previous`` (the command in force now)."""

    previous: tuple[float, float] = (0.0, 0.0)

    def __call__(self, start, trajectory, actions):
        before = torch.as_tensor(self.previous, dtype=actions.dtype).expand(actions.shape[0], 1, 2)
        return torch.diff(actions, dim=1, prepend=before).pow(2).sum((-1, -2))


@dataclass(frozen=True)
class CostSum:
    """``sum(weight * term(...))`` over ``terms``: ``(name, weight, term)`` triples."""

    terms: Sequence[tuple[str, float, CostTerm]] = field(default_factory=tuple)

    def __call__(self, start, trajectory, actions) -> torch.Tensor:
        return sum(weight * term(start, trajectory, actions) for _, weight, term in self.terms)

    def breakdown(self, start, trajectory, actions) -> dict[str, torch.Tensor]:
        """Each term's weighted ``[B]`` cost by name."""
        return {name: weight * term(start, trajectory, actions) for name, weight, term in self.terms}


__all__ = ["Collision", "CostSum", "CostTerm", "GoalDistance", "PushApproach", "Smoothness", "StayOnTable"]
