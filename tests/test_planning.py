"""Planning: cost terms against hand-computed values, CEM / MPPI on a known optimum, the push
task's layout conditions, and a short closed loop with and without memory."""

import json
import math

import numpy as np
import pytest
import torch

from splatworld.jobs.config import load_config
from splatworld.dynamics.models import DynamicsConfig, StaticModel
from splatworld.dynamics.state import Heightmap, Trajectory, WorldState, box_outline
from splatworld.errors import ConfigError
from splatworld.planning import (CEM, MPPI, Collision, CostSum, GoalDistance, PlannerConfig, PushApproach, Smoothness,
                                 StayOnTable, make_planner)
from splatworld.planning.planners import clip_speed, correlated_noise
from splatworld.jobs.plan import _in_view, run_push_to_goal, sample_layout, task_camera
from splatworld.sim.policies import PUSHER_REACH

R = 0.025  # agent radius


def _yaw(angle: float) -> list[float]:
    return [math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)]


def _start(positions, extents, yaws=None) -> WorldState:
    n = len(positions)
    yaws = yaws or [0.0] * n
    flat = Heightmap(torch.tensor([-1.0, -1.0]), 0.02, torch.zeros(100, 100), 0.0)
    return WorldState(torch.tensor([positions], dtype=torch.float64), torch.tensor([[_yaw(y) for y in yaws]]).double(),
                      torch.zeros(1, n, 3).double(), torch.zeros(1, n).double(), torch.tensor([extents]).double(),
                      box_outline(torch.tensor([extents]).double()),
                      torch.zeros(1, n).double(), torch.ones(1, n, dtype=torch.bool), torch.zeros(1, 3).double(),
                      torch.zeros(1).double(), flat)


def _trajectory(start: WorldState, agent_xy, object_xy=None) -> Trajectory:
    """One rollout (B = 1) of H steps: the agent at ``agent_xy [H, 2]``, objects at ``object_xy
    [H, N, 2]`` (default: where they start), orientations as at the start."""
    agent = torch.tensor(agent_xy, dtype=torch.float64)
    h, n = len(agent), start.n_objects
    xy = start.position[0, :, :2].expand(h, n, 2) if object_xy is None else torch.tensor(object_xy).double()
    position = torch.cat([xy, start.position[0, :, 2:].expand(h, n, 1)], -1)[None]
    return Trajectory(position, start.quat.expand(h, n, 4)[None], torch.zeros(1, h, n, 3).double(),
                      torch.zeros(1, h, n).double(), torch.nn.functional.pad(agent, (0, 1))[None],
                      torch.zeros(1, h).double())


def test_goal_distance_hand_computed():
    start = _start([[0.0, 0.0, 0.05]], [[0.05, 0.05, 0.05]])
    traj = _trajectory(start, [[0, 0]] * 2, [[[0.3, 0.4]], [[0.0, 0.1]]])  # 0.5 m, then 0.1 m from the goal
    cost = GoalDistance(0, (0.0, 0.0), terminal=2.0)(start, traj, torch.zeros(1, 2, 2))
    assert cost.item() == pytest.approx((0.5 + 0.1) / 2 + 2 * 0.1)


def test_push_approach_uses_the_oriented_box():
    # a 10 x 4 cm box at the origin, goal along +x: the push point is 5 cm + R behind it
    start = _start([[0.0, 0.0, 0.05]], [[0.10, 0.04, 0.05]])
    term = PushApproach(0, (1.0, 0.0), R)
    at_point = _trajectory(start, [[-(0.05 + R), 0.0]])
    assert term(start, at_point, torch.zeros(1, 1, 2)).item() == pytest.approx(0.0, abs=1e-9)
    off = _trajectory(start, [[-(0.05 + R), 0.01]])
    assert term(start, off, torch.zeros(1, 1, 2)).item() == pytest.approx(0.01)
    # turned 90 degrees the box reaches 2 cm along x; turned 45 degrees, (0.05 + 0.02) / sqrt(2)
    turned = _start([[0.0, 0.0, 0.05]], [[0.10, 0.04, 0.05]], yaws=[math.pi / 2])
    assert term(turned, _trajectory(turned, [[-(0.02 + R), 0.0]]), torch.zeros(1, 1, 2)).item() == pytest.approx(0.0, abs=1e-9)
    diagonal = _start([[0.0, 0.0, 0.05]], [[0.10, 0.04, 0.05]], yaws=[math.pi / 4])
    reach = 0.07 / math.sqrt(2)
    assert term(diagonal, _trajectory(diagonal, [[-(reach + R), 0.0]]), torch.zeros(1, 1, 2)).item() == pytest.approx(0.0, abs=1e-9)
    # at the goal there is nothing left to push
    assert PushApproach(0, (0.0, 0.0), R)(start, off, torch.zeros(1, 1, 2)).item() == 0.0


