"""The pusher's policies: planar velocity commands from what the simulator knows (time, the
pusher's position, the objects' positions). ``scripted`` walks round its target to push it from
behind, backs off and rests (optionally a mixture of push lengths, speeds, aims, grazing pushes
and bouts of wandering); ``random`` wanders; ``idle`` stays."""

from __future__ import annotations

import math

import numpy as np
from omegaconf import DictConfig

from splatworld.errors import ConfigError, lookup
from splatworld.sim.pybullet_scene import TABLE_HALF, TABLE_TOP_Z


PUSHER_REACH = np.array(TABLE_HALF) - 0.03  # the pusher's target stays over the table


class Policy:
    """Planar velocity commands (m/s) for the pusher, one per frame."""

    def __init__(self, cfg: DictConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng

    def act(self, t: float, agent_xy: np.ndarray, objects: dict[int, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class IdlePolicy(Policy):
    def act(self, t, agent_xy, objects):
        return np.zeros(2)


def draw(setting, rng: np.random.Generator) -> float:
    """A scenario setting (a policy's, an object variation's): a number as it is, or ``[lo, hi]``
    drawn uniformly (no draw for a number, so that a scenario of fixed settings keeps its random
    stream)."""
    if isinstance(setting, (int, float)):
        return float(setting)
    lo, hi = setting
    return float(rng.uniform(lo, hi))


def wander(velocity: np.ndarray, agent_xy: np.ndarray, speed: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One step of smooth random wandering (an Ornstein-Uhlenbeck velocity) kept on the table:
    ``(next velocity state [2], command [2])``."""
    velocity = 0.9 * velocity + 0.1 * rng.normal(0, speed, 2)
    inward = -np.sign(agent_xy) * (np.abs(agent_xy) > np.array(TABLE_HALF) - 0.15)
    return velocity, np.clip(velocity + inward * speed, -speed, speed)


class RandomPolicy(Policy):
    """Smooth random wandering (:func:`wander`)."""

    def __init__(self, cfg, rng):
        super().__init__(cfg, rng)
        self.v = np.zeros(2)

    def act(self, t, agent_xy, objects):
        self.v, command = wander(self.v, agent_xy, self.cfg.speed, self.rng)
        return command


class ScriptedPushPolicy(Policy):
    """Approach an object from behind, push it a set distance, back off, rest; repeat.

    The pusher walks around its target, on a circle of radius ``clearance`` about it, until it is
    behind it: heading straight for the point behind would shove the object ahead of it, off the
    table at worst. A target that leaves the table top, whose point behind is out of the pusher's
    reach, or that is not reached within ``approach_seconds``, is given up for another.

    Settings beyond the fixed ones (each optional; :func:`draw` reads ``[lo, hi]`` ranges per push):
    ``push_distance``, ``push_speed`` (numbers or ranges); ``approach_spread`` (rad, default 1):
    the push direction's spread about its aim; ``aim``: weights of where pushes head, ``centre``
    (the table's centre, the default), ``object`` (another object on the table: chains of
    contact) and ``edge`` (the nearest table edge: pushes towards and over it); ``graze`` (m,
    a range): the push line passes this far to one side of the target's centre, so the pusher
    catches its side; ``explore`` (a probability) and ``explore_seconds``: instead of a push,
    wander (:func:`wander`) for a while, bumping into whatever is in the way.
    """

    BEHIND_COSINE = 0.8  # the pusher is behind its target within ~37 degrees of the push axis

    def __init__(self, cfg, rng):
        super().__init__(cfg, rng)
        self.phase, self.until, self.since, self.target, self.direction, self.goal = "rest", 0.0, 0.0, None, None, None
        self.side = None  # which way round the target the pusher circles (+1 counter-clockwise)
        self.offset, self.speed, self.wander_velocity = np.zeros(2), None, np.zeros(2)

    def _steer(self, agent_xy, goal, speed):
        delta = goal - agent_xy
        dist = np.linalg.norm(delta)
        return np.zeros(2) if dist < 1e-4 else delta / dist * min(speed, dist * self.cfg.gain)

    def _steer_around(self, agent_xy, centre, goal, speed):
        """Towards ``goal`` behind the object at ``centre``: until the pusher is behind it, around
        its clearance circle (towards the circle's tangent point from outside, along it inside)."""
        rel = agent_xy - centre
        dist = np.linalg.norm(rel)
        if dist < 1e-6 or rel @ self.direction < -self.BEHIND_COSINE * dist:
            return self._steer(agent_xy, goal, speed)
        radial = rel / dist
        if self.side is None:  # the shorter way round, kept: from straight ahead the two ways tie
            self.side = 1.0 if np.array([-radial[1], radial[0]]) @ (goal - agent_xy) >= 0 else -1.0
        clearance = self.cfg.clearance
        if dist > clearance:  # turn off the line to the centre so that the circle is passed, on our left going counter-clockwise
            alpha = -self.side * math.asin(clearance / dist)
            c, s = math.cos(alpha), math.sin(alpha)
            heading = np.array([[c, -s], [s, c]]) @ -radial
        else:
            heading = self.side * np.array([-radial[1], radial[0]]) + radial * (clearance - dist) / 0.02  # back out to it
        return heading / np.linalg.norm(heading) * speed

    def _rest(self, t):
        """Rest a while, then pick a target again (after a push, or giving one up)."""
        self.phase, self.until = "rest", t + self.rng.uniform(*self.cfg.rest_seconds)
        return np.zeros(2)

    def act(self, t, agent_xy, objects):
        cfg = self.cfg
        on_table = {b: p for b, p in objects.items() if p[2] > TABLE_TOP_Z - 0.05 and
                    abs(p[0]) < TABLE_HALF[0] - 0.12 and abs(p[1]) < TABLE_HALF[1] - 0.12}
        if self.phase == "rest":
            if t < self.until or not on_table:
                return np.zeros(2)
            if "explore" in cfg and self.rng.random() < cfg.explore:
                self.phase, self.until = "explore", t + draw(cfg.explore_seconds, self.rng)
            else:
                self._choose_push(on_table)
                self.phase, self.since, self.side = "approach", t, None
        if self.phase == "explore":
            if t >= self.until:
                return self._rest(t)
            self.wander_velocity, command = wander(self.wander_velocity, agent_xy, cfg.speed, self.rng)
            return command
        if self.phase == "approach":
            if self.target not in on_table:
                return self._rest(t)
            pos = on_table[self.target][:2] + self.offset
            pre = pos - self.direction * cfg.standoff
            if (np.abs(pre) > PUSHER_REACH - 0.01).any() or t > self.since + cfg.approach_seconds:
                return self._rest(t)
            if np.linalg.norm(pre - agent_xy) < 0.01:
                self.phase, self.goal, self.since = "push", pos + self.direction * draw(cfg.push_distance, self.rng), t
                self.speed = draw(cfg.push_speed, self.rng)
            return self._steer_around(agent_xy, pos, pre, cfg.speed)
        if self.phase == "push":
            # the goal is where the object should end: the pusher stops a standoff short of it, or at
            # the end of its reach (an object pushed towards an edge from there is over it)
            at_reach = ((np.abs(agent_xy) > PUSHER_REACH - 0.005) & (agent_xy * self.direction > 0)).any()
            fell = objects[self.target][2] < TABLE_TOP_Z - 0.05  # pushes may carry it near the edge and over
            if (fell or np.linalg.norm(self.goal - agent_xy) < 0.02 + cfg.standoff or at_reach
                    or t > self.since + 30):
                self.phase, self.goal = "retreat", agent_xy - self.direction * 0.06
            return self._steer(agent_xy, self.goal, self.speed)
        if self.phase == "retreat":
            if np.linalg.norm(self.goal - agent_xy) < 0.01:
                return self._rest(t)
            return self._steer(agent_xy, self.goal, cfg.speed)
        return np.zeros(2)

    def _choose_push(self, on_table: dict) -> None:
        """Target, direction and side offset of the next push (see the class's settings)."""
        cfg = self.cfg
        bodies = sorted(on_table)
        self.target = bodies[int(self.rng.integers(len(bodies)))]
        pos = on_table[self.target][:2]
        aims = dict(cfg.get("aim", {"centre": 1.0}))
        unknown = set(aims) - {"centre", "object", "edge"}
        if unknown:
            raise ConfigError(f"policy.aim: unknown aims {sorted(unknown)}; valid: ['centre', 'edge', 'object']")
        others = [on_table[b][:2] for b in bodies if b != self.target]
        if not others:
            aims.pop("object", None)
        names = sorted(aims)
        weights = np.array([aims[n] for n in names], dtype=float)
        aim = names[0] if len(names) == 1 else names[int(self.rng.choice(len(names), p=weights / weights.sum()))]
        if aim == "object":
            toward = others[int(self.rng.integers(len(others)))] - pos
        elif aim == "edge":  # the nearest edge, in units of the table's half sizes
            axis = int(np.argmax(np.abs(pos) / np.array(TABLE_HALF)))
            toward = np.zeros(2)
            toward[axis] = 1.0 if pos[axis] >= 0 else -1.0
        else:
            toward = -pos
        angle = math.atan2(toward[1], toward[0]) + self.rng.uniform(-1.0, 1.0) * cfg.get("approach_spread", 1.0)
        self.direction = np.array([math.cos(angle), math.sin(angle)])
        side = np.array([-self.direction[1], self.direction[0]])
        self.offset = side * draw(cfg.graze, self.rng) * self.rng.choice([-1.0, 1.0]) if "graze" in cfg else np.zeros(2)


def executed_action(target: np.ndarray, action: np.ndarray, seconds: float) -> np.ndarray:
    """The planar velocity ``action [2]`` (m/s) the pusher's target at ``target [2]`` can execute for
    ``seconds``: shortened so that the target stays within ``PUSHER_REACH``. Episodes record this
    one, so that an agent pose plus its recorded action gives the next agent pose."""
    end = np.clip(target + np.asarray(action, dtype=np.float64) * seconds, -PUSHER_REACH, PUSHER_REACH)
    return (end - target) / seconds


POLICIES = {"idle": IdlePolicy, "random": RandomPolicy, "scripted": ScriptedPushPolicy}


def make_policy(cfg: DictConfig, rng) -> Policy:
    return lookup(POLICIES, cfg.type, "policy")(cfg, rng)
