"""The generator's scripted camera path: segments of orbits, pans away from the table and returns
to earlier viewpoints, with optional hand-held jitter."""

from __future__ import annotations

import math

import numpy as np
from omegaconf import DictConfig

from splatworld.errors import ConfigError
from splatworld.scene.cameras import Camera, look_at
from splatworld.sim.pybullet_scene import TABLE_TOP_Z


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


class CameraPath:
    """Eye and target over time from a cycle of segments around the table.

    Segment kinds: ``orbit`` (azimuth advances at ``speed_deg_s``), ``away`` (pans to look
    outward, away from the table, and back at the end), ``revisit`` (returns to the
    azimuth the path had at an earlier ``revisit`` or at the start, then dwells).
    """

    def __init__(self, cfg: DictConfig, seed: int):
        self.cfg = cfg
        self.segments = [dict(s) for s in cfg.segments]
        for s in self.segments:
            if s["kind"] not in ("orbit", "away", "revisit"):
                raise ConfigError(f"unknown camera segment {s['kind']!r}; valid: ['orbit', 'away', 'revisit']")
        self.cycle = sum(s["seconds"] for s in self.segments)
        rng = np.random.default_rng(seed + 7)
        self.jitter_freq = rng.uniform(0.2, 1.2, (2, 3))
        self.jitter_phase = rng.uniform(0, 2 * np.pi, (2, 3))
        self.start_azimuth = float(rng.uniform(0, 360))

    def _azimuth_and_away(self, t: float) -> tuple[float, float]:
        azimuth, elapsed, home = self.start_azimuth, 0.0, self.start_azimuth
        pan = self.cfg.pan_seconds
        while True:
            for s in self.segments:
                d = s["seconds"]
                local = t - elapsed
                if s["kind"] == "orbit":
                    if local < d:
                        return azimuth + s.get("speed_deg_s", 5.0) * local, 0.0
                    azimuth += s.get("speed_deg_s", 5.0) * d
                elif s["kind"] == "away":
                    if local < d:
                        return azimuth, _smoothstep(local / pan) * _smoothstep((d - local) / pan)
                elif s["kind"] == "revisit":
                    delta = (home - azimuth + 180.0) % 360.0 - 180.0
                    if local < d:
                        return azimuth + delta * _smoothstep(local / pan), 0.0
                    azimuth += delta
                elapsed += d

    def camera(self, t: float, width: int, height: int, fov_y_deg: float) -> Camera:
        azimuth, away = self._azimuth_and_away(t)
        a = math.radians(azimuth)
        centre = np.array([0.0, 0.0, TABLE_TOP_Z])
        eye = centre + [self.cfg.radius * math.cos(a), self.cfg.radius * math.sin(a), self.cfg.height]
        # Looking away: the view direction swings through the side until it points outward,
        # levelling off as it goes (the table is then behind the camera).
        swing = math.pi * away
        to_table = (centre - eye) / np.linalg.norm(centre - eye)
        side = np.array([-math.sin(a), math.cos(a), 0.0])
        look_dir = to_table * math.cos(swing) + side * math.sin(swing)
        look_dir[2] = to_table[2] * (1.0 - away)
        target = eye + look_dir
        if self.cfg.jitter > 0:
            wobble = self.cfg.jitter * np.sin(2 * np.pi * self.jitter_freq * t + self.jitter_phase)
            eye, target = eye + wobble[0], target + wobble[1] * 0.5
        return Camera.from_fov(fov_y_deg, width, height, look_at(eye, target))