def test_collision_counts_other_objects_only():
    # target (slot 0) at the origin, an obstacle (slot 1) 4 cm wide at x = 0.3
    start = _start([[0.0, 0.0, 0.05], [0.3, 0.0, 0.05]], [[0.04, 0.04, 0.04], [0.04, 0.04, 0.04]])
    term = Collision((0,), R, margin=0.03)
    # the agent's edge 1.5 cm from the obstacle's face: ((0.03 - 0.015) / 0.03)^2 = 0.25, two steps
    x = 0.3 - 0.02 - 0.015 - R
    near = _trajectory(start, [[x, 0.0], [x, 0.0]])
    assert term(start, near, torch.zeros(1, 2, 2)).item() == pytest.approx(0.5)
    # touching the target is allowed
    assert term(start, _trajectory(start, [[-0.02 - R, 0.0]]), torch.zeros(1, 1, 2)).item() == 0.0
    # the obstacle pushed 1 cm: 1 per step; the target brought 1.5 cm from it: 0.25 per step
    moved = _trajectory(start, [[-0.5, 0.0]], [[[0.31 - 0.04 - 0.015, 0.0], [0.31, 0.0]]])
    assert term(start, moved, torch.zeros(1, 1, 2)).item() == pytest.approx(1.0 + 0.25)


def test_stay_on_table_and_smoothness_hand_computed():
    start = _start([[0.0, 0.0, 0.05]], [[0.04, 0.04, 0.04]])
    traj = _trajectory(start, [[0.6, 0.0], [0.0, -0.7]])
    assert StayOnTable((-0.5, -0.5, 0.5, 0.5))(start, traj, torch.zeros(1, 2, 2)).item() == pytest.approx(0.1 + 0.2)
    fallen = Trajectory(traj.position - torch.tensor([0, 0, 0.05]).double(), traj.quat, traj.velocity, traj.yaw_rate,
                        torch.zeros_like(traj.agent), traj.time)
    assert StayOnTable((-1, -1, 1, 1))(start, fallen, torch.zeros(1, 2, 2)).item() == pytest.approx(2 * 0.03)
    actions = torch.tensor([[[0.1, 0.0], [0.1, 0.1], [0.0, 0.1]]]).double()
    assert Smoothness((0.1, 0.0))(start, traj, actions).item() == pytest.approx(0.01 + 0.01)
    assert Smoothness()(start, traj, actions).item() == pytest.approx(0.01 + 0.01 + 0.01)
    total = CostSum((("table", 2.0, StayOnTable((-0.5, -0.5, 0.5, 0.5))), ("smooth", 0.5, Smoothness())))
    assert total(start, traj, actions[:, :2]).item() == pytest.approx(2 * 0.3 + 0.5 * 0.02)
    assert set(total.breakdown(start, traj, actions[:, :2])) == {"table", "smooth"}


def test_correlated_noise_statistics_and_speed_clip():
    noise = correlated_noise(20000, 6, 0.9, torch.Generator().manual_seed(0), torch.float64)
    assert noise.std().item() == pytest.approx(1.0, abs=0.02)
    lag1 = (noise[:, 1:] * noise[:, :-1]).mean().item()
    assert lag1 == pytest.approx(0.9, abs=0.02)
    clipped = clip_speed(torch.tensor([[3.0, 4.0], [0.03, 0.04]]), 0.1)
    torch.testing.assert_close(clipped, torch.tensor([[0.06, 0.08], [0.03, 0.04]]))


def _reach_cost(target):
    """Agent's distance to ``target`` over the horizon (a known optimum: go there, stay)."""
    goal = torch.tensor(target)

    def cost(start, trajectory, actions):
        return torch.linalg.norm(trajectory.agent[..., :2] - goal.to(actions), dim=-1).mean(-1)
    return cost


