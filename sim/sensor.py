"""What a real RGB-D camera does to the simulator's perfect frames: depth noise, holes,
quantisation, RGB noise and blur, and drift of the camera pose a robot reports.

``ideal`` leaves frames as rendered. ``kinect`` follows the Kinect v1 noise model of Nguyen,
Izadi & Lovell, "Modeling Kinect Sensor Noise for Improved 3D Reconstruction and Tracking"
(3DIMPVT 2012):

- axial (along the ray) ``sigma_z = 1.2 mm + 1.9 mm/m^2 (z - 0.4 m)^2``, plus
  ``0.1 mm / sqrt(z) * theta^2 / (pi/2 - theta)^2`` at incidence angles ``theta`` beyond 60 degrees;
- lateral ``sigma_L = 0.8 px + 0.035 px * theta / (pi/2 - theta)`` (in the sensor's 640-pixel
  image; scaled to this image's focal length), applied as a jitter of where each pixel's depth
  is read, which frays depth edges as the real sensor does;
- depth quantised in disparity, ``dz = 2.85e-3 / m * z^2`` (Khoshelham & Oude Elberink,
  Sensors 2012: the 1/8-pixel disparity step of a 7.5 cm baseline, 580-pixel focal length);
- no depth before 0.5 m or beyond 4.5 m, at incidence beyond 78 degrees, and, with probability
  0.6, next to a depth discontinuity (the projector's shadow and mixed pixels).

``realsense`` follows Intel's RMS depth error formula for the D435 (``sigma_z = z^2 s / (f b)``,
subpixel ``s = 0.08``, baseline 50 mm, 848-pixel width at 87 degrees: 3.6 mm/m^2 z^2), range
0.28-6 m, fewer holes at edges.

RGB, for both: shot and read noise (variance ``a I + b``) and a slight Gaussian blur. Camera-pose
drift: a random walk of the reported pose, a few millimetres and tenths of a degree per
second, with the true poses kept for scoring.

All of it is drawn from its own random stream, seeded by the episode seed, so an episode with a
sensor has the same physics, ground truth and true depth as the ideal one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from splatworld.errors import lookup


@dataclass(frozen=True)
class SensorModel:
    """One depth camera's imperfections (distances in metres, angles in degrees).

    Attributes:
        axial_base, axial_quadratic, axial_offset: ``sigma_z = base + quadratic (z - offset)^2``.
        axial_grazing: the incidence term's scale (``/ sqrt(z) * theta^2 / (pi/2 - theta)^2``
            beyond 60 degrees); 0: none.
        lateral_base_px, lateral_grazing_px: lateral std ``base + grazing theta / (pi/2 - theta)``
            in pixels of a sensor with focal length ``sensor_focal_px``.
        sensor_focal_px: the real sensor's focal length, to scale lateral noise to this image.
        quantisation: ``dz = quantisation * z^2`` (1/m); 0: none beyond the episode's 1 mm.
        min_range, max_range: no depth outside.
        max_incidence: no depth at incidence angles beyond this.
        edge_dropout: probability that a pixel next to a depth discontinuity has no depth.
        edge_jump: a discontinuity is a jump larger than this fraction of the depth.
        rgb_shot, rgb_read: RGB noise variance ``shot * I + read^2`` (intensities in [0, 1]).
        rgb_blur_px: Gaussian blur std of the RGB image.
        drift_m, drift_deg: random-walk std of the reported camera position and heading per sqrt(s).
    """

    axial_base: float = 0.0
    axial_quadratic: float = 0.0
    axial_offset: float = 0.0
    axial_grazing: float = 0.0
    lateral_base_px: float = 0.0
    lateral_grazing_px: float = 0.0
    sensor_focal_px: float = 580.0
    quantisation: float = 0.0
    min_range: float = 0.0
    max_range: float = math.inf
    max_incidence: float = 90.0
    edge_dropout: float = 0.0
    edge_jump: float = 0.05
    rgb_shot: float = 0.0
    rgb_read: float = 0.0
    rgb_blur_px: float = 0.0
    drift_m: float = 0.0
    drift_deg: float = 0.0

    @property
    def ideal(self) -> bool:
        return self == SensorModel()


SENSORS = {
    "ideal": SensorModel(),
    "kinect": SensorModel(axial_base=0.0012, axial_quadratic=0.0019, axial_offset=0.4, axial_grazing=0.0001,
                          lateral_base_px=0.8, lateral_grazing_px=0.035, sensor_focal_px=580.0,
                          quantisation=2.85e-3, min_range=0.5, max_range=4.5, max_incidence=78.0, edge_dropout=0.6,
                          rgb_shot=0.0015, rgb_read=0.008, rgb_blur_px=0.5, drift_m=0.003, drift_deg=0.2),
    "realsense": SensorModel(axial_quadratic=0.0036, lateral_base_px=0.5, sensor_focal_px=425.0, min_range=0.28,
                             max_range=6.0, max_incidence=80.0, edge_dropout=0.3, rgb_shot=0.001, rgb_read=0.006,
                             rgb_blur_px=0.4, drift_m=0.003, drift_deg=0.2),
}
"""The sensors ``splatworld generate sensor=NAME`` knows."""


def sensor_model(name: str) -> SensorModel:
    """The named :data:`SENSORS` entry (an unknown name raises, listing the known ones)."""
    return lookup(SENSORS, name, "sensor")


def incidence(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """``[H, W]`` angle (rad) between each pixel's ray and the surface normal there, from the
    camera-frame points of the z-depth map ``depth [H, W]`` (0 where unknown: pi/2 there)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    points = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], axis=-1)
    du = np.gradient(points, axis=1)
    dv = np.gradient(points, axis=0)
    normal = np.cross(du, dv)
    norm = np.linalg.norm(normal, axis=-1)
    ray = points / np.maximum(np.linalg.norm(points, axis=-1, keepdims=True), 1e-9)
    cosine = np.abs((normal * ray).sum(axis=-1)) / np.maximum(norm, 1e-12)
    angle = np.arccos(np.clip(cosine, 0.0, 1.0))
    return np.where((depth > 0) & (norm > 0), angle, math.pi / 2)


