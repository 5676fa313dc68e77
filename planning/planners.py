"""Sampling-based MPC over planar agent velocities: CEM and MPPI, batched, warm-started.

Each replan samples ``samples`` action sequences ``[H, 2]`` around the current mean, rolls them
all out in one batched call of the dynamics (:func:`~splatworld.dynamics.rollout`), scores them
with a cost (:mod:`splatworld.planning.costs`) and moves the mean:

- :class:`CEM`: to the mean of the ``elites`` cheapest samples, its spread to theirs, for
  ``iterations`` rounds;
- :class:`MPPI`: to the average of all samples weighted by ``exp(-c / lambda)``, where costs are
  normalised so that ``c = 0`` is the cheapest sample and ``c = 1`` the median one and
  ``lambda = temperature`` (scale-free: cost weights can change without retuning).

Warm start: the next replan starts from this plan shifted one step (its last action repeated),
and that shifted plan is always one of the samples, so a replan never loses a good plan to noise.
Every sampled action is clipped to ``max_speed``. Sampling draws from the planner's own seeded
generator: the same inputs give the same plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from splatworld.dynamics.models import DynamicsModel, rollout
from splatworld.dynamics.state import Trajectory, WorldState
from splatworld.errors import ConfigError, lookup
from splatworld.planning.costs import CostTerm


@dataclass(frozen=True)
class PlannerConfig:
    """Sampling MPC settings (metres, seconds).

    Attributes:
        horizon: steps per action sequence (of the dynamics' ``dt``).
        samples: sequences rolled out per iteration.
        iterations: sampling rounds per replan.
        noise: std (m/s) of the sampling noise around the mean (CEM: its starting spread).
        noise_correlation: lag-1 correlation of the noise along the horizon (:func:`correlated_noise`).
        min_noise: CEM: the spread never shrinks below this.
        elites: CEM: how many cheapest samples set the next mean.
        temperature: MPPI: lambda on normalised costs (see the module docstring).
        max_speed: actions are clipped to this planar speed (m/s).
        seed: the sampling generator's seed.
    """

    horizon: int = 20
    samples: int = 256
    iterations: int = 1
    noise: float = 0.08
    noise_correlation: float = 0.9
    min_noise: float = 0.01
    elites: int = 24
    temperature: float = 0.1
    max_speed: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.samples < 2 or self.iterations < 1:
            raise ConfigError(f"planner: horizon, iterations >= 1 and samples >= 2 needed, got {self}")
        if not 1 <= self.elites <= self.samples:
            raise ConfigError(f"planner: elites must lie in [1, samples={self.samples}], got {self.elites}")
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ConfigError(f"planner: noise_correlation must lie in [0, 1), got {self.noise_correlation}")
        if self.noise <= 0 or self.max_speed <= 0 or self.temperature <= 0:
            raise ConfigError(f"planner: noise, max_speed and temperature must be positive, got {self}")


@dataclass(frozen=True)
class Plan:
    """One replan's result.

    Attributes:
        actions: ``[H, 2]`` the planned velocities; execute ``actions[0]``, then replan.
        best: ``[H, 2]`` the cheapest sequence sampled.
        trajectory: the rollout of ``best`` (batch 1), for display.
        cost: the cost of ``best``.
        seconds: wall time of the replan.
        samples: sequences rolled out in all.
    """

    actions: torch.Tensor
    best: torch.Tensor
    trajectory: Trajectory
    cost: float
    seconds: float
    samples: int


def correlated_noise(samples: int, horizon: int, correlation: float, generator: torch.Generator,
                     dtype=torch.float32) -> torch.Tensor:
    """``[samples, horizon, 2]`` unit-variance noise, AR(1) along the horizon with lag-1
    ``correlation``: sequences that keep a direction for a while (white noise averages out over
    a horizon, so a sampled pusher would dither in place)."""
    white = torch.randn(samples, horizon, 2, generator=generator, dtype=dtype)
    keep, fresh = correlation, (1.0 - correlation**2) ** 0.5
    out = [white[:, 0]]
    for h in range(1, horizon):
        out.append(keep * out[-1] + fresh * white[:, h])
    return torch.stack(out, 1)


def clip_speed(actions: torch.Tensor, max_speed: float) -> torch.Tensor:
    """``actions [..., 2]`` scaled down where their norm exceeds ``max_speed``."""
    speed = torch.linalg.norm(actions, dim=-1, keepdim=True)
    return actions * (max_speed / speed.clamp(min=max_speed))


class SamplingPlanner:
    """Shared sampling, rollout and warm start; subclasses set :meth:`_update`."""

    name = "base"

    def __init__(self, model: DynamicsModel, config: PlannerConfig | None = None):
        self.model, self.config = model, config or PlannerConfig()
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.mean: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the warm start (a new task)."""
        self.mean = None

    def _update(self, actions: torch.Tensor, costs: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def plan(self, state: WorldState, cost: CostTerm) -> Plan:
        """Replan from ``state`` (batch 1) under ``cost``."""
        cfg = self.config
        start = time.perf_counter()
        dtype = state.position.dtype
        if self.mean is None:
            mean = torch.zeros(cfg.horizon, 2, dtype=dtype)
        else:
            mean = torch.cat([self.mean[1:], self.mean[-1:]]).to(dtype)
        std = torch.full_like(mean, cfg.noise)
        best, best_cost, best_traj = None, float("inf"), None
        for _ in range(cfg.iterations):
            noise = correlated_noise(cfg.samples, cfg.horizon, cfg.noise_correlation, self.generator, dtype)
            noise[0] = 0.0  # the current mean itself is always a candidate
            actions = clip_speed(mean + std * noise, cfg.max_speed)
            trajectory = rollout(self.model, state, actions)
            costs = cost(state, trajectory, actions)
            k = int(torch.argmin(costs))
            if float(costs[k]) < best_cost:
                best, best_cost = actions[k], float(costs[k])
                best_traj = Trajectory(**{name: getattr(trajectory, name)[k:k + 1]
                                          for name in Trajectory.__dataclass_fields__})
            mean, std = self._update(actions, costs, mean, std)
        self.mean = clip_speed(mean, cfg.max_speed)
        return Plan(self.mean.clone(), best, best_traj, best_cost, time.perf_counter() - start,
                    cfg.samples * cfg.iterations)


class CEM(SamplingPlanner):
    """Cross-entropy method: refit a diagonal Gaussian to the elite samples."""

    name = "cem"

    def _update(self, actions, costs, mean, std):
        elites = actions[torch.topk(costs, self.config.elites, largest=False).indices]
        return elites.mean(0), elites.std(0).clamp(min=self.config.min_noise)


class MPPI(SamplingPlanner):
    """Model-predictive path integral: exponentially cost-weighted average of all samples."""

    name = "mppi"

    def _update(self, actions, costs, mean, std):
        low = costs.min()
        scale = (costs.median() - low).clamp(min=1e-9)
        weights = torch.softmax(-(costs - low) / scale / self.config.temperature, dim=0)
        return (weights[:, None, None] * actions).sum(0), std


PLANNERS = {p.name: p for p in (CEM, MPPI)}


def make_planner(name: str, model: DynamicsModel, config: PlannerConfig | None = None) -> SamplingPlanner:
    return lookup(PLANNERS, name, "planner")(model, config)


__all__ = ["CEM", "MPPI", "PLANNERS", "Plan", "PlannerConfig", "SamplingPlanner", "clip_speed", "correlated_noise", "make_planner"]
