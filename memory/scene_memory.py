"""SceneMemory: a static Gaussian scaffold plus object tracks, updated online from RGB-D frames.

Per frame (:meth:`SceneMemory.observe`):

1. **Segments.** Each instance label (not 0, not the agent) with enough valid depth becomes a
   segment: its back-projected points, centroid, extent and colour. Labels need not be
   consistent across frames.
2. **Association.** The memory is rendered from the frame's camera (render-and-compare).
   Stage 1 tracks: segments are matched to remembered objects by Hungarian assignment
   on 3D distance, overlap with the object's rendered footprint, and colour. Stage 2
   re-identifies: unmatched segments are matched to unmatched objects (hidden, out of
   view or displaced, however long ago) by colour and size, wherever they reappear.
   What is left is born as new objects.
3. **Tracking and fusion.** A matched object's pose is refined by ICP of the segment's
   points against its model (in its own frame, initialised by the remembered pose) and
   the points are fused into the model's voxel grid. Sub-millimetre ICP updates are
   ignored so that resting objects do not drift.
4. **Visibility and existence.** Each unmatched object is rendered alone and its expected
   depth compared with the observed depth: ``out_of_view`` (less than half of its footprint in the image),
   ``occluded`` (something observed in front of it, or nothing contradicts it), or
   ``contradicted`` (its place is in view and the depth shows what is behind it). Belief
   drops only on contradiction; repeated contradiction marks the object ``displaced``
   until it is re-identified.
5. **Static scaffold.** Pixels labelled 0 inside the workspace box are fused into a voxel
   hash (revisits refine, do not grow); a support plane is fitted by RANSAC.
   Views farther than a spacing from every stored keyframe become keyframes: their static
   pixels at full resolution, drawn over the scaffold when the memory is rendered nearby
   (:meth:`SceneMemory.render`), and their other pixels as free space that no occluder rim cuts.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from splatworld.errors import ConfigError, ShapeError, SplatworldError
from splatworld.memory.keyframes import KeyframeStore, composite, over
from splatworld.memory.registration import estimate_normals, icp_point_to_plane, ransac_plane
from splatworld.memory.voxels import VoxelGrid
from splatworld.render.api import RenderOutput, render
from splatworld.render.projection import RasterSettings
from splatworld.scene.cameras import Camera
from splatworld.scene.episode import DEFAULT_AGENT_LABEL, Frame
from splatworld.scene.gaussians import Gaussians
from splatworld.scene.transforms import matrix_to_pose, pose_to_matrix

MEMORY_FORMAT_VERSION = 7
STATES = ("visible", "occluded", "out_of_view", "contradicted", "displaced")
_HISTORIES = ("poses", "labels", "states", "beliefs")  # per-frame lists of a track


@dataclass(frozen=True)
class MemoryConfig:
    """Tunable constants of the memory (distances in metres)."""

    static_voxel: float = 0.02
    object_voxel: float = 0.005
    max_depth: float = 4.0
    static_stride: int = 2
    min_segment_points: int = 12
    track_gate: float = 0.06
    color_gate: float = 0.12
    reid_color_gate: float = 0.08
    depth_margin: float = 0.02
    min_evidence_pixels: int = 10  # footprint pixels (at render_scale) needed to judge visibility
    contradiction_fraction: float = 0.7  # of the footprint's core seen through for a contradiction
    min_in_view_fraction: float = 0.5  # of the footprint's core inside the image for its place to be "in view"
    render_scale: float = 0.5
    icp_max_distance: float = 0.02
    min_register_points: int = 30  # a model of fewer voxels is too small to register against
    sliver_fraction: float = 0.5  # a segment spanning less of the object's largest size is not registered
    fuse_max_rmse: float = 0.004  # a tracked view is fused into its object's model only if registered this well
    still_translation: float = 0.002
    still_rotation_deg: float = 1.0
    belief_decay: float = 0.5
    agent_reach: float = 0.08  # agent radius plus margin: objects farther from it are assumed still
    agent_settle: float = 0.5  # s: an agent at rest this long pushes nothing (objects left sliding are tracked on)
    near_model: float = 0.04  # points this close to a still object's model are taken as its new parts
    max_stretch: float = 0.015  # ...unless they would make its largest size this much larger
    displace_after: int = 3
    static_refresh_frames: int = 10
    # the static scaffold is fused inside this box (x0, y0, z0, x1, y1, z1), like a TSDF volume:
    # surfaces far from the workspace would grow the map without ever mattering
    workspace: tuple = (-2.0, -2.0, -0.5, 2.0, 2.0, 2.5)
    # std of an object voxel's splat, in voxels: in the memory's own render-and-compare (its association
    # and visibility gates were tuned with it), and in what the memory shows (tighter: at 256 px the
    # wider splat draws a one-pixel rim around every object)
    compare_splat_scale: float = 0.8
    object_splat_scale: float = 0.3
    # screen-space blur (px^2) of the objects the memory shows. The renderer's default (gsplat's 0.3)
    # anti-aliases sparse splats; object voxels are about a pixel apart at 256 px and need little, and
    # with 0.3 every object grows a pixel all round (masks 1.3-1.5x the true silhouette, IoU 0.63-0.66;
    # 0.85-0.9 median with these two values on the occlusion, out_of_view and long presets)
    object_eps2d: float = 0.03
    keyframe_spacing: float = 0.1  # view distance (m + rad) between keyframes
    keyframe_capacity: int = 256
    keyframe_reach: float = 0.3  # farthest keyframe used to draw a view
    keyframe_pixel_scale: float = 0.25  # a keyframe pixel's Gaussian std, in its own pixels
    backend: str = "auto"

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in self.workspace)
        if len(box) != 6 or not all(a < b for a, b in zip(box[:3], box[3:])):
            raise ConfigError(f"memory workspace must be (x0, y0, z0, x1, y1, z1) with x0 < x1 etc., got {box}")
        object.__setattr__(self, "workspace", box)


@dataclass
class Segment:
    label: int
    mask: np.ndarray  # [H, W] bool
    points: np.ndarray  # [N, 3] world
    colors: np.ndarray  # [N, 3]
    centroid: np.ndarray
    color: np.ndarray  # mean RGB
    extent: float  # largest axis-aligned size


@dataclass
class ObjectTrack:
    """One remembered object: a model in its own frame and its pose over time."""

    id: int
    model: VoxelGrid
    pose: np.ndarray  # [4, 4] world_from_object, as remembered now
    state: str = "visible"
    belief: float = 0.5
    last_seen: float = 0.0
    first_frame: int = 0
    observations: int = 0
    contradictions: int = 0
    color: np.ndarray = field(default_factory=lambda: np.zeros(3))
    poses: list = field(default_factory=list)  # per frame since birth: [7] list
    labels: list = field(default_factory=list)  # per frame since birth: label or 0
    states: list = field(default_factory=list)
    beliefs: list = field(default_factory=list)

    @property
    def centroid_local(self) -> np.ndarray:
        return self.model.points.mean(axis=0) if len(self.model) else np.zeros(3)

    @property
    def centroid(self) -> np.ndarray:
        return self.pose[:3, :3] @ self.centroid_local + self.pose[:3, 3]

    @property
    def extent(self) -> np.ndarray:
        if not len(self.model):
            return np.zeros(3)
        return self.model.points.max(axis=0) - self.model.points.min(axis=0)

    def summary(self) -> dict:
        return {"id": self.id, "pose": matrix_to_pose(torch.from_numpy(self.pose)).tolist(),
                "extent": self.extent.tolist(), "state": self.state, "belief": self.belief,
                "last_seen": self.last_seen, "observations": self.observations}


def _color_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of two mean colours: chromaticity mostly, brightness a little (shading varies)."""
    sa, sb = a.sum() + 1e-6, b.sum() + 1e-6
    return float(np.linalg.norm(a / sa - b / sb) + 0.15 * abs(sa - sb) / 3)