def noisy_depth(model: SensorModel, depth: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                rng: np.random.Generator) -> np.ndarray:
    """The depth ``[H, W]`` (m, 0 = unknown) a ``model`` sensor reports of the true ``depth``."""
    if model.ideal:
        return depth
    theta = np.minimum(incidence(depth, fx, fy, cx, cy), math.radians(89.0))
    h, w = depth.shape
    grazing = theta / (math.pi / 2 - theta)
    lateral = (model.lateral_base_px + model.lateral_grazing_px * grazing) * fx / model.sensor_focal_px
    rows = np.clip(np.rint(np.arange(h)[:, None] + rng.normal(0.0, 1.0, (h, w)) * lateral), 0, h - 1).astype(int)
    cols = np.clip(np.rint(np.arange(w)[None, :] + rng.normal(0.0, 1.0, (h, w)) * lateral), 0, w - 1).astype(int)
    z = depth[rows, cols]
    theta = theta[rows, cols]
    sigma = model.axial_base + model.axial_quadratic * (z - model.axial_offset) ** 2
    steep = theta > math.radians(60.0)
    sigma = sigma + np.where(steep, model.axial_grazing / np.sqrt(np.maximum(z, 1e-3)) * theta ** 2 /
                             (math.pi / 2 - theta) ** 2, 0.0)
    noisy = z + rng.normal(0.0, 1.0, z.shape) * sigma
    if model.quantisation > 0:  # uniform steps of inverse depth (disparity): dz = quantisation * z^2
        levels = np.maximum(np.rint(1.0 / (model.quantisation * np.maximum(noisy, 1e-3))), 1.0)
        noisy = 1.0 / (model.quantisation * levels)
    lo, hi = ndimage.minimum_filter(depth, size=3), ndimage.maximum_filter(depth, size=3)
    edge = (hi - lo) > model.edge_jump * np.maximum(depth, 1e-6)
    missing = ((z <= 0) | (noisy < model.min_range) | (noisy > model.max_range)
               | (theta > math.radians(model.max_incidence)) | (edge & (rng.random(z.shape) < model.edge_dropout)))
    return np.where(missing, 0.0, noisy).astype(np.float32)


def noisy_rgb(model: SensorModel, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[H, W, 3]`` uint8: ``rgb`` blurred, with shot and read noise."""
    if model.ideal:
        return rgb
    image = rgb.astype(np.float64) / 255.0
    if model.rgb_blur_px > 0:
        image = ndimage.gaussian_filter(image, sigma=(model.rgb_blur_px, model.rgb_blur_px, 0.0))
    std = np.sqrt(model.rgb_shot * image + model.rgb_read ** 2)
    image = image + rng.normal(0.0, 1.0, image.shape) * std
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


class PoseDrift:
    """The camera pose a robot reports: the true one moved by a random walk of position (``drift_m``
    per sqrt(s), each axis) and of heading about world z (``drift_deg`` per sqrt(s)), starting at 0,
    applied about the true camera centre."""

    def __init__(self, model: SensorModel, rng: np.random.Generator):
        self.model, self.rng = model, rng
        self.offset, self.yaw = np.zeros(3), 0.0

    def step(self, seconds: float) -> None:
        """Walk on by ``seconds``."""
        scale = math.sqrt(max(seconds, 0.0))
        self.offset = self.offset + self.rng.normal(0.0, self.model.drift_m * scale, 3)
        self.yaw += self.rng.normal(0.0, math.radians(self.model.drift_deg) * scale)

    def reported(self, c2w: np.ndarray) -> np.ndarray:
        """The reported camera-to-world ``[4, 4]`` of the true ``c2w [4, 4]`` now."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        out = c2w.copy()
        out[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ c2w[:3, :3]
        out[:3, 3] = c2w[:3, 3] + self.offset
        return out
