"""Push replays in the generator's world (sim.replay)."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from splatworld.errors import ShapeError
from splatworld.jobs.config import load_config
from splatworld.sim.generate import AGENT_RADIUS, TABLE_TOP_Z
from splatworld.sim.replay import PushReplay


@pytest.fixture(scope="module")
def cube_world():
    scenario = OmegaConf.create(OmegaConf.to_container(load_config("generate", ["scenario=push"]).scenario))
    scenario.objects, scenario.n_objects = ["cube"], [1, 1]
    world = PushReplay(scenario, seed=0)
    yield world
    world.close()


def test_a_replay_holds_still_objects_and_carries_a_pushed_cube(cube_world):
    assert cube_world.names == ["cube"]
    half = cube_world.extents[0][0] / 2
    far = np.array([0.5, 0.5])
    dropped = np.array([[0.0, 0.0, TABLE_TOP_Z + half + 0.005, 1.0, 0.0, 0.0, 0.0]])
    rest = cube_world.push(dropped, far, np.zeros((20, 2)))[0]  # settled on the table's centre
    np.testing.assert_allclose(rest[:2], [0.0, 0.0], atol=2e-3)
    still = cube_world.push(rest[None], far, np.zeros((20, 2)))[0]
    np.testing.assert_allclose(still[:3], rest[:3], atol=1e-3)  # nothing pushes it: it stays
    start = np.array([rest[0] - half - AGENT_RADIUS - 0.01, rest[1]])  # 1 cm behind its face
    pushed = cube_world.push(rest[None], start, np.tile([0.1, 0.0], (20, 1)))[0]  # 20 cm at 10 cm/s
    assert pushed[0] - rest[0] == pytest.approx(0.19, abs=0.015)  # the pusher's travel less the gap
    assert abs(pushed[1] - rest[1]) < 0.01
    with pytest.raises(ShapeError, match=r"\[1, 7\]"):
        cube_world.push(np.zeros((2, 7)), far, np.zeros((1, 2)))
