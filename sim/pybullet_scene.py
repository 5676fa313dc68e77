"""Bridges between PyBullet and the scene module.

- :func:`tabletop_world`: a seeded table with ``pybullet_data`` objects.
- :func:`gaussians_from_pybullet`: Gaussians sampled on every body's visual shapes,
  at the bodies' current poses (static bodies get id 0, movable ones their own id).
- :func:`render_tinyrenderer`: PyBullet's CPU renderer from one of our cameras,
  giving RGB, metric z-depth and the body segmentation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pybullet as pb
import pybullet_data
import torch
import trimesh

from splatworld.scene.build import gaussians_from_mesh
from splatworld.scene.cameras import Camera
from splatworld.scene.gaussians import Gaussians
from splatworld.scene.transforms import pose_to_matrix
from splatworld.sim.look import Light

# Objects a tabletop is furnished from: (urdf, global scaling).
TABLETOP_OBJECTS = [
    ("duck_vhacd.urdf", 1.0),
    ("cube_small.urdf", 1.5),
    ("teddy_vhacd.urdf", 1.0),
    ("lego/lego.urdf", 1.5),
    ("jenga/jenga.urdf", 1.0),
    ("sphere_small.urdf", 1.2),
]
TABLE_TOP_Z = 0.625  # table.urdf: a 5 cm top centred at z = 0.6
TABLE_HALF = (0.75, 0.5)  # table.urdf top: 1.5 m x 1.0 m
GROUND_HALF_EXTENT = 2.5  # metres of ground plane kept around the origin


@dataclass
class World:
    """A PyBullet client and the bodies in it; ``light``: how TinyRenderer lights it (None: its default)."""

    client: int
    static_bodies: list[int]
    object_bodies: list[int]
    light: Light | None = None

    def close(self) -> None:
        pb.disconnect(self.client)


def tabletop_world(n_objects: int = 5, seed: int = 0, settle_steps: int = 240) -> World:
    """A table on a plane with ``n_objects`` random ``pybullet_data`` objects, settled under gravity.

    Colours and positions are drawn from ``seed``; the same seed gives the same world.
    """
    rng = np.random.default_rng(seed)
    client = pb.connect(pb.DIRECT)
    pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    pb.setGravity(0, 0, -9.81, physicsClientId=client)
    plane = pb.loadURDF("plane.urdf", physicsClientId=client)
    table = pb.loadURDF("table/table.urdf", useFixedBase=True, physicsClientId=client)
    objects = []
    for i in range(n_objects):
        urdf, scaling = TABLETOP_OBJECTS[i % len(TABLETOP_OBJECTS)]
        xy = rng.uniform([-0.5, -0.3], [0.5, 0.3])
        yaw = rng.uniform(-np.pi, np.pi)
        body = pb.loadURDF(urdf, [xy[0], xy[1], TABLE_TOP_Z + 0.05], pb.getQuaternionFromEuler([0, 0, yaw]),
                           globalScaling=scaling, physicsClientId=client)
        pb.changeVisualShape(body, -1, rgbaColor=[*rng.uniform(0.15, 0.95, 3), 1.0], physicsClientId=client)
        objects.append(body)
    for _ in range(settle_steps):
        pb.stepSimulation(physicsClientId=client)
    return World(client, [plane, table], objects)


def _shape_mesh(shape) -> trimesh.Trimesh | None:
    """Mesh of one ``getVisualShapeData`` row in the link's visual frame, or None if it has no surface."""
    geom, dims, filename = shape[2], shape[3], shape[4]
    if geom == pb.GEOM_MESH:
        path = filename.decode() if isinstance(filename, bytes) else filename
        if not os.path.isfile(path):
            return None
        mesh = trimesh.load(path, force="mesh", process=False)
        mesh.apply_scale(np.asarray(dims, dtype=np.float64))
        return mesh
    if geom == pb.GEOM_BOX:
        return trimesh.creation.box(extents=dims)
    if geom == pb.GEOM_SPHERE:
        return trimesh.creation.icosphere(subdivisions=3, radius=dims[0])
    if geom in (pb.GEOM_CYLINDER, pb.GEOM_CAPSULE):
        make = trimesh.creation.cylinder if geom == pb.GEOM_CYLINDER else trimesh.creation.capsule
        return make(radius=dims[1], height=dims[0])
    if geom == pb.GEOM_PLANE:
        return trimesh.creation.box(extents=[4.0, 4.0, 1e-3])
    return None


