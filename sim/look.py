"""How a generated world looks beyond its default: PyBullet lighting with shadows, and textures.

Our own renderer draws what the memory fused; the generator draws with PyBullet's TinyRenderer.
By default the world is lit the way TinyRenderer lights it when asked nothing, and textured with
``pybullet_data``'s own images (the table's grain, the plane's 2 m checker). ``lighting`` turns on
a directional light from a seeded direction with cast shadows (``getCameraImage(shadow=1, ...)``),
so that shading changes across surfaces and moves with the objects; ``textures`` replaces the
table's, the floor's and the occluders' images with seeded procedural ones that hold detail at a
few millimetres (wood grain on the table, small tiles with grout on the floor, speckle on the
occluders), which a 2 cm voxel scaffold cannot draw. Both are deterministic per seed; the ground
truth (poses, depth, labels) does not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as pb
from PIL import Image


@dataclass(frozen=True)
class Light:
    """TinyRenderer's directional light (``getCameraImage`` keyword arguments).

    Attributes:
        direction: ``[3]`` towards the light, world frame.
        color: ``[3]`` RGB in [0, 1].
        ambient, diffuse, specular: Phong coefficients.
        shadow: cast shadows.
    """

    direction: tuple[float, float, float]
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.45
    diffuse: float = 0.55
    specular: float = 0.1
    shadow: bool = True

    def camera_image_kwargs(self) -> dict:
        return {"lightDirection": list(self.direction), "lightColor": list(self.color), "lightDistance": 4.0,
                "shadow": int(self.shadow), "lightAmbientCoeff": self.ambient, "lightDiffuseCoeff": self.diffuse,
                "lightSpecularCoeff": self.specular}


def seeded_light(rng: np.random.Generator) -> Light:
    """A light from 35-65 degrees above the horizon, from any side, slightly warm or cool."""
    elevation = math.radians(rng.uniform(35.0, 65.0))
    azimuth = rng.uniform(0.0, 2 * math.pi)
    direction = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    tint = rng.uniform(-0.06, 0.06)
    return Light(direction, (1.0, 1.0 - abs(tint), 1.0 - tint))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """``[size, size]`` value noise in [0, 1]: a ``cells``-square random grid, bilinearly upsampled."""
    grid = rng.uniform(0.0, 1.0, (cells + 1, cells + 1))
    t = np.linspace(0, cells, size, endpoint=False)
    i = t.astype(int)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None] + rows[:, i + 1] * f[None]


def wood_texture(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """``[size, size, 3]`` uint8 wood: grain lines bent by noise, in a seeded warm brown."""
    y = np.linspace(0, 1, size, endpoint=False)[:, None]
    bend = 0.6 * _smooth_noise(rng, size, 6) + 0.15 * _smooth_noise(rng, size, 24)
    rings = 0.5 + 0.5 * np.sin(2 * math.pi * (40 * y + 4 * bend))
    fine = _smooth_noise(rng, size, 128)
    shade = 0.55 + 0.3 * rings + 0.15 * fine
    base = np.array([0.62, 0.42, 0.25]) * rng.uniform(0.85, 1.1)
    return (np.clip(shade[..., None] * base, 0, 1) * 255).astype(np.uint8)


def tile_texture(rng: np.random.Generator, size: int = 512, tiles: int = 8) -> np.ndarray:
    """``[size, size, 3]`` uint8 floor tiles: ``tiles`` per side, each its own shade, with grout."""
    cell = size // tiles
    shades = rng.uniform(0.55, 0.85, (tiles, tiles))
    index = np.arange(size) // cell
    image = shades[index[:, None], index[None, :]]
    image = image * (0.9 + 0.1 * _smooth_noise(rng, size, 64))
    grout = (np.arange(size) % cell < max(2, cell // 16))
    image[grout, :] = 0.3
    image[:, grout] = 0.3
    base = np.array([0.85, 0.8, 0.72])
    return (np.clip(image[..., None] * base, 0, 1) * 255).astype(np.uint8)


def speckle_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """``[size, size, 3]`` uint8 grey speckle (painted board, concrete)."""
    grey = 0.45 + 0.2 * _smooth_noise(rng, size, 16) + 0.15 * rng.uniform(-1, 1, (size, size))
    return (np.clip(np.repeat(grey[..., None], 3, axis=-1), 0, 1) * 255).astype(np.uint8)


def apply_textures(client: int, table: int, plane: int, occluders: list[int], rng: np.random.Generator,
                   folder: Path) -> None:
    """Write seeded textures to ``folder`` as PNG and put them on the table, the floor and the occluders."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image, bodies in (("table", wood_texture(rng), [table]), ("floor", tile_texture(rng), [plane]),
                                ("occluder", speckle_texture(rng), occluders)):
        if not bodies:
            continue
        path = folder / f"{name}.png"
        Image.fromarray(image).save(path)
        texture = pb.loadTexture(str(path), physicsClientId=client)
        for body in bodies:
            pb.changeVisualShape(body, -1, textureUniqueId=texture, rgbaColor=[1, 1, 1, 1], physicsClientId=client)
