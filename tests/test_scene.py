import math

import numpy as np
import pytest
import torch
import trimesh
from kornia.geometry.conversions import quaternion_to_rotation_matrix

from splatworld.errors import ConfigError, PlyFormatError, ShapeError
from splatworld.scene import (
    Camera,
    Cameras,
    Gaussians,
    look_at,
    nerfstudio_to_opencv,
    opencv_to_nerfstudio,
    quat_conjugate,
    quat_multiply,
    quat_to_rotmat,
    read_ply,
    write_ply,
)
from splatworld.scene.build import gaussians_from_mesh, gaussians_from_rgbd
from splatworld.scene.transforms import matrix_to_pose, pose_to_matrix


def test_container_rejects_bad_shapes_naming_the_field(make_gaussians):
    g = make_gaussians(5, 0)
    with pytest.raises(ShapeError, match="quats"):
        Gaussians(g.means, g.quats[:, :3], g.log_scales, g.opacity_logits, g.sh, g.object_ids)
    with pytest.raises(ShapeError, match="not a square"):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, torch.zeros(5, 2, 3), g.object_ids)
    with pytest.raises(ShapeError, match="object_ids"):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.object_ids.int())


def test_quat_multiply_matches_rotation_composition():
    a, b = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    a, b = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    expected = quaternion_to_rotation_matrix(a) @ quaternion_to_rotation_matrix(b)
    torch.testing.assert_close(quat_to_rotmat(quat_multiply(a, b)), expected)


def test_quat_conjugate_is_the_inverse_rotation():
    q = torch.randn(10, 4, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(quat_to_rotmat(quat_conjugate(q)), quaternion_to_rotation_matrix(q).transpose(-1, -2))


def test_quaternion_convention_is_wxyz():
    # 90 degrees about z: w = cos 45, z = sin 45; maps x to y.
    q = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)], dtype=torch.float64)
    torch.testing.assert_close(quat_to_rotmat(q) @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))


def test_pose_matrix_round_trip():
    pose = torch.tensor([0.1, -0.2, 0.3, 0.9, 0.1, -0.3, 0.2], dtype=torch.float64)
    pose[3:] /= pose[3:].norm()
    torch.testing.assert_close(matrix_to_pose(pose_to_matrix(pose)), pose)


def test_transform_moves_means_and_composes_orientations(make_gaussians):
    g = make_gaussians(20, 1, dtype=torch.float64)
    pose = torch.tensor([0.5, -1.0, 2.0, 0.8, 0.2, 0.4, -0.4], dtype=torch.float64)
    m = pose_to_matrix(pose)
    moved = g.transform(pose)
    torch.testing.assert_close(moved.means, g.means @ m[:3, :3].T + m[:3, 3])
    torch.testing.assert_close(quat_to_rotmat(moved.quats), m[:3, :3] @ quat_to_rotmat(g.quats))
    torch.testing.assert_close(moved.log_scales, g.log_scales)
    back = moved.transform(torch.linalg.inv(m))
    torch.testing.assert_close(back.means, g.means)


def test_concat_pads_sh_and_select(make_gaussians):
    a, b = make_gaussians(4, 0, sh_degree=0), make_gaussians(3, 1, sh_degree=2)
    c = Gaussians.concat([a, b])
    assert len(c) == 7 and c.sh_degree == 2
    assert torch.equal(c.sh[:4, 1:], torch.zeros(4, 8, 3))
    assert torch.equal(c.select(torch.arange(4, 7)).sh, b.sh)
    assert len(c.select(c.object_ids == 0)) == int((c.object_ids == 0).sum())


@pytest.mark.parametrize("degree", [0, 3])
def test_ply_round_trip_is_identical(tmp_path, make_gaussians, degree):
    g = make_gaussians(100, 2, sh_degree=degree, n_objects=7)
    back = read_ply(write_ply(tmp_path / "g.ply", g))
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh", "object_ids"):
        assert torch.equal(getattr(back, name), getattr(g, name)), name


