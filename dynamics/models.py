"""Dynamics models: ``step(state, action) -> state`` over a batched :class:`WorldState`.

Every model proposes per-object planar increments (x-y translation, yaw); one shared layer
then applies the scaffold's geometry (:func:`apply_constraints`): objects do not enter walls or
each other, rest on the support surface under them, and fall when their centre leaves it.
The agent follows its commanded planar velocity.

Models: ``static`` (nothing moves), ``constant_velocity``, ``learned``
(:class:`InteractionModel`: a graph network over the objects and the agent, with hard contact
gating so that an object nothing touches gets exactly zero increment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from splatworld.dynamics.pushing import limit_surface_length, quasi_static_push
from splatworld.dynamics.state import (FOOTPRINT_PROBES, Heightmap, Trajectory, WorldState, box_half, box_yaw, obstacle_height,
                                       outline_angles, outline_support, support_under)
from splatworld.errors import ConfigError, ShapeError, lookup
from splatworld.scene.transforms import quat_multiply

GRAVITY = 9.81


@dataclass(frozen=True)
class DynamicsConfig:
    """Constants shared by every model (metres, seconds)."""

    dt: float = 0.1  # one step: one frame at 10 fps
    agent_radius: float = 0.025
    agent_height: float = 0.1  # the pusher is a cylinder this tall centred on the agent position
    contact_margin: float = 0.015  # gap below which the agent or a neighbour may be touching
    moving_speed: float = 0.01  # m/s: a neighbour faster than this can push an object it touches
    step_height: float = 0.015  # static surfaces higher than an object's bottom by more are walls
    fall_gap: float = 0.01  # support this far below an object's bottom: it falls
    push_cosine: float = 0.3  # the agent pushes only while moving into an object within ~73 deg of its contact normal
    push_out: bool = True  # the learned model never lets the pusher into an object (:func:`push_out_of_agent`)
    prior: str = "none"  # none | quasi_static: the learned model adds its output to quasi-static pushing (:func:`pusher_increments`)
    pusher_friction: float = 0.3  # pusher-object friction of quasi-static pushing (PyBullet: 0.5 x 0.6; benchmarks/fit_pushing.py)
    limit_surface_scale: float = 1.0  # times the footprint's mean distance from its centre: quasi-static pushing's c
    hidden: int = 64

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ConfigError(f"DynamicsConfig.prior: unknown {self.prior!r}; valid: {sorted(PRIORS)}")


PRIORS = ("none", "quasi_static")


# ------------------------------------------------------------------ shared pieces
def _yaw_quat(yaw: torch.Tensor) -> torch.Tensor:
    """``[...]`` yaw angles -> ``[..., 4]`` wxyz rotations about world z."""
    zeros = torch.zeros_like(yaw)
    return torch.stack([torch.cos(yaw / 2), zeros, zeros, torch.sin(yaw / 2)], dim=-1)


def _pair_gaps(xy: torch.Tensor, half: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]`` clearances between footprints (centres ``xy [B, N, 2]``, half sizes
    ``half [B, N, 2]``); ``inf`` on the diagonal and for invalid slots."""
    pair = xy[:, None] - xy[:, :, None]  # [B, i, j]: j - i
    gap = torch.linalg.norm((pair.abs() - half[:, :, None] - half[:, None]).clamp(min=0), dim=-1)
    invalid = ~(valid[:, :, None] & valid[:, None, :]) | torch.eye(xy.shape[1], dtype=torch.bool, device=xy.device)
    return gap.masked_fill(invalid, math.inf)


