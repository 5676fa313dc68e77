"""Dynamics: geometry constraints, baselines, quasi-static pushing, the learned model's gating, training (also DDP)."""

import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from splatworld.dynamics.data import MemorySlots, rotation_increment, sequence_from_poses, state_at, window_batch, yaw_box
from splatworld.dynamics.evaluate import horizon_errors, push_end_errors, push_events
from splatworld.dynamics.models import (DynamicsConfig, InteractionModel, apply_constraints, drive_heading, from_frame,
                                        geometry_probes, make_model, outline_gaps, pushing_into, reach_in_frame,
                                        rollout, to_frame)
from splatworld.dynamics.pushing import cross2, limit_surface_length, quasi_static_push
from splatworld.dynamics.physics import PhysicsModel
from splatworld.dynamics.state import (HULL_VERTICES, Heightmap, WorldState, box_outline, box_yaw, convex_hull, footprint_half,
                                       footprint_outline, outline_support, support_under)
from splatworld.dynamics.train import Unrolled, load_checkpoint, pushed_starts, rollout_loss
from splatworld.jobs.train_dynamics import DATASET_VERSION, build_dataset, train
from splatworld.jobs.config import load_config
from splatworld.errors import ConfigError, ShapeError, SplatworldError
from splatworld.scene.transforms import quat_multiply, rotmat_to_quat

TABLE = 0.6  # table top height of the hand-made scaffold


def _scaffold(wall=False) -> Heightmap:
    """Floor at 0 over [-1, 1]^2; a table top (x, y in [-0.5, 0.5]) at TABLE; optionally a
    10 cm wall on the table at x in [0.3, 0.34]."""
    cell = 0.02
    xs = np.arange(-1, 1, cell) + cell / 2
    gx, gy = np.meshgrid(xs, xs)
    heights = np.where((np.abs(gx) < 0.5) & (np.abs(gy) < 0.5), TABLE, 0.0)
    if wall:
        heights = np.where((gx > 0.3) & (gx < 0.34) & (np.abs(gy) < 0.5), TABLE + 0.1, heights)
    return Heightmap(torch.tensor([-1.0, -1.0], dtype=torch.float64), cell, torch.tensor(heights), 0.0)


def _state(positions, agent=(0.9, 0.9, TABLE + 0.05), size=0.05, geometry=None, velocity=None,
           outline=None) -> WorldState:
    """Upright cubes of edge ``size`` (footprint ``outline [K]`` if given: the cube's own otherwise)."""
    pos = torch.tensor(positions, dtype=torch.float64)[None]
    n = pos.shape[1]
    geometry = geometry or _scaffold()
    vel = torch.zeros(1, n, 3, dtype=torch.float64) if velocity is None else torch.tensor(velocity)[None].double()
    quat = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(1, n, 4).clone()
    extent = torch.full((1, n, 3), size, dtype=torch.float64)
    outline = box_outline(extent) if outline is None else torch.as_tensor(outline, dtype=torch.float64).expand(1, n, -1)
    rest = pos[..., 2] - support_under(geometry, pos[..., :2], footprint_half(quat, extent))
    return WorldState(pos, quat, vel, torch.zeros(1, n, dtype=torch.float64), extent, outline.clone(), rest,
                      torch.ones(1, n, dtype=torch.bool),
                      torch.tensor([agent], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), geometry)


def test_heightmap_from_points_hand_made():
    pts = np.array([[0.01, 0.01, 0.5], [0.015, 0.012, 0.7], [0.05, 0.01, 0.2], [0.09, 0.09, 0.0]])
    hm = Heightmap.from_points(pts, cell=0.02, floor=-1.0)
    h = hm.height_at(torch.tensor([[0.012, 0.011], [0.051, 0.012], [5.0, 5.0], [0.03, 0.09]]))
    np.testing.assert_allclose(h.numpy(), [0.7, 0.2, -1.0, -1.0])  # max per cell; floor outside / unseen
    filled = Heightmap.from_points(pts, cell=0.02, floor=-1.0, fill=(np.array([0, 0, 1.0, -0.3]), np.array([0, 0, 1, 1])))
    assert filled.height_at(torch.tensor([0.03, 0.09])).item() == pytest.approx(0.3)  # the plane z = 0.3
    with pytest.raises(ShapeError):
        Heightmap.from_points(np.zeros((0, 3)))