def test_ply_reads_gsplat_export_and_gsplat_layout(tmp_path, make_gaussians):
    from gsplat.exporter import export_splats

    g = make_gaussians(50, 3, sh_degree=1)
    path = tmp_path / "gsplat.ply"
    # gsplat permutes shN [N, K, 3] to channel-major itself, as the reference 3DGS code does.
    export_splats(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh[:, :1], g.sh[:, 1:],
                  format="ply", save_to=str(path))
    back = read_ply(path)
    torch.testing.assert_close(back.sh, g.sh, rtol=0, atol=0)
    torch.testing.assert_close(back.means, g.means, rtol=0, atol=0)
    assert torch.equal(back.object_ids, torch.zeros(50, dtype=torch.int64))

    from plyfile import PlyData

    names = [p.name for p in PlyData.read(str(write_ply(tmp_path / "ours.ply", g)))["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:18] == [f"f_rest_{i}" for i in range(9)]
    assert names[18:26] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def test_ply_missing_properties_are_named(tmp_path):
    from plyfile import PlyData, PlyElement

    data = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("opacity", "f4")])
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "bad.ply"))
    with pytest.raises(PlyFormatError, match=r"bad.ply: missing vertex properties \['f_dc_0'.*'rot_3'\]"):
        read_ply(tmp_path / "bad.ply")
    (tmp_path / "junk.ply").write_text("not a ply")
    with pytest.raises(PlyFormatError, match="junk.ply"):
        read_ply(tmp_path / "junk.ply")
    with pytest.raises(PlyFormatError, match="no such file"):
        read_ply(tmp_path / "absent.ply")


def test_nerfstudio_conversion_round_trip_and_axes():
    view = look_at([1.0, 2.0, 3.0], [0.0, 0.0, 0.5])
    c2w_gl = opencv_to_nerfstudio(view)
    torch.testing.assert_close(nerfstudio_to_opencv(c2w_gl), view)
    # nerfstudio: the camera looks along its -z axis, and its +y is image-up (world up here).
    forward = -c2w_gl[:3, 2]
    expected = torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64) - torch.tensor([1.0, 2.0, 3.0],
                                                                                 dtype=torch.float64)
    torch.testing.assert_close(forward, expected / expected.norm())
    assert c2w_gl[2, 1] > 0
    torch.testing.assert_close(c2w_gl[:3, 3], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))


def test_projection_of_a_hand_computed_point():
    # Camera at the origin of a nerfstudio pose looking along world -z (identity c2w).
    cam = Camera.from_nerfstudio(100.0, 100.0, 32.0, 24.0, 64, 48, torch.eye(4))
    uv, z = cam.project(torch.tensor([[0.1, 0.2, -2.0]], dtype=torch.float64))
    # OpenCV: x right = +0.1 -> u = 32 + 100 * 0.1 / 2; y down = -0.2 -> v = 24 - 100 * 0.2 / 2.
    torch.testing.assert_close(uv, torch.tensor([[37.0, 14.0]], dtype=torch.float64))
    torch.testing.assert_close(z, torch.tensor([2.0], dtype=torch.float64))


def test_backproject_inverts_project(camera):
    depth = torch.rand(camera.height, camera.width, dtype=torch.float64) + 0.5
    points = camera.backproject(depth)
    uv, z = camera.project(points)
    torch.testing.assert_close(z, depth)
    torch.testing.assert_close(uv[5, 7], torch.tensor([7.5, 5.5], dtype=torch.float64))


def test_gaussians_from_mesh_lie_on_the_surface_as_tangent_discs():
    box = trimesh.creation.box(extents=[0.2, 0.4, 0.6])
    g = gaussians_from_mesh(box, 2000, rgb=[0.2, 0.4, 0.6], object_id=7, seed=3)
    assert len(g) == 2000 and torch.all(g.object_ids == 7)
    half = torch.tensor([0.1, 0.2, 0.3])
    on_face = ((g.means.abs() - half).abs() < 1e-5).any(dim=1)
    assert on_face.all()
    normal = quat_to_rotmat(g.quats)[:, :, 2]  # thin axis
    face_axis = ((g.means.abs() - half).abs() < 1e-5).float().argmax(dim=1)
    assert torch.allclose(normal.abs().gather(1, face_axis[:, None]), torch.ones(2000, 1), atol=1e-5)
    assert torch.all(g.scales[:, 2] < g.scales[:, 0])
    torch.testing.assert_close(g.sh[:, 0] * 0.28209479177387814 + 0.5, torch.tensor([[0.2, 0.4, 0.6]]).expand(
        2000, 3))
    again = gaussians_from_mesh(box, 2000, rgb=[0.2, 0.4, 0.6], object_id=7, seed=3)
    assert torch.equal(again.means, g.means)


