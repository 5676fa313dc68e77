"""Pose alignment, PSNR and revisit detection against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from splatworld.errors import ShapeError
from splatworld.evaluation import aligned_pose_errors, centre_errors, depth_edges, psnr, revisited_frames, still_motion
from splatworld.scene.transforms import matrix_to_pose, pose_to_matrix


def _random_poses(n, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.concatenate([rng.uniform(-1, 1, (n, 3)), q], axis=1)


def test_constant_frame_change_is_aligned_away():
    gt = _random_poses(20, 0)
    x = pose_to_matrix(torch.tensor(_random_poses(1, 1)[0]))  # the tracker's own object frame
    track = matrix_to_pose(pose_to_matrix(torch.tensor(gt)) @ torch.linalg.inv(x)).numpy()
    pos, rot = aligned_pose_errors(gt, track)
    assert pos.max() < 1e-9 and rot.max() < 1e-4


def test_hand_computed_residuals():
    # Identity frames, one frame off by 3 cm along x and one rotated 6 degrees about z: with
    # two frames the fitted offset splits the error, so each is 1.5 cm / 3 degrees off.
    gt = np.array([[0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0]], dtype=float)
    half = math.radians(6) / 2
    track = np.array([[0, 0, 0, 1, 0, 0, 0], [0.03, 0, 0, math.cos(half), 0, 0, math.sin(half)]])
    pos, rot = aligned_pose_errors(gt, track)
    np.testing.assert_allclose(rot, [3.0, 3.0], atol=1e-6)
    # fitted offset t_x = mean(R_k^T (0 - t_k)): frame 1 contributes -R1^T [0.03, 0, 0]
    r1 = pose_to_matrix(torch.tensor(track[1]))[:3, :3].numpy()
    tx = -(r1.T @ [0.03, 0, 0]) / 2
    np.testing.assert_allclose(pos, [np.linalg.norm(tx), np.linalg.norm(r1 @ tx + [0.03, 0, 0])], atol=1e-12)


def test_pose_errors_shape_checks():
    with pytest.raises(ShapeError, match="track_poses"):
        aligned_pose_errors(np.zeros((3, 7)), np.zeros((2, 7)))
    assert aligned_pose_errors(np.zeros((0, 7)), np.zeros((0, 7)))[0].shape == (0,)


def test_a_centre_kept_under_a_wrong_rotation_scores_by_where_it_is():
    # A rolling ball tracked from an origin 2 cm off its centre, its rotation never seen (held at
    # the identity): the aligned pose is centimetres off, the model's centre (5 mm high: the bottom
    # is never seen) is exact up to that constant.
    gt = _random_poses(30, 2)
    d = np.array([0.02, 0.0, 0.0])  # the track's origin, in the ball's frame
    r = pose_to_matrix(torch.tensor(gt))[:, :3, :3].numpy()
    track = np.concatenate([gt[:, :3] + r @ d, np.tile([1.0, 0, 0, 0], (30, 1))], axis=1)
    assert np.median(aligned_pose_errors(gt, track)[0]) > 0.01
    centres = gt[:, :3] + [0.0, 0.0, 0.005]
    assert centre_errors(gt, centres).max() < 1e-12
    # and a point on the ball off its centre, seen turning with it, is where the ball carries it
    assert centre_errors(gt, gt[:, :3] + r @ d + [0.0, 0.0, 0.005]).max() < 1e-12


def test_centre_errors_hand_computed():
    # Identity rotations: the fitted constant is the mean offset, [0.01, 0, 0]; the residuals are
    # 1 cm and 1 cm. A third frame turned 90 degrees about z separates the object-frame constant
    # from the world's, so two frames on x and one on y are fitted exactly.
    gt = np.array([[0, 0, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0, 0]], dtype=float)
    np.testing.assert_allclose(centre_errors(gt, [[0.0, 0, 0], [1.02, 0, 0]]), [0.01, 0.01], atol=1e-12)
    c = math.cos(math.pi / 4)
    gt = np.array([[0, 0, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0, 0], [0, 1, 0, c, 0, 0, c]], dtype=float)
    d, w = np.array([0.03, 0, 0]), np.array([0, 0, 0.004])  # R_z(90) d = [0, 0.03, 0]
    centres = gt[:, :3] + [d + w, d + w, [0, 0.03, 0.004]]
    assert centre_errors(gt, centres).max() < 1e-12
    with pytest.raises(ShapeError, match="track_centres"):
        centre_errors(gt, np.zeros((2, 3)))
    assert centre_errors(np.zeros((0, 7)), np.zeros((0, 3))).shape == (0,)


def test_still_motion_hand_computed():
    """Four held frames: the truth stands, then is pushed 5 cm; the track steps 2 mm, turns 3
    degrees about z in place, then follows the push."""
    half = math.radians(3.0) / 2
    gt = [[0, 0, 0, 1, 0, 0, 0]] * 3 + [[0.05, 0, 0, 1, 0, 0, 0]]
    track = [[0, 0, 0, 1, 0, 0, 0], [0.002, 0, 0, 1, 0, 0, 0], [0.002, 0, 0, math.cos(half), 0, 0, math.sin(half)],
             [0.052, 0, 0, math.cos(half), 0, 0, math.sin(half)]]
    still, moved, distance = still_motion(gt, track)
    np.testing.assert_array_equal(still, [True, True, False])
    np.testing.assert_array_equal(moved, [True, True, True])
    np.testing.assert_allclose(distance, [0.002, 0.0, 0.05], atol=1e-12)
    still, moved, _ = still_motion(gt, track, moved=0.003, turned_deg=5.0)
    np.testing.assert_array_equal(moved, [False, False, True])
    with pytest.raises(ShapeError, match="track_poses"):
        still_motion(gt, track[:3])


def test_psnr_hand_computed():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255  # one pixel of four fully wrong: MSE = 255^2 / 4
    assert psnr(b, a) == pytest.approx(10 * math.log10(4))
    mask = np.array([[False, True], [True, True]])
    assert psnr(b, a, mask) == math.inf  # the wrong pixel is outside the region
    assert math.isnan(psnr(b, a, np.zeros((2, 2), bool)))
    assert psnr(np.full((1, 1, 3), 0.1), np.zeros((1, 1, 3))) == pytest.approx(20.0)
    with pytest.raises(ShapeError):
        psnr(a, np.zeros((2, 3, 3), np.uint8))


def test_revisited_frames():
    def cam(x, tilt_deg):
        m = np.eye(4)
        c, s = math.cos(math.radians(tilt_deg)), math.sin(math.radians(tilt_deg))
        m[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]  # tilts the optical axis (third column)
        m[0, 3] = x
        return m

    # frame 3 returns to frame 0's place; frame 4 is there but turned 10 degrees; frame 5 is 4 cm off
    poses = np.stack([cam(0, 0), cam(1, 0), cam(2, 0), cam(0, 0), cam(0, 10), cam(0.04, 3)])
    assert revisited_frames(poses, min_gap=2) == [(3, 0), (5, 0)]
    assert revisited_frames(poses, min_gap=4) == [(5, 0)]


def test_depth_edges_hand_made():
    depth = np.ones((5, 6))
    depth[:, 3:] = 2.0  # a jump between columns 2 and 3
    depth[0, 0] = 0.0  # no return
    edges = depth_edges(depth, width=0)
    expected = np.zeros((5, 6), bool)
    expected[:, 2:4] = True
    expected[0, :2] = expected[1, 0] = True  # around the missing pixel
    np.testing.assert_array_equal(edges, expected)
    assert depth_edges(depth, width=1)[:, 1:5].all()
    assert not depth_edges(np.full((4, 4), 3.0)).any()