def _disc(radius: float, n: int = 720) -> np.ndarray:
    """``[n, 3]`` points on a circle of ``radius`` about the z axis: a ball's or a can's footprint."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles), np.zeros(n)], -1)


def test_outline_of_a_box_and_its_support_along_world_directions():
    size = np.array([0.1, 0.04, 0.03])
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size / 2
    outline = footprint_outline(np.concatenate([corners, _box_surface(size, 0.0, (0, 0, 0))]))
    expected = box_outline(torch.tensor(size))
    torch.testing.assert_close(outline, expected)
    assert expected[0].item() == pytest.approx(0.05) and expected[4].item() == pytest.approx(0.02)  # +x, +y
    assert expected[2].item() == pytest.approx((0.05 + 0.02) / np.sqrt(2))  # the corner, at 45 degrees
    # turned by 90 degrees about z, the box's long side lies along world y
    quat = torch.tensor([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], dtype=torch.float64)
    angles = torch.tensor([0.0, np.pi / 2, np.pi, np.pi / 16], dtype=torch.float64)
    got = outline_support(outline, quat, angles)
    np.testing.assert_allclose(got[:3].numpy(), [0.02, 0.05, 0.02], atol=1e-12)
    # halfway between two of the outline's directions: linear interpolation of theirs
    assert got[3].item() == pytest.approx((expected[3] + expected[4]).item() / 2, abs=1e-12)
    with pytest.raises(ShapeError):
        footprint_outline(np.zeros((0, 3)))


def test_outline_gaps_hand_computed():
    state = _state([[0.0, 0.0, TABLE + 0.025], [0.1, 0.0, TABLE + 0.025]], agent=(-0.1, 0.0, 0.65))
    agent_gap, into, pair_gap = outline_gaps(state, agent_radius=0.025)
    assert agent_gap[0, 0].item() == pytest.approx(0.1 - 0.025 - 0.025)  # agent behind the first cube's -x face
    torch.testing.assert_close(into[0, 0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert pair_gap[0, 0, 1].item() == pytest.approx(0.05)  # 0.1 apart minus two halves
    assert pair_gap[0, 0, 0].item() == float("inf")
    # beside a corner: the separating axes bound the true clearance from below, within 1 %
    offset = _state([[0.0, 0.0, TABLE + 0.025]], agent=(-0.1, 0.03, 0.65))
    true = np.hypot(0.075, 0.005) - 0.025
    assert 0.99 * true <= outline_gaps(offset, 0.025)[0][0, 0].item() <= true
    # a ball of radius 3 cm with the agent 6 cm away at 45 degrees: 5 mm apart, where its bounding
    # square's corner would already be 7.4 mm into the agent
    ball = _state([[0.0, 0.0, TABLE + 0.03]], agent=(0.06 / np.sqrt(2), 0.06 / np.sqrt(2), 0.65), size=0.06,
                  outline=footprint_outline(_disc(0.03)))
    assert outline_gaps(ball, 0.025)[0][0, 0].item() == pytest.approx(0.005, abs=1e-9)
    square = _state([[0.0, 0.0, TABLE + 0.03]], agent=(0.06 / np.sqrt(2), 0.06 / np.sqrt(2), 0.65), size=0.06)
    assert outline_gaps(square, 0.025)[0][0, 0].item() == pytest.approx(0.06 - 0.03 * np.sqrt(2) - 0.025)


def _box_surface(size, yaw, centre, n=4000, seed=0) -> np.ndarray:
    """``n [n, 3]`` points on the faces of a box of ``size``, turned by ``yaw`` about z, at ``centre``."""
    rng = np.random.default_rng(seed)
    local = (rng.random((n, 3)) - 0.5) * size
    axis = rng.integers(0, 3, n)
    local[np.arange(n), axis] = np.sign(rng.random(n) - 0.5) * np.asarray(size)[axis] / 2
    c, s = np.cos(yaw), np.sin(yaw)
    return local @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + centre


@pytest.mark.parametrize("degrees", [0.0, 12.5, 30.0, -40.0, 45.0, 80.0])
def test_yaw_box_finds_a_turned_box(degrees):
    size, centre = np.array([0.08, 0.05, 0.04]), np.array([0.01, -0.02, 0.03])
    yaw, found_centre, found_size = yaw_box(_box_surface(size, np.deg2rad(degrees), centre))
    # the same box turned by a quarter turn is the same box: compare modulo 90 degrees
    wrapped = (degrees + 45) % 90 - 45
    assert np.rad2deg(yaw) == pytest.approx(wrapped, abs=0.15)
    swapped = (round((degrees - wrapped) / 90) % 2) == 1
    expected = size[[1, 0, 2]] if swapped else size
    np.testing.assert_allclose(found_size, expected, atol=1e-3)
    np.testing.assert_allclose(found_centre, centre, atol=1e-3)


def test_yaw_box_keeps_round_shapes_axis_aligned():
    rng = np.random.default_rng(1)
    angle, height = rng.random(3000) * 2 * np.pi, rng.random(3000) * 0.05
    cylinder = np.stack([0.04 * np.cos(angle), 0.04 * np.sin(angle), height], -1)
    yaw, centre, size = yaw_box(cylinder)
    assert yaw == 0.0
    np.testing.assert_allclose(size, [0.08, 0.08, 0.05], atol=1e-3)
    with pytest.raises(SplatworldError, match=r"\[M, 3\]"):
        yaw_box(np.zeros((0, 3)))


def test_memory_slots_map_box_poses_back_to_object_poses():
    rng = np.random.default_rng(2)
    object_from_box = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    world_from_object = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    for k in range(3):
        for mat, yaw in ((object_from_box[k], rng.uniform(-0.7, 0.7)), (world_from_object[k], rng.uniform(-3, 3))):
            mat[:2, :2] = torch.tensor([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
            mat[:3, 3] = torch.from_numpy(rng.normal(size=3) * 0.1)
    world_from_box = world_from_object @ object_from_box
    poses = MemorySlots((4, 7, 9), object_from_box).object_poses(world_from_box[:, :3, 3],
                                                                 rotmat_to_quat(world_from_box[:, :3, :3]))
    assert list(poses) == [4, 7, 9]
    np.testing.assert_allclose(np.stack(list(poses.values())), world_from_object.numpy(), atol=1e-12)


def test_untouched_objects_never_move_for_minutes():
    state = _state([[0.0, 0.0, TABLE + 0.025], [0.2, 0.1, TABLE + 0.03]])
    torch.manual_seed(0)
    for name in ("static", "constant_velocity", "learned"):  # learned: random weights, gating alone
        # one simulated minute; benchmarks/dynamics.py runs the five-minute version
        traj = rollout(make_model(name), state, torch.zeros(1, 600, 2, dtype=torch.float64))
        assert torch.equal(traj.position[0, -1], state.position[0]), name
        assert traj.agent.shape == (1, 600, 3) and traj.position.shape == (1, 600, 2, 3)


def test_constant_velocity_moves_and_wall_blocks():
    geometry = _scaffold(wall=True)
    state = _state([[0.0, 0.0, TABLE + 0.025]], geometry=geometry, velocity=[[0.1, 0.0, 0.0]])
    model = make_model("constant_velocity")
    nxt = model.step(state, torch.zeros(1, 2, dtype=torch.float64))
    assert nxt.position[0, 0, 0].item() == pytest.approx(0.01)  # v dt
    traj = rollout(model, state, torch.zeros(1, 60, 2, dtype=torch.float64))
    x = traj.position[0, :, 0, 0]
    # the box's front (x + 0.025 - 5 mm inset) stops before the wall cell starting at x = 0.30
    assert x.max().item() < 0.30 - 0.02 + 1e-9 and x[-1].item() > 0.25
    assert (traj.position[0, :, 0, 2] == TABLE + 0.025).all()  # rests on the table all along


def test_pushed_off_the_edge_falls_to_the_floor():
    state = _state([[0.49, 0.0, TABLE + 0.025]])
    nxt = apply_constraints(state, torch.tensor([[[0.045, 0.0]]], dtype=torch.float64), torch.zeros(1, 1),
                            torch.ones(1, 1, dtype=torch.bool), DynamicsConfig())
    model = make_model("static")
    traj = rollout(model, nxt, torch.zeros(1, 20, 2, dtype=torch.float64))
    z = traj.position[0, :, 0, 2]
    assert (z[1:] <= z[:-1]).all() and z[-1].item() == pytest.approx(0.025)  # on the floor, not in it
    assert traj.velocity[0, -1, 0, 2].item() == 0.0
    # it tipped away from the edge: the whole footprint (5 mm inset) is off the table top at x = 0.5
    x = traj.position[0, -1, 0, 0].item()
    assert 0.5 - 0.025 + 0.005 <= x < 0.5 + 0.05
    assert traj.position[0, -1, 0, 1].item() == 0.0  # straight off the edge, no sideways drift


def test_objects_do_not_push_into_each_other():
    state = _state([[0.0, 0.0, TABLE + 0.025], [0.06, 0.0, TABLE + 0.025]])
    nxt = apply_constraints(state, torch.tensor([[[0.02, 0.0], [0.0, 0.0]]], dtype=torch.float64),
                            torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), DynamicsConfig())
    assert torch.equal(nxt.position, state.position)  # 2 cm would overlap the 1 cm gap: blocked
    ok = apply_constraints(state, torch.tensor([[[-0.02, 0.0], [0.0, 0.0]]], dtype=torch.float64),
                           torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), DynamicsConfig())
    assert ok.position[0, 0, 0].item() == pytest.approx(-0.02)


def test_bad_inputs_are_named():
    state = _state([[0.0, 0.0, TABLE + 0.025]])
    with pytest.raises(ShapeError, match="action"):
        make_model("static").step(state, torch.zeros(1, 3))
    with pytest.raises(ShapeError, match=r"\[B, H, 2\]"):
        rollout(make_model("static"), state, torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="valid"):
        make_model("mujoco")
    with pytest.raises(ShapeError, match="WorldState.agent"):
        state.replace(agent=torch.zeros(2, 3))


def _push_sequence(direction=(1.0, 0.0), frames=80, speed=0.1, seed=0) -> object:
    """A hand-made pushing world: the agent drives through a 5 cm box on a table; once in contact
    the box moves with it (box centre = agent + radius + half size along the push)."""
    rng = np.random.default_rng(seed)
    d = np.asarray(direction) / np.linalg.norm(direction)
    dt, radius, half = 0.1, 0.025, 0.025
    start = rng.uniform(-0.2, 0.2, 2)
    standoff = 0.12 + rng.uniform(0, 0.05)
    agent = np.array([start - d * standoff + d * speed * dt * k for k in range(frames)])
    box = start + d * np.maximum((agent - start) @ d + radius + half, 0.0)[:, None]
    poses = np.zeros((frames, 1, 7))
    poses[:, 0, :2], poses[:, 0, 2], poses[:, 0, 3] = box, TABLE + half, 1.0
    agent3 = np.concatenate([agent, np.full((frames, 1), TABLE + 0.05)], 1)
    action = np.tile(d * speed, (frames, 1))
    return sequence_from_poses(poses, np.full((1, 3), 2 * half), np.ones((frames, 1), bool), agent3, action, dt,
                               _scaffold())


def test_learned_model_fits_hand_made_pushing():
    torch.manual_seed(0)
    model = InteractionModel(DynamicsConfig(hidden=32))
    unrolled = Unrolled(model)
    sequences = [_push_sequence(direction=(np.cos(a), np.sin(a)), seed=i)
                 for i, a in enumerate(np.linspace(0, 2 * np.pi, 8, endpoint=False))]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    frames = torch.arange(1, 75)
    before = sum(float(rollout_loss(unrolled, s, frames, 4)[0].detach()) for s in sequences)
    for step in range(500):
        seq = sequences[step % len(sequences)]
        loss, _ = rollout_loss(unrolled, seq, frames, 1, noise=0.003)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = sum(float(rollout_loss(unrolled, s, frames, 4)[0].detach()) for s in sequences)
    assert after < 0.05 * before
    # a new start and standoff along a trained direction: rolled out for 2 s from before
    # contact, the box ends where the hand-made world puts it
    seq = _push_sequence(direction=(0.0, 1.0), seed=11)
    traj = rollout(model, state_at(seq, 5), seq.action[5:25][None])
    assert torch.linalg.norm(traj.position[0, -1, 0] - seq.position[25, 0]).item() < 0.01


def _dense_proposal(model: InteractionModel, state: WorldState, action: torch.Tensor):
    """The learned model's proposal with every edge and node through its MLP, masked afterwards
    (the definition the sparse evaluation in ``propose`` must reproduce)."""
    cfg = model.config
    cm, per_step = 100.0, 100.0 * cfg.dt
    agent_gap, into, pair_gap = outline_gaps(state, cfg.agent_radius)
    _, _, active = model.propose(state, action)
    # the gating masks, recomputed the same way as in propose
    reach = cfg.contact_margin + torch.linalg.norm(action, dim=-1, keepdim=True) * cfg.dt
    toward = pushing_into(into, action, cfg.push_cosine)
    agent_live = (agent_gap < reach) & (reach > cfg.contact_margin) & toward
    speed = torch.linalg.norm(state.velocity[..., :2], dim=-1)
    pair_live = (pair_gap < cfg.contact_margin + speed[:, None, :] * cfg.dt) & \
        ((speed > cfg.moving_speed)[:, None, :] | agent_live[:, None, :])
    n = state.n_objects
    u = drive_heading(state, action, agent_live, pair_live)  # [B, N, 2]: each object's frame
    ui = u[:, :, None].expand(-1, -1, n, -1)  # [B, i, j, 2]: the receiving object's frame
    outline = reach_in_frame(state.outline, state.quat, u)
    vel = state.velocity[..., :2] * per_step
    rel = to_frame(state.agent[:, None, :2] - state.position[..., :2], u) * cm
    agent_in = torch.cat([rel, agent_gap[..., None].clamp(max=0.2) * cm, to_frame(action[:, None] * per_step, u),
                          outline * cm, to_frame(vel, u)], -1).float()
    message = model.agent_edge(agent_in) * agent_live[..., None]
    quat_j, outline_j = state.quat[:, None].expand(-1, n, -1, -1), state.outline[:, None].expand(-1, n, -1, -1)
    pair_in = torch.cat([to_frame(state.position[:, None, :, :2] - state.position[:, :, None, :2], ui) * cm,
                         pair_gap[..., None].clamp(max=0.2) * cm, to_frame(vel[:, None].expand(-1, n, -1, -1), ui),
                         to_frame(vel[:, :, None].expand(-1, -1, n, -1), ui), outline[:, :, None].expand(-1, -1, n, -1) * cm,
                         reach_in_frame(outline_j, quat_j, ui) * cm], -1).float()
    message = message + (model.pair_edge(pair_in) * pair_live[..., None]).sum(2)
    extra = torch.cat([to_frame(vel, u), (state.yaw_rate * cfg.dt)[..., None], geometry_probes(state, u) * cm],
                      -1).float()
    out = model.node(torch.cat([message, extra], -1)).double() * active[..., None]
    return from_frame(out[..., :2], u) / cm, out[..., 2] * 0.1, active


def _turn(degrees: float) -> torch.Tensor:
    """``[2, 2]`` rotation of the plane by ``degrees``."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def _turned(state: WorldState, degrees: float) -> WorldState:
    """The whole scene turned about the world z axis through the origin (geometry excepted)."""
    turn = _turn(degrees)
    planar = lambda v: torch.cat([v[..., :2] @ turn.T, v[..., 2:]], -1)  # noqa: E731
    spin = _about((0, 0, 1), degrees).expand_as(state.quat)
    return state.replace(position=planar(state.position), velocity=planar(state.velocity), agent=planar(state.agent),
                         quat=quat_multiply(spin, state.quat))