def outline_gaps(state: WorldState, agent_radius: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clearances of the objects' footprint outlines (:attr:`WorldState.outline`), the largest
    separation along the outline's ``K`` world directions (separating axes; within a few percent of
    the true distance for convex footprints, never above it).

    Returns ``(agent_gap [B, N], into [B, N, 2], pair_gap [B, N, N])``: the agent's (a disc of
    ``agent_radius``) clearance to each object, the unit direction a push from the agent drives
    into the object (the separating axis; towards the centre when the agent's centre is inside the
    outline), and the clearances between objects (``inf`` on the diagonal and for invalid slots)."""
    angles = outline_angles(state.outline.shape[-1]).to(state.position)
    xy = state.position[..., :2]
    # the agent against each object's own outline directions, so that a turned box's faces stay
    # its faces (no world-direction interpolation; contact normals are face normals)
    own = angles + box_yaw(state.quat)[..., None]  # [B, N, K]
    own_axes = torch.stack([own.cos(), own.sin()], -1)  # [B, N, K, 2]
    separation = ((state.agent[:, None, None, :2] - xy[..., None, :]) * own_axes).sum(-1) - state.outline
    agent_gap, best = separation.max(-1)
    into = -own_axes.gather(-2, best[..., None, None].expand(*best.shape, 1, 2)).squeeze(-2)
    axes = torch.stack([angles.cos(), angles.sin()], -1)  # [K, 2]
    reach = state.support(angles)  # [B, N, K]
    centre = xy - state.agent[:, None, :2]
    length = torch.linalg.norm(centre, dim=-1, keepdim=True)
    into = torch.where((agent_gap < 0)[..., None] & (length > 1e-9), centre / length.clamp(min=1e-9), into)
    agent_gap = torch.where(state.valid, agent_gap - agent_radius, torch.full_like(agent_gap, math.inf))
    opposite = reach.roll(reach.shape[-1] // 2, dims=-1)  # reach along -axis k
    pair = (xy[:, None] - xy[:, :, None]) @ axes.T  # [B, i, j, K]: (j - i) along each axis
    pair_gap = (pair - reach[:, :, None] - opposite[:, None]).max(-1).values
    invalid = (~(state.valid[:, :, None] & state.valid[:, None, :])
               | torch.eye(state.n_objects, dtype=torch.bool, device=xy.device))
    return agent_gap, into, pair_gap.masked_fill(invalid, math.inf)


def pushing_into(into: torch.Tensor, action: torch.Tensor, min_cosine: float) -> torch.Tensor:
    """``[B, N]`` whether the agent's velocity ``action [B, 2]`` drives into each object: its
    cosine with ``into [B, N, 2]`` (:func:`outline_gaps`) exceeds ``min_cosine``. A pusher
    sliding along a side, or moving away, does not push."""
    cosine = (into * action[:, None]).sum(-1) / torch.linalg.norm(action, dim=-1)[:, None].clamp(min=1e-12)
    return cosine > min_cosine


@dataclass(frozen=True)
class Contacts:
    """Who touches whom in one step (:func:`find_contacts`); ``[B, N]`` unless stated."""

    agent_gap: torch.Tensor  # the pusher's clearance to each object (:func:`outline_gaps`)
    into: torch.Tensor  # [B, N, 2] the direction a push from the pusher drives into each object
    pair_gap: torch.Tensor  # [B, N, N] clearances between objects
    level: torch.Tensor  # the pusher is at the object's height
    agent_live: torch.Tensor  # the pusher pushes the object this step
    pair_live: torch.Tensor  # [B, i, j] neighbour j pushes object i this step


def find_contacts(state: WorldState, action: torch.Tensor, cfg: DynamicsConfig) -> Contacts:
    """The contacts of a step under pusher velocities ``action [B, 2]``: the pusher pushes an
    object within ``contact_margin`` plus its step's travel, while it moves into it at its height;
    a neighbour touches an object while it moves or is being pushed itself."""
    agent_gap, into, pair_gap = outline_gaps(state, cfg.agent_radius)
    reach = cfg.contact_margin + torch.linalg.norm(action, dim=-1, keepdim=True) * cfg.dt
    toward = pushing_into(into, action, cfg.push_cosine)
    half_z = box_half(state.quat, state.extent)[..., 2]
    level = (state.position[..., 2] - state.agent[:, None, 2]).abs() < half_z + cfg.agent_height / 2
    # a still agent pushes nothing, a pusher moving away from or along an object does not drag
    # it, and one above or below an object (on the table, the object fallen to the floor) misses it
    agent_live = (agent_gap < reach) & (reach > cfg.contact_margin) & toward & level
    speed = torch.linalg.norm(state.velocity[..., :2], dim=-1)
    moving = speed > cfg.moving_speed
    pair_live = (pair_gap < cfg.contact_margin + speed[:, None, :] * cfg.dt) & (moving[:, None, :] | agent_live[:, None, :])
    return Contacts(agent_gap, into, pair_gap, level, agent_live, pair_live)


def _face_push(state: WorldState, b: torch.Tensor, i: torch.Tensor, pusher: torch.Tensor, velocity: torch.Tensor,
               into: torch.Tensor, gap: torch.Tensor, cfg: DynamicsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of quasi-static pushing of objects ``(b, i)`` ``[M]`` by pushers at ``pusher [M, 2]``
    moving at ``velocity [M, 2]``, into their faces along ``into [M, 2]``, ``gap [M]`` away. The
    contact is the point of that face level with the pusher, kept within the face; the push lasts
    the part of the step after the gap closes. Returns ``(delta_xy [M, 2], delta_yaw [M])``."""
    centre = state.position[b, i, :2]
    side = torch.stack([-into[:, 1], into[:, 0]], -1)
    heading = torch.atan2(into[:, 1], into[:, 0])
    reach = outline_support(state.outline[b, i], state.quat[b, i],
                            torch.stack([heading + math.pi, heading + math.pi / 2, heading - math.pi / 2], -1))
    lateral = ((pusher - centre) * side).sum(-1)
    lateral = torch.minimum(torch.maximum(lateral, -reach[:, 2]), reach[:, 1])
    offset = -into * reach[:, :1] + side * lateral[:, None]
    c = cfg.limit_surface_scale * limit_surface_length(state.outline[b, i])
    v, omega = quasi_static_push(offset, into, velocity, c, cfg.pusher_friction)
    approach = (velocity * into).sum(-1) * cfg.dt
    share = ((approach - gap.clamp(min=0)) / approach.clamp(min=1e-9)).clamp(0, 1)
    return v * (share * cfg.dt)[:, None], omega * share * cfg.dt


