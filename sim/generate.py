"""PyBullet tabletop episodes in the episode format (the project's ground-truth world).

A seeded world (a table, 3-12 ``pybullet_data`` objects, static occluders, a kinematic
pusher agent), a scripted or random pushing policy acting through planar velocity
commands, and a camera path made of segments (orbits, pans away from the table, returns
to earlier viewpoints, optional hand-held jitter). Every frame is drawn by TinyRenderer
(RGB, depth, segmentation) and written with per-frame reshuffled instance labels unless
asked otherwise; the true poses, labels and visible fractions go to ``ground_truth.json``.
For every hide-and-reappear event (:mod:`splatworld.scene.events`) the frame it is scored at is
drawn a second time with that object removed (its *counterfactual*), for scoring permanence from
RGB alone.
The same config and seed give the same files, bit for bit. The pusher's policies are in
:mod:`splatworld.sim.policies`, the camera path in :mod:`splatworld.sim.camera_path`.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data
import trimesh
from omegaconf import DictConfig

from splatworld.errors import ConfigError
from splatworld.progress import progress_bar
from splatworld.scene.episode import DEFAULT_AGENT_LABEL
from splatworld.scene.episode_writer import EpisodeWriter
from splatworld.scene.cameras import Cameras
from splatworld.scene.events import hide_events
from splatworld.sim.camera_path import CameraPath
from splatworld.sim.look import apply_textures, seeded_light
from splatworld.sim.sensor import PoseDrift, noisy_depth, noisy_rgb, sensor_model
from splatworld.sim.policies import PUSHER_REACH, draw, executed_action, make_policy
from splatworld.sim.pybullet_scene import (
    TABLE_HALF,
    TABLE_TOP_Z,
    World,
    body_meshes,
    link_pose,
    render_tinyrenderer,
)
from splatworld.sim.raster_mesh import silhouette

# name -> (urdf, global scaling)
OBJECT_LIBRARY = {
    "cube": ("cube_small.urdf", 1.6),
    "duck": ("duck_vhacd.urdf", 1.0),
    "teddy": ("teddy_vhacd.urdf", 1.0),
    "lego": ("lego/lego.urdf", 1.6),
    "jenga": ("jenga/jenga.urdf", 1.0),
    "sphere": ("sphere_small.urdf", 1.3),
    "random_000": ("random_urdfs/000/000.urdf", 1.0),
    "random_001": ("random_urdfs/001/001.urdf", 1.0),
    "random_002": ("random_urdfs/002/002.urdf", 1.0),
    "random_003": ("random_urdfs/003/003.urdf", 1.0),
    "block": ("block.urdf", 1.5),
    "mug": ("objects/mug.urdf", 1.0),
    "random_004": ("random_urdfs/004/004.urdf", 1.0),
    "random_005": ("random_urdfs/005/005.urdf", 1.0),
    "random_006": ("random_urdfs/006/006.urdf", 1.0),
    "random_007": ("random_urdfs/007/007.urdf", 1.0),
}
# what a scenario without an ``objects`` list is furnished from (the library's first ten)
DEFAULT_OBJECTS = tuple(OBJECT_LIBRARY)[:10]
AGENT_RADIUS, AGENT_HEIGHT = 0.025, 0.1
AGENT_Z = TABLE_TOP_Z + AGENT_HEIGHT / 2 + 0.002  # the pusher glides 2 mm above the table top
PHYSICS_HZ = 120


# ----------------------------------------------------------------------------- world
@dataclass
class Tabletop:
    world: World
    agent: int
    constraint: int
    names: dict[int, str]
    occluders: list[int] = field(default_factory=list)
    sizes: dict[int, float] = field(default_factory=dict)  # body -> size drawn on top of the library's scaling


def _free_spot(rng, taken, radius, half=(0.55, 0.35), tries=200):
    for _ in range(tries):
        xy = rng.uniform([-half[0], -half[1]], [half[0], half[1]])
        if all(np.hypot(*(xy - p)) > radius + r for p, r in taken):
            return xy
    raise ConfigError(f"could not place an object of radius {radius} m on the table: too many objects")


def _box(client, half_extents, position, yaw, rgba):
    col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half_extents, physicsClientId=client)
    vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba, physicsClientId=client)
    return pb.createMultiBody(0, col, vis, position, pb.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=client)


def add_object(client: int, name: str, xy, yaw: float, rgba, size: float = 1.0, mass: float = 1.0,
               friction: float = 0.6) -> int:
    """Drop the library object ``name`` 6 cm above the table top at ``xy [2]``, turned by ``yaw``,
    scaled by ``size``, its URDF mass times ``mass``, with lateral ``friction``."""
    urdf, scaling = OBJECT_LIBRARY[name]
    body = pb.loadURDF(urdf, [xy[0], xy[1], TABLE_TOP_Z + 0.06], pb.getQuaternionFromEuler([0, 0, yaw]),
                       globalScaling=scaling * size, physicsClientId=client)
    pb.changeVisualShape(body, -1, rgbaColor=list(rgba), physicsClientId=client)
    dynamics = {"lateralFriction": friction, "rollingFriction": 0.001, "spinningFriction": 0.001}
    if mass != 1.0:
        dynamics["mass"] = pb.getDynamicsInfo(body, -1, physicsClientId=client)[0] * mass
    pb.changeDynamics(body, -1, **dynamics, physicsClientId=client)
    return body


def add_pusher(client: int, static: list[int], park_xy) -> tuple[int, int]:
    """The pusher (a kinematic cylinder gliding above the table, not colliding with ``static``
    bodies) parked at ``park_xy [2]``, then a second of settling. Returns ``(body, constraint)``."""
    col = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=AGENT_RADIUS, height=AGENT_HEIGHT, physicsClientId=client)
    vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=AGENT_RADIUS, length=AGENT_HEIGHT, rgbaColor=[0.9, 0.1, 0.1, 1],
                               physicsClientId=client)
    agent = pb.createMultiBody(2.0, col, vis, [park_xy[0], park_xy[1], AGENT_Z], physicsClientId=client)
    for body in static:
        pb.setCollisionFilterPair(agent, body, -1, -1, 0, physicsClientId=client)  # glides above the table
    constraint = pb.createConstraint(agent, -1, -1, -1, pb.JOINT_FIXED, [0, 0, 0], [0, 0, 0],
                                     [park_xy[0], park_xy[1], AGENT_Z], physicsClientId=client)
    pb.changeConstraint(constraint, maxForce=300, physicsClientId=client)
    for _ in range(PHYSICS_HZ):  # settle
        pb.stepSimulation(physicsClientId=client)
    return agent, constraint


def drive_pusher(scene: Tabletop, target: np.ndarray, action: np.ndarray, substeps: int,
                 on_substep=None) -> np.ndarray:
    """Move the pusher's target by the planar velocity ``action`` (m/s) for ``substeps`` physics
    steps (clamped over the table) and simulate; returns the new target. ``on_substep()`` runs
    after each physics step (contact checks)."""
    client = scene.world.client
    for _ in range(substeps):
        target = np.clip(target + action / PHYSICS_HZ, -PUSHER_REACH, PUSHER_REACH)
        pb.changeConstraint(scene.constraint, [target[0], target[1], AGENT_Z], maxForce=300, physicsClientId=client)
        pb.stepSimulation(physicsClientId=client)
        if on_substep is not None:
            on_substep()
    return target


def table_client() -> tuple[int, list[int]]:
    """A new PyBullet client (deterministic, ``PHYSICS_HZ`` steps) with a ground plane and the
    table. Returns ``(client, [plane, table])``."""
    client = pb.connect(pb.DIRECT)
    pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    pb.setGravity(0, 0, -9.81, physicsClientId=client)
    pb.setPhysicsEngineParameter(fixedTimeStep=1.0 / PHYSICS_HZ, deterministicOverlappingPairs=1, numSolverIterations=15,
                                 physicsClientId=client)
    return client, [pb.loadURDF("plane.urdf", physicsClientId=client),
                    pb.loadURDF("table/table.urdf", useFixedBase=True, physicsClientId=client)]


def visual_mesh(client: int, body: int) -> trimesh.Trimesh:
    """All of a body's base visual shapes as one mesh, in its link frame."""
    return trimesh.util.concatenate([m for m, _ in body_meshes(client, body)])