def test_the_learned_model_turns_with_the_scene():
    """A push seen turned through 90 or 180 degrees (exact for the axis-aligned footprints of the
    contact gates, on a table wide enough that the geometry probes all see its top) gives the same
    increments turned, and the same yaw: the model works in the frame of the push."""
    torch.manual_seed(0)
    model = InteractionModel(DynamicsConfig(hidden=16))
    state = _state([[0.0, 0.0, TABLE + 0.025], [0.055, 0.01, TABLE + 0.025], [-0.2, 0.2, TABLE + 0.025]],
                   agent=(-0.055, -0.01, TABLE + 0.05), velocity=[[0.03, 0.01, 0], [0.0, 0, 0], [0, 0, 0]])
    action = torch.tensor([[0.1, 0.03]], dtype=torch.float64)
    delta, yaw, active = model.propose(state, action)
    assert active[0].tolist() == [True, True, False]
    for degrees in (90, 180):
        turn = _turn(degrees)
        turned_delta, turned_yaw, turned_active = model.propose(_turned(state, degrees), action @ turn.T)
        assert turned_active.tolist() == active.tolist()
        torch.testing.assert_close(turned_delta, delta @ turn.T, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(turned_yaw, yaw, rtol=1e-5, atol=1e-7)


def test_pushing_into_uses_the_contact_normal():
    # a 10 cm box at the origin; the agent behind it (-x) or beside it (+y)
    behind = _state([[0.0, 0.0, TABLE + 0.05]], agent=(-0.1, 0.0, TABLE + 0.05), size=0.1)
    beside = _state([[0.0, 0.0, TABLE + 0.05]], agent=(0.0, 0.08, TABLE + 0.05), size=0.1)
    inside = _state([[0.0, 0.0, TABLE + 0.05]], agent=(0.01, 0.0, TABLE + 0.05), size=0.1)
    cases = [(behind, (0.1, 0.0), True), (behind, (0.0, 0.1), False), (behind, (-0.1, 0.0), False),
             (beside, (-0.1, 0.0), False),  # sliding along the side: not a push
             (beside, (-0.1, -0.1), True),  # cosine 0.71 with the normal (0, -1)
             (beside, (-0.1, -0.02), False),  # cosine 0.20: a graze
             (inside, (-0.1, 0.0), True), (inside, (0.1, 0.0), False)]  # inside: towards the centre
    for state, action, expected in cases:
        got = pushing_into(outline_gaps(state, 0.025)[1], torch.tensor([action], dtype=torch.float64), 0.3)
        assert got.tolist() == [[expected]], (state.agent.tolist(), action)


def test_sparse_proposal_matches_dense_evaluation():
    torch.manual_seed(0)
    model = InteractionModel(DynamicsConfig(hidden=16, push_out=False))  # the MLPs' proposal alone
    # a row of nearly touching boxes, the middle one moving (it moves its neighbours, nothing moves it
    # unless the agent pushes the first box into it), the agent by the first box
    state = _state([[0.0, 0.0, TABLE + 0.025], [0.055, 0.0, TABLE + 0.025], [0.11, 0.0, TABLE + 0.025],
                    [-0.3, 0.3, TABLE + 0.025]], agent=(-0.055, 0.0, TABLE + 0.05),
                   velocity=[[0, 0, 0], [0.05, 0, 0], [0, 0, 0], [0, 0, 0]]).repeat(4)
    action = torch.tensor([[0.1, 0.0], [-0.1, 0.0], [0.0, 0.0], [0.05, 0.02]], dtype=torch.float64)
    sparse, dense = model.propose(state, action), _dense_proposal(model, state, action)
    assert sparse[2].tolist() == dense[2].tolist()
    assert sparse[2][0, :3].all() and not sparse[2][:, 3].any() and sparse[2][1].tolist() == [True, False, True, False]
    for a, b in zip(sparse[:2], dense[:2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert (sparse[0][~sparse[2]] == 0).all()


def _about(axis, degrees) -> torch.Tensor:
    half = np.deg2rad(degrees) / 2
    return torch.tensor([np.cos(half), *(np.sin(half) * np.asarray(axis, float))], dtype=torch.float64)


def test_rotation_increment_splits_turn_and_tilt():
    lying = _about((1, 0, 0), 90)  # an object on its side: its Euler yaw is ill-defined
    turned = quat_multiply(_about((0, 0, 1), 30), lying)  # then turned 30 degrees about world z
    yaw, tilt = rotation_increment(lying, turned)
    assert np.rad2deg(yaw.item()) == pytest.approx(30, abs=1e-9) and tilt.item() == pytest.approx(0, abs=1e-7)
    yaw, tilt = rotation_increment(lying, -turned)  # the same rotation, the other sign
    assert np.rad2deg(yaw.item()) == pytest.approx(30, abs=1e-9)
    tipped = quat_multiply(_about((0, 1, 0), 20), lying)  # tipped 20 degrees off z
    yaw, tilt = rotation_increment(lying, tipped)
    assert yaw.item() == pytest.approx(0, abs=1e-9) and np.rad2deg(tilt.item()) == pytest.approx(20, abs=1e-9)
    yaw, _ = rotation_increment(_about((0, 0, 1), 170), _about((0, 0, 1), -170))  # across +-180: the short way
    assert np.rad2deg(yaw.item()) == pytest.approx(20, abs=1e-9)


def test_window_batch_targets_and_tipping_mask():
    seq = _push_sequence(seed=2)
    quat = seq.quat.clone()
    quat[40:, 0] = _about((1, 0, 0), 60)  # the box falls over at frame 40
    seq = sequence_from_poses(torch.cat([seq.position, quat], -1).numpy(), seq.extent.numpy(), seq.seen.numpy(),
                              seq.agent.numpy(), seq.action.numpy(), seq.dt, seq.geometry)
    state, actions, target_xy, target_yaw, mask = window_batch(seq, torch.tensor([10, 36]), horizon=5)
    assert actions.shape == (2, 5, 2) and target_xy.shape == (2, 5, 1, 2) and mask.shape == (2, 5, 1)
    torch.testing.assert_close(target_xy[0, :, 0], seq.position[11:16, 0, :2])
    assert (target_yaw == 0).all()
    assert mask[0].all() and mask[1, :3].all() and not mask[1, 3:].any()  # steps ending at 40 and on: tipped
    with pytest.raises(SplatworldError, match="horizon"):
        window_batch(seq, torch.tensor([len(seq) - 3]), horizon=5)


def test_horizon_errors_of_static_model_equal_true_motion():
    seq = _push_sequence(seed=3)
    gt = torch.cat([seq.position, seq.quat], -1)
    err = horizon_errors(make_model("static"), seq, gt, {0: 0}, horizon=10, every=5)
    np.testing.assert_allclose(err["position"], err["true_motion"], atol=1e-12)
    assert err["true_motion"].max() > 0.05 and (err["rotation"] == 0).all()


def _write_dataset(out, n=4, speed=0.1):
    from splatworld.jobs.train_dynamics import _sequence_state

    cfg = load_config("train_dynamics", [f"out={out}", "train_seeds=[1, 2, 3]", "val_seeds=[4]", "progress=false"])
    seqs = [_push_sequence(direction=(np.cos(a), np.sin(a)), seed=i, speed=speed)
            for i, a in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False))]
    key = {"version": DATASET_VERSION, "scenario": cfg.scenario, "seconds": cfg.seconds, "train": [1, 2, 3], "val": [4]}
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "train": [_sequence_state(s) for s in seqs[:3]], "val": [_sequence_state(seqs[3])]},
               out / "dataset.pt")
    return cfg


