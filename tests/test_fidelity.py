"""What makes the memory's picture faithful: the ground drawn to the horizon, sharp static edges,
object models carved by free space."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from splatworld.memory import MemoryConfig, VoxelGrid
from splatworld.memory.ground import fit_ground, fit_texture
from splatworld.memory.tracking import carve
from splatworld.memory.tracks import ObjectTrack
from splatworld.render.ground import render_plane
from splatworld.scene.cameras import Camera, look_at

TILE_COLORS = np.array([[0.9, 0.9, 0.95], [0.6, 0.7, 0.9]])


def _checker(xy: np.ndarray, period: float) -> np.ndarray:
    """Colours ``[N, 3]`` of a checker whose pattern repeats every ``period`` (two tiles) along x and y."""
    tile = (np.floor(xy[:, 0] / (period / 2)) + np.floor(xy[:, 1] / (period / 2))).astype(int) % 2
    return TILE_COLORS[tile]


def _camera(eye, target, size=64) -> Camera:
    f = size / (2 * math.tan(math.radians(30)))
    return Camera(f, f, size / 2, size / 2, size, size, look_at(eye, target))


def test_fit_texture_finds_a_checker_period_and_its_colours():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-2.0, 2.0, (40000, 2))
    texture, period, explained = fit_texture(xy, _checker(xy, 0.7), cell=0.02)
    assert period == pytest.approx(0.7, abs=0.002)
    assert explained > 0.9  # texels straddling a tile border mix its colours
    # the texture's two halves along each axis hold the two tile colours, in checker order
    cells = texture.shape[0]
    quarter = cells // 4
    corners = texture[[quarter, quarter, 3 * quarter, 3 * quarter], [quarter, 3 * quarter, quarter, 3 * quarter]]
    probe = np.array([[0.25, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.75]]) * 0.7
    np.testing.assert_allclose(corners, _checker(probe, 0.7), atol=0.02)


def test_fit_texture_invents_no_pattern_in_noise():
    rng = np.random.default_rng(1)
    xy = rng.uniform(-2.0, 2.0, (20000, 2))
    colors = rng.uniform(0, 1, (20000, 3))
    texture, period, explained = fit_texture(xy, colors, cell=0.02)
    assert period == 0.0 and texture.shape == (1, 1, 3) and explained < 0.5
    np.testing.assert_allclose(texture[0, 0], colors.mean(axis=0))


def test_fit_ground_takes_the_floor_below_the_table_not_the_table():
    rng = np.random.default_rng(2)
    floor = np.c_[rng.uniform(-2, 2, (8000, 2)), rng.normal(0.0, 0.002, 8000)]
    table = np.c_[rng.uniform(-0.5, 0.5, (4000, 2)), np.full(4000, 0.6)]
    points = np.concatenate([floor, table])
    colors = np.concatenate([_checker(floor[:, :2], 2.0), np.full((4000, 3), 0.5)])
    ground = fit_ground(points, colors, below=0.5, cell=0.02, rng=np.random.default_rng(0))
    assert abs(ground.plane[3]) < 0.003 and ground.plane[2] > 0.999
    assert ground.period == pytest.approx(2.0, abs=0.002)
    assert fit_ground(table, np.full((4000, 3), 0.5), below=0.5, cell=0.02, rng=np.random.default_rng(0)) is None


def test_render_plane_against_hand_computed_rays():
    """A camera 1 m above the floor looking 20 degrees down (a 60 degree field of view: the top
    rows see the sky); each pixel's ray is intersected with z = 0 independently here."""
    cam = _camera([0.0, 0.0, 1.0], [1.0 / math.tan(math.radians(20)), 0.0, 0.0])
    texture = torch.from_numpy(TILE_COLORS[np.add.outer(np.arange(8) // 4, np.arange(8) // 4) % 2]).float()
    out = render_plane(cam, [0.0, 0.0, 1.0, 0.0], texture, 0.5, TILE_COLORS.mean(0), [1.0, 1.0, 1.0])
    soft = render_plane(cam, [0.0, 0.0, 1.0, 0.0], texture, 0.5, TILE_COLORS.mean(0), [1.0, 1.0, 1.0], antialias=True)
    # independent rays: pixel centre -> camera ray -> world direction -> hit at z = 0
    u, v = 40, 50
    d_cam = np.array([(u + 0.5 - cam.cx) / cam.fx, (v + 0.5 - cam.cy) / cam.fy, 1.0])
    rot = cam.viewmat[:3, :3].double().numpy()
    d_world = rot.T @ d_cam
    t = -1.0 / d_world[2]  # from z = 1 down to z = 0, in units of z-depth
    assert out.depth[v, u].item() == pytest.approx(t, rel=1e-5)
    hit = np.array([0.0, 0.0, 1.0]) + t * d_world
    assert abs(hit[2]) < 1e-9
    assert out.alpha[v, u] == 1 and out.object_id[v, u] == 0
    np.testing.assert_allclose(out.rgb[v, u].numpy(), _checker(hit[None, :2], 0.5)[0], atol=1e-6)  # point-sampled
    # antialiased: the tile colour at the hit point fades into the mean as the footprint grows
    near_v = 60
    d_world = rot.T @ np.array([(u + 0.5 - cam.cx) / cam.fx, (near_v + 0.5 - cam.cy) / cam.fy, 1.0])
    hit = np.array([0.0, 0.0, 1.0]) - d_world / d_world[2]
    footprint = np.linalg.norm(hit - [0, 0, 1]) / cam.fx / abs(d_world[2] / np.linalg.norm(d_world))
    expected = _checker(hit[None, :2], 0.5)[0]
    fade = min(footprint / 0.25, 1.0)
    np.testing.assert_allclose(soft.rgb[near_v, u].numpy(), (1 - fade) * expected + fade * TILE_COLORS.mean(0),
                               atol=1e-5)
    assert 0.05 < fade < 0.95
    # above the horizon: the sky, nothing drawn
    assert out.alpha[0].sum() == 0 and out.depth[0].abs().sum() == 0
    np.testing.assert_allclose(out.rgb[0].numpy(), 1.0)
    # beyond the sensor's reach the plane is not drawn either
    near_only = render_plane(cam, [0.0, 0.0, 1.0, 0.0], texture, 0.5, TILE_COLORS.mean(0), [1.0, 1.0, 1.0],
                             max_depth=3.0)
    assert (near_only.depth <= 3.0).all() and near_only.alpha.sum() < out.alpha.sum()


def test_static_splats_stop_at_the_surface_edge():
    """A 10 x 10 cm square of points on z = 0 in 2 cm voxels: voxels inside get the hole-closing
    scale along both surface axes; the ones on its border get ``edge_scale`` across the border."""
    g = np.stack(np.meshgrid(np.arange(0.0005, 0.1, 0.002), np.arange(0.0005, 0.1, 0.002)), -1).reshape(-1, 2)
    grid = VoxelGrid(0.02, covariance=True)
    grid.integrate(np.c_[g, np.full(len(g), 0.001)], np.ones((len(g), 3)))
    wide = grid.to_gaussians(scale=0.6).scales.numpy()
    sharp = grid.to_gaussians(scale=0.6, edge_scale=0.3).scales.numpy()
    ij = np.floor(grid.points[:, :2] / 0.02).astype(int)
    border = (ij == 0) | (ij == 4)  # [M, 2]: on the border along x, along y
    interior = ~border.any(axis=1)
    np.testing.assert_allclose(sharp[interior], wide[interior])
    corner = border.all(axis=1)
    # a corner voxel: both surface axes at an edge, each at half the hole-closing size (0.3 / 0.6)
    np.testing.assert_allclose(np.sort(sharp[corner])[:, 1:], np.sort(wide[corner])[:, 1:] / 2, rtol=1e-5)
    side = border.any(axis=1) & ~corner
    # a side voxel: smaller across the border (the in-plane axes of a fully covered voxel may turn
    # either way in its plane: the larger one may be flagged too)
    assert (np.sort(sharp[side])[:, 1] < 0.75 * np.sort(wide[side])[:, 1]).all()


def test_carving_removes_a_smear_the_camera_sees_through():
    """A 4 cm cube's model plus a smear 3 cm in front of its front face (a view fused off). A camera
    in front sees the true face and, around the cube, the wall 1 m behind: the smear lies in front
    of what is seen through it and goes after as many views as it was fused; the surface stays."""
    cfg = MemoryConfig()
    grid = VoxelGrid(cfg.object_voxel)
    centres = np.arange(-0.0175, 0.02, 0.005)  # one point per 5 mm voxel
    face = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2)
    surface = np.c_[face[:, 0], np.full(len(face), -0.02), face[:, 1]]  # the front face, at y = -2 cm
    smear = surface + [0.0, -0.03, 0.0]  # 3 cm nearer the camera
    grid.integrate(surface, np.ones_like(surface))
    grid.integrate(surface, np.ones_like(surface))
    grid.integrate(smear, np.ones_like(smear))
    track = ObjectTrack(1, grid, np.eye(4))
    cam = _camera([0.0, -0.5, 0.0], [0.0, 0.0, 0.0])
    depth = np.full((cam.height, cam.width), 1.5)  # the wall behind
    uv, _ = cam.project(torch.from_numpy(surface))
    lo, hi = uv.numpy().min(0).astype(int) - 1, uv.numpy().max(0).astype(int) + 2
    depth[lo[1]:hi[1], lo[0]:hi[0]] = 0.48  # the cube's face, 2 cm in front of its centre
    nearest = ndimage.minimum_filter(depth, size=3)
    assert carve(track, nearest, cam, cfg) == len(smear)  # weight 1: gone after one view
    assert len(grid) == len(surface)
    assert carve(track, nearest, cam, cfg) == 0 and (grid.weights == 2).all()