def _runs(history: list) -> tuple[int, list[int], list]:
    """Run-length code of a per-frame history (most entries repeat the previous one: objects at
    rest keep their pose): its length, the start of each run and each run's value."""
    starts, values = [], []
    for i, value in enumerate(history):
        if not values or value != values[-1]:
            starts.append(i)
            values.append(value)
    return len(history), starts, values


def _expand(length: int, starts: list[int], values: list) -> list:
    """Inverse of :func:`_runs`."""
    ends = [*starts[1:], length]
    return [v for v, a, b in zip(values, starts, ends) for _ in range(b - a)]


def _to_object_frame(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """World points ``[N, 3]`` in the frame of a world_from_object ``pose [4, 4]``."""
    return (points - pose[:3, 3]) @ pose[:3, :3]


def _scaled_camera(cam: Camera, scale: float) -> Camera:
    return cam.resized(max(1, round(cam.width * scale)), max(1, round(cam.height * scale)))


def _downsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``shape`` (pixel centres)."""
    ys = ((np.arange(shape[0]) + 0.5) * image.shape[0] / shape[0]).astype(int)
    xs = ((np.arange(shape[1]) + 0.5) * image.shape[1] / shape[1]).astype(int)
    return image[ys][:, xs]


def _seen_last_two(track: ObjectTrack) -> bool:
    """The track was visible (owned a label) in each of its last two recorded frames."""
    return len(track.labels) >= 2 and bool(track.labels[-1] and track.labels[-2])


class SceneMemory:
    """The persistent memory of one scene. See the module docstring for the per-frame steps.

    Args:
        config: constants; :class:`MemoryConfig` defaults if omitted.
        agent_label: instance label of the agent's pixels (never scene or object).
    """

    def __init__(self, config: MemoryConfig | None = None, agent_label: int = DEFAULT_AGENT_LABEL):
        self.config = config or MemoryConfig()
        self.agent_label = agent_label
        self.static = VoxelGrid(self.config.static_voxel, covariance=True)
        self.keyframes = KeyframeStore(self.config.keyframe_spacing, self.config.keyframe_capacity,
                                       self.config.keyframe_reach)
        self.tracks: list[ObjectTrack] = []
        self.frame_count = 0
        self.time = 0.0
        self.times: list[float] = []
        self.support_plane: np.ndarray | None = None  # [a, b, c, d], normal up
        self.support_region = np.zeros(4)  # x0, y0, x1, y1 of the plane's observed part
        self.support_color = np.full(3, 0.5)
        # mean colour of what lies beyond the map (no depth, or farther than max_depth): sky, far floor;
        # drawn behind everything the memory renders
        self.background = np.zeros(3)
        self._background_frames = 0
        self.agent_color = np.full(3, 0.5)  # mean colour of the agent's pixels: a model draws it where it moves
        self._agent_frames = 0
        self._static_cache: tuple[int, Gaussians] | None = None  # (grid version, Gaussians)
        self._render_static: Gaussians | None = None  # refreshed every static_refresh_frames
        self._static_kdtree: tuple[int, cKDTree] | None = None
        self._model_cache: dict[tuple[int, float], tuple[int, Gaussians]] = {}  # object Gaussians in their frame
        self._next_id = 1
        self._agent_position: np.ndarray | None = None  # at the last frame that gave one
        self._agent_moved_at = -math.inf  # time the agent was last seen moving

    # ================================================================== observe
    def observe(self, frame: Frame) -> None:
        """Update the memory with one frame (RGB, depth and instances are required)."""
        if frame.depth is None or frame.instances is None:
            raise ShapeError(f"frame {frame.info.index}: the memory needs depth and instances")
        depth = frame.depth
        if not np.isfinite(depth).all():
            raise ShapeError(f"frame {frame.info.index}: depth has non-finite values")
        cam, cfg = frame.camera, self.config
        self.time = frame.info.time
        points = cam.backproject(torch.from_numpy(depth).double()).numpy()
        colors = frame.rgb.astype(np.float64) / 255.0
        valid = (depth > 0) & (depth < cfg.max_depth)
        segments = self._segments(frame.instances, valid, points, colors)
        self._note_agent(frame.info.agent_pose)

        small = _scaled_camera(cam, cfg.render_scale)
        rendered = self._render(small)
        matches = self._associate(segments, rendered)
        frame_labels = {}  # track id -> the label it owns in this frame
        for seg_index, track in matches.items():
            self._update_track(track, segments[seg_index], frame.info.agent_pose)
            frame_labels[track.id] = segments[seg_index].label
        for i, seg in enumerate(segments):
            if i not in matches:
                frame_labels[self._birth(seg).id] = seg.label
        self._reason_visibility(set(frame_labels), depth, small)

        static = valid & (frame.instances == 0)
        beyond = ~valid & (frame.instances == 0)
        if beyond.any():  # running mean over (at most) the last 100 frames that showed any
            self._background_frames = min(self._background_frames + 1, 100)
            self.background += (colors[beyond].mean(axis=0) - self.background) / self._background_frames
        agent = frame.instances == self.agent_label
        if agent.any():  # the same running mean for the agent's colour
            self._agent_frames = min(self._agent_frames + 1, 100)
            self.agent_color += (colors[agent].mean(axis=0) - self.agent_color) / self._agent_frames
        self.keyframes.consider(cam, frame.rgb, np.where(valid, depth, 0.0), static, self.time)
        lo, hi = np.asarray(cfg.workspace[:3]), np.asarray(cfg.workspace[3:])
        stride = np.zeros_like(static)
        stride[::cfg.static_stride, ::cfg.static_stride] = True
        fuse = static & stride & (points >= lo).all(axis=-1) & (points <= hi).all(axis=-1)
        # each fused pixel stands for a patch a stride of pixels wide at its depth (variance width^2 / 12)
        footprint = cfg.static_stride * depth[fuse] / math.sqrt(cam.fx * cam.fy)
        self.static.integrate(points[fuse], colors[fuse], self.time, spread=footprint**2 / 12)
        if self.frame_count % cfg.static_refresh_frames == 0:
            self._render_static = None
            self._fit_support_plane()
        self._record(frame_labels)
        self.times.append(self.time)
        self.frame_count += 1

    # ----------------------------------------------------------------- pieces
    def _segments(self, instances, valid, points, colors) -> list[Segment]:
        out = []
        for label in np.unique(instances[valid]):
            if label == 0 or label == self.agent_label:
                continue
            mask = (instances == label) & valid
            if mask.sum() < self.config.min_segment_points:
                continue
            pts = points[mask]
            lo, hi = np.percentile(pts, [2, 98], axis=0)
            out.append(Segment(int(label), mask, pts, colors[mask], np.median(pts, axis=0),
                               colors[mask].mean(axis=0), float((hi - lo).max())))
        return out

    def _track_gaussians(self, track: ObjectTrack, pose: np.ndarray, scale: float) -> Gaussians:
        """A track's model as world Gaussians at ``pose`` (4x4 matrix or [7]), splat std ``scale`` voxels."""
        key = (track.id, scale)
        cached = self._model_cache.get(key)
        if cached is None or cached[0] != track.model.version:  # a model changes only when fused into
            cached = (track.model.version, track.model.to_gaussians(object_id=track.id, scale=scale))
            self._model_cache[key] = cached
        return cached[1].transform(torch.from_numpy(pose))

    def _object_gaussians(self, tracks) -> list[Gaussians]:
        return [self._track_gaussians(t, t.pose, self.config.compare_splat_scale) for t in tracks if len(t.model)]

    def _render(self, cam: Camera):
        if self._render_static is None:
            self._render_static = self.static_gaussians()
        parts = [self._render_static] + self._object_gaussians(
            [t for t in self.tracks if t.state != "displaced"])
        parts = [p for p in parts if len(p)]
        if not parts:
            return None
        return render(Gaussians.concat(parts), cam, backend=self.config.backend).cpu()

    def _associate(self, segments, rendered) -> dict[int, ObjectTrack]:
        cfg = self.config
        matches: dict[int, ObjectTrack] = {}
        candidates = [t for t in self.tracks if t.state != "displaced"]
        if segments and candidates:
            ids = rendered.object_id.numpy() if rendered is not None else None
            cost = np.full((len(segments), len(candidates)), np.inf)
            for i, seg in enumerate(segments):
                seg_small = _downsample(seg.mask, ids.shape) if ids is not None else None
                for j, t in enumerate(candidates):
                    d = np.linalg.norm(seg.centroid - t.centroid)
                    gate = max(cfg.track_gate, 0.5 * float(np.linalg.norm(t.extent)))
                    c = _color_distance(seg.color, t.color)
                    if d > gate or c > cfg.color_gate:
                        continue
                    iou = 0.0
                    if seg_small is not None:
                        foot = ids == t.id
                        union = (foot | seg_small).sum()
                        iou = (foot & seg_small).sum() / union if union else 0.0
                    cost[i, j] = d / gate + 0.5 * (1 - iou) + c / cfg.color_gate
            matches.update(self._hungarian(cost, list(range(len(segments))), candidates))
        # stage 2: re-identification of objects not tracked in place, wherever they reappear
        left = [i for i in range(len(segments)) if i not in matches]
        taken = {t.id for t in matches.values()}
        pool = [t for t in self.tracks if t.id not in taken]
        if left and pool:
            cost = np.full((len(left), len(pool)), np.inf)
            for a, i in enumerate(left):
                seg = segments[i]
                for b, t in enumerate(pool):
                    c = _color_distance(seg.color, t.color)
                    size = float(np.max(t.extent))
                    if c > cfg.reid_color_gate or seg.extent > 1.5 * size + 0.02:
                        continue
                    # prefer objects known to have left their place
                    prior = 0.0 if t.state in ("displaced", "contradicted", "out_of_view") else 0.5
                    cost[a, b] = c / cfg.reid_color_gate + prior + 0.2 * min(1.0, np.linalg.norm(
                        seg.centroid - t.centroid))
            matches.update(self._hungarian(cost, left, pool))
        return matches

    @staticmethod
    def _hungarian(cost: np.ndarray, rows: list, cols: list) -> dict:
        """Minimum-cost one-to-one assignment over finite entries: ``{rows[i]: cols[j]}``."""
        finite = np.isfinite(cost)
        if not finite.any():
            return {}
        r, c = linear_sum_assignment(np.where(finite, cost, 1e9))
        return {rows[i]: cols[j] for i, j in zip(r, c) if finite[i, j]}

    def _icp(self, track: ObjectTrack, seg: Segment, predicted: np.ndarray,
             rough: bool = False) -> tuple[np.ndarray, float]:
        """world_from_object ``[4, 4]`` refined by ICP of the segment's points onto the model, from the
        ``predicted`` pose, and the registration's inlier RMSE (m; inf when it failed). ``rough``: the
        prediction is a centroid jump, off by as much as a partial view's centroid is from the
        object's, so a last attempt reaches twice as far."""
        cfg = self.config
        target = track.model.points
        target_tree = cKDTree(target)
        normals = estimate_normals(target, 3 * cfg.object_voxel, tree=target_tree)
        segment_tree = cKDTree(seg.points)

        def register(init: np.ndarray, reach: float):
            # coarse to fine: a wide first pass pulls the pose in, the tight last passes ignore the
            # segment's rim and any part of it the model has not seen yet
            transformation, max_distance = init, reach
            while max_distance >= cfg.icp_max_distance / 4:
                result = icp_point_to_plane(seg.points, target, normals, target_tree, max_distance, transformation)
                transformation, max_distance = result.transformation, max_distance / 2
            world_from_object = np.linalg.inv(transformation)
            # overlap either way: a new object's model is still a sliver of what comes into view
            model = target @ world_from_object[:3, :3].T + world_from_object[:3, 3]
            near, _ = segment_tree.query(model, distance_upper_bound=2 * max_distance)  # the last pass's
            overlap = max(result.fitness, float(np.isfinite(near).mean()))
            # a good fit far from where it started slid along a partial view (a few points of a flat face)
            slid = np.linalg.norm(world_from_object[:3, 3] - np.linalg.inv(init)[:3, 3])
            return result if overlap >= 0.3 and slid <= reach else None

        # No retry from the segment's centroid: a partial view's centroid is not the object's. A
        # pushed object moves less than the first pass's reach per frame beyond the predicted motion,
        # twice that after a frame in which it was not seen; an object found far from its place is
        # moved there before (see _update_track).
        init = np.linalg.inv(predicted)
        result = None
        for reach in (1, 2, 4) if rough else (1, 2):
            result = result or register(init, reach * cfg.icp_max_distance)
        if result is None:
            return track.pose, math.inf
        new = np.linalg.inv(result.transformation)
        delta = np.linalg.inv(track.pose) @ new
        angle = math.degrees(math.acos(np.clip((np.trace(delta[:3, :3]) - 1) / 2, -1, 1)))
        if np.linalg.norm(delta[:3, 3]) < cfg.still_translation and angle < cfg.still_rotation_deg:
            return track.pose, result.inlier_rmse
        return new, result.inlier_rmse

    @staticmethod
    def _predicted_pose(track: ObjectTrack) -> np.ndarray:
        """The pose ``[4, 4]`` one frame on at the last observed motion (the track was visible in its
        last two frames), else the remembered pose: a pushed object keeps moving between frames."""
        if not _seen_last_two(track):
            return track.pose
        last, before = (pose_to_matrix(torch.tensor(p, dtype=torch.float64)).numpy() for p in track.poses[-2:][::-1])
        return last @ np.linalg.inv(before) @ track.pose

    @staticmethod
    def _explained(track: ObjectTrack, seg: Segment, radii: tuple[float, ...]) -> tuple[list[float], float]:
        """Fraction of the segment's points within each of ``radii`` of the model at the remembered
        pose (one nearest-neighbour query for all), and how much larger (m) the largest size of the
        model and the segment together is than the larger of theirs alone (sizes along the object's
        axes; the segment's from its 2nd to 98th percentile points: depth edges fly). About 0 for a
        new side of the object where remembered (each view spans the object's largest size, if not
        its depth), the offset for a view of it moved aside."""
        local = _to_object_frame(track.pose, seg.points)
        dist, _ = cKDTree(track.model.points).query(local, distance_upper_bound=max(radii))
        return [float((dist <= r).mean()) for r in radii], SceneMemory._stretch(track, local)

    @staticmethod
    def _stretch(track: ObjectTrack, local: np.ndarray) -> float:
        """How much larger (m) the largest size of the model and of points ``local [P, 3]`` (in
        its frame) together is than the larger of theirs alone (see :meth:`_explained`)."""
        lo, hi = track.model.points.min(axis=0), track.model.points.max(axis=0)
        seg_lo, seg_hi = np.percentile(local, [2, 98], axis=0)
        both = np.maximum(hi, seg_hi) - np.minimum(lo, seg_lo)
        return float(both.max() - max((hi - lo).max(), (seg_hi - seg_lo).max()))

    def _note_agent(self, agent_pose) -> None:
        if agent_pose is None:
            return
        position = np.asarray(agent_pose[:3], dtype=np.float64)
        # a resting agent's pose repeats exactly; 0.1 mm is well above float noise
        if self._agent_position is None or np.linalg.norm(position - self._agent_position) > 1e-4:
            self._agent_moved_at = self.time
        self._agent_position = position

    def _in_motion(self, track: ObjectTrack) -> bool:
        """The track moved between its last two frames, seen in both (ICP's still steps are exact zeros)."""
        return _seen_last_two(track) and not np.array_equal(track.poses[-1], track.poses[-2])

    def _may_be_pushed(self, track: ObjectTrack, agent_pose) -> bool:
        """Something may be moving the object: it was moving at its last step, or the agent is within
        reach and moved within the last ``agent_settle`` seconds (tabletop pushing is quasi-static: an
        agent standing still beside an object does not move it)."""
        if agent_pose is None or self._in_motion(track):
            return True  # no agent information: any object may have been moved
        if self.time - self._agent_moved_at > self.config.agent_settle:
            return False
        reach = self.config.agent_reach + float(np.linalg.norm(track.extent)) / 2
        return float(np.linalg.norm(np.asarray(agent_pose[:3]) - track.centroid)) < reach

    def _update_track(self, track: ObjectTrack, seg: Segment, agent_pose) -> None:
        # Objects move only when something moves them. Otherwise an object keeps its remembered pose
        # as long as the segment lies on or next to its model (a part not seen before is no evidence
        # of motion; ICP on partial views slides along elongated objects).
        cfg = self.config
        pushed = self._may_be_pushed(track, agent_pose)
        known_moved = track.state in ("displaced", "contradicted")
        (on_fit, on_model), stretch = self._explained(track, seg, (cfg.icp_max_distance / 2, cfg.near_model))
        off_model = on_model < 0.5  # not on or next to it where remembered
        # next to it but stretching it: a view of it moved aside (or of something beside it), which fused
        # where remembered would smear the model; registered instead, it is fused only if it fits
        stretched = stretch > cfg.max_stretch
        moved_away = on_fit < 0.5 if pushed else known_moved or off_model or stretched
        # mostly off its surface and stretching it by more than ICP reaches: the object itself, moved
        # aside (a model smeared by earlier views reaches far enough to hold such a view "next to" it;
        # a strip of it moved by less is left to ICP, since a partial view's centroid is not the object's)
        aside = off_model or (on_fit < 0.5 and stretch > 2 * cfg.icp_max_distance)
        # a mostly hidden object (a sliver beside an occluder): too little of it to register
        sliver = seg.extent < cfg.sliver_fraction * float(np.max(track.extent))
        away = float(np.linalg.norm(seg.centroid - track.centroid))
        jumped = moved_away and (known_moved or aside) and away > cfg.track_gate and (
            not sliver or known_moved or away > np.linalg.norm(track.extent))
        if jumped:
            # re-identified away from where it was remembered, or lost while in view (pushed while only
            # slivers of it showed, now beyond ICP's reach): jump there before refining. The centroids of
            # a partial view (a sliver, or a strip of a large object at an occluder's edge) and of the object
            # differ, so a segment lying on the model where remembered is no sign of a move.
            track.pose = track.pose.copy()
            track.pose[:3, 3] += seg.centroid - track.centroid
        if sliver:
            rmse = math.inf
        elif len(track.model) < cfg.min_register_points:
            rmse = 0.0  # a model still too small to register against grows from its first views
        elif pushed or moved_away:  # otherwise still: keep the pose, only grow the model
            predicted = self._predicted_pose(track) if pushed else track.pose
            track.pose, rmse = self._icp(track, seg, predicted, rough=jumped)
        else:
            rmse = 0.0
        # a poorly registered view would smear the model, and so would one registered short of where
        # the object moved to (ICP's inliers fit, the rest of the view lies beside the model)
        local = _to_object_frame(track.pose, seg.points)
        if rmse <= cfg.fuse_max_rmse and (not stretched or self._stretch(track, local) <= cfg.max_stretch):
            track.model.integrate(local, seg.colors, self.time)
        track.color = (track.color * min(track.observations, 20) + seg.color) / (min(track.observations, 20) + 1)
        track.observations += 1
        track.state, track.contradictions, track.last_seen = "visible", 0, self.time
        track.belief = min(0.999, track.belief + (1 - track.belief) * 0.5)

    def _birth(self, seg: Segment) -> ObjectTrack:
        pose = np.eye(4)
        pose[:3, 3] = seg.centroid
        track = ObjectTrack(self._next_id, VoxelGrid(self.config.object_voxel), pose, first_frame=self.frame_count,
                            color=seg.color.copy(), last_seen=self.time, observations=1)
        track.model.integrate(seg.points - seg.centroid, seg.colors, self.time)
        self._next_id += 1
        self.tracks.append(track)
        return track

    def _reason_visibility(self, matched: set, depth: np.ndarray, small: Camera) -> None:
        cfg = self.config
        observed = _downsample(depth, (small.height, small.width))
        # Render on a canvas padded by a quarter of the image on each side: an object whose place
        # is mostly outside the image gives no evidence (its inflated rim may poke into view).
        pad = max(small.width, small.height) // 4
        canvas = Camera(small.fx, small.fy, small.cx + pad, small.cy + pad, small.width + 2 * pad,
                        small.height + 2 * pad, small.viewmat)
        image = (slice(pad, pad + small.height), slice(pad, pad + small.width))  # the real image in the canvas
        for track in self.tracks:
            if track.id in matched or track.state == "displaced" or not len(track.model):
                continue
            alone = render(self._track_gaussians(track, track.pose, cfg.compare_splat_scale), canvas,
                           backend=cfg.backend).cpu()
            core = alone.alpha.numpy() > 0.9  # the core: a slightly inflated model's rim is not evidence
            foot = core[image]
            if foot.sum() < cfg.min_evidence_pixels or foot.sum() < cfg.min_in_view_fraction * core.sum():
                # (almost) nothing of it, or only its edge, would be in the image: no evidence either way
                track.state = "out_of_view"
                continue
            expected = alone.depth.numpy()[image][foot]
            seen = observed[foot]
            known = seen > 0
            behind = (seen > expected + cfg.depth_margin) | ~known  # no return = looking through
            if behind.mean() > cfg.contradiction_fraction:
                track.state = "contradicted"
                track.contradictions += 1
                track.belief *= cfg.belief_decay
                if track.contradictions >= cfg.displace_after:
                    track.state = "displaced"
            else:
                # something observed in front of it, or its place agrees with the memory
                # but no segment claimed it (e.g. hidden by the agent): not evidence of absence
                track.state = "occluded"

    def _fit_support_plane(self) -> None:
        """The highest large horizontal plane of the static scaffold (the table top), by RANSAC."""
        if len(self.static) < 200:
            return
        rng = np.random.default_rng(0)  # same input, same plane
        points = self.static.points
        best = None
        for _ in range(3):
            if len(points) < 100:
                break
            plane, inliers = ransac_plane(points, 0.01, 200, rng)
            if plane[2] > 0.95 and (best is None or -plane[3] / plane[2] > -best[3] / best[2]):
                best = plane
            points = points[~inliers]
        self.support_plane = best
        if best is not None:
            on_plane = np.abs(self.static.points @ best[:3] + best[3]) < 0.01
            xy = self.static.points[on_plane, :2]
            self.support_region = np.concatenate(np.percentile(xy, [1, 99], axis=0))  # x0, y0, x1, y1
            self.support_color = np.median(self.static.colors[on_plane], axis=0)

    def support_fill(self) -> Gaussians:
        """Gaussians completing the support plane where it was never seen (under objects, say):
        one per static-voxel cell of the plane's observed x-y region that holds no static voxel."""
        if self.support_plane is None:
            return Gaussians.empty()
        a, b, c, d = self.support_plane
        x0, y0, x1, y1 = self.support_region
        step = self.config.static_voxel
        gx, gy = np.meshgrid(np.arange(x0, x1, step) + step / 2, np.arange(y0, y1, step) + step / 2)
        xy = np.stack([gx.ravel(), gy.ravel()], axis=1)
        z = -(a * xy[:, 0] + b * xy[:, 1] + d) / c
        points = np.concatenate([xy, z[:, None]], axis=1)
        missing = ~(self.static.contains(points) | self.static.contains(points - [0, 0, step / 2]))
        colors = np.repeat(self.support_color[None], int(missing.sum()), axis=0)
        return Gaussians.from_points(torch.from_numpy(points[missing]).float(),
                                     torch.from_numpy(colors).float(), 0.6 * step)

    def _record(self, frame_labels: dict) -> None:
        for t in self.tracks:
            t.poses.append(matrix_to_pose(torch.from_numpy(t.pose)).tolist())
            t.labels.append(frame_labels.get(t.id, 0))
            t.states.append(t.state)
            t.beliefs.append(round(t.belief, 4))

    # ============================================================ between frames
    def move_unseen(self, poses: dict[int, np.ndarray]) -> list[int]:
        """Move the objects that the last frame did not show to ``poses`` (track id -> world_from_object
        ``[4, 4]``: where a dynamics model expects them at the next frame). The ones it showed are left
        to the next observation, which registers them from their own motion. Returns the ids moved.

        Raises:
            SplatworldError: an id the memory does not hold.
        """
        by_id = {t.id: t for t in self.tracks}
        unknown = sorted(set(poses) - set(by_id))
        if unknown:
            raise SplatworldError(f"move_unseen: no remembered object with id {unknown[0]} (known: {sorted(by_id)})")
        moved = []
        for i, pose in poses.items():
            track = by_id[i]
            pose = np.asarray(pose, dtype=np.float64)
            if pose.shape != (4, 4):
                raise ShapeError(f"move_unseen: pose of object {i} must be [4, 4], got {pose.shape}")
            # a still object's pose, round-tripped through a dynamics state, comes back with float noise
            if track.labels and track.labels[-1] == 0 and not np.allclose(pose, track.pose, rtol=0, atol=1e-9):
                track.pose = pose
                moved.append(i)
        return moved

    def forget_unseen(self, seconds: float) -> list[int]:
        """Drop every object not seen for more than ``seconds`` (a memoryless model); returns their ids."""
        gone = [t.id for t in self.tracks if self.time - t.last_seen > seconds]
        self.tracks = [t for t in self.tracks if t.id not in gone]
        self._model_cache = {key: value for key, value in self._model_cache.items() if key[0] not in gone}
        return gone

    @property
    def just_refreshed(self) -> bool:
        """Whether the last observed frame refreshed what is derived from the static map (every
        ``static_refresh_frames``): a memory saved now and loaded goes on bit for bit as one kept."""
        return self.frame_count > 0 and (self.frame_count - 1) % self.config.static_refresh_frames == 0

    # =================================================================== queries
    def static_gaussians(self) -> Gaussians:
        """The static scaffold as Gaussians, as it is now, with unseen support-plane patches completed."""
        if self._static_cache is None or self._static_cache[0] != self.static.version:
            seen = self.static.to_gaussians(object_id=0, min_weight=1.0, scale=0.6)
            self._static_cache = (self.static.version, Gaussians.concat([seen, self.support_fill()]))
        return self._static_cache[1]

    def objects(self) -> list[dict]:
        """Every remembered object: id, pose, extent, state, belief, last-seen time."""
        return [t.summary() for t in self.tracks]

    def objects_in_view(self, camera: Camera) -> list[int]:
        """Ids of objects (not displaced) whose centroid projects inside ``camera``'s image, in front of it."""
        out = []
        for t in self.tracks:
            if t.state == "displaced":
                continue
            uv, z = camera.project(torch.from_numpy(t.centroid)[None])
            u, v = uv[0].tolist()
            if z.item() > 0 and 0 <= u < camera.width and 0 <= v < camera.height:
                out.append(t.id)
        return out

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        """bool ``[N]``: points inside an occupied static voxel."""
        return self.static.contains(np.asarray(points, dtype=np.float64).reshape(-1, 3))

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Approximate signed distance ``[N]`` (m) to the static surfaces: distance to the nearest
        static voxel centre minus half a voxel; negative within 6 cm under the highest static
        surface seen at the point's x-y (table tops and occluder tops are slabs)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not len(self.static):
            return np.full(len(points), np.inf)
        if self._static_kdtree is None or self._static_kdtree[0] != self.static.version:
            self._static_kdtree = (self.static.version, cKDTree(self.static.points))
        dist, _ = self._static_kdtree[1].query(points)
        sdf = dist - self.config.static_voxel / 2
        top = self.support_height(points[:, :2])
        inside = (points[:, 2] < top - self.config.static_voxel / 2) & (points[:, 2] > top - 0.06)
        return np.where(inside, -np.abs(sdf), sdf)

    def support_height(self, xy: np.ndarray, radius: float = 0.03) -> np.ndarray:
        """Height ``[N]`` of the highest static surface under each ``xy`` point (NaN where none seen)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        pts = self.static.points
        if not len(pts):
            return np.full(len(xy), np.nan)
        tree = cKDTree(pts[:, :2])
        out = np.full(len(xy), np.nan)
        for i, near in enumerate(tree.query_ball_point(xy, radius)):
            if near:
                out[i] = pts[near, 2].max()
        return out

    def pose_at(self, track: ObjectTrack, frame: int) -> np.ndarray | None:
        """world_from_object ``[7]`` of a track at an observed frame (None before its birth)."""
        k = frame - track.first_frame
        return np.asarray(track.poses[min(k, len(track.poses) - 1)]) if k >= 0 and track.poses else None

    def poses_at(self, frame: int | None = None) -> dict[int, np.ndarray]:
        """world_from_object ``[4, 4]`` of each remembered (not displaced) object at ``frame`` (default:
        now), by track id; objects not born yet at ``frame`` are left out."""
        poses = {}
        for t in self.tracks:
            if t.state == "displaced" or not len(t.model):
                continue
            pose = t.pose if frame is None else self.pose_at(t, frame)
            if pose is not None:
                poses[t.id] = pose if pose.shape == (4, 4) else pose_to_matrix(torch.from_numpy(pose)).numpy()
        return poses

    def _objects(self, poses: dict[int, np.ndarray]) -> list[Gaussians]:
        """The objects in ``poses`` (track id -> world_from_object ``[4, 4]``) as world Gaussians."""
        by_id = {t.id: t for t in self.tracks}
        unknown = sorted(set(poses) - set(by_id))
        if unknown:
            raise SplatworldError(f"no remembered object with id {unknown[0]} (known: {sorted(by_id)})")
        return [self._track_gaussians(by_id[i], np.asarray(pose), self.config.object_splat_scale)
                for i, pose in poses.items() if len(by_id[i].model)]

    def gaussians_at(self, frame: int | None = None) -> Gaussians:
        """The scene as Gaussians: static scaffold plus each object at its pose at ``frame`` (default: now)."""
        parts = [self.static_gaussians(), *self._objects(self.poses_at(frame))]
        return Gaussians.concat([p for p in parts if len(p)] or [Gaussians.empty()])

    def render(self, camera: Camera, frame: int | None = None, backend: str | None = None,
               poses: dict[int, np.ndarray] | None = None, movers: Gaussians | None = None) -> RenderOutput:
        """The memory drawn from ``camera``: the static scaffold, the nearest keyframe's static pixels
        drawn over it, and the objects in front. Objects are drawn at ``poses`` (track id ->
        world_from_object ``[4, 4]``; what a dynamics model predicts) if given, else at their poses
        at ``frame`` (default: now). ``movers`` (world Gaussians: the agent where a model puts it)
        are drawn with the objects."""
        backend = backend or self.config.backend
        parts = self._objects(self.poses_at(frame) if poses is None else poses)
        if movers is not None and len(movers):
            parts.append(movers)
        objects = render(Gaussians.concat(parts) if parts else Gaussians.empty(), camera, backend=backend,
                         settings=RasterSettings(eps2d=self.config.object_eps2d)).cpu()
        backdrop = render(self.static_gaussians(), camera, backend=backend, background=self.background.tolist()).cpu()
        keyframe = self.keyframes.nearest(camera)
        if keyframe is None:
            return composite(backdrop, objects, self.config.depth_margin)
        static_pixels, free_pixels = self.keyframes.layers(keyframe, self.config.keyframe_pixel_scale)
        backdrop = over(render(static_pixels, camera, backend=backend).cpu(), backdrop)
        return composite(backdrop, objects, self.config.depth_margin, render(free_pixels, camera, backend=backend).cpu())

    # =============================================================== persistence
    def tracks_json(self) -> dict:
        """Tracks in the episode format's ``tracks.json`` layout, one entry per observed frame."""
        out = []
        for t in self.tracks:
            before = [None] * t.first_frame
            out.append({"id": t.id, "poses": before + t.poses, "labels": [0] * t.first_frame + t.labels,
                        "states": before + t.states, "beliefs": before + t.beliefs})
        return {"objects": out}

    def state_dict(self) -> dict:
        tracks = []
        for t in self.tracks:
            fields_ = {k: getattr(t, k) for k in ("id", "pose", "state", "belief", "last_seen", "first_frame",
                                                 "observations", "contradictions", "color")}
            histories = {k: _runs(getattr(t, k)) for k in _HISTORIES}
            tracks.append({**fields_, "histories": histories, "model": t.model.state_dict()})
        return {
            "format_version": MEMORY_FORMAT_VERSION,
            "config": asdict(self.config),
            "agent_label": self.agent_label,
            "static": self.static.state_dict(),
            "keyframes": self.keyframes.state_dict(),
            "tracks": tracks,
            "frame_count": self.frame_count,
            "time": self.time,
            "times": self.times,
            "support_plane": self.support_plane,
            "support_region": self.support_region,
            "support_color": self.support_color,
            "background": (self.background, self._background_frames),
            "agent_color": (self.agent_color, self._agent_frames),
            "next_id": self._next_id,
            "agent": (self._agent_position, self._agent_moved_at),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole memory atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SceneMemory:
        path = Path(path)
        try:
            state = torch.load(path, weights_only=False)
        except Exception as exc:
            raise SplatworldError(f"{path}: not a saved SceneMemory ({exc})") from exc
        version = state.get("format_version") if isinstance(state, dict) else None
        if version != MEMORY_FORMAT_VERSION:
            raise SplatworldError(f"{path}: memory format version {version!r}, this code reads "
                                  f"{MEMORY_FORMAT_VERSION}")
        try:
            memory = cls(MemoryConfig(**state["config"]), state["agent_label"])
            memory.static = VoxelGrid.from_state_dict(state["static"])
            memory.keyframes = KeyframeStore.from_state_dict(state["keyframes"])
            for ts in state["tracks"]:
                fields_ = {k: v for k, v in ts.items() if k not in ("model", "histories")}
                histories = {k: _expand(*ts["histories"][k]) for k in _HISTORIES}
                memory.tracks.append(ObjectTrack(model=VoxelGrid.from_state_dict(ts["model"]), **fields_, **histories))
            memory.frame_count, memory.time, memory.times = state["frame_count"], state["time"], state["times"]
            memory.support_plane, memory._next_id = state["support_plane"], state["next_id"]
            memory.support_region, memory.support_color = state["support_region"], state["support_color"]
            memory.background, memory._background_frames = state["background"]
            memory.agent_color, memory._agent_frames = state["agent_color"]
            memory._agent_position, memory._agent_moved_at = state["agent"]
        except (KeyError, TypeError, ValueError, zlib.error) as exc:  # a damaged file of the right version
            raise SplatworldError(f"{path}: damaged SceneMemory ({type(exc).__name__}: {exc})") from exc
        return memory

    def export_tracks(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.tracks_json()))
        os.replace(tmp, path)
        return path