def test_train_writes_a_loadable_checkpoint(tmp_path):
    cfg = _write_dataset(tmp_path)
    assert len(build_dataset(cfg, progress=False)["train"]) == 3  # the cache is used
    cfg.steps, cfg.batch = 150, 32
    path = train(cfg)
    model = load_checkpoint(path)
    saved = torch.load(path, weights_only=False)
    # the box moves 1 cm a step: standing still scores 1 cm^2 per object-step
    assert saved["metrics"]["train_loss"] < 0.25 and saved["log"][-1]["step"] == 149
    assert isinstance(model, InteractionModel) and not model.training
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(SplatworldError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_training_batches_come_from_windows_with_a_push(tmp_path):
    # the agent drives at 1 cm per step through a box standing `standoff` ahead of it: the gate
    # opens once its footprint gap is under contact_margin + 1 cm, and stays open to the end
    cfg = DynamicsConfig()
    for seed in range(3):
        seq = _push_sequence(seed=seed)
        rng = np.random.default_rng(seed)
        rng.uniform(-0.2, 0.2, 2)
        standoff = 0.12 + rng.uniform(0, 0.05)
        gap = standoff - 0.01 * np.arange(len(seq)) - 0.025 - cfg.agent_radius  # to the 5 cm box's face
        opens = int(np.argmax(gap < cfg.contact_margin + 0.01))
        starts = pushed_starts(InteractionModel(cfg), seq, horizon=1, max_tilt=0.1).tolist()
        assert abs(starts[0] - max(opens, 1)) <= 1, (starts[0], opens)
        assert starts == list(range(starts[0], len(seq) - 1))
    cfg = _write_dataset(tmp_path / "few")
    cfg.steps, cfg.batch = 40, 1  # one-frame batches, each with a push
    assert load_checkpoint(train(cfg)).training is False
    cfg = _write_dataset(tmp_path / "none", speed=0.0)  # the agent never reaches the box
    cfg.steps = 5
    with pytest.raises(SplatworldError, match="no pushed object to fit"):
        train(cfg)


@pytest.mark.slow
def test_ddp_training_with_two_processes_keeps_ranks_in_sync(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    _write_dataset(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "splatworld.jobs.train_dynamics",
                             f"out={tmp_path}", "train_seeds=[1,2,3]", "val_seeds=[4]", "steps=30", "batch=16",
                             "progress=false"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fingerprints = [(tmp_path / f"weights_rank{r}.txt").read_text() for r in (0, 1)]
    assert fingerprints[0] == fingerprints[1]  # each rank drew its own batches: only DDP syncs them
    assert load_checkpoint(tmp_path / "checkpoint.pt") is not None


def test_an_object_falling_at_a_table_corner_ends_clear_of_it():
    # A 21 x 22 cm box centred on a table's corner, falling (the case the penetration benchmark
    # found, on the scaffold's own 2 cm grid): the heightmap is probed at a footprint's centre
    # and corners only, so the footprint grown by a cell can land its probes on a lower cell
    # while the footprint itself is over the table.
    from splatworld.dynamics.models import _clear_of_edges
    from splatworld.dynamics.state import obstacle_height

    rows, cols = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    table = torch.where((cols >= 13) & (rows <= 12), 0.625, 0.0).double()  # corner at (-0.759, 0.505)
    table[10, 15] = 0.437  # one lower cell in the table top (the memory's scaffold has such)
    geometry = Heightmap(torch.tensor([-1.0190475582665957, 0.24474971738990758], dtype=torch.float64), 0.02, table, 0.0)
    xy = torch.tensor([[-0.7592484570297231, 0.5037384252804403]], dtype=torch.float64)
    half = torch.tensor([[0.1032414968852958, 0.1076087601105801]], dtype=torch.float64)
    top = torch.tensor([0.5418483857240906], dtype=torch.float64)  # falling: the table is a wall at its height
    assert obstacle_height(geometry, xy, half) > top
    moved = _clear_of_edges(geometry, xy, half, top)
    assert obstacle_height(geometry, moved, half) <= top
    assert moved[0, 0] < xy[0, 0] and moved[0, 1] > xy[0, 1]  # off the corner, diagonally


def _random_pushes(batch: int, horizon: int, seed: int) -> tuple[WorldState, torch.Tensor]:
    """Eight cubes on the hand-made table and ``[B, H, 2]`` pusher commands sweeping through them."""
    rng = np.random.default_rng(seed)
    cubes = [[x, y, TABLE + 0.025] for x, y in rng.uniform(-0.3, 0.3, (8, 2))]
    state = _state(cubes, agent=(-0.45, 0.0, TABLE + 0.05))
    heading = rng.uniform(-0.6, 0.6, (batch, 1))
    actions = 0.15 * np.concatenate([np.cos(heading), np.sin(heading)], -1)[:, None].repeat(horizon, 1)
    return state, torch.from_numpy(actions + rng.normal(0, 0.02, (batch, horizon, 2)))


@pytest.mark.gpu
def test_learned_rollouts_on_cuda_match_cpu():
    model = load_checkpoint()
    state, actions = _random_pushes(batch=256, horizon=40, seed=0)
    cpu = rollout(model, state, actions)
    cuda = rollout(model.to("cuda"), state.to("cuda"), actions)
    assert cuda.position.is_cuda
    moved = (cpu.position[:, -1] - state.position).norm(dim=-1).max()
    assert moved > 0.05  # the pushes reach the cubes
    # Contact gates are thresholds: a last-bit difference may open one a step apart in a few
    # rollouts. Everywhere else the two devices agree to float precision.
    error = (cuda.position.cpu() - cpu.position).norm(dim=-1).amax(dim=(1, 2))
    assert (error < 1e-5).float().mean() >= 0.98, error.max()


@pytest.mark.gpu
def test_training_loss_and_gradients_on_cuda_match_cpu():
    torch.manual_seed(0)
    model = InteractionModel(DynamicsConfig(hidden=32)).double()
    seq = _push_sequence(seed=4)
    frames = torch.arange(1, 60)
    losses, grads = [], []
    for device in ("cpu", "cuda"):
        model.to(device).zero_grad()
        loss, count = rollout_loss(Unrolled(model), seq, frames, 3)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.reshape(-1).cpu() for p in model.parameters() if p.grad is not None]))
    assert count > 0 and losses[0] > 0
    assert losses[1] == pytest.approx(losses[0], rel=1e-9)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-7, atol=1e-10)


