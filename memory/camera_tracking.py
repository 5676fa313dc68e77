"""Camera poses from the RGB-D frames themselves (``MemoryConfig.poses == "estimate"``).

Each frame is placed by dense RGB-D odometry (open3d's hybrid photometric + geometric term,
Steinbrucker et al. 2011 / Kerl et al. 2013) against a **reference**: an earlier tracked frame
kept for this (a keyframe map of the static scene, in RGB-D rather than in splats). References are
taken ``pose_reference_spacing`` apart; a frame is tracked against the reference within
``pose_reference_reach`` that is the fewest odometry steps from the first frame, starting from a
constant-velocity guess, so drift grows with the steps of that chain and not with time, and a
revisit re-anchors on the references made when the place was first seen (loop closure). With no
reference in reach, or when that fails, the last frame is the reference.

Why not ICP against the voxel scaffold: the scene is mostly planes (table, floor), on which
point-to-plane ICP slides. Measured on `occlusion` seed 0 with Kinect noise, 300 frames: ATE
RMSE 50 mm with the scaffold ICP after odometry, 18 mm without it (chained frame to frame), 3.6 mm
with the reference chain.

An odometry result farther than ``pose_max_correction`` from its guess took a wrong minimum and
is refused, as is one that paired under ``pose_min_overlap`` of the frame's depth pixels (open3d
reports success with no pairs at all when the views do not overlap). A view of a far plane alone
(the floor, while the camera looks away from the table) fixes the camera's height and tilt but
not whether it turned or slid: the odometry's information matrix is then nearly singular
(``pose_degenerate_ratio``), the camera is taken to have turned about its own centre, and the
turn is found from the images alone (:func:`rotation_between`: any depth aligns under a pure turn).
Measured on `out_of_view` seed 0 with Kinect noise: through the 3 s pan away from the table,
6-DoF odometry drifted to 0.5 m and 15 degrees; turning in place kept it under 9 mm and 0.25 degrees.

Before the view is that degenerate, while the table leaves it, the odometry can already trade the
turn for a slide: on `long` seed 1 it slid 30 mm in the 0.4 s before the floor-alone view, which
then held that centre for 148 s. So a camera that was turning in place (its constant-velocity
guess turns faster than ``pose_turning_speed`` while its centre moves slower than
``pose_still_speed``) and sees a nearly degenerate view (``pose_ambiguous_ratio``) is taken to
go on turning in place unless the 6-DoF result aligns the frame clearly better
(:func:`alignment_cost`, ``pose_turn_margin``). No other camera is: a turn about the last centre
aligns a 17 mm step of an orbit, or the 2 mm jitter of a camera at rest, within 5% too.

A frame that no reference places is **lost**: the last pose is kept, the memory observes nothing in
it (:meth:`SceneMemory.observe`) and counts it (``memory.lost_frames``); while lost, each frame is
tried against the references whose thumbnails look most like it, from their own poses (a view
of a far plane alone does not relocalise: it would slide).

Tracking needs only the frames, not the memory, so :meth:`CameraTracker.prefetch` can track
the next frame in a worker thread while the memory observes this one. open3d holds the GIL
through its odometry (a 0.6 ms torch call beside an odometry thread took 9 ms on average), but the
memory spends most of a frame in numpy, torch and numba calls that release it: the odometry in a
child process instead was no faster (300 frames of kinect `occlusion`: 4.49 and 4.09 frames/s,
against 4.42 and 4.19 in the thread).
The odometry runs on one thread: over open3d's thread pool its sums come in an order that varies
from run to run (measured: two runs of the same 120 frames ended with different tracks), and the
pool would take the core the memory is observing on.

Convention: poses here are OpenCV camera-to-world ``[4, 4]`` float64 (the inverse of
:attr:`Camera.viewmat`). open3d's pinhole model puts pixel centres at integers, ours at half-integers.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch
from scipy import ndimage

from splatworld.memory.config import MemoryConfig
from splatworld.memory.keyframes import view_distances
from splatworld.scene.cameras import Camera
from splatworld.scene.episode import Frame
from splatworld.scene.transforms import nearest_rotation, rotation_angle

_ODOMETRY = o3d.pipelines.odometry


@contextmanager
def _one_open3d_thread():
    """open3d on one thread inside the block (its limit is process-wide: the previous one is restored)."""
    previous = o3d.utility.get_max_threads()
    o3d.utility.set_max_threads(1)
    try:
        yield
    finally:
        o3d.utility.set_max_threads(previous)


@dataclass(frozen=True)
class PoseEstimate:
    """One frame's tracked camera.

    Attributes:
        camera_to_world: ``[4, 4]`` OpenCV camera-to-world.
        tracked: False for a lost frame (the last pose kept).
        links: odometry steps between this pose and the first frame's.
    """

    camera_to_world: np.ndarray
    tracked: bool
    links: int


@dataclass(eq=False)
class Reference:
    """A tracked frame kept to track later frames against: its images (``rgb [H, W, 3]`` uint8 and
    ``depth [H, W]`` uint16 millimetres, the episode's own precision; None when resumed from a pose
    alone), pose, the number of odometry steps from the first frame, and when the camera was last near it."""

    images: tuple[np.ndarray, np.ndarray] | None
    camera_to_world: np.ndarray
    links: int
    last_near: int
    thumbnail: np.ndarray | None = None  # [THUMBNAIL ** 2] intensity, zero mean and unit norm: for relocalising
    index: int = -1  # the frame it is
    time: float = 0.0  # and when (s)
    static_depth: np.ndarray | None = None  # depth on the static scene alone (keep_static), uint16 mm


class CameraTracker:
    """Tracks the camera frame by frame (see the module docstring). Frames must come in order.

    Args:
        config: the memory's constants (``pose_*`` fields, ``max_depth``).
    """

    def __init__(self, config: MemoryConfig):
        self.config = config
        self.references: list[Reference] = []
        self._last: tuple[Reference, np.ndarray] | None = None  # the last tracked frame, the motion into it
        self._count = 0
        self._lost = 0  # frames lost in a row
        self._pending: tuple[int, Future] | None = None  # (frame index, its estimate) from prefetch
        self._worker: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict:
        """Copies (``copy.deepcopy`` of a memory) wait for a prefetched frame and leave the worker behind."""
        if self._pending is not None:
            self._pending[1].result()
        return {**self.__dict__, "_pending": None, "_worker": None}

    @property
    def started(self) -> bool:
        return self._last is not None

    def start(self, camera_to_world: np.ndarray, frame: Frame | None = None) -> None:
        """Fix the world frame: the first frame's (given) pose and the frame itself, or only the
        pose (a memory loaded from disk goes on from its last pose; the next frame is then tracked
        against nothing until it becomes the first reference)."""
        reference = Reference(None if frame is None else _images(frame), np.asarray(camera_to_world, np.float64), 0, 0,
                              None if frame is None else _thumbnail(frame.rgb), -1 if frame is None else frame.info.index,
                              0.0 if frame is None else frame.info.time)
        if frame is not None:
            self.references.append(reference)
        self._last = (reference, np.eye(4))

    def keep_static(self, index: int, static: np.ndarray) -> None:
        """Note which pixels of frame ``index`` show the static scene (``static [H, W]``, the
        memory's segmentation). Objects and the agent move: a reference older than
        ``pose_static_after`` seconds is matched on its static pixels alone, else it pulls later
        frames toward where the objects were. Recent ones keep them (at 160 px the objects are
        much of what there is to align)."""
        for reference in {id(r): r for r in [*self.references[-2:], self._last[0]]}.values():
            if reference.index == index and reference.images is not None:
                reference.static_depth = np.where(static, reference.images[1], 0).astype(np.uint16)

    def prefetch(self, frame: Frame) -> None:
        """Start tracking ``frame`` (the next one :meth:`track` will be asked for) in a worker thread."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="camera-tracking", initializer=_give_way)
        self._pending = (frame.info.index, self._worker.submit(self._track, frame))

    def track(self, frame: Frame) -> PoseEstimate:
        """The pose of ``frame`` (its own ``camera`` supplies only the intrinsics)."""
        if self._last is None:
            raise RuntimeError("CameraTracker.track before start()")
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == frame.info.index:
            return pending[1].result()
        if pending is not None:
            pending[1].result()  # a prefetched frame that was never asked for: let it finish first
        return self._track(frame)

    def _track(self, frame: Frame) -> PoseEstimate:
        self._count += 1
        last, motion = self._last
        guess = last.camera_to_world @ motion
        images = _images(frame)
        thumbnail = _thumbnail(frame.rgb)
        valid = int(((frame.depth > 0) & (frame.depth < self.config.max_depth)).sum())
        # lost: the guess means nothing; try the references that look most like the frame, from their poses
        candidates = self._lookalikes(thumbnail) if self._lost else [(self._anchor(guess), guess), (last, guess)]
        # the constant-velocity guess turns the camera but keeps its centre (nearly) where it was
        seconds = frame.info.time - last.time
        turning = bool(np.linalg.norm(motion[:3, 3]) < self.config.pose_still_speed * seconds and
                       float(rotation_angle(torch.from_numpy(motion[:3, :3]))) > self.config.pose_turning_speed * seconds)
        for reference, start in candidates:
            if reference is None or reference.images is None:
                continue
            pose = self._odometry(images, frame.camera, reference, start, valid, not self._lost, turning, last,
                                  frame.info.time - reference.time)
            if pose is not None:
                pose[:3, :3] = nearest_rotation(pose[:3, :3])
                current = Reference(images, pose, reference.links + 1, self._count, thumbnail, frame.info.index,
                                    frame.info.time)
                self._last = (current, np.linalg.inv(last.camera_to_world) @ pose if not self._lost else np.eye(4))
                self._lost = 0
                self._remember(current)
                return PoseEstimate(pose, True, current.links)
        if last.images is None:  # resumed from a pose alone: this frame becomes the first reference there
            current = Reference(images, last.camera_to_world, last.links, self._count, thumbnail, frame.info.index,
                                frame.info.time)
            self._last = (current, np.eye(4))
            self._remember(current)
            return PoseEstimate(last.camera_to_world.copy(), True, last.links)
        self._last = (last, np.eye(4))
        self._lost += 1
        return PoseEstimate(last.camera_to_world.copy(), False, last.links)

    def _rgbd(self, images: tuple[np.ndarray, np.ndarray]) -> o3d.geometry.RGBDImage:
        """open3d's odometry input (grey intensity in [0, 1], depth in metres), made when needed (0.7 ms at 256 px)."""
        rgb, depth = images
        return o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(rgb), o3d.geometry.Image(depth),
            depth_scale=1000.0, depth_trunc=self.config.max_depth, convert_rgb_to_intensity=True)

    def _odometry(self, current: tuple[np.ndarray, np.ndarray], camera: Camera, reference: Reference,
                  guess: np.ndarray, valid: int, check_guess: bool, turning: bool, last: Reference,
                  seconds_since: float) -> np.ndarray | None:
        """The frame's pose by odometry against ``reference`` started from ``guess``; None if it
        failed, paired under ``pose_min_overlap`` of the frame's ``valid`` depth pixels with the
        reference's (open3d reports success with no pairs at all when the views do not overlap),
        or (``check_guess``) strayed farther than ``pose_max_correction`` from the guess. In a
        degenerate view (``pose_degenerate_ratio``) the camera turned about ``last``'s centre; a
        lost camera (not ``check_guess``) is not placed by one. A camera that was turning in place
        (``turning``) and sees a nearly degenerate view (``pose_ambiguous_ratio``) turned about
        ``last``'s centre unless the 6-DoF result aligns the frame with the reference better by
        more than ``pose_turn_margin``."""
        cfg = self.config
        intrinsic = o3d.camera.PinholeCameraIntrinsic(camera.width, camera.height, camera.fx, camera.fy,
                                                      camera.cx - 0.5, camera.cy - 0.5)
        # the relative motion maps the current camera's points into the reference camera's frame
        images = reference.images
        if reference.static_depth is not None and seconds_since > cfg.pose_static_after:
            images = (images[0], reference.static_depth)
        with _one_open3d_thread():
            found, relative, information = _ODOMETRY.compute_rgbd_odometry(
                self._rgbd(current), self._rgbd(images), intrinsic, np.linalg.inv(reference.camera_to_world) @ guess,
                _ODOMETRY.RGBDOdometryJacobianFromHybridTerm(),
                _ODOMETRY.OdometryOption(iteration_number_per_pyramid_level=o3d.utility.IntVector(list(cfg.pose_iterations)),
                                         depth_diff_max=cfg.pose_depth_difference, depth_min=0.1, depth_max=cfg.max_depth))
        pose = reference.camera_to_world @ relative
        pairs = np.asarray(information)[5, 5]  # the information matrix sums [skew(p) | I]^T [skew(p) | I] over pairs
        if not found or pairs < cfg.pose_min_overlap * max(valid, 1):
            return None
        if check_guess and not within(np.linalg.inv(guess) @ pose, cfg.pose_max_correction, cfg.pose_max_correction_deg):
            return None
        spread = np.linalg.eigvalsh(np.asarray(information))
        degenerate = spread[0] < cfg.pose_degenerate_ratio * spread[-1]
        if degenerate and not check_guess:  # a far plane alone cannot place a lost camera (it slides)
            return None
        if last.images is None:
            return pose
        if degenerate:
            # a far plane (the floor alone): turning and sliding along it look alike, and the odometry
            # mixes them. The camera is taken to stay where it was and only turn, which the images
            # fix whatever the depth (rotation_between)
            return self._turn_in_place(current[0], last, guess, camera, 0)
        if check_guess and turning and spread[0] < cfg.pose_ambiguous_ratio * spread[-1]:
            # nearly degenerate (panning off the table): the odometry may still trade the turn for a
            # slide. A camera that was turning in place goes on doing so, unless the 6-DoF result
            # aligns the frame clearly better (model selection, as Torr's GRIC picks a homography over
            # a fundamental matrix when the extra freedom buys too little). Only then: a turn about
            # the last centre aligns a 17 mm step of an orbit, or a still camera's 2 mm of jitter,
            # within 5% too
            turned = self._turn_in_place(current[0], last, guess, camera, 1)
            to_reference = np.linalg.inv(reference.camera_to_world)
            costs = [alignment_cost(current, images, to_reference @ p, camera, cfg.max_depth, cfg.pose_depth_difference)
                     for p in (pose, turned)]
            if costs[1] <= (1 + cfg.pose_turn_margin) * costs[0]:
                return turned
        return pose

    @staticmethod
    def _turn_in_place(rgb: np.ndarray, last: Reference, guess: np.ndarray, camera: Camera, finest: int) -> np.ndarray:
        """The pose ``[4, 4]`` of a camera that turned about ``last``'s centre to see ``rgb``: the turn
        from ``last``'s image (:func:`rotation_between` from ``guess``'s rotation, its ``finest``
        levels left out)."""
        grey = [image.astype(np.float64).mean(axis=-1) / 255.0 for image in (rgb, last.images[0])]
        turn = rotation_between(*grey, camera.fx, camera.fy, camera.cx, camera.cy,
                                last.camera_to_world[:3, :3].T @ guess[:3, :3], finest=finest)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = last.camera_to_world[:3, :3] @ turn, last.camera_to_world[:3, 3]
        return pose

    def _lookalikes(self, thumbnail: np.ndarray) -> list[tuple[Reference, np.ndarray]]:
        """The ``pose_relocalise_candidates`` references whose thumbnails correlate best with
        ``thumbnail``, each with its own pose as the starting guess."""
        kept = [r for r in self.references if r.thumbnail is not None]
        if not kept:
            return []
        scores = np.stack([r.thumbnail for r in kept]) @ thumbnail
        best = np.argsort(-scores)[:self.config.pose_relocalise_candidates]
        return [(kept[k], kept[k].camera_to_world) for k in best]

    def _distances(self, pose: np.ndarray) -> np.ndarray:
        """View distance (centre distance + angle between optical axes, m + rad) from ``pose`` to each reference."""
        poses = np.stack([r.camera_to_world for r in self.references])
        return view_distances(torch.from_numpy(np.linalg.inv(poses)), torch.from_numpy(np.linalg.inv(pose)))

    def _anchor(self, pose: np.ndarray) -> Reference | None:
        """The reference within ``pose_reference_reach`` of ``pose`` with the fewest links (the nearest of those)."""
        if not self.references:
            return None
        distances = self._distances(pose)
        near = np.flatnonzero(distances <= self.config.pose_reference_reach)
        if not len(near):
            return None
        best = min(near, key=lambda k: (self.references[k].links, distances[k]))
        self.references[best].last_near = self._count
        return self.references[best]

    def _remember(self, frame: Reference) -> None:
        """Keep a tracked frame as a reference if it is farther than the spacing from all of them;
        beyond the capacity, the least recently approached reference goes."""
        if self.references and self._distances(frame.camera_to_world).min() <= self.config.pose_reference_spacing:
            return
        self.references.append(frame)
        if len(self.references) > self.config.pose_reference_capacity:
            self.references.pop(min(range(len(self.references)), key=lambda k: self.references[k].last_near))


