"""Replays of an episode's pusher commands from a chosen state of its world.

The generator's physics is deterministic, so a push replayed from the true state at its start
ends where the episode says (to the solver's warm-starting, a few millimetres). Replayed from a
state moved a little, it shows how much the push's outcome depends on that state: the error a
dynamics model must make when the memory hands it a state that far off, whatever its physics.
"""

from __future__ import annotations

import numpy as np
import pybullet as pb
from omegaconf import DictConfig
from scipy.spatial.transform import Rotation

from splatworld.errors import ShapeError
from splatworld.sim.generate import AGENT_Z, PHYSICS_HZ, build_tabletop, drive_pusher, object_pose, visual_mesh


def _matrix(position, quat_xyzw) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat(quat_xyzw).as_matrix()
    m[:3, 3] = position
    return m


class PushReplay:
    """The world of ``scenario`` and ``seed`` as :func:`~splatworld.sim.generate.build_tabletop`
    builds it (the same objects, sizes, masses and frictions as the episode), to set and push.
    Poses are the episode's ground-truth box-centre poses, ``[7]`` xyz + wxyz."""

    def __init__(self, scenario: DictConfig, seed: int, fps: float = 10.0):
        self.scene = build_tabletop(scenario, seed)
        self.client = self.scene.world.client
        self.bodies = self.scene.world.object_bodies
        self.names = [self.scene.names[b] for b in self.bodies]
        self.substeps = max(1, round(PHYSICS_HZ / fps))
        bounds = {b: visual_mesh(self.client, b).bounds for b in self.bodies}
        self.centres = {b: bounds[b].mean(axis=0) for b in self.bodies}
        self.extents = [bounds[b][1] - bounds[b][0] for b in self.bodies]  # [N] box sizes, as in ground truth
        # the box frame of a body relative to its base: fixed, so a box pose gives the base pose
        self.box_to_base = {}
        for b in self.bodies:
            base = _matrix(*pb.getBasePositionAndOrientation(b, physicsClientId=self.client))
            self.box_to_base[b] = np.linalg.inv(object_pose(self.client, b, self.centres[b])[1]) @ base

    def push(self, poses: np.ndarray, agent_xy: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Set every object at rest at ``poses [N, 7]`` and the pusher at ``agent_xy [2]``, drive
        the pusher by ``actions [H, 2]`` (m/s, one per frame); the box-centre poses ``[N, 7]`` after."""
        poses = np.asarray(poses, dtype=np.float64)
        if poses.shape != (len(self.bodies), 7):
            raise ShapeError(f"PushReplay.push: poses must be [{len(self.bodies)}, 7], got {list(poses.shape)}")
        for body, pose in zip(self.bodies, poses):
            base = _matrix(pose[:3], [*pose[4:], pose[3]]) @ self.box_to_base[body]
            pb.resetBasePositionAndOrientation(body, base[:3, 3].tolist(),
                                               Rotation.from_matrix(base[:3, :3]).as_quat().tolist(),
                                               physicsClientId=self.client)
            pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)
        pb.resetBasePositionAndOrientation(self.scene.agent, [agent_xy[0], agent_xy[1], AGENT_Z], [0, 0, 0, 1],
                                           physicsClientId=self.client)
        pb.resetBaseVelocity(self.scene.agent, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)
        target = np.asarray(agent_xy[:2], dtype=np.float64)
        for action in np.asarray(actions, dtype=np.float64):
            target = drive_pusher(self.scene, target, action, self.substeps)
        return np.stack([object_pose(self.client, b, self.centres[b])[0] for b in self.bodies])

    def close(self) -> None:
        self.scene.world.close()
