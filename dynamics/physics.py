"""Rigid-body simulation of the memory's geometry: the ``physics`` dynamics model.

Each object becomes a rigid body of its model's convex hull (:attr:`WorldState.hull`), its
lowest ring of vertices repeated down to the support it rests on (a memory never sees an
object's underside); a state without hulls gives prisms, each footprint outline
(:attr:`WorldState.outline`) extruded over the box's height. The static scaffold's heightmap
becomes boxes (one per run of cells at one height level, merged into rectangles) over a ground
plane at its floor; the pusher is a cylinder dragged along its commanded path by a stiff
constraint, as the generator drives it. Bullet (PyBullet, ``DIRECT``) then steps them at ``hz``:
contacts at the hulls' corners, sticking and slipping against the pusher, chains of contact of any
length, toppling and falling off edges all come from the engine, none from a hand-written rule.
Nothing is learned: masses and frictions are the generator's nominal ones (:class:`PhysicsConfig`).

The ``B`` rollouts of a batch are laid out on a grid in one engine, far enough apart never to
touch. The engine goes on from where it stopped when it is handed the state it returned last
(a rollout), or that state with only the agent replaced (imagination, where each frame gives the
agent's pose: the pushers are pulled there); any other state is loaded into it: poses, planar and
yaw velocities (contacts and tilting motions, which a state does not hold, start afresh). An object
the engine moved less than ``rest_tolerance`` (and turned less than ``rest_turn``) from the
state it was handed (and settled less than ``rest_settle``: Bullet keeps bodies a collision margin
apart, under a millimetre) is reported where it was, so that what nothing touches never drifts.

An object loaded at rest (slower than ``wake_speed``) is held where it is, touching neither the
scaffold nor other resting objects, until a pusher the agent moves, or a moving object, touches
it: a memory's estimate of a resting object (a hull a few millimetres into the table, an
underside it never saw) would otherwise pop up or topple by itself, and what nobody touches must
not move. A pusher loaded more than ``pass_overlap`` inside an object passes through it until
the two part, rather than the engine parting them within a step.

Conventions: world z-up metres; quaternions wxyz (PyBullet's xyzw only at its boundary).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pybullet as pb
import torch

from splatworld.dynamics.models import MODELS, DynamicsConfig, DynamicsModel, _advance_agent, _check_action, _yaw_quat
from splatworld.dynamics.state import Heightmap, WorldState, box_half, box_yaw, outline_angles
from splatworld.scene.transforms import quat_conjugate, quat_multiply, quat_to_rotmat, rotation_angle


@dataclass(frozen=True)
class PhysicsConfig:
    """What the engine is told about materials and pace (SI units)."""

    hz: int = 240  # physics steps per second (at 120 a pushed body sinks 4 mm into its support)
    solver_iterations: int = 15
    mass: float = 0.1  # kg per object: the memory does not see mass; quasi-static pushing hardly depends on it
    inertia_scale: float = 1.0  # times the inertia Bullet gives a hull of that mass (its bounding box's)
    friction: float = 0.6  # object lateral friction (Bullet multiplies the two bodies' coefficients)
    support_friction: float = 1.0  # the scaffold's
    pusher_friction: float = 0.5  # the pusher's
    pusher_mass: float = 2.0
    pusher_force: float = 300.0  # N: the constraint that drags the pusher along its commanded path
    level_tolerance: float = 0.01  # m: heightmap cells within this of one another form one surface
    rest_tolerance: float = 5e-4  # m: an object moved less than this by the engine in x-y ...
    rest_turn: float = 0.2  # degrees: ... turned less than this ...
    rest_settle: float = 2e-3  # ... and raised or lowered less than this (contacts keep a margin) is reported unmoved
    bottom_ring: float = 0.01  # m: hull vertices this close to its lowest point are extended down to the support
    wake_speed: float = 0.01  # m/s (rad/s for yaw): an object loaded slower than this rests until something touches it
    pass_overlap: float = 0.01  # m: a pusher loaded deeper than this inside an object passes through it until they part


def _xyzw(q: np.ndarray) -> list[float]:
    """PyBullet's xyzw order of a wxyz quaternion ``[4]``."""
    return [float(q[1]), float(q[2]), float(q[3]), float(q[0])]