def test_train_refuses_cuda_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    cfg = load_config("train_dynamics", [f"out={tmp_path}", "device=cuda"])
    with pytest.raises(ConfigError, match="device=cuda"):
        train(cfg)


def test_push_events_hand_made():
    poses = np.zeros((60, 2, 7))
    poses[..., 3] = 1.0
    x = np.zeros(60)
    x[11:21] = np.arange(1, 11) * 0.005  # steps 10..19 move it 5 mm each (5 cm/s)
    x[21:] = x[20]
    x[26:31] = x[20] + np.arange(1, 6) * 0.005  # steps 25..29: 0.5 s later, the same push
    x[31:] = x[30]
    x[46:51] = x[30] + np.arange(1, 6) * 0.005  # steps 45..49: a second push
    x[51:] = x[50]
    poses[:, 0, 0] = x
    assert push_events(torch.from_numpy(poses), 0.1) == [(0, 5, 40), (0, 40, 59)]


def test_push_end_errors_score_displacement_and_falls():
    seq = _push_sequence(seed=0)  # pushed along +x at 10 cm/s until past the table's edge at x = 0.5
    gt = torch.cat([seq.position, seq.quat], -1)
    gt[:, 0, 2] = torch.where(gt[:, 0, 0] > 0.5, 0.025, gt[:, 0, 2])  # the truth falls to the floor there
    events = push_events(gt, seq.dt)
    assert len(events) == 1 and events[0][2] == len(seq) - 1
    still = push_end_errors(make_model("static"), seq, gt, {0: 0}, events)
    np.testing.assert_allclose(still["position"], still["true_motion"], atol=1e-12)
    assert still["true_fell"].tolist() == [True] and still["predicted_fell"].tolist() == [False]
    moving = int(np.flatnonzero(seq.position[:, 0, 0].numpy() > 0.3)[0])  # mid-push: constant velocity carries it on
    carried = push_end_errors(make_model("constant_velocity"), seq, gt, {0: 0}, [(0, moving, len(seq) - 1)])
    # it falls too, landing 3 cm further on: an object falling off an edge tips clear of it
    assert carried["predicted_fell"].tolist() == [True] and 0.02 < carried["position"][0] < 0.04
    assert push_end_errors(make_model("static"), seq, gt, {}, events)["position"].shape == (0,)


