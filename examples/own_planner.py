"""Put your own planner on the scene memory: random shooting in 40 lines.

    python examples/own_planner.py [--episode DIR]

Generates (or reads) a short `push` episode, lets the memory observe it, then plans a pusher
path to shove one remembered object 15 cm towards the table's centre without touching the
others: the planning state from the memory, a cost built from splatworld's terms, B candidate
action sequences rolled out in one batched call, the cheapest kept. Swap `random_shooting` for
your planner; everything else is the interface a planner needs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from splatworld.dynamics import rollout
from splatworld.dynamics.train import load_checkpoint
from splatworld.memory import SceneMemory
from splatworld.planning import Collision, CostSum, GoalDistance, PushApproach, planning_state
from splatworld.scene.episode import Episode
from splatworld.jobs.generate import generated_episode


def random_shooting(model, state, cost, samples=512, horizon=20, max_speed=0.15, seed=0):
    """The simplest sampling planner: ``samples`` smooth random sequences, keep the cheapest."""
    g = torch.Generator().manual_seed(seed)
    knots = torch.rand(samples, 4, 2, generator=g, dtype=torch.float64) * 2 - 1  # 4 velocity knots per sequence
    actions = torch.nn.functional.interpolate(knots.transpose(1, 2), size=horizon, mode="linear",
                                              align_corners=True).transpose(1, 2) * max_speed
    trajectory = rollout(model, state, actions)  # [B, H, ...] in one batched call
    costs = cost(state, trajectory, actions)
    best = int(torch.argmin(costs))
    return actions[best], trajectory, best, costs[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episode", type=Path, default=None, help="an episode directory (default: generate one)")
    args = parser.parse_args()
    episode = Episode(args.episode or generated_episode(Path(tempfile.gettempdir()) / "splatworld_examples", "push", 0,
                                                        seconds=3.0, progress=False))
    memory = SceneMemory()
    for frame in episode:
        memory.observe(frame)
    last = episode.info(len(episode) - 1)
    state = planning_state(memory.view(), last.agent_pose[:3])
    print("remembered objects:", [(o["id"], o["state"], [round(v, 3) for v in o["position"]]) for o in state.objects()])

    slot = 0
    xy = state.world.position[0, slot, :2]
    goal = tuple((xy - 0.15 * xy / torch.linalg.norm(xy)).tolist())  # 15 cm towards the centre
    model = load_checkpoint()  # the checkpoint shipped with the package
    radius = model.config.agent_radius
    cost = CostSum((("goal", 1.0, GoalDistance(slot, goal)), ("approach", 1.0, PushApproach(slot, goal, radius)),
                    ("collision", 1.0, Collision((slot,), radius))))
    actions, trajectory, best, best_cost = random_shooting(model, state.world, cost)
    end = trajectory.position[best, -1, slot, :2]
    print(f"object {state.ids[slot]} at {[round(v, 3) for v in xy.tolist()]} -> goal {[round(v, 3) for v in goal]}; "
          f"best of 512 sequences: cost {best_cost:.3f}, predicted end {[round(v, 3) for v in end.tolist()]}, "
          f"first command {[round(v, 3) for v in actions[0].tolist()]} m/s")


if __name__ == "__main__":
    main()