def _wxyz(q) -> torch.Tensor:
    """``[4]`` wxyz of PyBullet's xyzw quaternion."""
    return torch.tensor([q[3], q[0], q[1], q[2]], dtype=torch.float64)


def scaffold_boxes(geometry: Heightmap, level_tolerance: float = 0.01) -> list[tuple[np.ndarray, np.ndarray]]:
    """The heightmap's cells above its floor as boxes ``(lo [3], hi [3])`` from the floor up: cells
    are grouped into height levels (sorted heights split where they jump by more than
    ``level_tolerance``; each level at its median height), and each level's cells merged into
    rectangles (runs along x, stacked along y while the run repeats)."""
    heights = geometry.heights.double().numpy()
    floor, cell = float(geometry.floor), float(geometry.cell)
    origin = geometry.origin.double().numpy()
    raised = heights > floor + level_tolerance
    if not raised.any():
        return []
    values = np.sort(heights[raised])
    cuts = values[1:][np.diff(values) > level_tolerance]
    level = np.searchsorted(cuts, heights, side="right")
    tops = [float(np.median(values[(np.searchsorted(cuts, values, side="right") == k)])) for k in range(len(cuts) + 1)]
    boxes = []
    for k, top in enumerate(tops):
        mask = raised & (level == k)
        open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) -> first row
        for row in range(mask.shape[0] + 1):
            runs = set()
            if row < mask.shape[0]:
                cols = np.flatnonzero(mask[row])
                if len(cols):
                    splits = np.flatnonzero(np.diff(cols) > 1)
                    runs = {(int(a), int(b) + 1) for a, b in zip(np.r_[cols[0], cols[splits + 1]], np.r_[cols[splits], cols[-1]])}
            for run in list(open_runs):
                if run not in runs:
                    first = open_runs.pop(run)
                    lo = np.array([origin[0] + run[0] * cell, origin[1] + first * cell, floor])
                    hi = np.array([origin[0] + run[1] * cell, origin[1] + row * cell, top])
                    boxes.append((lo, hi))
            for run in runs:
                open_runs.setdefault(run, row)
    return boxes


def prism_vertices(outline: np.ndarray, height: float) -> np.ndarray:
    """``[2K, 3]`` a prism over the footprint ``outline [K]`` (support along ``K`` evenly spaced
    directions, one vertex at that reach along each), ``height`` tall, centred on the origin."""
    angles = outline_angles(len(outline)).double().numpy()
    ring = np.stack([np.cos(angles) * outline, np.sin(angles) * outline], -1)
    return np.concatenate([np.c_[ring, np.full(len(ring), -height / 2)], np.c_[ring, np.full(len(ring), height / 2)]])


# Bullet collision groups: two bodies touch when each one's group is in the other's mask. Objects
# in motion keep Bullet's default (group 1, every mask); the pusher glides over the scaffold; an
# object at rest touches only pushers and objects in motion (what wakes it), not the scaffold.
_OBJECTS, _SCAFFOLD, _PUSHERS, _RESTING = 1, 2, 4, 8


