import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from splatworld.errors import ConfigError
from splatworld.memory.registration import PLANE_SCORE_POINTS, estimate_normals, icp_point_to_plane, ransac_plane


def _box_surface(n=2000, seed=0):
    """Points on the surface of a 10 x 6 x 4 cm box (three pairs of faces)."""
    rng = np.random.default_rng(seed)
    half = np.array([0.05, 0.03, 0.02])
    pts = rng.uniform(-1, 1, (n, 3)) * half
    axis = rng.integers(0, 3, n)
    pts[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * half[axis]
    return pts + [0.4, -0.2, 0.7]


def test_normals_of_a_box_face_point_along_its_axis():
    pts = _box_surface()
    normals = estimate_normals(pts, 0.015)
    on_top = np.abs(pts[:, 2] - 0.72) < 1e-9
    inner = on_top & (np.abs(pts[:, 0] - 0.4) < 0.03) & (np.abs(pts[:, 1] + 0.2) < 0.01)
    assert np.allclose(np.abs(normals[inner, 2]), 1.0, atol=1e-6)


def test_icp_recovers_a_known_motion_bit_for_bit_repeatably():
    target = _box_surface()
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_euler("z", 4, degrees=True).as_matrix()
    truth[:3, 3] = [0.006, -0.004, 0.0]
    # the source is the target seen after the inverse motion: ICP must find `truth`
    inverse = np.linalg.inv(truth)
    source = target[::3] @ inverse[:3, :3].T + inverse[:3, 3]
    normals, tree = estimate_normals(target, 0.015), cKDTree(target)
    runs = [icp_point_to_plane(source, target, normals, tree, 0.02, np.eye(4)) for _ in range(2)]
    assert np.array_equal(runs[0].transformation, runs[1].transformation)
    result = runs[0]
    assert np.allclose(result.transformation, truth, atol=1e-5)
    assert result.fitness == 1.0 and result.inlier_rmse < 1e-5


def test_icp_kernel_matches_its_numpy_twin_on_partial_noisy_views():
    """The numba Gauss-Newton step and its numpy twin: the same poses to rounding, step by step
    (one iteration at a time from the same start) and after a full run, on a partial noisy view
    that leaves most pairs at the rim (fitness < 1) and a few so far they pair with nothing."""
    target = _box_surface(1500, seed=3)
    rng = np.random.default_rng(4)
    normals, tree = estimate_normals(target, 0.015), cKDTree(target)
    view = target[target[:, 0] > 0.42] + rng.normal(0, 0.002, (int((target[:, 0] > 0.42).sum()), 3))
    view = np.concatenate([view, [[0.5, -0.2, 0.7], [0.3, -0.1, 0.6]]])  # two strays beyond reach
    init = np.eye(4)
    init[:3, :3] = Rotation.from_euler("xyz", [2, -3, 5], degrees=True).as_matrix()
    init[:3, 3] = [0.004, 0.006, -0.003]
    for iterations in (1, 2, 20):
        fast, twin = (icp_point_to_plane(view, target, normals, tree, 0.02, init, iterations=iterations, backend=b)
                      for b in ("numba", "numpy"))
        np.testing.assert_allclose(fast.transformation, twin.transformation, atol=1e-12, rtol=0)
        assert fast.fitness == twin.fitness and 0.5 < fast.fitness < 1
        assert fast.inlier_rmse == pytest.approx(twin.inlier_rmse, rel=1e-12)
    assert not np.allclose(fast.transformation, init, atol=1e-3)  # it moved


def test_icp_with_too_few_pairs_stays_at_its_start_in_both_backends():
    target = _box_surface()
    normals, tree = estimate_normals(target, 0.015), cKDTree(target)
    far = target[:5] + [0.0, 0.0, 0.5]  # five points, none within reach
    for backend in ("numba", "numpy"):
        result = icp_point_to_plane(far, target, normals, tree, 0.02, np.eye(4), backend=backend)
        assert np.array_equal(result.transformation, np.eye(4))
        assert result.fitness == 0.0 and result.inlier_rmse == 0.0
    with pytest.raises(ConfigError, match="numpy"):
        icp_point_to_plane(far, target, normals, tree, 0.02, np.eye(4), backend="cuda")


def test_ransac_finds_the_table_top_among_clutter():
    rng = np.random.default_rng(1)
    top = np.column_stack([rng.uniform(-0.5, 0.5, (3000, 2)), np.full(3000, 0.625) + rng.normal(0, 0.002, 3000)])
    wall = np.column_stack([np.full(800, 0.3), rng.uniform(-0.5, 0.5, 800), rng.uniform(0.6, 1.0, 800)])
    plane, inliers = ransac_plane(np.concatenate([top, wall]), 0.01, 200, np.random.default_rng(0))
    assert np.allclose(plane[:3], [0, 0, 1], atol=1e-3) and abs(-plane[3] - 0.625) < 1e-3
    near = np.abs(wall[:, 2] - 0.625) < 0.009  # wall points this close to the top are inliers too
    assert inliers[:3000].all() and inliers[3000:][near].all() and not inliers[3000:][np.abs(wall[:, 2] - 0.625) > 0.011].any()


def test_ransac_gives_the_same_plane_whichever_triple_wins():
    """A noisy table top (3 mm) among clutter: the plane refitted until its inliers settle is the
    same for every random seed, and the least-squares plane of the true top's points."""
    rng = np.random.default_rng(2)
    top = np.column_stack([rng.uniform(-0.5, 0.5, (4000, 2)), 0.62 + rng.normal(0, 0.003, 4000)])
    clutter = rng.uniform([-0.5, -0.5, 0.6], [0.5, 0.5, 0.7], (1500, 3))
    points = np.concatenate([top, clutter])
    planes = np.stack([ransac_plane(points, 0.01, 200, np.random.default_rng(seed))[0] for seed in range(10)])
    assert np.ptp(planes, axis=0).max() < 1e-12
    tilt = np.degrees(np.arccos(planes[0, 2]))
    assert tilt < 0.05 and abs(-planes[0, 3] / planes[0, 2] - 0.62) < 5e-4


def test_ransac_on_a_map_sized_cloud_gives_the_least_squares_plane_of_its_inliers():
    """100k points (a static map's size, well over PLANE_SCORE_POINTS, so triples are ranked on a
    sample): a noisy table top over a larger floor below it. The plane is the table's least-squares
    plane through exactly the points within the threshold of it, the same for every seed."""
    rng = np.random.default_rng(3)
    top = np.column_stack([rng.uniform(-0.4, 0.4, (45_000, 2)), 0.7 + rng.normal(0, 0.003, 45_000)])
    floor = np.column_stack([rng.uniform(-1.5, 1.5, (30_000, 2)), rng.normal(0, 0.003, 30_000)])
    clutter = rng.uniform([-0.4, -0.4, 0.7], [0.4, 0.4, 0.9], (25_000, 3))
    points = np.concatenate([top, floor, clutter])
    assert len(points) > PLANE_SCORE_POINTS
    runs = [ransac_plane(points, 0.01, 200, np.random.default_rng(seed)) for seed in range(4)]
    for plane, inliers in runs:
        assert np.array_equal(inliers, np.abs(points @ plane[:3] + plane[3]) < 0.01)
        centre = points[inliers].mean(axis=0)
        normal = np.linalg.svd(points[inliers] - centre, full_matrices=False)[2][-1]
        assert np.allclose(np.abs(normal @ plane[:3]), 1.0, atol=1e-12) and abs(plane[:3] @ centre + plane[3]) < 1e-12
    planes = np.stack([plane for plane, _ in runs])
    assert np.ptp(planes, axis=0).max() < 1e-12 and abs(-planes[0, 3] / planes[0, 2] - 0.7) < 5e-4
