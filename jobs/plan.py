"""``push_to_goal``: closed-loop MPC on the scene memory, with PyBullet as the real world.

A seeded table: the target object, a goal point 20-30 cm from it, the pusher parked far behind
it, one object on the way from the pusher to the target (the *blocker*) and a few others. The
camera first looks over the whole table (``look_seconds``), then moves in to a close view over
the target and the goal (``zoom_seconds``): from then on the blocker and the pusher's start are
out of view. Every control step (the dynamics' ``dt``):

1. PyBullet's TinyRenderer draws the camera frame (RGB, depth, segmentation);
2. the memory observes it;
3. once the camera has settled, the planner replans on the memory's state (``memory=full``: every
   remembered object; ``memory=memoryless``: objects unseen for ``forget_after`` s dropped);
4. its first action drives the pusher in PyBullet for one step.

The run ends when the target's centre is within ``success_radius`` of the goal, or at
``time_limit``. Contacts of the pusher or the target with any other object are collisions; a
collision is *out of view* when that object showed no pixel in the latest frame.
Writes ``out/result.json`` and ``out/run.mp4`` (the camera with the goal, the planned pusher
path and the predicted target path drawn over it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as pb
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw

from splatworld.atomic import atomic_write_text
from splatworld.dynamics.train import load_dynamics
from splatworld.errors import ConfigError, lookup
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.planning.costs import Collision, CostSum, GoalDistance, PushApproach, Smoothness, StayOnTable
from splatworld.planning.planners import PlannerConfig, make_planner
from splatworld.planning.state import as_float32, planning_state
from splatworld.progress import progress_bar
from splatworld.render.video import FrameWriter
from splatworld.scene.cameras import Camera, look_at
from splatworld.scene.episode import DEFAULT_AGENT_LABEL, Frame, FrameInfo
from splatworld.sim.generate import (OBJECT_LIBRARY, PHYSICS_HZ, Tabletop, add_object, add_pusher, drive_pusher,
                                     object_pose, table_client, visual_mesh)
from splatworld.sim.policies import PUSHER_REACH
from splatworld.sim.pybullet_scene import TABLE_TOP_Z, World, render_tinyrenderer

TASKS = ("push_to_goal",)
MEMORY_MODES = ("full", "memoryless")


@dataclass(frozen=True)
class PushLayout:
    """Where things start. ``objects[0]`` is the target, ``objects[1]`` the blocker; each is
    ``(name, x, y, yaw)``. ``goal`` and ``agent`` are x-y points on the table."""

    objects: tuple[tuple[str, float, float, float], ...]
    goal: tuple[float, float]
    agent: tuple[float, float]

    @property
    def direction(self) -> np.ndarray:
        """Unit x-y vector from the target's start to the goal."""
        d = np.subtract(self.goal, self.objects[0][1:3])
        return d / np.linalg.norm(d)