class PhysicsModel(DynamicsModel):
    """Bullet stepping convex prisms of the memory's objects on boxes of its scaffold (module doc)."""

    name = "physics"

    def __init__(self, config: DynamicsConfig | None = None, physics: PhysicsConfig | None = None):
        super().__init__(config)
        self.physics = physics or PhysicsConfig()
        self._client: int | None = None
        self._key = None
        self._last: WorldState | None = None

    # -------------------------------------------------------------- engine
    def _connect(self) -> int:
        if self._client is None or not pb.isConnected(self._client):
            self._client = pb.connect(pb.DIRECT)
        return self._client

    def __del__(self):
        if self._client is not None and pb.isConnected(self._client):
            pb.disconnect(self._client)

    def _build(self, state: WorldState) -> None:
        """A new engine world for the batch's scaffold and object shapes."""
        p, cfg = self.physics, self.config
        client = self._connect()
        pb.resetSimulation(physicsClientId=client)
        pb.setGravity(0, 0, -9.81, physicsClientId=client)
        pb.setPhysicsEngineParameter(fixedTimeStep=1.0 / p.hz, numSolverIterations=p.solver_iterations,
                                     deterministicOverlappingPairs=1, physicsClientId=client)
        geometry = state.geometry
        boxes = scaffold_boxes(geometry, p.level_tolerance)
        # a grid keeps every world within metres of the origin, where Bullet's floats are fine
        span = float(geometry.cell) * max(geometry.heights.shape) + 2.0
        side = math.ceil(math.sqrt(state.batch))
        self._offsets = np.zeros((state.batch, 3))
        self._offsets[:, 0], self._offsets[:, 1] = np.arange(state.batch) % side * span, np.arange(state.batch) // side * span
        plane = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=client)
        # the scaffold as plain rigid bodies (maximal coordinates): PyBullet's default multibodies cost
        # the engine even when static (1.6x the batch's stepping time here); objects and pushers stay
        # multibodies, since turned into rigid bodies they push differently
        ground = pb.createMultiBody(0, plane, basePosition=[0, 0, float(geometry.floor)], useMaximalCoordinates=True,
                                    physicsClientId=client)
        statics = [ground]
        for offset in self._offsets:
            for lo, hi in boxes:
                shape = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=((hi - lo) / 2).tolist(), physicsClientId=client)
                statics.append(pb.createMultiBody(0, shape, basePosition=((hi + lo) / 2 + offset).tolist(),
                                                  useMaximalCoordinates=True, physicsClientId=client))
        for body in statics:
            pb.changeDynamics(body, -1, lateralFriction=p.support_friction, physicsClientId=client)
            pb.setCollisionFilterGroupMask(body, -1, _SCAFFOLD, _OBJECTS, physicsClientId=client)
        shapes = self._shapes(state)
        valid = state.valid.cpu().numpy()
        self._bodies = np.full(valid.shape, -1, dtype=np.int64)
        self._resting: set[int] = set()  # bodies made static where they were loaded (:meth:`_rest`)
        self._inertia: dict[int, list[float]] = {}  # body -> its inertia diagonal, restored when it wakes
        for b, n in zip(*np.nonzero(valid)):
            shape = pb.createCollisionShape(pb.GEOM_MESH, vertices=shapes[b, n].tolist(), physicsClientId=client)
            # each body made in its own rollout's world: made at the origin, all of them would overlap
            # there, and the engine's pair cache, which every later change of a body scans, would hold them all
            body = pb.createMultiBody(p.mass, shape, basePosition=self._offsets[b].tolist(), physicsClientId=client)
            inertia = np.asarray(pb.getDynamicsInfo(body, -1, physicsClientId=client)[2]) * p.inertia_scale
            pb.changeDynamics(body, -1, lateralFriction=p.friction, rollingFriction=0.001, spinningFriction=0.001,
                              localInertiaDiagonal=inertia.tolist(), physicsClientId=client)
            self._bodies[b, n] = body
            self._inertia[body] = inertia.tolist()
        self._pushers, self._constraints = [], []
        self._pusher_batch: dict[int, int] = {}  # pusher body -> its rollout
        self._passing: set[tuple[int, int]] = set()  # (pusher, object) let pass through each other (:meth:`_load`)
        pusher_shape = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=cfg.agent_radius, height=cfg.agent_height,
                                               physicsClientId=client)
        for b in range(state.batch):
            pusher = pb.createMultiBody(p.pusher_mass, pusher_shape, basePosition=self._offsets[b].tolist(),
                                        physicsClientId=client)
            pb.changeDynamics(pusher, -1, lateralFriction=p.pusher_friction, physicsClientId=client)
            pb.setCollisionFilterGroupMask(pusher, -1, _PUSHERS, _OBJECTS | _RESTING, physicsClientId=client)
            self._pushers.append(pusher)
            self._pusher_batch[pusher] = b
            self._constraints.append(pb.createConstraint(pusher, -1, -1, -1, pb.JOINT_FIXED, [0, 0, 0], [0, 0, 0],
                                                         [0, 0, 0], physicsClientId=client))

    def _shapes(self, state: WorldState) -> np.ndarray:
        """``[B, N, M, 3]`` each object's collision vertices in the frame its body is loaded in
        (:meth:`_load`). With hulls: the hull in the box frame, its lowest ring (vertices within
        ``bottom_ring`` of its lowest point, as the box stands in ``state``) repeated down to the
        support, since a memory sees no object's underside and its model stops short of the
        table. Without: prisms of the outlines, in the frame turned by the box's yaw."""
        heights = (2 * box_half(state.quat, state.extent)[..., 2]).double().cpu().numpy()
        self._heights = heights
        if state.hull is None:
            outline = state.outline.double().cpu().numpy()
            return np.stack([np.stack([prism_vertices(o, h) for o, h in zip(row, hrow)]) for row, hrow in zip(outline, heights)])
        hull = state.hull.double().cpu().numpy()
        rotation = quat_to_rotmat(state.quat.double()).cpu().numpy()  # [B, N, 3, 3] world_from_box
        rest = state.rest_height.double().cpu().numpy()
        world = np.einsum("bnij,bnvj->bnvi", rotation, hull)
        lowest = world[..., 2].min(-1, keepdims=True)
        ring = world[..., 2] < lowest + self.physics.bottom_ring
        floor = np.minimum(-rest[..., None], lowest)
        base = np.where(ring[..., None], np.concatenate([world[..., :2], np.broadcast_to(floor[..., None], world[..., :1].shape)], -1),
                        world)
        return np.einsum("bnji,bnvj->bnvi", rotation, np.concatenate([world, base], -2))

    def _load(self, state: WorldState) -> None:
        """Set every engine body to ``state``: objects resting on their support at their
        positions, turned to their yaw, moving at their planar and yaw velocities; pushers at the agent."""
        client = self._client
        position = state.position.double().cpu().numpy()
        velocity = state.velocity.double().cpu().numpy()
        yaw = box_yaw(state.quat).double().cpu()
        yaw_rate = state.yaw_rate.double().cpu().numpy()
        agent = state.agent.double().cpu().numpy()
        if state.hull is not None:  # hulls are in the box frame: bodies take the boxes' poses
            self._frames = state.quat.double().cpu().clone()
            centre_z = position[..., 2]
        else:  # a prism turns with the box's yaw only and stands on the box's bottom
            self._frames = _yaw_quat(yaw)
            centre_z = state.bottom().double().cpu().numpy() + self._heights / 2
        self._lift = position[..., 2] - centre_z  # the state's box centre above the body's
        moving = (np.linalg.norm(velocity, axis=-1) > self.physics.wake_speed) | (np.abs(yaw_rate) > self.physics.wake_speed)
        velocity, yaw_rate = np.where(moving[..., None], velocity, 0.0), np.where(moving, yaw_rate, 0.0)
        for b, n in zip(*np.nonzero(self._bodies >= 0)):
            body = int(self._bodies[b, n])
            if moving[b, n] and body in self._resting:
                self._wake(body)
            centre = (np.r_[position[b, n, :2], centre_z[b, n]] + self._offsets[b]).tolist()
            pb.resetBasePositionAndOrientation(body, centre, _xyzw(self._frames[b, n]), physicsClientId=client)
            pb.resetBaseVelocity(body, velocity[b, n].tolist(), [0.0, 0.0, float(yaw_rate[b, n])], physicsClientId=client)
            if not moving[b, n] and body not in self._resting:
                self._rest(body)
        self._targets = agent + self._offsets
        for b, pusher in enumerate(self._pushers):
            pb.resetBasePositionAndOrientation(pusher, self._targets[b].tolist(), [0, 0, 0, 1], physicsClientId=client)
            pb.resetBaseVelocity(pusher, [0, 0, 0], [0, 0, 0], physicsClientId=client)
            pb.changeConstraint(self._constraints[b], self._targets[b].tolist(), maxForce=self.physics.pusher_force,
                                physicsClientId=client)
        self._pass_through_overlaps()

    def _pass_through_overlaps(self) -> None:
        """Let each pusher pass through the objects it is loaded more than ``pass_overlap`` inside,
        until they part (:meth:`_part`). A memory's estimate may have the agent deep in an object's
        hull (in a concavity the convex hull closes, or a hull grown by sensor noise at its rim); the
        engine would part the two within a step, launching a resting teddy at 30 cm/s."""
        client = self._client
        for pair in self._passing:
            pb.setCollisionFilterPair(*pair, -1, -1, 1, physicsClientId=client)
        self._passing.clear()
        for b, pusher in enumerate(self._pushers):
            for body in self._bodies[b][self._bodies[b] >= 0].tolist():
                closest = pb.getClosestPoints(pusher, body, 0.0, physicsClientId=client)
                if closest and min(c[8] for c in closest) < -self.physics.pass_overlap:
                    pb.setCollisionFilterPair(pusher, body, -1, -1, 0, physicsClientId=client)
                    self._passing.add((pusher, body))

    def _part(self) -> None:
        """Collide again each pusher and object let pass through each other once they no longer overlap."""
        client = self._client
        for pair in list(self._passing):
            if not pb.getClosestPoints(*pair, 0.0, physicsClientId=client):
                pb.setCollisionFilterPair(*pair, -1, -1, 1, physicsClientId=client)
                self._passing.discard(pair)

    # -------------------------------------------------------------- model
    def propose(self, state, action):
        raise NotImplementedError("PhysicsModel steps the engine: use step / advance")

    def advance(self, state: WorldState, action: torch.Tensor) -> tuple[WorldState, torch.Tensor]:
        _check_action(state, action)
        if state is not self._last:  # the state the engine returned last holds the shapes it was built with
            if self._agent_moved_only(state):
                self._move_pushers(state.agent.double().cpu().numpy())
            else:
                shape = state.outline if state.hull is None else state.hull
                key = (id(state.geometry), state.batch, shape.shape, hash(shape.double().cpu().numpy().tobytes()),
                       hash(state.valid.cpu().numpy().tobytes()))
                if key != self._key:
                    self._build(state)
                    self._key = key
                self._load(state)
        p, client = self.physics, self._client
        steps = max(1, round(self.config.dt * p.hz))
        command = action.double().cpu().numpy()
        driven = np.linalg.norm(command, axis=-1) > p.wake_speed  # [B] pushers the agent moves this step
        for _ in range(steps):
            self._targets[:, :2] += command / p.hz
            for b, constraint in enumerate(self._constraints):
                pb.changeConstraint(constraint, self._targets[b].tolist(), maxForce=p.pusher_force, physicsClientId=client)
            pb.stepSimulation(physicsClientId=client)
            if self._resting:
                self._wake_touched(driven)
            if self._passing:
                self._part()
        nxt = self._read(state)
        agent, time = _advance_agent(state, action.to(state.agent), self.config.dt)
        nxt = nxt.replace(agent=agent, time=time)
        self._last = nxt
        moved = (nxt.position != state.position).any(-1) | (nxt.quat != state.quat).any(-1)
        return nxt, moved & state.valid

    def _rest(self, body: int) -> None:
        """Hold ``body`` where it is, out of the scaffold's reach, until a pusher the agent moves, or
        a moving object, touches it (:meth:`_wake_touched`): a memory's estimate of a resting object
        (a hull sunk a few millimetres into the table, a base it never saw) must not set it moving by
        itself. The engine holds it as a static body (mass 0): nothing to integrate or solve for,
        which is most of the engine's work in a batch of rollouts where most objects lie still."""
        client = self._client
        pb.changeDynamics(body, -1, mass=0.0, physicsClientId=client)
        pb.setCollisionFilterGroupMask(body, -1, _RESTING, _OBJECTS | _PUSHERS, physicsClientId=client)
        self._resting.add(body)

    def _wake(self, body: int) -> None:
        """Let a resting object move: its mass and inertia back, the scaffold under it again."""
        client = self._client
        self._resting.remove(body)
        pb.changeDynamics(body, -1, mass=self.physics.mass, localInertiaDiagonal=self._inertia[body], physicsClientId=client)
        pb.setCollisionFilterGroupMask(body, -1, _OBJECTS, -1, physicsClientId=client)

    def _wake_touched(self, driven: np.ndarray) -> None:
        """Wake the resting objects touched (one engine step's contacts; resting objects touch
        nothing else) by a pusher the agent moves (``driven [B]``) or by a moving object. A pusher
        the agent holds still does not wake them, even as the engine shoves it: a memory's estimate
        may have the agent a few millimetres into an object it stopped beside, and the engine
        pushing the two apart would move what nobody pushes."""
        client, speed = self._client, self.physics.wake_speed
        for contact in pb.getContactPoints(physicsClientId=client):
            for body, other in ((contact[1], contact[2]), (contact[2], contact[1])):
                if body not in self._resting:
                    continue
                b = self._pusher_batch.get(other)
                if b is not None:
                    moving = driven[b]
                else:
                    moving = np.linalg.norm(pb.getBaseVelocity(other, physicsClientId=client)[0]) > speed
                if moving:
                    self._wake(body)

    def _agent_moved_only(self, state: WorldState) -> bool:
        """Whether ``state`` is the state the engine returned last with only the agent (and the
        clock) replaced, as imagination does when a frame gives the agent's pose: the engine
        goes on, keeping the contacts and the tilting motions a state does not hold."""
        last = self._last
        return last is not None and all(getattr(state, f.name) is getattr(last, f.name)
                                        for f in dataclasses.fields(WorldState) if f.name not in ("agent", "time"))

    def _move_pushers(self, agent: np.ndarray) -> None:
        """Drag each pusher to ``agent [B, 3]``, or put it there if that is more than its radius
        from where it was headed (a jump, not a drift of integrated commands)."""
        targets = agent + self._offsets
        for b, pusher in enumerate(self._pushers):
            off = np.linalg.norm(targets[b] - self._targets[b])
            if off > self.config.agent_radius:
                pb.resetBasePositionAndOrientation(pusher, targets[b].tolist(), [0, 0, 0, 1], physicsClientId=self._client)
                pb.resetBaseVelocity(pusher, [0, 0, 0], [0, 0, 0], physicsClientId=self._client)
            if off > 1e-9:  # below, rounding between the summed sub-steps and the agent's one step
                self._targets[b] = targets[b]

    def _read(self, state: WorldState) -> WorldState:
        """The engine's bodies as the next state (objects it barely moved reported unmoved)."""
        client, p = self._client, self.physics
        position = state.position.double().cpu().numpy().copy()
        quat = state.quat.double().cpu().clone()
        velocity = np.zeros_like(position)
        yaw_rate = np.zeros(position.shape[:2])
        for b, n in zip(*np.nonzero(self._bodies >= 0)):
            body = int(self._bodies[b, n])
            if body in self._resting:
                continue
            centre, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=client)
            linear, angular = pb.getBaseVelocity(body, physicsClientId=client)
            now = _wxyz(orientation)
            turn = quat_multiply(now, quat_conjugate(self._frames[b, n]))  # since the pose last reported
            new = np.array(centre) - self._offsets[b]
            new[2] += self._lift[b, n]
            still = (np.linalg.norm(new[:2] - position[b, n, :2]) < p.rest_tolerance
                     and float(rotation_angle(quat_to_rotmat(turn))) < p.rest_turn
                     and abs(new[2] - position[b, n, 2]) < p.rest_settle)
            if still:
                continue  # the frame stays the one the reported pose matches, so small turns add up
            self._frames[b, n] = now
            position[b, n] = new
            quat[b, n] = quat_multiply(turn, quat[b, n])
            velocity[b, n] = linear
            yaw_rate[b, n] = angular[2]
        t = lambda a: torch.as_tensor(a, dtype=state.position.dtype, device=state.device)  # noqa: E731
        quat = t(quat)
        return state.replace(position=t(position), quat=quat / torch.linalg.norm(quat, dim=-1, keepdim=True),
                             velocity=t(velocity), yaw_rate=t(yaw_rate))


MODELS[PhysicsModel.name] = PhysicsModel