def pusher_increments(state: WorldState, action: torch.Tensor, touch: Contacts,
                      cfg: DynamicsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(delta_xy [B, N, 2], delta_yaw [B, N])``: one step of quasi-static pushing
    (:func:`~splatworld.dynamics.pushing.quasi_static_push`) of each object the pusher pushes
    (``touch.agent_live``), and then of each object those push on in turn (a chain of two: the
    pushed object's step velocity, into the face of its neighbour that faces it); zero elsewhere."""
    delta_xy = torch.zeros_like(state.position[..., :2])
    delta_yaw = torch.zeros_like(state.position[..., 0])
    b, i = touch.agent_live.nonzero(as_tuple=True)
    if not len(b):
        return delta_xy, delta_yaw
    delta_xy[b, i], delta_yaw[b, i] = _face_push(state, b, i, state.agent[b, :2], action[b].to(delta_xy),
                                                 touch.into[b, i], touch.agent_gap[b, i], cfg)
    # neighbours j of a pushed object i it moves into: i is the pusher of j
    xy = state.position[..., :2]
    moving = touch.agent_live[:, :, None] & (touch.pair_gap < cfg.contact_margin) & ~touch.agent_live[:, None, :]
    b, i, j = moving.nonzero(as_tuple=True)
    if len(b):
        k = state.outline.shape[-1]
        own = outline_angles(k).to(xy) + box_yaw(state.quat[b, j])[:, None]  # [M, K] j's own directions
        axes = torch.stack([own.cos(), own.sin()], -1)
        facing = outline_support(state.outline[b, i], state.quat[b, i], own + math.pi)  # i's reach back along each
        separation = ((xy[b, i] - xy[b, j])[:, None] * axes).sum(-1) - state.outline[b, j] - facing
        gap, best = separation.max(-1)
        into = -axes[torch.arange(len(b)), best]
        velocity = delta_xy[b, i] / cfg.dt
        # the pushed neighbour keeps 1 mm ahead: touching footprints count as overlapping in
        # apply_constraints, which would stop the pushing object
        push_xy, push_yaw = _face_push(state, b, j, xy[b, i], velocity, into, gap - 0.001, cfg)
        pushing = ((velocity * into).sum(-1) > 0).to(push_xy)
        delta_xy.index_put_((b, j), push_xy * pushing[:, None], accumulate=True)
        delta_yaw.index_put_((b, j), push_yaw * pushing, accumulate=True)
    return delta_xy, delta_yaw


def push_out_of_agent(state: WorldState, action: torch.Tensor, delta_xy: torch.Tensor, delta_yaw: torch.Tensor,
                      agent_now: torch.Tensor, level: torch.Tensor, cfg: DynamicsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposed translations ``delta_xy [B, N, 2]`` lengthened so that the pusher, moved by ``action
    [B, 2]`` for a step, ends no deeper inside any object's outline (at its height: ``level [B, N]``)
    than it started (``agent_now [B, N]``: its clearances in ``state``, :func:`outline_gaps`): a rigid
    pusher carries what it drives into, whatever the proposal. An overlap the state already holds (a
    memory's estimate) is kept, never resolved, so that a still pusher moves nothing. Returns the
    translations and which objects ``[B, N]`` were pushed out."""
    moved = state.replace(position=state.position + torch.nn.functional.pad(delta_xy, (0, 1)),
                          quat=quat_multiply(_yaw_quat(delta_yaw), state.quat),
                          agent=state.agent + torch.nn.functional.pad(action, (0, 1)) * cfg.dt)
    agent_next, into, _ = outline_gaps(moved, cfg.agent_radius)
    deeper = (agent_now.clamp(max=0) - agent_next).clamp(min=0)  # [B, N] how much deeper the step would go
    pushed = (deeper > 0) & level & state.valid & torch.isfinite(agent_next)
    deeper = torch.where(pushed, deeper, torch.zeros_like(deeper))
    return delta_xy + into * deeper[..., None], pushed


_SIDES = torch.tensor([[1.0, 0.0], [-1, 0], [0, 1], [0, -1]])  # front, back, left, right
PUSH_FRAME_DIRECTIONS = 8  # the outline is shown to the model along these many directions of the push frame


def to_frame(v: torch.Tensor, heading: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` planar vectors in the frame whose x axis is the unit ``heading [..., 2]``."""
    return torch.stack([v[..., 0] * heading[..., 0] + v[..., 1] * heading[..., 1],
                        v[..., 1] * heading[..., 0] - v[..., 0] * heading[..., 1]], -1)


def from_frame(v: torch.Tensor, heading: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_frame`: ``[..., 2]`` vectors given in the ``heading`` frame, in world x-y."""
    return torch.stack([v[..., 0] * heading[..., 0] - v[..., 1] * heading[..., 1],
                        v[..., 0] * heading[..., 1] + v[..., 1] * heading[..., 0]], -1)


def reach_in_frame(outline: torch.Tensor, quat: torch.Tensor, heading: torch.Tensor) -> torch.Tensor:
    """``[..., 8]`` how far objects (``outline [..., K]``, ``quat [..., 4]``) reach from their box
    centres along the directions 0, 45, ..., 315 degrees from the unit ``heading [..., 2]``:
    index 0 is the front, 2 the left, 4 the back, 6 the right."""
    turns = torch.arange(PUSH_FRAME_DIRECTIONS, dtype=heading.dtype, device=heading.device) * (2 * math.pi / PUSH_FRAME_DIRECTIONS)
    return outline_support(outline, quat, torch.atan2(heading[..., 1], heading[..., 0])[..., None] + turns)


def drive_heading(state: WorldState, action: torch.Tensor, agent_live: torch.Tensor,
                  pair_live: torch.Tensor) -> torch.Tensor:
    """``[B, N, 2]`` unit x-y direction each object is driven in: the agent's velocity ``action
    [B, 2]`` where it pushes the object (``agent_live [B, N]``) plus the velocities of the
    neighbours pushing it (``pair_live [B, i, j]``: j pushes i); failing those, away from those
    neighbours; failing all, world x. The learned model sees each object in this frame, so what
    it learns of a push in one direction holds in every direction."""
    xy, velocity = state.position[..., :2], state.velocity[..., :2]
    live = pair_live.to(xy.dtype)
    drive = agent_live[..., None] * action[:, None].to(xy.dtype) + live @ velocity
    away = live.sum(-1, keepdim=True) * xy - live @ xy
    drive = torch.where(torch.linalg.norm(drive, dim=-1, keepdim=True) > 1e-6, drive, away)
    length = torch.linalg.norm(drive, dim=-1, keepdim=True)
    return torch.where(length > 1e-9, drive / length.clamp(min=1e-9), torch.tensor([1.0, 0.0], dtype=xy.dtype, device=xy.device))


def geometry_probes(state: WorldState, heading: torch.Tensor | None = None,
                    reach: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, N, 5]`` static height minus the object's bottom at its centre and 2 cm beyond its
    outline on each side (front, back, left, right of the unit ``heading [B, N, 2]``; world
    +x, -x, +y, -y without one), clipped to +-0.1 m: support and nearby walls. ``reach``: the
    outline along the heading frame ``[B, N, 8]`` (m, :func:`reach_in_frame`) if the caller has it."""
    xy = state.position[..., :2]
    if heading is None:
        heading = torch.zeros_like(xy)
        heading[..., 0] = 1.0
    reach = reach_in_frame(state.outline, state.quat, heading) if reach is None else reach
    sides = _SIDES.to(xy) * (reach[..., [0, 4, 2, 6]] + 0.02)[..., None]  # [B, N, 4, 2]
    offsets = torch.cat([torch.zeros_like(sides[..., :1, :]), from_frame(sides, heading[..., None, :])], -2)
    heights = state.geometry.height_at(xy[..., None, :] + offsets)
    return (heights - state.bottom()[..., None]).clamp(-0.1, 0.1)


def apply_constraints(state: WorldState, delta_xy: torch.Tensor, delta_yaw: torch.Tensor,
                      active: torch.Tensor, cfg: DynamicsConfig) -> WorldState:
    """Move objects by proposed increments inside the scaffold's geometry; return the next state.

    Args:
        delta_xy: ``[B, N, 2]`` proposed translations. delta_yaw: ``[B, N]`` proposed yaw increments.
        active: ``[B, N]`` objects being simulated this step; the others keep their pose
            exactly, unless their support is gone (they fall).
    """
    dt = cfg.dt
    geometry = state.geometry
    active = active & state.valid
    delta_xy = torch.where(active[..., None], delta_xy, torch.zeros_like(delta_xy))
    delta_yaw = torch.where(active, delta_yaw, torch.zeros_like(delta_yaw))
    xy = state.position[..., :2] + delta_xy
    half = state.half_xy()
    bottom = state.bottom()
    # Walls: a static surface under the moved footprint higher than the object's bottom by more
    # than a step blocks the move.
    blocked = (obstacle_height(geometry, xy, half) > bottom + cfg.step_height) & active
    # Other objects: a move that deepens an overlap of footprints (with vertical overlap) is blocked.
    before = _pair_gaps(state.position[..., :2], half, state.valid)
    after = _pair_gaps(xy, half, state.valid)
    z, hz = state.position[..., 2], state.extent.max(-1).values / 2  # vertical reach, orientation-free
    stacked = (z[:, :, None] - z[:, None]).abs() < hz[:, :, None] + hz[:, None]
    overlapping = (after <= 0) & (before > 0) & stacked
    blocked |= overlapping.any(-1) & active
    delta_xy = torch.where(blocked[..., None], torch.zeros_like(delta_xy), delta_xy)
    xy = state.position[..., :2] + delta_xy
    # Support: objects rest on the surface under them, or fall onto it once it is gone.
    support = support_under(geometry, xy, half) + state.rest_height
    z, vz = state.position[..., 2], state.velocity[..., 2]
    falling = (support < z - cfg.fall_gap) | (vz < 0)
    fall_z = torch.maximum(z + (vz - GRAVITY * dt) * dt, support)
    landed = fall_z <= support
    new_z = torch.where(falling, fall_z, torch.where(active, support, z))
    new_vz = torch.where(falling & ~landed, vz - GRAVITY * dt, torch.zeros_like(vz))
    new_z = torch.where(state.valid, new_z, z)
    # Falling off an edge, an object tips away from it: it ends clear of the surface it left
    # (a heightmap has no room under an overhang, so a footprint left under it would be inside).
    wall_top = new_z - state.rest_height + cfg.step_height  # higher static surfaces are walls at the new height
    inside = falling & state.valid & (obstacle_height(geometry, xy, half) > wall_top)
    if inside.any():
        xy = torch.where(inside[..., None], _clear_of_edges(geometry, xy, half, wall_top), xy)
    position = torch.cat([xy, new_z[..., None]], -1)
    quat = quat_multiply(_yaw_quat(delta_yaw), state.quat)
    velocity = torch.cat([delta_xy / dt, new_vz[..., None]], -1)
    return state.replace(position=position, quat=quat / torch.linalg.norm(quat, dim=-1, keepdim=True),
                         velocity=velocity, yaw_rate=delta_yaw / dt)


def _clear_of_edges(geometry: Heightmap, xy: torch.Tensor, half: torch.Tensor, top: torch.Tensor,
                    tries: int = 8) -> torch.Tensor:
    """``[..., 2]`` footprint centres ``xy`` moved, away from the footprint's probes over surfaces
    higher than ``top [...]``, by the smallest of ``tries`` steps of a quarter footprint that
    leaves the whole footprint, and the footprint grown by a heightmap cell so that it lands
    clear of the edge, over surfaces no higher than ``top`` (the largest step if none does)."""
    offsets = FOOTPRINT_PROBES.to(xy) * half[..., None, :]  # [..., 5, 2]
    high = geometry.height_at(xy[..., None, :] + offsets) > top[..., None]
    away = -(offsets * high[..., None]).sum(-2)
    away = away / torch.linalg.norm(away, dim=-1, keepdim=True).clamp(min=1e-9)
    steps = torch.arange(1, tries + 1, dtype=xy.dtype, device=xy.device) * 0.25 * half.max(-1).values[..., None]  # [..., tries]
    candidates = xy[..., None, :] + steps[..., None] * away[..., None, :]  # [..., tries, 2]
    exact = half[..., None, :].expand_as(candidates)
    # clear of the grown footprint and of the footprint itself: the heightmap is probed at the
    # centre and corners only, so the grown footprint's probes can land on a lower cell while
    # the footprint's own are still over the surface it falls past
    clear = ((obstacle_height(geometry, candidates, exact + geometry.cell) <= top[..., None])
             & (obstacle_height(geometry, candidates, exact) <= top[..., None]))
    first = torch.where(clear.any(-1), clear.int().argmax(-1), torch.full_like(clear[..., 0], tries - 1, dtype=torch.long))
    return candidates.gather(-2, first[..., None, None].expand(*first.shape, 1, 2)).squeeze(-2)


def _advance_agent(state: WorldState, action: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    agent = state.agent + torch.nn.functional.pad(action, (0, 1)) * dt
    return agent, state.time + dt


def _check_action(state: WorldState, action: torch.Tensor) -> None:
    if action.shape != (state.batch, 2):
        raise ShapeError(f"action: expected [B={state.batch}, 2] planar velocities, got {list(action.shape)}")


# ------------------------------------------------------------------------ models
class DynamicsModel(nn.Module):
    """Base: ``propose`` increments, then the shared constraints. Subclasses set ``name``."""

    name = "base"

    def __init__(self, config: DynamicsConfig | None = None):
        super().__init__()
        self.config = config or DynamicsConfig()

    def propose(self, state: WorldState, action: torch.Tensor):
        """``(delta_xy [B, N, 2], delta_yaw [B, N], active [B, N])`` for one step."""
        raise NotImplementedError

    def forward(self, state: WorldState, action: torch.Tensor):
        """The unconstrained proposal (what training fits; DDP needs it as ``forward``)."""
        return self.propose(state, action)

    def step(self, state: WorldState, action: torch.Tensor) -> WorldState:
        """One step of ``config.dt`` under planar agent velocities ``action [B, 2]`` (m/s)."""
        return self.advance(state, action)[0]

    def advance(self, state: WorldState, action: torch.Tensor) -> tuple[WorldState, torch.Tensor]:
        """:meth:`step`, and which objects ``[B, N]`` the model simulated in it (the others
        kept their pose, or fell)."""
        _check_action(state, action)
        delta_xy, delta_yaw, active = self(state, action.to(state.position))
        nxt = apply_constraints(state, delta_xy, delta_yaw, active, self.config)
        agent, time = _advance_agent(state, action.to(state.agent), self.config.dt)
        return nxt.replace(agent=agent, time=time), active & state.valid


class StaticModel(DynamicsModel):
    """Nothing moves (unsupported objects still fall)."""

    name = "static"

    def propose(self, state, action):
        zeros = torch.zeros_like(state.position[..., 0])
        return torch.zeros_like(state.position[..., :2]), zeros, zeros.bool()


class ConstantVelocityModel(DynamicsModel):
    """Every object keeps its current planar and yaw velocity."""

    name = "constant_velocity"

    def propose(self, state, action):
        dt = self.config.dt
        return state.velocity[..., :2] * dt, state.yaw_rate * dt, state.valid.clone()


class QuasiStaticModel(DynamicsModel):
    """Quasi-static pushing (:func:`pusher_increments`) with the pusher never entering an object
    (:func:`push_out_of_agent`); nothing learned. Objects move only while the pusher drives them,
    directly or through one pushed neighbour: no momentum."""

    name = "quasi_static"

    def propose(self, state, action):
        touch = find_contacts(state, action, self.config)
        delta_xy, delta_yaw = pusher_increments(state, action, touch, self.config)
        active = touch.agent_live | (delta_xy != 0).any(-1)
        if (action != 0).any():
            delta_xy, pushed = push_out_of_agent(state, action, delta_xy, delta_yaw, touch.agent_gap, touch.level, self.config)
            active = active | pushed
        return delta_xy, delta_yaw, active


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, outputs))


class InteractionModel(DynamicsModel):
    """A one-round graph network over objects and the agent with hard contact gating.

    Edges: agent -> object (relative position, outline gap, commanded velocity, the object's
    outline and velocity) and object j -> object i (relative position, gap, both velocities and
    outlines), each through an MLP; an edge only counts when its gap (:func:`outline_gaps`) is
    under ``contact_margin`` plus how far the pusher moves in the step (and, for the agent, only
    while it moves into the object, at its height: a pusher does not pull, nor reach the floor
    from the table). Node: the summed messages,
    the object's velocity and geometry probes (:func:`geometry_probes`) through an MLP to an
    x-y increment and a yaw increment. An object with no live edge (the agent still or away, no
    moving neighbour touching it) is inactive: exactly zero increment, so untouched objects
    never drift, however long the rollout.
    Every vector an object's edges and node see (relative positions, velocities, the action,
    the outlines, where the probes look) is taken in the frame of the push driving it
    (:func:`drive_heading`), and its increment turned back: a push learned in one direction
    holds in all (on held-out pushes this cut the 1 s error from 14 to 10 mm).
    Lengths are fed in centimetres, velocities in cm per step.
    """

    name = "learned"
    AGENT_FEATURES, PAIR_FEATURES, NODE_EXTRA = 7 + PUSH_FRAME_DIRECTIONS, 7 + 2 * PUSH_FRAME_DIRECTIONS, 8

    def __init__(self, config: DynamicsConfig | None = None):
        super().__init__(config)
        h = self.config.hidden
        self.agent_edge = _mlp(self.AGENT_FEATURES, h, h)
        self.pair_edge = _mlp(self.PAIR_FEATURES, h, h)
        self.node = _mlp(h + self.NODE_EXTRA, h, 3)

    def propose(self, state, action):
        cfg = self.config
        cm, per_step = 100.0, 100.0 * cfg.dt  # metres -> cm; m/s -> cm per step
        vel = state.velocity[..., :2] * per_step
        touch = find_contacts(state, action, cfg)
        agent_gap, pair_gap, agent_live, pair_live = touch.agent_gap, touch.pair_gap, touch.agent_live, touch.pair_live
        dtype = self.node[0].weight.dtype  # features in the weights' precision, results in the state's
        # Each object's vectors are taken in the frame of the push driving it (drive_heading).
        heading = drive_heading(state, action, agent_live, pair_live)
        # The MLPs run on live edges and active objects only: the rest contribute exactly zero, and
        # in a planner's batch most rollouts touch nothing at most steps.
        active = agent_live | pair_live.any(-1)
        b, i = active.nonzero(as_tuple=True)
        dev = state.device
        outline_frame = torch.zeros(*active.shape, PUSH_FRAME_DIRECTIONS, dtype=state.position.dtype, device=dev)
        outline_frame[b, i] = reach_in_frame(state.outline[b, i], state.quat[b, i], heading[b, i])
        message = torch.zeros(*agent_live.shape, self.config.hidden, dtype=dtype, device=dev)
        b, i = agent_live.nonzero(as_tuple=True)
        if len(b):
            u = heading[b, i]
            agent_in = torch.cat([to_frame(state.agent[b, :2] - state.position[b, i, :2], u) * cm,
                                  agent_gap[b, i, None].clamp(max=0.2) * cm, to_frame(action[b], u) * per_step,
                                  outline_frame[b, i] * cm, to_frame(vel[b, i], u)], -1)
            message[b, i] = self.agent_edge(agent_in.to(dtype))
        b, i, j = pair_live.nonzero(as_tuple=True)
        if len(b):
            u = heading[b, i]
            pair_in = torch.cat([to_frame(state.position[b, j, :2] - state.position[b, i, :2], u) * cm,
                                 pair_gap[b, i, j, None].clamp(max=0.2) * cm, to_frame(vel[b, j], u),
                                 to_frame(vel[b, i], u), outline_frame[b, i] * cm,
                                 reach_in_frame(state.outline[b, j], state.quat[b, j], u) * cm], -1)
            message.index_put_((b, i), self.pair_edge(pair_in.to(dtype)), accumulate=True)
        out = torch.zeros(*active.shape, 3, dtype=state.position.dtype, device=dev)
        b, i = active.nonzero(as_tuple=True)
        if len(b):
            u = heading[b, i]
            probes = geometry_probes(state, heading, outline_frame)[b, i] * cm
            extra = torch.cat([to_frame(vel[b, i], u), state.yaw_rate[b, i, None] * cfg.dt, probes], -1)
            local = self.node(torch.cat([message[b, i], extra.to(dtype)], -1)).to(out.dtype)
            out[b, i] = torch.cat([from_frame(local[:, :2], u), local[:, 2:]], -1)
        delta_xy, delta_yaw = out[..., :2] / cm, out[..., 2] * 0.1
        if cfg.prior == "quasi_static":
            prior_xy, prior_yaw = pusher_increments(state, action, touch, cfg)
            delta_xy, delta_yaw = delta_xy + prior_xy, delta_yaw + prior_yaw
        if cfg.push_out and (action != 0).any():
            delta_xy, pushed = push_out_of_agent(state, action, delta_xy, delta_yaw, agent_gap, touch.level, cfg)
            active = active | pushed
        return delta_xy, delta_yaw, active


MODELS = {m.name: m for m in (StaticModel, ConstantVelocityModel, QuasiStaticModel, InteractionModel)}


def make_model(name: str, config: DynamicsConfig | None = None) -> DynamicsModel:
    return lookup(MODELS, name, "dynamics model")(config)


@torch.no_grad()
def rollout(model: DynamicsModel, state: WorldState, actions: torch.Tensor) -> Trajectory:
    """Roll ``B`` action sequences ``actions [B, H, 2]`` out from ``state`` (batch B, or 1:
    repeated). Returns the ``H`` states after each step as a :class:`Trajectory`, on the state's
    device (model, state and actions may live on CUDA: :meth:`WorldState.to`)."""
    if actions.dim() != 3 or actions.shape[-1] != 2:
        raise ShapeError(f"actions: expected [B, H, 2], got {list(actions.shape)}")
    actions = actions.to(state.device)
    if state.batch == 1 and actions.shape[0] != 1:
        state = state.repeat(actions.shape[0])
    states = []
    for h in range(actions.shape[1]):
        state = model.step(state, actions[:, h])
        states.append(state)
    return Trajectory.stack(states)