def _close_camera_pose(layout: PushLayout, cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """Eye and look-at point of the close view: above the middle of target and goal."""
    middle = (np.asarray(layout.objects[0][1:3]) + layout.goal) / 2
    eye = np.array([*(middle - layout.direction * cfg.close_back), TABLE_TOP_Z + cfg.close_height])
    return eye, np.array([*middle, TABLE_TOP_Z])


def _overview_pose(layout: PushLayout, cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """Eye and look-at point of the overview: from the side of the push, the whole table in view."""
    side = np.array([-layout.direction[1], layout.direction[0]])
    eye = np.array([*(side * cfg.overview_radius), TABLE_TOP_Z + cfg.overview_height])
    return eye, np.array([0.0, 0.0, TABLE_TOP_Z])


def task_camera(layout: PushLayout, t: float, cfg: DictConfig) -> Camera:
    """The camera at time ``t``: overview, a smooth move in, then the close view."""
    (e0, l0), (e1, l1) = _overview_pose(layout, cfg), _close_camera_pose(layout, cfg)
    x = min(max((t - cfg.look_seconds) / cfg.zoom_seconds, 0.0), 1.0)
    s = x * x * (3 - 2 * x)
    return Camera.from_fov(cfg.fov_y_deg, cfg.width, cfg.height, look_at(e0 + s * (e1 - e0), l0 + s * (l1 - l0)))


def _in_view(camera: Camera, xy: np.ndarray, radius: float) -> bool:
    """Whether any of a disc's centre and 8 rim points on the table top projects into the image."""
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    pts = np.concatenate([[xy], xy + radius * np.stack([np.cos(angles), np.sin(angles)], -1)])
    return bool(camera.in_image(torch.tensor(np.c_[pts, np.full(len(pts), TABLE_TOP_Z + 0.03)])).any())


def sample_layout(cfg: DictConfig, seed: int, tries: int = 500) -> PushLayout:
    """A seeded layout meeting the task's conditions: everything on the table, the push corridor
    (target to goal) and the pusher's start clear, the blocker on the straight way from the start
    to behind the target and out of the close view, target and goal in it."""
    rng = np.random.default_rng(seed)
    lay = cfg.layout
    targets, others = list(lay.targets), list(lay.obstacles)
    for name in targets + others:
        if name not in OBJECT_LIBRARY:
            raise ConfigError(f"plan: unknown object {name!r}; valid: {list(OBJECT_LIBRARY)}")
    x_lim, y_lim = PUSHER_REACH - 0.1  # objects and goal well inside the table
    for _ in range(tries):
        target = rng.uniform([-0.25, -0.12], [0.25, 0.12])
        angle = rng.uniform(-np.pi, np.pi)
        d = np.array([math.cos(angle), math.sin(angle)])
        goal = target + d * rng.uniform(*lay.goal_distance)
        agent = target - d * lay.approach_distance + np.array([-d[1], d[0]]) * rng.uniform(-0.05, 0.05)
        behind = target - d * 0.1
        blocker = agent + (behind - agent) * rng.uniform(0.45, 0.6) + np.array([-d[1], d[0]]) * rng.uniform(-0.015, 0.015)
        if not (abs(goal[0]) < x_lim and abs(goal[1]) < y_lim and (np.abs(agent) < PUSHER_REACH - 0.02).all()):
            continue
        spots = [target, blocker]
        for _ in range(int(rng.integers(lay.n_others[0], lay.n_others[1] + 1))):
            for _ in range(100):
                xy = rng.uniform([-x_lim, -y_lim], [x_lim, y_lim])
                along = np.clip((xy - target) @ d, 0, np.linalg.norm(goal - target))
                corridor = np.linalg.norm(xy - (target + along * d))  # distance from the push's path
                if corridor > 0.15 and min(np.linalg.norm(xy - p) for p in spots + [agent, behind]) > 0.14:
                    spots.append(xy)
                    break
        layout_names = [targets[int(rng.integers(len(targets)))]] + \
            [others[int(k)] for k in rng.permutation(len(others))[:len(spots) - 1]]
        objects = tuple((name, float(x), float(y), float(rng.uniform(-np.pi, np.pi)))
                        for name, (x, y) in zip(layout_names, spots))
        layout = PushLayout(objects, (float(goal[0]), float(goal[1])), (float(agent[0]), float(agent[1])))
        close = task_camera(layout, cfg.look_seconds + cfg.zoom_seconds, cfg)
        if (_in_view(close, goal, 0.0) and _in_view(close, target, 0.0) and not _in_view(close, blocker, 0.06)
                and not _in_view(close, agent, 0.03)):
            return layout
    raise ConfigError(f"plan: no layout meeting the task's conditions in {tries} tries for seed {seed}")


def build_world(layout: PushLayout, seed: int) -> Tabletop:
    """The PyBullet world of ``layout``: plane, table, objects (settled), the pusher at its start."""
    rng = np.random.default_rng(seed + 1)
    client, static = table_client()
    objects, names = [], {}
    for name, x, y, yaw in layout.objects:
        body = add_object(client, name, (x, y), yaw, [*rng.uniform(0.15, 0.95, 3), 1.0])
        objects.append(body)
        names[body] = name
    agent, constraint = add_pusher(client, static, layout.agent)
    return Tabletop(World(client, static, objects), agent, constraint, names)


def push_costs(cfg: DictConfig, slot: int, goal, previous, agent_radius: float) -> CostSum:
    """The task's cost: goal distance, push approach, collisions, table, smoothness (weights from ``cfg.costs``)."""
    w = cfg.costs
    region = (-PUSHER_REACH[0], -PUSHER_REACH[1], PUSHER_REACH[0], PUSHER_REACH[1])
    return CostSum((("goal", w.goal, GoalDistance(slot, goal)),
                    ("approach", w.approach, PushApproach(slot, goal, agent_radius)),
                    ("collision", w.collision, Collision((slot,), agent_radius, cfg.collision_margin)),
                    ("table", w.table, StayOnTable(region)),
                    ("smooth", w.smooth, Smoothness(tuple(float(a) for a in previous)))))


def _project(camera: Camera, xyz: np.ndarray) -> list[tuple[float, float]]:
    uv, z = camera.project(torch.as_tensor(xyz, dtype=torch.float64).reshape(-1, 3))
    return [tuple(p) for p, d in zip(uv.tolist(), z.tolist()) if d > 0]


def draw_overlay(rgb: np.ndarray, camera: Camera, goal, radius: float, agent_path: np.ndarray | None,
                 target_path: np.ndarray | None, text: str) -> np.ndarray:
    """``rgb`` with the goal disc (yellow), the planned pusher path (red), the predicted target
    path (green) drawn on the table top, and ``text``; paths are ``[H, 2]`` x-y points."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    angles = np.linspace(0, 2 * np.pi, 33)
    z = TABLE_TOP_Z + 0.002
    ring = np.stack([goal[0] + radius * np.cos(angles), goal[1] + radius * np.sin(angles), np.full(33, z)], -1)
    draw.line(_project(camera, ring), fill=(255, 220, 0), width=2)
    for path, colour in ((agent_path, (255, 60, 60)), (target_path, (60, 255, 60))):
        if path is not None and len(path) > 1:
            draw.line(_project(camera, np.c_[path, np.full(len(path), z)]), fill=colour, width=1)
    draw.text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(image)


def run_push_to_goal(cfg: DictConfig, on_plan=None) -> dict:
    """Run the closed loop as configured; write ``result.json`` and ``run.mp4`` into ``cfg.out``.
    ``on_plan(state, cost, plan)``, if given, sees every replan (the float32 world state
    planned on, the :class:`CostSum`, the :class:`Plan`)."""
    lookup(TASKS, cfg.task, "task")
    lookup(MEMORY_MODES, cfg.memory, "memory mode")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dynamics = load_dynamics(cfg.model, cfg.checkpoint)
    dt = dynamics.config.dt
    planner = make_planner(cfg.planner, dynamics, PlannerConfig(**cfg.planner_config, seed=int(cfg.seed)))
    layout = sample_layout(cfg, int(cfg.seed))
    scene = build_world(layout, int(cfg.seed))
    client = scene.world.client
    bodies = scene.world.object_bodies
    target_body, label_of = bodies[0], {b: i + 1 for i, b in enumerate(bodies)}
    # the task's object position: its visual bounding-box centre, as in generated ground truth
    centres = {body: visual_mesh(client, body).bounds.mean(axis=0) for body in bodies}
    memory = SceneMemory(MemoryConfig())
    forget = cfg.forget_after if cfg.memory == "memoryless" else None
    substeps = round(PHYSICS_HZ * dt)
    start_planning = cfg.look_seconds + cfg.zoom_seconds
    goal = np.asarray(layout.goal)

    contacts: dict[int, dict] = {}  # obstacle body -> first contact
    visible_now: set[int] = set()
    clock = {"t": 0.0}

    def check_contacts() -> None:
        for other in bodies[1:]:
            if other in contacts:
                continue
            for by, name in ((scene.agent, "pusher"), (target_body, "target")):
                if pb.getContactPoints(by, other, physicsClientId=client):
                    contacts[other] = {"time_s": round(clock["t"], 3), "object": scene.names[other], "by": name,
                                       "out_of_view": other not in visible_now}
                    break

    target_track, action = None, np.zeros(2)
    pusher_target = np.asarray(layout.agent, dtype=np.float64)
    replan_seconds, distances = [], []
    steps = int(round(cfg.time_limit / dt))
    success, t = False, 0.0
    video = FrameWriter(out / "run.mp4", fps=round(1 / dt)) if cfg.video else None
    try:
        for k in progress_bar(range(steps + 1), desc=f"plan seed {cfg.seed} ({cfg.planner}, {cfg.memory})", unit="step",
                      disable=not cfg.progress):
            t = clock["t"] = k * dt
            pose = object_pose(client, target_body, centres[target_body])[0]
            distance = float(np.linalg.norm(pose[:2] - goal))
            distances.append(round(distance, 4))
            if distance <= cfg.success_radius:
                success = True
                break
            if k == steps:
                break
            camera = task_camera(layout, t, cfg)
            rgb, depth, seg = render_tinyrenderer(scene.world, camera, near=0.05, far=30.0)
            instances = np.zeros(seg.shape, dtype=np.int64)
            instances[seg == scene.agent] = DEFAULT_AGENT_LABEL
            for body, label in label_of.items():
                instances[seg == body] = label
            visible_now.clear()
            visible_now.update(b for b in bodies if (seg == b).any())
            agent_pos = np.asarray(pb.getBasePositionAndOrientation(scene.agent, physicsClientId=client)[0])
            info = FrameInfo(k, t, camera.c2w_nerfstudio.numpy(), np.r_[agent_pos, 1.0, 0, 0, 0], action)
            memory.observe(Frame(info, camera, rgb, depth, instances))
            for track in memory.tracks:  # the target is whichever remembered object owns its label now
                if track.labels and track.labels[-1] == label_of[target_body] and track.last_seen == memory.time:
                    target_track = track.id
            plan = None
            if t >= start_planning - 1e-9 and target_track is not None:
                state = planning_state(memory.view(), agent_pos, dt, forget_after=forget)
                if target_track in state.ids:
                    slot = state.slot(target_track)
                    costs = push_costs(cfg, slot, layout.goal, action, dynamics.config.agent_radius)
                    world = as_float32(state.world)
                    plan = planner.plan(world, costs)
                    if on_plan is not None:
                        on_plan(world, costs, plan)
                    replan_seconds.append(plan.seconds)
                    action = plan.actions[0].double().numpy()
            if plan is None:
                action = np.zeros(2)
            if video is not None:
                paths = (None, None) if plan is None else (plan.trajectory.agent[0, :, :2].numpy(),
                                                           plan.trajectory.position[0, :, slot, :2].numpy())
                video.write(draw_overlay(rgb, camera, goal, cfg.success_radius, *paths,
                                         f"t={t:4.1f}s d={100 * distance:4.1f}cm"))
            pusher_target = drive_pusher(scene, pusher_target, action, substeps, check_contacts)
    finally:
        if video is not None:
            video.close()
        scene.world.close()
    result = {
        "task": cfg.task, "seed": int(cfg.seed), "planner": cfg.planner, "memory": cfg.memory,
        "success": success, "time_s": round(t, 3), "final_distance_m": distances[-1],
        "collisions": len(contacts), "collisions_out_of_view": sum(c["out_of_view"] for c in contacts.values()),
        "collision_events": list(contacts.values()),
        "replan_hz": round(1.0 / float(np.mean(replan_seconds)), 2) if replan_seconds else None,
        "replan_ms_median": round(1000 * float(np.median(replan_seconds)), 1) if replan_seconds else None,
        "replans": len(replan_seconds),
        "target": layout.objects[0][0], "goal": list(layout.goal), "layout": [list(o) for o in layout.objects],
        "distance_m": distances,
    }
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result


__all__ = ["PushLayout", "TASKS", "build_world", "draw_overlay", "push_costs", "run_push_to_goal", "sample_layout",
           "task_camera"]