def test_gaussians_from_rgbd_backprojects_a_plane():
    cam = Camera.from_fov(60.0, 64, 48, look_at([0.0, 0.0, 2.0], [0.0, 0.0, 0.0], up=(0.0, 1.0, 0.0)))
    depth = torch.full((48, 64), 2.0)
    depth[0, 0] = 0.0  # unknown
    rgb = torch.zeros(48, 64, 3, dtype=torch.uint8)
    rgb[..., 1] = 255
    labels = torch.zeros(48, 64, dtype=torch.int64)
    labels[:, 32:] = 4
    g = gaussians_from_rgbd(rgb, depth, cam, instances=labels)
    assert len(g) == 48 * 64 - 1
    assert torch.allclose(g.means[:, 2], torch.zeros(len(g)), atol=1e-5)
    pixel = 2.0 / cam.fx  # metres between neighbouring pixels at 2 m
    torch.testing.assert_close(g.scales[:, 0], torch.full((len(g),), 0.7 * pixel), rtol=1e-3, atol=0)
    assert set(g.object_ids.tolist()) == {0, 4}
    with pytest.raises(ShapeError, match="non-finite"):
        gaussians_from_rgbd(rgb, torch.full((48, 64), float("nan")), cam)
    with pytest.raises(ShapeError, match="depth"):
        gaussians_from_rgbd(rgb, torch.ones(10, 10), cam)


def test_gaussians_from_shape_lie_on_the_primitive():
    from splatworld.scene.build import gaussians_from_shape

    g = gaussians_from_shape({"type": "cylinder", "radius": 0.025, "height": 0.1}, 400, (0.9, 0.1, 0.1), object_id=7)
    x, y, z = g.means.double().unbind(-1)
    radial = (x**2 + y**2).sqrt()
    on_side = (radial - 0.025).abs() < 1e-3  # a 32-sided prism: its flats lie within 0.5 mm of the circle
    on_caps = ((z.abs() - 0.05).abs() < 1e-6) & (radial <= 0.025 + 1e-6)
    assert bool((on_side | on_caps).all()) and len(g) == 400 and set(g.object_ids.tolist()) == {7}
    box = gaussians_from_shape({"type": "box", "half_extents": [0.1, 0.2, 0.3]}, 200, (0, 1, 0))
    assert torch.allclose(box.means.abs().amax(0), torch.tensor([0.1, 0.2, 0.3]), atol=1e-2)
    ball = gaussians_from_shape({"type": "sphere", "radius": 0.05}, 200, (0, 0, 1))
    assert torch.allclose(ball.means.norm(dim=-1), torch.full((200,), 0.05), atol=1e-3)
    with pytest.raises(ConfigError, match="agent_shape.radius"):
        gaussians_from_shape({"type": "sphere", "radius": -1}, 10, (0, 0, 0))
    with pytest.raises(ConfigError, match="agent_shape.type: 'cone'"):
        gaussians_from_shape({"type": "cone"}, 10, (0, 0, 0))


def test_batched_cameras_project_as_each_camera_does():
    eyes = [[1.5, -1.0, 1.0], [0.0, 2.0, 0.5], [-1.0, -1.0, 2.0]]
    single = [Camera.from_fov(50.0, 64, 48, look_at(eye, [0.0, 0.0, 0.3])) for eye in eyes]
    meta = {"fl_x": single[0].fx, "fl_y": single[0].fy, "cx": single[0].cx, "cy": single[0].cy, "w": 64, "h": 48}
    cameras = Cameras.from_nerfstudio(meta, torch.stack([c.c2w_nerfstudio for c in single]).numpy())
    points = np.random.default_rng(0).uniform(-2.0, 2.0, (50, 3))
    assert len(cameras) == 3
    for i, cam in enumerate(single):
        uv, z = cameras.project(i, points)
        ref_uv, ref_z = cam.project(torch.from_numpy(points))
        torch.testing.assert_close(uv, ref_uv, rtol=1e-9, atol=1e-9)  # f x / z grows near the camera plane
        torch.testing.assert_close(z, ref_z, rtol=0, atol=1e-12)
        assert torch.equal(cameras.in_image(i, points), cam.in_image(torch.from_numpy(points)))
        assert 0 < int(cam.in_image(torch.from_numpy(points)).sum()) < 50  # some in, some out
        torch.testing.assert_close(cameras[i].viewmat, cam.viewmat, rtol=0, atol=1e-12)
    # a sequence of cameras, each with its own points [F, N, 3]: the same as one camera at a time
    per_frame = np.random.default_rng(1).uniform(-2.0, 2.0, (3, 7, 3))
    uv, z = cameras.project([2, 0, 1], per_frame)
    for row, i in enumerate([2, 0, 1]):
        ref_uv, ref_z = cameras.project(i, per_frame[row])
        torch.testing.assert_close(uv[row], ref_uv, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(z[row], ref_z, rtol=0, atol=1e-12)
    assert torch.equal(cameras.in_image([0, 1, 2], per_frame[:, 0]),
                       torch.stack([cameras.in_image(i, per_frame[i, 0]) for i in range(3)]))