def _crop_xy(mesh: trimesh.Trimesh, half_extent: float) -> trimesh.Trimesh:
    """The part of a world-frame mesh with ``|x|, |y| <= half_extent`` (keeps ground planes finite)."""
    lo, hi = mesh.bounds
    if max(-lo[0], -lo[1], hi[0], hi[1]) <= half_extent:
        return mesh
    for axis in (0, 1):
        for sign in (1.0, -1.0):
            normal = np.zeros(3)
            normal[axis] = -sign
            origin = np.zeros(3)
            origin[axis] = sign * half_extent
            mesh = trimesh.intersections.slice_mesh_plane(mesh, normal, origin)
    return mesh


def link_pose(client: int, body: int) -> tuple[tuple, tuple]:
    """Position and xyzw orientation (PyBullet's own tuples) of a body's base *link frame*.

    PyBullet reports the base's centre-of-mass frame; visual shapes (and so our object
    Gaussians) are placed relative to the link frame, which differs by the URDF's
    inertial origin (2 cm for ``duck_vhacd.urdf``).
    """
    pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=client)
    inertial_pos, inertial_orn = pb.getDynamicsInfo(body, -1, physicsClientId=client)[3:5]
    inv_pos, inv_orn = pb.invertTransform(inertial_pos, inertial_orn)
    return pb.multiplyTransforms(pos, orn, inv_pos, inv_orn)


def body_pose(client: int, body: int) -> torch.Tensor:
    """World pose ``[7]`` (xyz + wxyz, float64) of a body's base link frame (see :func:`link_pose`)."""
    pos, orn = link_pose(client, body)
    return torch.tensor([*pos, orn[3], orn[0], orn[1], orn[2]], dtype=torch.float64)


def body_meshes(client: int, body: int) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """``(mesh, rgba)`` of each visual shape of a body's base, in the body's link frame."""
    out = []
    for shape in pb.getVisualShapeData(body, physicsClientId=client):
        if shape[1] != -1:
            continue
        mesh = _shape_mesh(shape)
        if mesh is None or mesh.area <= 0:
            continue
        lp, lo = shape[5], shape[6]
        mesh.apply_transform(pose_to_matrix(torch.tensor([*lp, lo[3], lo[0], lo[1], lo[2]],
                                                         dtype=torch.float64)).numpy())
        out.append((mesh, np.asarray(shape[7][:4])))
    return out


