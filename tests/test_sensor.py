"""Sensor realism in the generator: the noise models against their formulas on hand-made depth
maps, and generated episodes whose pixels and reported poses change while the truth does not."""

import math

import numpy as np
import pytest

from splatworld.errors import ConfigError
from splatworld.jobs.config import load_config
from splatworld.scene.episode import Episode
from splatworld.sim.generate import generate_episode
from splatworld.sim.sensor import SENSORS, PoseDrift, SensorModel, incidence, noisy_depth, noisy_rgb, sensor_model

F, W, H = 200.0, 128, 96  # focal length and size of the hand-made depth maps


def _plane(z: float, tilt_deg: float = 0.0) -> np.ndarray:
    """z-depth of a plane through (0, 0, z) turned ``tilt_deg`` about the camera's x axis."""
    v = (np.arange(H)[:, None] + 0.5 - H / 2) / F
    slope = math.tan(math.radians(tilt_deg))
    return np.broadcast_to(z / (1.0 - slope * v), (H, W)).astype(np.float64)


def test_incidence_is_the_angle_between_ray_and_normal():
    ray = math.atan(0.5 / F)  # pixel (H/2, W/2)'s ray is half a pixel below the optical axis
    theta = incidence(_plane(2.0, 60.0), F, F, W / 2, H / 2)
    assert theta[H // 2, W // 2] == pytest.approx(math.radians(60.0) + ray, abs=1e-5)
    assert incidence(_plane(2.0), F, F, W / 2, H / 2)[H // 2, W // 2] == pytest.approx(math.hypot(ray, ray), abs=1e-5)


def test_kinect_axial_noise_follows_nguyen_et_al():
    axial = SensorModel(axial_base=0.0012, axial_quadratic=0.0019, axial_offset=0.4)  # the kinect's axial terms alone
    for z in (1.0, 2.0, 3.0):
        noisy = noisy_depth(axial, _plane(z), F, F, W / 2, H / 2, np.random.default_rng(0))
        expected = 0.0012 + 0.0019 * (z - 0.4) ** 2
        assert np.std(noisy - z) == pytest.approx(expected, rel=0.05)
        assert abs(np.mean(noisy - z)) < 3 * expected / math.sqrt(W * H)  # unbiased


def test_kinect_quantises_holes_and_range():
    kinect = sensor_model("kinect")
    rng = np.random.default_rng(1)
    depth = _plane(2.0).copy()
    depth[:, W // 2:] = 3.0  # a step: a depth discontinuity down the middle
    depth[:10] = 5.0  # beyond the range
    noisy = noisy_depth(kinect, depth, F, F, W / 2, H / 2, rng)
    assert (noisy[:8] == 0).all()  # (rows 8-9 may read row 10 through the lateral jitter)
    flat = noisy[20:, 5:W // 2 - 5]
    levels = 1.0 / (2.85e-3 * flat[flat > 0])  # disparity in quantisation steps: whole numbers
    np.testing.assert_allclose(levels, np.rint(levels), atol=1e-3)
    depths = np.unique(np.round(flat[flat > 0], 5))
    assert np.diff(depths).min() > 0.9 * 2.85e-3 * 1.9 ** 2  # about dz = 2.85e-3 z^2 apart (11 mm at 2 m)
    edge = noisy[20:, W // 2 - 1:W // 2 + 1]
    assert 0.3 < (edge == 0).mean() < 0.95  # holes next to the step (p = 0.6 per pixel, plus jitter)
    assert (noisy[20:, 5:W // 2 - 5] == 0).mean() < 0.01  # not on the flat surface
    again = noisy_depth(kinect, depth, F, F, W / 2, H / 2, np.random.default_rng(1))
    assert np.array_equal(noisy, again)  # deterministic per stream
    with pytest.raises(ConfigError, match="kinect"):
        sensor_model("kinnect")


def test_rgb_noise_grows_with_intensity_and_ideal_is_identity():
    kinect = SENSORS["kinect"]
    flat = np.full((64, 64, 3), 40, np.uint8), np.full((64, 64, 3), 220, np.uint8)
    dark, bright = (noisy_rgb(kinect, f, np.random.default_rng(2)).astype(float) for f in flat)
    for image, level in ((dark, 40 / 255), (bright, 220 / 255)):
        expected = 255 * math.sqrt(kinect.rgb_shot * level + kinect.rgb_read ** 2)
        assert np.std(image) == pytest.approx(expected, rel=0.1)
    ideal = SENSORS["ideal"]
    assert noisy_rgb(ideal, flat[0], np.random.default_rng(0)) is flat[0]
    assert noisy_depth(ideal, _plane(1.0), F, F, W / 2, H / 2, np.random.default_rng(0)) is not None


def test_pose_drift_is_a_random_walk_at_the_sensor_rate():
    kinect = SENSORS["kinect"]
    ends = []
    for seed in range(400):
        drift = PoseDrift(kinect, np.random.default_rng(seed))
        for _ in range(100):  # 10 s at 10 frames/s
            drift.step(0.1)
        ends.append([*drift.offset, drift.yaw])
    ends = np.array(ends)
    assert np.std(ends[:, :3]) == pytest.approx(kinect.drift_m * math.sqrt(10.0), rel=0.1)
    assert np.std(ends[:, 3]) == pytest.approx(math.radians(kinect.drift_deg) * math.sqrt(10.0), rel=0.15)
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    reported = drift.reported(c2w)
    np.testing.assert_allclose(reported[:3, 3], c2w[:3, 3] + drift.offset)
    np.testing.assert_allclose(reported[:3, :3] @ reported[:3, :3].T, np.eye(3), atol=1e-12)


def test_a_kinect_episode_changes_pixels_and_reported_poses_not_the_truth(tmp_path):
    def generate(name, *extra):
        cfg = load_config("generate", [f"out={tmp_path / name}", "progress=false", "width=96", "height=96",
                                       "scenario=occlusion", "seconds=2", "seed=4", *extra])
        return Episode(generate_episode(cfg))

    ideal = generate("ideal")
    kinect = generate("kinect", "sensor=kinect", "pose_noise=true")
    assert kinect.meta["sensor"] == {"model": "kinect", "pose_noise": True}
    truth = kinect.ground_truth()
    assert truth["objects"] == ideal.ground_truth()["objects"]
    true_c2w = np.array(truth["camera_transform_matrices"])
    reported = np.array([kinect.info(i).transform_matrix for i in range(len(kinect))])
    np.testing.assert_allclose(true_c2w, [ideal.info(i).transform_matrix for i in range(len(ideal))], atol=1e-6)
    np.testing.assert_allclose(reported[0], true_c2w[0], atol=1e-6)  # the first frame fixes the world frame
    assert 0 < np.linalg.norm(reported[-1, :3, 3] - true_c2w[-1, :3, 3]) < 0.05
    for i in (0, len(kinect) - 1):
        a, b = ideal[i], kinect[i]
        assert np.array_equal(a.instances, b.instances)
        known = (a.depth > 0) & (b.depth > 0)
        assert 0.001 < np.median(np.abs(a.depth - b.depth)[known]) < 0.02
        assert (b.depth == 0).mean() > (a.depth == 0).mean()
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() > 2
