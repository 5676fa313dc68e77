"""Planning on the scene memory: state, costs, sampling MPC (CEM, MPPI), the push task.

The interface a planner needs, in four pieces:

- :func:`planning_state`: the memory's objects (every remembered one, seen or not) as a batch-1
  dynamics state, with ids, visibility states and beliefs;
- static geometry: the state's heightmap (``state.world.geometry.height_at``) and the memory's
  ``signed_distance`` / ``support_height``;
- batched rollouts: :func:`splatworld.dynamics.rollout` of ``[B, H, 2]`` action sequences;
- composable costs (:mod:`splatworld.planning.costs`): ``CostSum`` of goal distance, push
  approach, collisions, staying on the table and smoothness terms.

:class:`CEM` and :class:`MPPI` plan on these; ``splatworld plan task=push_to_goal`` closes the
loop with PyBullet (:mod:`splatworld.jobs.plan`).
"""

from splatworld.planning.costs import (Collision, CostSum, CostTerm, GoalDistance, PushApproach, Smoothness,
                                       StayOnTable)
from splatworld.planning.planners import CEM, MPPI, PLANNERS, Plan, PlannerConfig, SamplingPlanner, make_planner
from splatworld.planning.state import PlanningState, as_float32, planning_state

__all__ = ["CEM", "MPPI", "PLANNERS", "Collision", "CostSum", "CostTerm", "GoalDistance", "Plan", "PlannerConfig",
           "PlanningState", "PushApproach", "SamplingPlanner", "Smoothness", "StayOnTable", "as_float32",
           "make_planner", "planning_state"]