def _give_way() -> None:
    """The tracking thread's initializer: on Linux, the lowest CPU priority (nice 19) for it alone.

    The memory's thread waits at every parallel torch or numba call for all of its team, and while
    the tracker holds one of the two cores a team member waits for a time slice (a 1 ms torch call
    took up to 90 ms). The tracker works about a third of each frame and the memory waits for it
    only at the next frame, so it can give way. 300 frames of kinect `occlusion`, estimated poses:
    4.64-4.83 frames/s at equal priority, 5.24-5.35 at nice 19 (the same poses)."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS takes a process id, not a thread's
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError as error:
        warnings.warn(f"camera tracking: could not lower the tracking thread's priority ({error}); the same "
                      f"poses, observed more slowly", RuntimeWarning, stacklevel=1)


def _images(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    depth = np.round(np.clip(frame.depth, 0.0, 65.0) * 1000.0).astype(np.uint16)  # the episode's precision
    return np.ascontiguousarray(frame.rgb), depth


THUMBNAIL = 16  # side of the thumbnails compared to relocalise a lost camera


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    """``rgb [H, W, 3]`` as a ``THUMBNAIL`` x ``THUMBNAIL`` grey image, zero mean and unit norm, flattened."""
    h, w = rgb.shape[0] // THUMBNAIL * THUMBNAIL, rgb.shape[1] // THUMBNAIL * THUMBNAIL
    grey = rgb[:h, :w].astype(np.float64).mean(axis=-1)
    small = grey.reshape(THUMBNAIL, h // THUMBNAIL, THUMBNAIL, w // THUMBNAIL).mean(axis=(1, 3)).ravel()
    small -= small.mean()
    return small / max(np.linalg.norm(small), 1e-9)


def rotation_between(current: np.ndarray, previous: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                     start: np.ndarray, levels: int = 3, iterations: int = 8, finest: int = 0) -> np.ndarray:
    """The rotation ``R [3, 3]`` (previous camera from current camera, OpenCV axes) that best
    aligns two grey images ``[H, W]`` (float, [0, 1]) of a camera turning about its own centre: the
    current pixel ``x`` shows what the previous image shows at ``K R K^-1 x``, whatever the depth.
    Gauss-Newton on ``R <- exp([w]x) R`` from ``start``, coarse to fine over ``levels`` halvings
    (2x2 means), the ``finest`` of them left out (1: down to half resolution, about 4x faster).
    Pixel centres at half-integers."""
    rotation = nearest_rotation(np.asarray(start, np.float64))
    pyramid = [(current, previous, 1.0)]
    for _ in range(levels - 1):
        a, b, scale = pyramid[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        pyramid.append(tuple(x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for x in (a, b)) + (scale / 2,))
    for cur, prev, scale in reversed(pyramid[finest:]):
        h, w = cur.shape
        v, u = np.mgrid[0:h, 0:w] + 0.5
        rays = np.stack([(u / scale - cx) / fx, (v / scale - cy) / fy, np.ones_like(u)], axis=-1).reshape(-1, 3)
        target = cur.ravel()
        gy, gx = np.gradient(prev)
        for _ in range(iterations):
            q = rays @ rotation.T
            z = q[:, 2]
            pu, pv = fx * scale * q[:, 0] / z + cx * scale - 0.5, fy * scale * q[:, 1] / z + cy * scale - 0.5
            inside = (z > 0) & (pu >= 0) & (pu <= w - 1) & (pv >= 0) & (pv <= h - 1)
            coords = np.stack([pv[inside], pu[inside]])
            residual = ndimage.map_coordinates(prev, coords, order=1) - target[inside]
            keep = np.abs(residual) < 0.25  # pixels that changed for another reason (something moved)
            if keep.sum() < 100:
                break
            qi, zi = q[inside][keep], z[inside][keep]
            grad = np.stack([ndimage.map_coordinates(g, coords[:, keep], order=1) for g in (gx, gy)], axis=1)
            # d(pixel)/d(q), then d(q)/d(w) = -[q]x
            du = grad[:, 0] * fx * scale / zi
            dv = grad[:, 1] * fy * scale / zi
            dq = np.stack([du, dv, -(du * qi[:, 0] + dv * qi[:, 1]) / zi], axis=1)
            jacobian = np.cross(qi, dq)  # dq . (w x q) = w . (q x dq)
            step = np.linalg.lstsq(jacobian, -residual[keep], rcond=None)[0]
            rotation = _exp(step) @ rotation
            if np.linalg.norm(step) < 1e-6:
                break
    return nearest_rotation(rotation)  # products of many rotations drift off orthonormal, composed frame after frame


def alignment_cost(current: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray],
                   relative: np.ndarray, camera: Camera, max_depth: float, depth_scale: float,
                   intensity_scale: float = 0.1) -> float:
    """How badly ``relative [4, 4]`` (current camera to reference camera, OpenCV) aligns two RGB-D
    frames (``rgb [H, W, 3]`` uint8, ``depth [H, W]`` uint16 mm, one ``camera``'s intrinsics):
    the mean, over the current frame's pixels with depth, of the squared depth and grey-level
    differences at the pixel each lands on in the reference, each over its scale and capped at 1
    (so a pixel landing outside the reference or on no depth costs 2)."""
    rgb, depth = current
    z = depth.astype(np.float64) / 1000.0
    v, u = np.nonzero((z > 0) & (z < max_depth))
    if not len(v):
        return 0.0
    z = z[v, u]
    points = np.stack([(u + 0.5 - camera.cx) / camera.fx * z, (v + 0.5 - camera.cy) / camera.fy * z, z], axis=1)
    moved = points @ relative[:3, :3].T + relative[:3, 3]
    ahead = moved[:, 2] > 1e-6
    pu = np.where(ahead, camera.fx * moved[:, 0] / np.where(ahead, moved[:, 2], 1.0) + camera.cx, -1.0)
    pv = np.where(ahead, camera.fy * moved[:, 1] / np.where(ahead, moved[:, 2], 1.0) + camera.cy, -1.0)
    reference_rgb, reference_depth = reference
    h, w = reference_depth.shape
    inside = ahead & (pu >= 0.5) & (pu <= w - 0.5) & (pv >= 0.5) & (pv <= h - 0.5)
    cost = np.full(len(z), 2.0)
    at = np.stack([pv[inside] - 0.5, pu[inside] - 0.5])  # array coordinates: pixel centres at integers
    landed = reference_depth[np.round(at[0]).astype(np.int64), np.round(at[1]).astype(np.int64)] / 1000.0
    depth_cost = np.where(landed > 0, np.minimum(((landed - moved[inside, 2]) / depth_scale) ** 2, 1.0), 1.0)
    grey = rgb[v[inside], u[inside]].astype(np.float64).mean(axis=-1) / 255.0
    reference_grey = ndimage.map_coordinates(reference_rgb.astype(np.float64).mean(axis=-1) / 255.0, at, order=1)
    cost[inside] = depth_cost + np.minimum(((reference_grey - grey) / intensity_scale) ** 2, 1.0)
    return float(cost.mean())


def _exp(w: np.ndarray) -> np.ndarray:
    """Rodrigues: the rotation ``[3, 3]`` of axis-angle ``w [3]``."""
    angle = np.linalg.norm(w)
    if angle < 1e-12:
        return np.eye(3)
    k = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]]) / angle
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def within(motion: np.ndarray, metres: float, degrees: float) -> bool:
    """Whether a rigid ``motion [4, 4]`` moves at most ``metres`` and turns at most ``degrees``."""
    angle = float(rotation_angle(torch.from_numpy(np.asarray(motion[:3, :3], np.float64))))
    return bool(np.linalg.norm(motion[:3, 3]) <= metres and angle <= degrees)


__all__ = ["CameraTracker", "PoseEstimate", "Reference", "alignment_cost", "rotation_between", "within"]