def build_tabletop(scenario: DictConfig, seed: int) -> Tabletop:
    """The scenario's world: table, occluders, objects (settled under gravity) and the pusher."""
    rng = np.random.default_rng(seed)
    client, static = table_client()
    taken = []
    top = TABLE_TOP_Z
    occluders = []
    for kind in scenario.occluders:
        grey = [*rng.uniform(0.35, 0.6, 3), 1.0]
        if kind == "wall":
            xy = _free_spot(rng, taken, 0.3, half=(0.25, 0.15))
            occluders.append(_box(client, [0.015, 0.28, 0.14], [xy[0], xy[1], top + 0.14], rng.uniform(-0.4, 0.4), grey))
            taken.append((xy, 0.3))
        elif kind == "box":
            xy = _free_spot(rng, taken, 0.14)
            occluders.append(_box(client, [0.09, 0.09, 0.09], [xy[0], xy[1], top + 0.09], rng.uniform(0, np.pi), grey))
            taken.append((xy, 0.14))
        elif kind == "shelf":
            xy = _free_spot(rng, taken, 0.25)
            yaw = rng.uniform(0, np.pi)
            c, s = math.cos(yaw), math.sin(yaw)
            for dx in (-0.2, 0.2):  # two side panels and a board
                occluders.append(_box(client, [0.01, 0.09, 0.1], [xy[0] + c * dx, xy[1] + s * dx, top + 0.1], yaw, grey))
            occluders.append(_box(client, [0.21, 0.09, 0.01], [xy[0], xy[1], top + 0.21], yaw, grey))
            taken.append((xy, 0.25))
        else:
            raise ConfigError(f"unknown occluder {kind!r}; valid: ['wall', 'box', 'shelf']")
    static += occluders

    lo, hi = scenario.n_objects
    n = int(rng.integers(lo, hi + 1))
    if not 1 <= n <= 12:
        raise ConfigError(f"n_objects must lie in [1, 12], got {n}")
    library = list(scenario.get("objects", DEFAULT_OBJECTS))
    unknown = [name for name in library if name not in OBJECT_LIBRARY]
    if unknown:
        raise ConfigError(f"unknown objects {unknown}; valid: {list(OBJECT_LIBRARY)}")
    objects, names, sizes = [], {}, {}
    order = rng.permutation(len(library))  # distinct kinds first, repeats only past the library's size
    # sizes, masses and frictions from their own stream: scenarios without them keep their worlds
    variation, vary = scenario.get("variation", {}), np.random.default_rng([seed, 13])
    unknown = sorted(set(variation) - {"size", "mass", "friction"})
    if unknown:
        raise ConfigError(f"scenario {scenario.name}: unknown variation {unknown}; valid: ['friction', 'mass', 'size']")
    for i in range(n):
        name = library[int(order[i % len(library)])]
        xy = _free_spot(rng, taken, 0.07)
        taken.append((xy, 0.07))
        yaw = rng.uniform(-np.pi, np.pi)
        drawn = {key: draw(variation[key], vary) for key in ("size", "mass", "friction") if key in variation}
        body = add_object(client, name, xy, yaw, [*rng.uniform(0.15, 0.95, 3), 1.0], **drawn)
        objects.append(body)
        names[body] = name
        sizes[body] = drawn.get("size", 1.0)

    agent, constraint = add_pusher(client, static, np.array([-TABLE_HALF[0] + 0.06, -TABLE_HALF[1] + 0.06]))
    return Tabletop(World(client, static, objects), agent, constraint, names, occluders, sizes)