def test_eval_dynamics_job_writes_its_report(tmp_path, capsys):
    """The job end to end on a short held-out episode: every table, the plot, the key=value line;
    the memory's tracks (object hulls included) are cached beside the episode and read back the
    second time, and every model, the rigid-body one too, gives the same report from them."""
    import json

    from splatworld.cli import main

    args = ["eval-dynamics", f"out={tmp_path / 'eval'}", f"episodes={tmp_path / 'episodes'}", "seeds=[100]",
            "seconds=2.5", "horizons_s=[0.5]", "models=[static,learned,physics]", "progress=false"]
    assert main(args) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(report["results"]) == {f"{m}_{s}" for m in ("static", "learned", "physics") for s in ("0.5s", "sequence")}
    assert set(report["push_ends"]) == {"static", "learned", "physics"}
    assert report["results"]["static_sequence"]["n"] > 0  # every object the memory tracked, from the first frame
    assert "At the end of each push" in (tmp_path / "eval" / "report.md").read_text()
    assert (tmp_path / "eval" / "errors.png").stat().st_size > 10_000
    assert (tmp_path / "episodes" / "push_heldout_seed100_sequence.pt").exists()
    assert main(args) == 0
    assert json.loads((tmp_path / "eval" / "report.json").read_text()) == report
    assert "pushes=" in capsys.readouterr().out.strip().splitlines()[-1]


