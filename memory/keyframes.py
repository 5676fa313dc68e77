"""Keyframes: the static pixels of selected views, kept at the camera's own resolution.

The voxel scaffold holds the geometry of the static scene at a few centimetres; a view
rendered from it is soft at silhouettes and texture edges. A keyframe keeps one
observed view's RGB and depth and which pixels were static scene; when the memory is drawn
from a nearby camera, its static pixels become one small Gaussian each, composited over
the scaffold, under the objects in front of it (see :func:`~splatworld.render.compositing.composite`). That is what makes
a revisited view look as it did (the 3D-cache idea of e.g. Gen3C).

Its other pixels (objects, the agent) are kept as free space: the ray was seen clear up to
their depth, so no static surface lies in front of it there. Where the blurred scaffold's
rim reaches over such a pixel (an occluder's edge next to an object seen beside it), that
evidence keeps the object from being cut by the rim.

A new keyframe is taken when the camera is farther than a spacing from every stored one,
so revisiting a place does not add keyframes; the store holds at most ``capacity`` of
them and drops the one whose viewpoint was least recently near the camera.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from splatworld.errors import ConfigError, ShapeError
from splatworld.scene.cameras import Camera
from splatworld.scene.gaussians import Gaussians

_ZLIB_LEVEL = 6  # zlib's default: a 256x256 keyframe compresses in about 3 ms


@dataclass(eq=False)
class Keyframe:
    """One observed view, its pixels kept zlib-compressed (rendered RGB about 5x, depth about
    15x): 256 keyframes at 256x256 hold about 15 MB instead of 100.

    Attributes:
        camera: the camera it was seen from.
        packed: ``rgb`` ``[H, W, 3]`` uint8, ``depth`` ``[H, W]`` float16 z-depth in metres (0 where
            unknown), ``static`` ``[H, W]`` bool (the pixel shows static scene: not an object,
            not the agent) and ``objects`` ``[H, W]`` uint16 (the memory's object id seen at each
            pixel, 0 for none), each as zlib-compressed bytes; read them through the properties.
        time: when it was taken (s).
        last_near: last time the camera was within the spacing of this viewpoint (s).
        frame: the memory's frame index it was taken at (object poses are read there).
    """

    camera: Camera
    packed: tuple[bytes, bytes, bytes, bytes]
    time: float
    last_near: float
    frame: int = 0

    @classmethod
    def of(cls, camera: Camera, rgb: np.ndarray, depth: np.ndarray, static: np.ndarray, objects: np.ndarray,
           time: float, frame: int) -> Keyframe:
        arrays = (rgb.astype(np.uint8), depth.astype(np.float16), static.astype(bool), objects.astype(np.uint16))
        return cls(camera, tuple(zlib.compress(np.ascontiguousarray(a).tobytes(), _ZLIB_LEVEL) for a in arrays),
                   time, time, frame)

    def _unpacked(self, index: int, dtype, shape: tuple) -> np.ndarray:
        return np.frombuffer(bytearray(zlib.decompress(self.packed[index])), dtype).reshape(shape)

    @property
    def rgb(self) -> np.ndarray:
        return self._unpacked(0, np.uint8, (self.camera.height, self.camera.width, 3))

    @property
    def depth(self) -> np.ndarray:
        return self._unpacked(1, np.float16, (self.camera.height, self.camera.width))

    @property
    def static(self) -> np.ndarray:
        return self._unpacked(2, bool, (self.camera.height, self.camera.width))

    @property
    def objects(self) -> np.ndarray:
        return self._unpacked(3, np.uint16, (self.camera.height, self.camera.width))

    def layers(self, pixel_scale: float) -> tuple[Gaussians, Gaussians]:
        """One Gaussian per pixel with a depth, its standard deviation ``pixel_scale`` pixels at its
        depth: the static pixels, and the others (the free-space layer)."""
        depth = torch.from_numpy(self.depth.astype(np.float32))
        points = self.camera.backproject(depth)
        colors = torch.from_numpy(self.rgb).float() / 255.0
        sizes = pixel_scale * depth / self.camera.fx
        static = torch.from_numpy(self.static)
        return tuple(Gaussians.from_points(points[keep], colors[keep], sizes[keep], opacity=0.99)
                     for keep in ((depth > 0) & static, (depth > 0) & ~static))


def view_distances(viewmats: torch.Tensor, viewmat: torch.Tensor, metres_per_radian: float = 1.0) -> np.ndarray:
    """``[K]`` distances of the viewpoints of world-to-camera ``viewmats [K, 4, 4]`` to that of
    ``viewmat [4, 4]``: centre distance plus ``metres_per_radian`` times the angle between the
    optical axes."""
    viewmats, viewmat = viewmats.double(), viewmat.double()
    centres = -torch.einsum("kji,kj->ki", viewmats[:, :3, :3], viewmats[:, :3, 3])  # as Camera.center
    centre = -viewmat[:3, :3].T @ viewmat[:3, 3]
    cosine = torch.clamp(viewmats[:, 2, :3] @ viewmat[2, :3], -1.0, 1.0)
    distance = torch.linalg.norm(centres - centre, dim=-1) + metres_per_radian * torch.arccos(cosine)
    return distance.numpy()


class KeyframeStore:
    """At most ``capacity`` keyframes at least ``spacing`` apart (:func:`view_distances`).

    Args:
        spacing: a frame farther than this from every keyframe becomes one (view distance, m).
        capacity: the most keyframes kept; beyond it the least recently approached one goes.
        reach: :meth:`nearest` returns nothing farther than this.
    """

    def __init__(self, spacing: float = 0.1, capacity: int = 256, reach: float = 0.3):
        if spacing <= 0 or capacity < 1 or reach <= 0:
            raise ConfigError(f"keyframes: spacing and reach must be > 0 and capacity >= 1, "
                             f"got {spacing}, {reach}, {capacity}")
        self.spacing, self.capacity, self.reach = spacing, capacity, reach
        self.frames: list[Keyframe] = []
        self._last_layers: tuple[Keyframe, float, tuple[Gaussians, Gaussians]] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def consider(self, camera: Camera, rgb: np.ndarray, depth: np.ndarray, static: np.ndarray, time: float,
                 objects: np.ndarray | None = None, frame: int = 0) -> bool:
        """Keep this view as a keyframe unless one is already within the spacing. Returns whether it was kept.

        Args:
            rgb: ``[H, W, 3]`` uint8.
            depth: ``[H, W]`` z-depth (m), 0 where unknown.
            static: ``[H, W]`` bool, static-scene pixels.
            objects: ``[H, W]`` the memory's object id at each pixel (0: none); all 0 if omitted.
            frame: the memory's frame index.
        """
        size = (camera.height, camera.width)
        objects = np.zeros(size, np.uint16) if objects is None else objects
        if rgb.shape != (*size, 3) or depth.shape != size or static.shape != size or objects.shape != size:
            raise ShapeError(f"keyframe: rgb {rgb.shape}, depth {depth.shape}, static {static.shape} and objects "
                             f"{objects.shape} must match the camera's {camera.height}x{camera.width}")
        near = [k for k, d in zip(self.frames, self._distances(camera)) if d < self.spacing]
        for k in near:
            k.last_near = time
        if near:
            return False
        self.frames.append(Keyframe.of(camera, rgb, depth, static, objects, time, frame))
        if len(self.frames) > self.capacity:
            del self.frames[int(np.argmin([k.last_near for k in self.frames]))]
        return True

    def _distances(self, camera: Camera) -> np.ndarray:
        """``[K]`` view distances of the stored keyframes to ``camera`` (empty store: ``[0]``)."""
        if not self.frames:
            return np.zeros(0)
        return view_distances(torch.stack([k.camera.viewmat for k in self.frames]), camera.viewmat)

    def nearest(self, camera: Camera) -> Keyframe | None:
        """The keyframe whose viewpoint is nearest to ``camera``, if within ``reach``."""
        if not self.frames:
            return None
        distances = self._distances(camera)
        best = int(np.argmin(distances))
        return self.frames[best] if distances[best] <= self.reach else None

    def layers(self, keyframe: Keyframe, pixel_scale: float) -> tuple[Gaussians, Gaussians]:
        """``keyframe.layers(pixel_scale)``, kept for the last keyframe asked for: the views along a
        camera path mostly draw the same keyframe, and building its 65k splats (at 256x256) took
        about a third of the time of drawing an imagined frame."""
        last = self._last_layers
        if last is None or last[0] is not keyframe or last[1] != pixel_scale:
            self._last_layers = last = (keyframe, pixel_scale, keyframe.layers(pixel_scale))
        return last[2]

    def state_dict(self) -> dict:
        return {"spacing": self.spacing, "capacity": self.capacity, "reach": self.reach,
                "frames": [{"camera": (k.camera.fx, k.camera.fy, k.camera.cx, k.camera.cy, k.camera.width,
                                       k.camera.height, k.camera.viewmat),
                            "packed": k.packed, "time": k.time, "last_near": k.last_near, "frame": k.frame}
                           for k in self.frames]}

    @classmethod
    def from_state_dict(cls, state: dict) -> KeyframeStore:
        store = cls(state["spacing"], state["capacity"], state["reach"])
        store.frames = [Keyframe(Camera(*k["camera"]), tuple(k["packed"]), k["time"], k["last_near"], k["frame"])
                        for k in state["frames"]]
        for keyframe in store.frames:  # unpacked now, so that damaged pixels fail the load, not a render
            keyframe.rgb, keyframe.depth, keyframe.static, keyframe.objects  # noqa: B018
        return store