# -------------------------------------------------------------------------- generation
def _labels(rng, n, consistent):
    """Per-object instance labels for one frame (never 0 or the agent label)."""
    if consistent:
        return np.arange(1, n + 1)
    return rng.choice(np.arange(1, 1000), size=n, replace=False)


def object_pose(client: int, body: int, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose ``[7]`` (xyz + wxyz) and 4x4 matrix of the frame at ``centre`` (link coordinates) with the
    link's orientation (PyBullet's own transform math: this runs for every object every frame)."""
    link_pos, link_orn = link_pose(client, body)
    pos, _ = pb.multiplyTransforms(link_pos, link_orn, centre.tolist(), [0, 0, 0, 1])
    matrix = np.eye(4)
    matrix[:3, :3] = np.reshape(pb.getMatrixFromQuaternion(link_orn), (3, 3))
    matrix[:3, 3] = pos
    x, y, z, w = link_orn
    return np.array([*pos, w, x, y, z]), matrix


COUNTERFACTUAL_DIR = "counterfactual"


def _counterfactuals(scene: Tabletop, writer: EpisodeWriter, cam_at, gt: dict, bases: list[dict],
                     camera_to_world: np.ndarray) -> list[dict]:
    """Draw each event's scoring frame again without its object; returns the ``events`` entries of
    ``ground_truth.json`` (one per event, with ``counterfactual`` where it is scored).

    The bodies are put back where they were at that frame (``bases``: per frame, body -> base
    position and xyzw orientation), the object is sent 100 m under the floor (past the far plane),
    and the frame is drawn again, with and without it: the pixels that differ are the object's
    footprint (and any shadow), saved as a mask beside the counterfactual RGB. Events are found
    with the true cameras (``camera_to_world [T, 4, 4]``, nerfstudio axes), not the reported ones."""
    client = scene.world.client
    objects = list(gt.values())
    cameras = Cameras.from_nerfstudio(writer.meta, camera_to_world)
    entries = []
    for e in hide_events(objects, cameras, writer.meta["fps"]):
        entry = {k: e[k] for k in ("id", "name", "last_visible", "reappears", "scored_at", "hidden_seconds", "cause")}
        entries.append(entry)
        c = e["scored_at"]
        if c is None:
            continue
        for body, (pos, orn) in bases[c].items():
            pb.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=client)
        cam = cam_at(c)
        truth, _, _ = render_tinyrenderer(scene.world, cam, near=0.05, far=30.0)
        hidden = scene.world.object_bodies[e["object"]]
        pb.resetBasePositionAndOrientation(hidden, [0.0, 0.0, -100.0], bases[c][hidden][1], physicsClientId=client)
        without, _, _ = render_tinyrenderer(scene.world, cam, near=0.05, far=30.0)
        differs = (truth != without).any(axis=-1)
        stem = f"{COUNTERFACTUAL_DIR}/{c:06d}_{e['id']}"
        writer.write_image(f"{stem}.png", without)
        writer.write_image(f"{stem}_mask.png", differs.astype(np.uint8) * 255)
        entry["counterfactual"] = {"file_path": f"{stem}.png", "mask_file_path": f"{stem}_mask.png",
                                   "pixels": int(differs.sum())}
    return entries


def generate_episode(cfg: DictConfig) -> Path:
    """Simulate and write one episode as described by a composed ``generate`` config."""
    scenario = cfg.scenario
    seconds = cfg.seconds if cfg.seconds is not None else scenario.seconds
    n_frames = int(round(seconds * cfg.fps))
    if n_frames < 1:
        raise ConfigError(f"seconds={seconds} at fps={cfg.fps} gives no frames")
    rng = np.random.default_rng(cfg.seed)
    scene = build_tabletop(scenario, cfg.seed)
    look = np.random.default_rng([cfg.seed, 7])  # its own stream: the default look's episodes stay as they were
    sensor = sensor_model(cfg.sensor)
    noise = np.random.default_rng([cfg.seed, 11])  # the sensor's own stream, for the same reason
    drift = PoseDrift(sensor, noise) if cfg.pose_noise else None
    if cfg.textures:
        plane, table = scene.world.static_bodies[:2]
        with tempfile.TemporaryDirectory() as folder:  # TinyRenderer reads each texture when it is loaded
            apply_textures(scene.world.client, table, plane, scene.occluders, look, Path(folder))
    if cfg.lighting:
        scene.world.light = seeded_light(look)
    client, objects = scene.world.client, scene.world.object_bodies
    policy = make_policy(scenario.policy, np.random.default_rng(cfg.seed + 1))
    path = CameraPath(scenario.camera, cfg.seed)
    substeps = max(1, round(PHYSICS_HZ / cfg.fps))
    consistent = bool(cfg.instance_ids_consistent)

    # An object's ground-truth frame is its link frame moved to the centre of its visual
    # bounding box, so that `extent` is a box centred on the pose.
    meshes, extents, centres = {}, {}, {}
    for body in objects:
        merged = visual_mesh(client, body)
        centres[body] = merged.bounds.mean(axis=0)
        meshes[body] = (np.asarray(merged.vertices) - centres[body], np.asarray(merged.faces))
        extents[body] = (merged.bounds[1] - merged.bounds[0]).tolist()

    cam0 = path.camera(0.0, cfg.width, cfg.height, cfg.fov_y_deg)
    extra = {"instance_ids_consistent": consistent, "agent_label": DEFAULT_AGENT_LABEL,
             "agent_shape": {"type": "cylinder", "radius": AGENT_RADIUS, "height": AGENT_HEIGHT},
             "action_space": {"type": "planar_velocity", "dim": 2, "units": "m/s"},
             "scenario": scenario.name, "seed": int(cfg.seed),
             "look": {"lighting": bool(cfg.lighting), "textures": bool(cfg.textures)},
             "sensor": {"model": str(cfg.sensor), "pose_noise": bool(cfg.pose_noise)}}
    writer = EpisodeWriter(cfg.out, cam0, cfg.fps, depth_unit_scale_factor=0.001, extra=extra)
    gt = {b: {"id": i + 1, "name": scene.names[b], "urdf": OBJECT_LIBRARY[scene.names[b]][0],
              "scale": OBJECT_LIBRARY[scene.names[b]][1] * scene.sizes.get(b, 1.0), "extent": extents[b],
              "frame_offset": centres[b].tolist(), "poses": [], "labels": [],
              "visible_fraction": []} for i, b in enumerate(objects)}
    target = np.array(pb.getBasePositionAndOrientation(scene.agent, physicsClientId=client)[0][:2])
    bases = []  # per frame: every moving body's base pose, to draw counterfactual frames afterwards
    true_c2w = []  # per frame: the true camera-to-world (the reported one drifts with pose_noise)
    try:
        for i in progress_bar(range(n_frames), desc=f"generate {scenario.name}", unit="frame", disable=not cfg.progress):
            t = i / cfg.fps
            cam = path.camera(t, cfg.width, cfg.height, cfg.fov_y_deg)
            viewmat = cam.viewmat.numpy()
            rgb, depth, seg = render_tinyrenderer(scene.world, cam, near=0.05, far=30.0)
            bases.append({body: pb.getBasePositionAndOrientation(body, physicsClientId=client)
                          for body in [*objects, scene.agent]})
            instances = np.zeros(seg.shape, dtype=np.uint16)
            instances[seg == scene.agent] = DEFAULT_AGENT_LABEL
            labels = _labels(rng, len(objects), consistent)
            poses = {}
            for body, label in zip(objects, labels):
                pose, obj_to_world = object_pose(client, body, centres[body])
                poses[body] = pose
                visible = seg == body
                n_visible = int(visible.sum())
                instances[visible] = label
                fraction = 0.0
                if n_visible:
                    verts, faces = meshes[body]
                    obj_to_cam = viewmat @ obj_to_world
                    verts_cam = verts @ obj_to_cam[:3, :3].T + obj_to_cam[:3, 3]
                    full = silhouette(verts_cam, faces, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)
                    fraction = min(1.0, n_visible / max(int(full.sum()), 1))
                record = gt[body]
                record["poses"].append([float(v) for v in pose])
                record["labels"].append(int(label) if n_visible else 0)
                record["visible_fraction"].append(round(fraction, 4))
            agent_pos = pb.getBasePositionAndOrientation(scene.agent, physicsClientId=client)[0]
            agent_pose = [*agent_pos, 1.0, 0.0, 0.0, 0.0]
            action = executed_action(target, policy.act(t, np.array(agent_pos[:2]), {b: p[:3] for b, p in poses.items()}),
                                     substeps / PHYSICS_HZ)
            true_c2w.append(cam.c2w_nerfstudio.numpy())
            if drift is not None and i > 0:
                drift.step(1.0 / cfg.fps)
            writer.write(noisy_rgb(sensor, rgb, noise),
                         true_c2w[-1] if drift is None else drift.reported(true_c2w[-1]), t,
                         depth=noisy_depth(sensor, depth, cam.fx, cam.fy, cam.cx, cam.cy, noise), instances=instances,
                         agent_pose=agent_pose, action=action)
            target = drive_pusher(scene, target, action, substeps)
        events = _counterfactuals(scene, writer, lambda c: path.camera(c / cfg.fps, cfg.width, cfg.height,
                                                                       cfg.fov_y_deg), gt, bases, np.array(true_c2w))
    finally:
        scene.world.close()
    truth = {"objects": list(gt.values()), "events": events}
    if drift is not None:  # the true camera path, for scoring pose estimates (ATE)
        truth["camera_transform_matrices"] = np.round(np.array(true_c2w), 7).tolist()
    return writer.close(ground_truth=truth)


__all__ = ["OBJECT_LIBRARY", "build_tabletop", "generate_episode"]