@pytest.mark.parametrize("planner", [CEM, MPPI])
def test_planners_drive_the_agent_to_a_known_optimum(planner):
    start = _start([[0.5, 0.5, 0.05]], [[0.04, 0.04, 0.04]]).replace(agent=torch.tensor([[0.0, 0.0, 0.05]]).double())
    model = StaticModel(DynamicsConfig())
    config = PlannerConfig(horizon=10, samples=128, iterations=2, elites=12, max_speed=0.15, seed=3)
    runs = []
    for _ in range(2):  # same seed, same plans
        p, state, cost = planner(model, config), start, _reach_cost([0.2, -0.1])
        for _ in range(40):  # closed loop: execute the first action, replan warm-started
            plan = p.plan(state, cost)
            assert torch.linalg.norm(plan.actions, dim=-1).max() <= 0.15 + 1e-9
            state = model.step(state, plan.actions[:1])
        runs.append(state.agent[0, :2])
    assert torch.linalg.norm(runs[0] - torch.tensor([0.2, -0.1]).double()).item() < 0.01
    assert torch.equal(runs[0], runs[1])
    assert plan.samples == 256 and plan.best.shape == (10, 2) and plan.trajectory.agent.shape == (1, 10, 3)


def test_planner_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="elites"):
        PlannerConfig(samples=8, elites=16)
    with pytest.raises(ConfigError, match="noise_correlation"):
        PlannerConfig(noise_correlation=1.0)
    with pytest.raises(ConfigError, match="unknown planner"):
        make_planner("ilqr", StaticModel())
    with pytest.raises(ConfigError, match="task"):
        run_push_to_goal(load_config("plan", ["task=stack", "video=false"]))
    with pytest.raises(ConfigError, match="memory"):
        run_push_to_goal(load_config("plan", ["memory=partial", "video=false"]))


@pytest.mark.parametrize("seed", range(6))
def test_push_layouts_hide_the_blocker_from_the_close_view(seed):
    cfg = load_config("plan", [f"seed={seed}"])
    layout = sample_layout(cfg, seed)
    assert layout == sample_layout(cfg, seed)
    close = task_camera(layout, cfg.look_seconds + cfg.zoom_seconds, cfg)
    overview = task_camera(layout, 0.0, cfg)
    target, blocker = (np.array(o[1:3]) for o in layout.objects[:2])
    assert _in_view(close, target, 0.0) and _in_view(close, np.array(layout.goal), 0.0)
    assert not _in_view(close, blocker, 0.06)
    assert all(_in_view(overview, np.array(o[1:3]), 0.0) for o in layout.objects)  # everything seen first
    assert 0.2 <= np.linalg.norm(np.subtract(layout.goal, target)) <= 0.3
    assert (np.abs(layout.agent) <= PUSHER_REACH).all()


@pytest.mark.slow
def test_closed_loop_plans_on_remembered_objects_the_memoryless_state_drops(tmp_path):
    counts = {}
    for mode in ("full", "memoryless"):
        seen = []
        cfg = load_config("plan", ["seed=1", f"memory={mode}", "time_limit=4.0", "width=128", "height=128",
                                   "planner_config.samples=32", f"out={tmp_path / mode}", "progress=false"])
        result = run_push_to_goal(cfg, on_plan=lambda state, cost, plan: seen.append(state.n_objects))
        counts[mode] = seen
        saved = json.loads((tmp_path / mode / "result.json").read_text())
        assert saved["success"] is False and saved["time_s"] == pytest.approx(4.0) and saved["replans"] == len(seen) > 0
        assert {"success", "time_s", "final_distance_m", "collisions", "collisions_out_of_view"} <= set(saved)
        assert (tmp_path / mode / "run.mp4").stat().st_size > 0
        assert result["distance_m"][0] == pytest.approx(np.linalg.norm(
            np.subtract(result["goal"], result["layout"][0][1:3])), abs=0.02)
    n_objects = len(result["layout"])
    assert counts["full"][-1] == n_objects  # the blocker, out of view, still planned around
    assert counts["memoryless"][0] == n_objects  # all seen within the last second when planning starts
    assert counts["memoryless"][-1] < n_objects  # unseen for over a second: forgotten