def _allocate(total: int, areas: np.ndarray, min_per_shape: int) -> np.ndarray:
    """Split ``total`` over shapes: a floor each (at most a quarter of the budget), the rest by area."""
    floor = min(min_per_shape, total // (4 * len(areas)))
    counts = floor + np.floor((total - floor * len(areas)) * areas / areas.sum()).astype(int)
    counts[np.argmax(areas)] += total - counts.sum()  # the largest shape absorbs rounding
    return counts


def _gaussians_of(parts, total: int, seed: int, min_per_shape: int) -> Gaussians:
    counts = _allocate(total, np.array([m.area for m, _, _ in parts]), min_per_shape)
    # TinyRenderer multiplies the texture colour by the shape's rgba; so do we.
    return Gaussians.concat([gaussians_from_mesh(mesh, int(n), tint=rgba[:3], object_id=oid, seed=seed + i)
                             for i, ((mesh, rgba, oid), n) in enumerate(zip(parts, counts))])


def gaussians_from_pybullet(world: World, total: int = 50_000, seed: int = 0,
                            object_ids: dict[int, int] | None = None, min_per_shape: int = 1500) -> Gaussians:
    """Gaussians on the visual shapes of every body's base link, at current poses (world frame).

    ``total`` Gaussians are shared out by surface area, with at least ``min_per_shape``
    per visual shape (fewer if the budget is small). Static bodies get object id 0; each
    object body gets ``object_ids[body]`` (default: its 1-based index in ``world.object_bodies``).
    """
    ids = object_ids or {b: i + 1 for i, b in enumerate(world.object_bodies)}
    parts = []
    for body in world.static_bodies + world.object_bodies:
        link_to_world = pose_to_matrix(body_pose(world.client, body)).numpy()
        for mesh, rgba in body_meshes(world.client, body):
            mesh.apply_transform(link_to_world)
            parts.append((_crop_xy(mesh, GROUND_HALF_EXTENT), rgba, 0 if body in world.static_bodies else ids[body]))
    return _gaussians_of(parts, total, seed, min_per_shape)


def object_model(client: int, body: int, count: int, object_id: int, seed: int = 0) -> Gaussians:
    """Gaussians of one body in its own link frame (an object model for the memory)."""
    parts = [(mesh, rgba, object_id) for mesh, rgba in body_meshes(client, body)]
    return _gaussians_of(parts, count, seed, min_per_shape=count // (2 * max(len(parts), 1)))


def pybullet_view_matrix(camera: Camera) -> list[float]:
    """PyBullet's (OpenGL, column-major) view matrix for an OpenCV camera."""
    gl = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)) @ camera.viewmat.double()
    return gl.T.reshape(-1).tolist()


def pybullet_projection_matrix(camera: Camera, near: float, far: float) -> list[float]:
    """PyBullet's (OpenGL, column-major) projection matrix reproducing the camera's intrinsics."""
    w, h = camera.width, camera.height
    # TinyRenderer samples pixel corners, not centres, and flips rows: shifting the principal
    # point by half a pixel makes its pixel (c, r) show what our camera sees at (c + 0.5, r + 0.5).
    cx, cy = camera.cx - 0.5, camera.cy + 0.5
    p = np.zeros((4, 4))
    p[0, 0] = 2 * camera.fx / w
    p[0, 2] = 1 - 2 * cx / w
    p[1, 1] = 2 * camera.fy / h
    p[1, 2] = 2 * cy / h - 1
    p[2, 2] = -(far + near) / (far - near)
    p[2, 3] = -2 * far * near / (far - near)
    p[3, 2] = -1
    return p.T.reshape(-1).tolist()


def render_tinyrenderer(world: World, camera: Camera, near: float = 0.01, far: float = 20.0):
    """Draw the world with PyBullet's TinyRenderer from ``camera``.

    Returns:
        rgb ``[H, W, 3]`` uint8, z-depth ``[H, W]`` float32 metres (0 where nothing
        was hit), segmentation ``[H, W]`` int32 (body id, -1 = nothing).
    """
    _, _, rgba, depth_buffer, seg = pb.getCameraImage(
        camera.width, camera.height, pybullet_view_matrix(camera), pybullet_projection_matrix(camera, near, far),
        renderer=pb.ER_TINY_RENDERER, physicsClientId=world.client,
        **({} if world.light is None else world.light.camera_image_kwargs()))
    rgba = np.asarray(rgba, dtype=np.uint8).reshape(camera.height, camera.width, 4)
    buf = np.asarray(depth_buffer, dtype=np.float64).reshape(camera.height, camera.width)
    depth = far * near / (far - (far - near) * buf)
    seg = np.asarray(seg, dtype=np.int32).reshape(camera.height, camera.width)
    depth[seg < 0] = 0.0
    return rgba[..., :3].copy(), depth.astype(np.float32), seg