def test_the_learned_model_never_lets_the_pusher_into_an_object():
    """Whatever the proposal (here none: a model whose output layer is zero), a pusher driving
    into a 5 cm cube carries it, to the millimetre of the hand computation; a still pusher, or one
    already overlapping it and sliding along it, moves nothing."""
    model = InteractionModel(DynamicsConfig(hidden=16))
    torch.nn.init.zeros_(model.node[-1].weight)
    torch.nn.init.zeros_(model.node[-1].bias)
    state = _state([[0.0, 0.0, TABLE + 0.025]], agent=(-0.06, 0.0, TABLE + 0.05))  # 1 cm clear of the cube
    forward = torch.tensor([[0.2, 0.0]], dtype=torch.float64)  # 2 cm a step
    after = model.step(state, forward)
    # the pusher's disc (2.5 cm) now reaches x = -0.015; the cube's face must be there: centre at +0.01
    assert after.position[0, 0, 0].item() == pytest.approx(0.01, abs=1e-9)
    assert after.position[0, 0, 1].item() == pytest.approx(0.0, abs=1e-9)
    for _ in range(10):
        after = model.step(after, forward)
    assert (after.position[0, 0, 0] - after.agent[0, 0]).item() == pytest.approx(0.05, abs=1e-6)  # carried along
    still = model.step(after, torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(still.position, after.position)
    overlapping = _state([[0.0, 0.0, TABLE + 0.025]], agent=(-0.045, 0.0, TABLE + 0.05))  # 5 mm inside
    along = model.step(overlapping, torch.tensor([[0.0, 0.1]], dtype=torch.float64))
    torch.testing.assert_close(along.position, overlapping.position)
    off = InteractionModel(DynamicsConfig(hidden=16, push_out=False))
    off.load_state_dict(model.state_dict())
    torch.testing.assert_close(off.step(state, forward).position, state.position)  # the proposal alone: nothing


def _t(*values):
    return torch.tensor(values if len(values) > 1 else values[0], dtype=torch.float64)


def test_limit_surface_length_of_a_disc_is_two_thirds_its_radius():
    # the mean distance from the centre of a uniform disc of radius R is 2R/3
    assert limit_surface_length(torch.full((16,), 0.06, dtype=torch.float64)).item() == pytest.approx(0.04)


def test_a_centred_push_carries_the_object_with_the_pusher():
    v, omega = quasi_static_push(_t(-0.05, 0.0), _t(1.0, 0.0), _t(0.1, 0.0), _t(0.04), 0.3)
    torch.testing.assert_close(v, _t(0.1, 0.0))
    assert omega.item() == 0.0


def test_a_sticking_off_centre_push_moves_the_contact_with_the_pusher():
    offset, normal, pusher, c = _t(-0.05, 0.03), _t(1.0, 0.0), _t(0.1, 0.0), _t(0.04)
    v, omega = quasi_static_push(offset, normal, pusher, c, friction=3.0)
    contact = v + omega * torch.stack([-offset[1], offset[0]])  # velocity of the body point at the contact
    torch.testing.assert_close(contact, pusher)
    assert omega.item() < 0  # pushed behind and left of its centre, it turns clockwise
    # the ellipsoidal limit surface: the moment over c^2 equals the yaw rate, force along v
    assert (cross2(offset, v) / c**2).item() == pytest.approx(omega.item())


def test_a_frictionless_pusher_slides_and_pushes_along_the_normal():
    offset, normal, pusher, c = _t(-0.05, 0.03), _t(1.0, 0.0), _t(0.1, 0.05), _t(0.04)
    v, omega = quasi_static_push(offset, normal, pusher, c, friction=0.0)
    assert v[1].item() == pytest.approx(0.0, abs=1e-12)  # the force, and so the centre's velocity, is normal
    # the contact keeps the pusher's normal speed: vx + omega * (-py) = 0.1
    assert (v[0] - omega * offset[1]).item() == pytest.approx(0.1)
    # hand computation: vx (1 + py^2 / c^2) = 0.1, omega = -py vx / c^2
    vx = 0.1 / (1 + 0.03**2 / 0.04**2)
    assert v[0].item() == pytest.approx(vx)
    assert omega.item() == pytest.approx(-0.03 * vx / 0.04**2)


def test_a_pusher_moving_away_moves_nothing():
    v, omega = quasi_static_push(_t(-0.05, 0.01), _t(1.0, 0.0), _t(-0.1, 0.02), _t(0.04), 0.3)
    assert v.abs().max().item() == 0.0 and omega.item() == 0.0


def test_quasi_static_model_pushes_straight_turns_off_centre_and_leaves_the_rest():
    model = make_model("quasi_static", DynamicsConfig())
    forward = torch.tensor([[0.1, 0.0]], dtype=torch.float64)
    cubes = [[0.0, 0.0, TABLE + 0.025], [0.0, 0.3, TABLE + 0.025]]
    state = _state(cubes, agent=(-0.06, 0.0, TABLE + 0.05))  # 1 cm behind the first cube's face
    for _ in range(20):  # 2 s at 10 cm/s
        state = model.step(state, forward)
    assert state.position[0, 0, 0].item() == pytest.approx(0.19, abs=1e-6)  # 20 cm less the 1 cm gap
    assert state.position[0, 0, 1].item() == pytest.approx(0.0, abs=1e-9)
    assert box_yaw(state.quat)[0, 0].item() == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(state.position[0, 1], torch.tensor(cubes[1], dtype=torch.float64))
    off = _state(cubes[:1], agent=(-0.05, 0.02, TABLE + 0.05))  # touching, 2 cm left of the centre line
    for _ in range(20):
        off = model.step(off, forward)
    turned = box_yaw(off.quat)[0, 0].item()
    assert -math.pi / 2 < turned < -0.1  # clockwise, towards the pusher's line
    assert 0.03 < off.position[0, 0, 0].item() < 0.19  # carried, less far than straight on
    row = _state([[0.0, 0.0, TABLE + 0.025], [0.06, 0.0, TABLE + 0.025]], agent=(-0.06, 0.0, TABLE + 0.05))
    for _ in range(20):  # the pushed cube closes its 1 cm gap to the next and drives it on, 1 mm ahead
        row = model.step(row, forward)
    torch.testing.assert_close(row.position[0, :, 0], torch.tensor([0.19, 0.06 + 0.18 + 0.001], dtype=torch.float64))


def test_the_learned_model_with_the_quasi_static_prior_learns_a_residual():
    """With its output layer zero, the learned model on the quasi-static prior is the
    quasi-static model, step for step; an unknown prior is named."""
    cfg = DynamicsConfig(hidden=16, prior="quasi_static")
    model = InteractionModel(cfg).double()
    torch.nn.init.zeros_(model.node[-1].weight)
    torch.nn.init.zeros_(model.node[-1].bias)
    physics = make_model("quasi_static", cfg)
    state = _state([[0.0, 0.0, TABLE + 0.025], [0.1, 0.02, TABLE + 0.025]], agent=(-0.06, 0.015, TABLE + 0.05))
    actions = torch.tensor([[[0.12, 0.01]] * 15], dtype=torch.float64)
    learned, reference = rollout(model, state, actions), rollout(physics, state, actions)
    torch.testing.assert_close(learned.position, reference.position)
    torch.testing.assert_close(learned.quat, reference.quat)
    assert (reference.position[0, -1, 0, 0] - state.position[0, 0, 0]).item() > 0.03  # pushed up to the second cube
    with pytest.raises(ConfigError, match="prior.*'magic'"):
        DynamicsConfig(prior="magic")


def _with_hulls(state: WorldState) -> WorldState:
    """``state`` with each cube's hull: its eight corners, as :func:`convex_hull` finds them from its surface."""
    hulls = [convex_hull(_box_points(e.numpy()), e.numpy()) for e in state.extent[0]]
    return state.replace(hull=torch.stack(hulls)[None])


def _box_points(size: np.ndarray) -> np.ndarray:
    """A box's eight corners and points on its faces."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * size / 2
    return np.concatenate([corners, _box_surface(size, 0.0, np.zeros(3), n=500)])


def test_convex_hull_of_a_box_surface_is_its_corners():
    hull = convex_hull(_box_points(np.array([0.1, 0.06, 0.04])), np.array([0.1, 0.06, 0.04]))
    assert hull.shape == (HULL_VERTICES, 3)
    corners = {tuple(np.round(v, 3)) for v in hull.numpy()}
    assert corners == {(x, y, z) for x in (-0.05, 0.05) for y in (-0.03, 0.03) for z in (-0.02, 0.02)}
    flat = convex_hull(np.zeros((5, 3)), np.array([0.02, 0.02, 0.02]))  # no volume: the box's corners
    assert np.allclose(np.abs(flat.numpy()), 0.01)


@pytest.mark.parametrize("hulls", [True, False])
def test_physics_carries_a_centred_box_with_the_pusher(hulls):
    # pusher (r 2.5 cm) 5 cm behind a 5 cm cube's back face, moving +x at 10 cm/s for 2 s: it
    # closes the gap in 0.5 s and carries the cube 15 cm straight ahead
    state = _state([[0.0, 0.0, TABLE + 0.025]], agent=(-0.1, 0.0, TABLE + 0.052))
    state = _with_hulls(state) if hulls else state
    traj = rollout(PhysicsModel(), state, torch.tensor([[0.1, 0.0]], dtype=torch.float64).expand(1, 20, 2))
    end = traj.position[0, -1, 0]
    assert end[0].item() == pytest.approx(0.15, abs=0.01)
    assert abs(end[1].item()) < 0.003 and end[2].item() == pytest.approx(TABLE + 0.025, abs=0.003)
    assert abs(math.degrees(box_yaw(traj.quat[0, -1, 0]).item())) < 2.0


def test_physics_leaves_what_nothing_touches_exactly_where_it_was():
    state = _with_hulls(_state([[0.0, 0.0, TABLE + 0.025], [0.2, 0.1, TABLE + 0.025]]))
    traj = rollout(PhysicsModel(), state, torch.zeros(1, 600, 2, dtype=torch.float64))  # a minute, pusher still
    assert torch.equal(traj.position[0, -1], state.position[0]) and torch.equal(traj.quat[0, -1], state.quat[0])


def test_physics_holds_a_resting_object_until_something_touches_it():
    # a memory's estimate of a resting object: a cube sunk 1 cm into the table and a cube tilted
    # 30 degrees, unsupported; left alone, the engine would pop the one up and topple the other
    tilted = torch.tensor([math.cos(math.radians(15)), math.sin(math.radians(15)), 0.0, 0.0], dtype=torch.float64)
    state = _state([[0.0, 0.0, TABLE + 0.015], [0.2, 0.2, TABLE + 0.035]], agent=(-0.1, 0.0, TABLE + 0.052))
    state = _with_hulls(state.replace(quat=torch.stack([state.quat[0, 0], tilted])[None]))
    alone = rollout(PhysicsModel(), state, torch.zeros(1, 50, 2, dtype=torch.float64))
    assert torch.equal(alone.position[0, -1], state.position[0]) and torch.equal(alone.quat[0, -1], state.quat[0])
    # the pusher reaches the sunk cube after 0.5 s and carries it 10 cm; the tilted one stays
    pushed = rollout(PhysicsModel(), state, torch.tensor([[0.1, 0.0]], dtype=torch.float64).expand(1, 15, 2))
    assert pushed.position[0, -1, 0, 0].item() > 0.08
    assert torch.equal(pushed.position[0, -1, 1], state.position[0, 1])
    # the agent stopped 5 mm into the cube (as a memory's estimate may have it): 5 s still, nothing
    # moves; then it moves on and pushes the cube
    touching = state.replace(agent=torch.tensor([[-0.045, 0.0, TABLE + 0.052]], dtype=torch.float64))
    still = rollout(PhysicsModel(), touching, torch.zeros(1, 50, 2, dtype=torch.float64))
    assert torch.equal(still.position[0, -1], state.position[0])
    onwards = torch.cat([torch.zeros(1, 10, 2), torch.tensor([[[0.1, 0.0]]]).expand(1, 10, 2)], 1).double()
    assert rollout(PhysicsModel(), touching, onwards).position[0, -1, 0, 0].item() > 0.08
    # an object the state has in motion is not held: it slides on until friction stops it, after
    # v^2 / (2 mu g) = 0.3^2 / (2 * 0.6 * 9.81) = 7.6 mm (mu: the object's 0.6 times the table's 1.0)
    sliding = rollout(PhysicsModel(), _with_hulls(_state([[0.0, 0.0, TABLE + 0.025]], velocity=[[0.3, 0.0, 0.0]])),
                      torch.zeros(1, 10, 2, dtype=torch.float64))
    assert sliding.position[0, -1, 0, 0].item() == pytest.approx(0.0076, abs=0.0015)


def test_physics_lets_a_pusher_loaded_deep_in_an_object_pass_until_they_part():
    # a memory's estimate with the agent 15 mm inside a 5 cm cube moving at 5 cm/s (the hull grown
    # by sensor noise, or closing a concavity): the engine would part the two within a step and
    # launch the cube. The cube slides on v^2 / (2 mu g) = 0.2 mm; the agent, still, moves nothing
    inside = _with_hulls(_state([[0.0, 0.0, TABLE + 0.025]], agent=(-0.035, 0.0, TABLE + 0.052), velocity=[[0.05, 0.0, 0.0]]))
    still = rollout(PhysicsModel(), inside, torch.zeros(1, 10, 2, dtype=torch.float64))
    assert torch.linalg.norm(still.position[0, -1, 0] - inside.position[0, 0]).item() < 0.002
    # once the two have parted they collide again: the agent backs off 5 cm, then pushes the cube 10 cm on
    back_and_push = torch.cat([torch.tensor([[[-0.1, 0.0]]]).expand(1, 5, 2),
                               torch.tensor([[[0.1, 0.0]]]).expand(1, 20, 2)], 1).double()
    assert rollout(PhysicsModel(), inside, back_and_push).position[0, -1, 0, 0].item() > 0.08


def test_physics_pushes_a_box_off_the_edge_and_rollouts_in_a_batch_are_independent():
    # two rollouts side by side: one pushes the cube over the table's edge at x = 0.5, one waits
    state = _with_hulls(_state([[0.42, 0.0, TABLE + 0.025]], agent=(0.36, 0.0, TABLE + 0.052))).repeat(2)
    actions = torch.zeros(2, 30, 2, dtype=torch.float64)
    actions[0, :15, 0] = 0.1
    traj = rollout(PhysicsModel(), state, actions)
    assert traj.position[0, -1, 0, 2].item() < TABLE - 0.3  # fell to the floor
    assert torch.equal(traj.position[1, -1], state.position[1])  # the still pusher's world is untouched
    alone = rollout(PhysicsModel(), state.replace(**{k: getattr(state, k)[:1] for k in state.present(state.TENSORS)}),
                    actions[:1])
    assert torch.allclose(alone.position[0], traj.position[0], atol=1e-6)


def _steps(model, state, actions, replace=lambda s: s):
    """``state`` stepped through ``actions [H, 2]``, ``replace(state)`` handed to each step: the
    first object's positions ``[H, 3]`` and the last state."""
    positions = []
    for action in actions:
        state = model.step(replace(state), action[None])
        positions.append(state.position[0, 0])
    return torch.stack(positions), state


def test_physics_goes_on_when_only_the_agent_is_replaced():
    # imagination replaces the agent with the pose each frame gives: the engine goes on (the cube
    # tipping over the edge keeps its tilting motion), as a plain rollout does; loading the
    # same poses anew loses that motion and the contacts, so the fall comes out otherwise
    state = _with_hulls(_state([[0.42, 0.0, TABLE + 0.025]], agent=(0.36, 0.0, TABLE + 0.052)))
    actions = torch.zeros(20, 2, dtype=torch.float64)
    actions[:10, 0] = 0.1
    plain = rollout(PhysicsModel(), state, actions[None]).position[0, :, 0]
    agent_replaced, _ = _steps(PhysicsModel(), state, actions, lambda s: s.replace(agent=s.agent.clone(), time=s.time.clone()))
    torch.testing.assert_close(agent_replaced, plain, rtol=0, atol=0)
    reloaded, _ = _steps(PhysicsModel(), state, actions, lambda s: s.replace(position=s.position.clone()))
    assert (reloaded - plain).norm(dim=-1).max().item() > 0.01
    # mid-push, an agent put 30 cm ahead of the cube jumps there: it is not dragged through the cube
    model, back = PhysicsModel(), torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64)
    pushed, last = _steps(model, state.replace(position=state.position - back, agent=state.agent - back), actions[:5])
    ahead = last.replace(agent=last.agent + 1.5 * back)
    after, _ = _steps(model, ahead, torch.zeros(10, 2, dtype=torch.float64))
    assert (after[-1] - pushed[-1]).norm().item() < 0.01


def test_a_hull_of_the_wrong_shape_is_named():
    state = _with_hulls(_state([[0.0, 0.0, TABLE + 0.025]]))
    with pytest.raises(ShapeError, match="WorldState.hull"):
        state.replace(hull=state.hull[..., :2])
