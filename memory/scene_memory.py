"""SceneMemory: a static Gaussian scaffold plus object tracks, updated online from RGB-D frames.

Per frame (:meth:`SceneMemory.observe`), each step in its own module:

1. **Segments** (:mod:`~splatworld.memory.association`). Each instance label (not 0, not the
   agent) with enough valid depth becomes a segment. Labels need not be consistent across frames.
2. **Association** (:mod:`~splatworld.memory.association`). The memory is rendered from the
   frame's camera (render-and-compare); segments are matched to remembered objects, then
   re-identified wherever they reappear; what is left is born as new objects. Two tracks matched
   to parts of one object are one: the one observed less is dropped
   (:func:`~splatworld.memory.tracking.duplicate_tracks`).
3. **Tracking and fusion** (:mod:`~splatworld.memory.tracking`). Before association, an object in
   view (seen or occluded) that the agent stepped into is pushed out along its step. A matched
   object's pose is refined by ICP against its model when something may have moved it, and the
   view is fused into its voxel model when registered well.
4. **Visibility and existence** (:mod:`~splatworld.memory.visibility`): every unmatched object
   is ``out_of_view``, ``occluded``, ``contradicted`` or ``displaced`` (:class:`TrackState`).
   One last registered falling over the table's edge is put on the floor below
   (:func:`~splatworld.memory.tracking.drop_if_falling`).
5. **Static scaffold** (:mod:`~splatworld.memory.static_map`). Pixels labelled 0 inside the
   workspace box are fused into a voxel hash; a support plane is fitted by RANSAC. Views
   farther than a spacing from every stored keyframe become keyframes
   (:mod:`~splatworld.memory.keyframes`), drawn over the scaffold when the memory is rendered
   nearby (:meth:`SceneMemory.render`).

Saving and loading: :mod:`~splatworld.memory.persistence`.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import NamedTuple
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from splatworld.errors import ShapeError, SplatworldError
from splatworld.memory.association import match_in_place, reidentify, segments_of
from splatworld.memory.camera_tracking import CameraTracker
from splatworld.memory.config import MemoryConfig
from splatworld.memory.ground import ground_texture
from splatworld.memory.keyframes import Keyframe, KeyframeStore
from splatworld.memory.persistence import (DAMAGED, export_tracks, memory_state, read_state, restore, save_memory,
                                           tracks_json)
from splatworld.memory.refine import LazyViews, RefineConfig, RefinedSplats, View, refine
from splatworld.memory.segmentation import (AGENT_MARGIN, agent_pixels, bootstrap_plane, depth_edge_pixels,
                                            geometric_segments, join_across_agent, merge_parts, split_touching)
from splatworld.memory.static_map import StaticMap
from splatworld.memory.tracking import AgentMotion, carve, drop_if_falling, duplicate_tracks, new_track, update_track
from splatworld.memory.tracks import ObjectTrack, TrackState, record_all
from splatworld.memory.view import MemoryView, ObjectView
from splatworld.memory.visibility import reason_visibility
from splatworld.memory.voxels import VoxelGrid
from splatworld.render.api import RenderOutput, render
from splatworld.render.compositing import composite, over
from splatworld.render.ground import render_plane, render_sky
from splatworld.render.projection import RasterSettings
from splatworld.scene.cameras import Camera
from splatworld.scene.episode import DEFAULT_AGENT_LABEL, Frame
from splatworld.scene.gaussians import Gaussians
from splatworld.scene.transforms import pose_to_matrix


class _PlacedModel(NamedTuple):
    """A track's model as drawn: its Gaussians in the object's frame for one model ``state``, and
    the same placed at the last ``pose`` asked for."""

    state: tuple
    own: Gaussians
    pose: np.ndarray | None = None
    placed: Gaussians | None = None


class SceneMemory:
    """The persistent memory of one scene. See the module docstring for the per-frame steps.

    Args:
        config: constants; :class:`MemoryConfig` defaults if omitted.
        agent_label: instance label of the agent's pixels (never scene or object).
    """

    def __init__(self, config: MemoryConfig | None = None, agent_label: int = DEFAULT_AGENT_LABEL):
        self.config = config or MemoryConfig()
        self.agent_label = agent_label
        self.static_map = StaticMap(self.config)
        self.keyframes = KeyframeStore(self.config.keyframe_spacing, self.config.keyframe_capacity,
                                       self.config.keyframe_reach)
        self.tracks: list[ObjectTrack] = []
        self.frame_count = 0
        self.time = 0.0
        self.times: list[float] = []
        # mean colour of what lies beyond the map (no depth, or farther than max_depth): sky, far floor;
        # drawn behind the map until a ground plane is known
        self.background = np.zeros(3)
        self.background_frames = 0
        self.sky = np.zeros(3)  # mean colour of the pixels with no depth at all: drawn where no ground is
        self.sky_frames = 0
        self.depth_range = 0.0  # the farthest depth observed (m): no surface is drawn beyond the sensor's reach
        self.agent_color = np.full(3, 0.5)  # mean colour of the agent's pixels: a model draws it where it moves
        self.agent_frames = 0
        self.agent = AgentMotion()
        self.next_id = 1
        self._render_static: Gaussians | None = None  # refreshed every static_refresh_frames
        self._model_cache: dict[tuple[int, float], _PlacedModel] = {}  # by (track id, splat scale)
        # per keyframe, for refinement: its object map (id(keyframe) -> (it, [H, W] uint16)), read for every
        # object; the other pixels are unpacked when a step draws the keyframe
        self._object_maps: dict[int, tuple] = {}
        self.refine_seconds = 0.0  # spent in incremental refinement while observing
        # the last observed frame's instance map as the memory used it (its own, or made from geometry:
        # 0 static, agent_label the agent, -1 unexplained); tracks.json labels refer to it
        self.last_instances: np.ndarray | None = None
        # frames with depth on less than MemoryConfig.min_depth_fraction of the pixels (a sensor fault, a lens
        # cap): they move nothing and take no keyframe; objects in view are "occluded", belief unchanged
        self.depthless_frames = 0
        # with MemoryConfig.poses == "estimate": the OpenCV camera-to-world [4, 4] used for each frame and
        # whether it was tracked (a lost frame keeps the last pose and is observed as depthless)
        self.camera_tracker = CameraTracker(self.config)
        self.camera_path: list[np.ndarray] = []
        self.tracked: list[bool] = []

    # ================================================================== observe
    def observe(self, frame: Frame, upcoming: Frame | None = None) -> None:
        """Update the memory with one frame: RGB and depth, and the instance masks if
        :attr:`MemoryConfig.segmentation` is ``"instances"`` and the frame has them (otherwise its
        segments come from geometry, which needs the frame's ``agent_pose``).

        With :attr:`MemoryConfig.poses` ``"estimate"`` the frame's pose is tracked from the frames
        (the first frame's given pose fixes the world frame); ``upcoming``, the frame to be observed
        next if known, is then tracked in a worker thread while this one is observed."""
        if frame.depth is None:
            raise ShapeError(f"frame {frame.info.index}: the memory needs depth")
        depth = frame.depth
        if not np.isfinite(depth).all():
            raise ShapeError(f"frame {frame.info.index}: depth has non-finite values")
        cfg, agent_pose = self.config, frame.info.agent_pose
        if cfg.poses == "estimate":
            frame = replace(frame, camera=self._track_camera(frame, upcoming))
            if not self.tracked[-1]:  # lost: observed as a frame without depth, at the last pose
                depth = np.zeros_like(depth)
        cam = frame.camera
        self.time = frame.info.time
        self.depth_range = max(self.depth_range, float(depth.max()))
        points = cam.backproject(torch.from_numpy(depth).double()).numpy()
        colors = frame.rgb.astype(np.float64) / 255.0
        valid = (depth > 0) & (depth < cfg.max_depth)
        instances = frame.instances
        geometric = instances is None or cfg.segmentation == "geometry"
        if geometric:
            instances = self._segment(frame, points, colors, valid)
        segments = segments_of(instances, valid, points, colors, self.agent_label, cfg.min_segment_points)
        self.agent.note(agent_pose, self.time)
        # only where the camera looks: out of view for minutes, an object pushed along the agent's path
        # ends far from where a real push (which turns it, or lets it roll aside) left it
        pushed_out = {track.id for track in self.tracks if track.state in (TrackState.VISIBLE, TrackState.OCCLUDED)
                      and self.agent.push_out(track, agent_pose, cfg)}

        small = cam.resized(max(1, round(cam.width * cfg.render_scale)), max(1, round(cam.height * cfg.render_scale)))
        rendered = self._render_for_association(small)
        matches = match_in_place(segments, self.tracks, None if rendered is None else rendered.object_id.numpy(), cfg)
        if geometric:  # an object cut in two by an occluder in front is two segments of one track (folded
            # before re-identification, which would take a part for another object that left its place)
            unmatched = [t for t in self.tracks if t.state != TrackState.DISPLACED and t not in matches.values()]
            segments, matches = merge_parts(segments, matches, instances, cfg.part_reach, unmatched)
        matches = reidentify(segments, self.tracks, matches, cfg)
        self.last_instances = instances
        frame_labels = {}  # track id -> the label it owns in this frame
        nearest_depth = None
        for seg_index, track in matches.items():
            if update_track(track, segments[seg_index], self.agent.may_push(track, agent_pose, self.time, cfg),
                            self.time, cfg, self.agent.coasting(track, agent_pose, self.time, cfg),
                            pushed_out=track.id in pushed_out):
                if nearest_depth is None:  # the smallest depth around each pixel, 0 where any is unknown
                    nearest_depth = ndimage.minimum_filter(depth, size=3)
                carve(track, nearest_depth, cam, cfg, self.static_map.support_plane, self.static_map.support_region)
            frame_labels[track.id] = segments[seg_index].label
        for track in duplicate_tracks(list(matches.values()), cfg.icp_max_distance / 2, cfg.reid_color_gate):
            self._forget(track)
            del frame_labels[track.id]
        for i, seg in enumerate(segments):
            if i not in matches:
                self.tracks.append(new_track(self.next_id, seg, self.frame_count, self.time, cfg))
                self.next_id += 1
                frame_labels[self.tracks[-1].id] = seg.label
        reason_visibility(self.tracks, set(frame_labels), depth, small, self._draw_alone, cfg)
        floor = None if self.static_map.ground is None else self.static_map.ground.plane
        for track in self.tracks:
            if track.id not in frame_labels and track.state != TrackState.DISPLACED:
                drop_if_falling(track, self.static_map.support_plane, self.static_map.support_region, floor, cfg)

        static = valid & (instances == 0)
        if cfg.poses == "estimate":
            self.camera_tracker.keep_static(frame.info.index, static)
        depthless = valid.mean() < cfg.min_depth_fraction
        self.depthless_frames += int(depthless)
        if not depthless:  # a frame without depth would paint everything as sky
            self._note_colors(colors, ~valid & (instances == 0), (depth == 0) & (instances == 0),
                              instances == self.agent_label)
        new_keyframe = not depthless and self.keyframes.consider(
            cam, frame.rgb, np.where(valid, depth, 0.0), static, self.time, _object_map(instances, frame_labels),
            self.frame_count)
        fused = static if cfg.static_edge_jump is None else \
            static & ~depth_edge_pixels(depth, cfg.static_edge_jump, cfg.static_edge_width)
        self.static_map.integrate(points, colors, fused, depth, cam, self.time)
        if new_keyframe and cfg.refine_steps_per_keyframe > 0:
            started = time.perf_counter()
            self.refine(cfg.refine_steps_per_keyframe)
            self.refine_seconds += time.perf_counter() - started
        if self.frame_count % cfg.static_refresh_frames == 0:
            self._render_static = None
            self.static_map.fit_support_plane()
        record_all(self.tracks, frame_labels)
        self.times.append(self.time)
        self.frame_count += 1

    def _forget(self, track: ObjectTrack) -> None:
        """Drop a track (a duplicate of another: :func:`~splatworld.memory.tracking.duplicate_tracks`)
        with its history."""
        self.tracks.remove(track)
        self._model_cache = {key: value for key, value in self._model_cache.items() if key[0] != track.id}

    @property
    def lost_frames(self) -> int:
        """Frames whose camera pose could not be estimated (kept at the last pose, observed as depthless)."""
        return self.tracked.count(False)

    def _track_camera(self, frame: Frame, upcoming: Frame | None) -> Camera:
        """The frame's camera with its pose estimated (:mod:`.camera_tracking`; the first frame's
        given pose fixes the world frame), ``upcoming`` then tracked in a worker thread. Appends to
        :attr:`camera_path` and :attr:`tracked`."""
        tracker = self.camera_tracker
        if not tracker.started and not self.camera_path:
            pose, tracked = np.linalg.inv(frame.camera.viewmat.numpy().astype(np.float64)), True
            tracker.start(pose, frame)
        else:
            if not tracker.started:  # loaded from disk: go on from the last pose
                tracker.start(self.camera_path[-1])
            estimate = tracker.track(frame)
            pose, tracked = estimate.camera_to_world, estimate.tracked
        if upcoming is not None:
            tracker.prefetch(upcoming)
        self.camera_path.append(pose)
        self.tracked.append(tracked)
        return replace(frame.camera, viewmat=torch.from_numpy(np.linalg.inv(pose)))

    def _segment(self, frame: Frame, points: np.ndarray, colors: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The frame's instance map made from geometry (:mod:`.segmentation`), the agent labelled
        ``agent_label``."""
        cfg, agent_pose = self.config, frame.info.agent_pose
        if agent_pose is None:
            raise ShapeError(f"frame {frame.info.index}: no instance masks and no agent_pose: segments from "
                             f"geometry need the agent's pose to tell it from the objects it pushes")
        plane, region = self.static_map.support_plane, self.static_map.support_region
        if plane is None:  # before the static map has a table: the frame's own highest large plane
            found = bootstrap_plane(points[valid])
            if found is None:
                return np.where(valid, -1, 0)
            plane, region = found
        agent = agent_pixels(points, valid, agent_pose, cfg.agent_radius, cfg.agent_height)
        labels = geometric_segments(points, valid, plane, region,
                                    lambda p: self.static_map.near(p, cfg.static_margin, plane), agent, cfg)
        placed = [t for t in self.tracks if t.state != TrackState.DISPLACED and len(t.model) >= cfg.min_register_points]
        models = [t.world_points for t in placed]
        labels = join_across_agent(labels, points, colors, agent, 2 * (cfg.agent_radius + AGENT_MARGIN) + cfg.part_reach,
                                   cfg.color_gate, models, cfg.part_reach)
        labels = split_touching(labels, points, models, cfg.part_reach, cfg.min_segment_points,
                                [t.view_points for t in placed])
        labels[agent] = self.agent_label
        return labels

    def _note_colors(self, colors: np.ndarray, beyond: np.ndarray, sky: np.ndarray, agent: np.ndarray) -> None:
        """Running means over (at most) the last 100 frames that showed any: of what lies beyond the
        map (``beyond [H, W]``), of the sky (``sky [H, W]``: no depth) and of the agent's pixels
        (``agent [H, W]``)."""
        if beyond.any():
            self.background_frames = _running_mean(self.background, self.background_frames, colors[beyond])
        if sky.any():
            self.sky_frames = _running_mean(self.sky, self.sky_frames, colors[sky])
        if agent.any():
            self.agent_frames = _running_mean(self.agent_color, self.agent_frames, colors[agent])

    # ------------------------------------------------------------- drawing
    def track_gaussians(self, track: ObjectTrack, pose: np.ndarray, scale: float) -> Gaussians:
        """A track's model as world Gaussians at ``pose`` (4x4 matrix or [7]), splat std ``scale``
        voxels; at the memory's display scale (:attr:`MemoryConfig.object_splat_scale`), its refined
        splats and those of voxels fused since, once it was refined."""
        refined = track.refined if scale == self.config.object_splat_scale else None
        key = (track.id, scale)
        state = (track.model.version, None if refined is None else (refined.steps, len(refined)))
        pose = np.asarray(pose)
        cached = self._model_cache.get(key)
        if cached is None or cached.state != state:  # a model changes only when fused into or refined
            shown = None  # drawn for the eye: noise scattered beside a surface left out
            if scale == self.config.object_splat_scale and self.config.draw_min_support > 0:
                shown = track.model.support() >= self.config.draw_min_support
            voxels = track.model.to_gaussians(object_id=track.id, scale=scale, select=shown)
            if refined is not None:
                kept = track.model.keys if shown is None else track.model.keys[shown]
                fresh = torch.from_numpy(~np.isin(kept, refined.keys))
                splats = refined.gaussians(track.id).select(torch.from_numpy(np.isin(refined.keys, kept)))
                voxels = Gaussians.concat([splats, voxels.select(fresh)])
            cached = _PlacedModel(state, voxels)
        if cached.pose is None or not np.array_equal(cached.pose, pose):  # most objects stand still between draws
            cached = cached._replace(pose=pose.copy(), placed=cached.own.transform(torch.from_numpy(pose)))
            self._model_cache[key] = cached
        return cached.placed

    def _render_for_association(self, cam: Camera) -> RenderOutput | None:
        """The static map (as of the last refresh) and every object not displaced, as the memory
        compares them with a frame."""
        if self._render_static is None:
            self._render_static = self.static_gaussians()
        scale = self.config.compare_splat_scale
        parts = [self._render_static] + [self.track_gaussians(t, t.pose, scale) for t in self.tracks
                                         if t.state != TrackState.DISPLACED and len(t.model)]
        parts = [p for p in parts if len(p)]
        if not parts:
            return None
        return render(Gaussians.concat(parts), cam, backend=self.config.backend).cpu()

    def _draw_alone(self, track: ObjectTrack, camera: Camera) -> RenderOutput:
        return render(self.track_gaussians(track, track.pose, self.config.compare_splat_scale), camera,
                      backend=self.config.backend).cpu()

    def _objects(self, poses: dict[int, np.ndarray]) -> list[Gaussians]:
        """The objects in ``poses`` (track id -> world_from_object ``[4, 4]``) as world Gaussians."""
        by_id = {t.id: t for t in self.tracks}
        unknown = sorted(set(poses) - set(by_id))
        if unknown:
            raise SplatworldError(f"no remembered object with id {unknown[0]} (known: {sorted(by_id)})")
        return [self.track_gaussians(by_id[i], np.asarray(pose), self.config.object_splat_scale)
                for i, pose in poses.items() if len(by_id[i].model)]

    def render(self, camera: Camera, frame: int | None = None, backend: str | None = None,
               poses: dict[int, np.ndarray] | None = None, movers: Gaussians | None = None,
               paste_keyframes: bool | None = None) -> RenderOutput:
        """The memory drawn from ``camera``: the static scaffold, the nearest keyframe's static pixels
        drawn over it (if ``paste_keyframes``, default :attr:`MemoryConfig.paste_keyframes`), and the
        objects in front, as CPU tensors. Objects are drawn at ``poses`` (track id -> world_from_object
        ``[4, 4]``; what a dynamics model predicts) if given, else at their poses at ``frame`` (default:
        now). ``movers`` (world Gaussians: the agent where a model puts it) are drawn with the objects."""
        backend = backend or self.config.backend
        parts = self._objects(self.poses_at(frame) if poses is None else poses)
        if movers is not None and len(movers):
            parts.append(movers)
        objects = render(Gaussians.concat(parts) if parts else Gaussians.empty(), camera, backend=backend,
                         settings=RasterSettings(eps2d=self.config.object_eps2d)).cpu()
        backdrop = over(render(self.static_gaussians(), camera, backend=backend).cpu(), self._ground(camera))
        paste = self.config.paste_keyframes if paste_keyframes is None else paste_keyframes
        keyframe = self.keyframes.nearest(camera) if paste else None
        if keyframe is None:
            return composite(backdrop, objects, self.config.depth_margin)
        static_pixels, free_pixels = self.keyframes.layers(keyframe, self.config.keyframe_pixel_scale)
        backdrop = over(render(static_pixels, camera, backend=backend).cpu(), backdrop)
        return composite(backdrop, objects, self.config.depth_margin, render(free_pixels, camera, backend=backend).cpu())

    def _ground(self, camera: Camera) -> RenderOutput:
        """What lies beyond the map: the floor to the horizon and the sky, once a floor is known;
        the mean colour of everything beyond the map before."""
        ground = self.static_map.ground
        if ground is None:
            return render_sky(camera, self.background)
        return render_plane(camera, ground.plane, ground_texture(ground), ground.period, ground.mean_color,
                            self.sky if self.sky_frames else self.background, self.depth_range,
                            self.config.ground_antialias)

    def gaussians_at(self, frame: int | None = None) -> Gaussians:
        """The scene as Gaussians: static scaffold plus each object at its pose at ``frame`` (default: now)."""
        parts = [self.static_gaussians(), *self._objects(self.poses_at(frame))]
        return Gaussians.concat([p for p in parts if len(p)] or [Gaussians.empty()])

    # ================================================================ refinement
    def _object_map(self, keyframe: Keyframe) -> np.ndarray:
        cached = self._object_maps.get(id(keyframe))
        if cached is None or cached[0] is not keyframe:
            cached = (keyframe, keyframe.objects)
            self._object_maps[id(keyframe)] = cached
        return cached[1]

    def training_views(self) -> LazyViews:
        """Every keyframe as a training view for :meth:`refine` (built when drawn): its static
        pixels with a depth, over the ground layer and sky the memory draws behind the scaffold there."""
        alive = {id(k) for k in self.keyframes.frames}
        self._object_maps = {key: value for key, value in self._object_maps.items() if key in alive}
        frames = list(self.keyframes.frames)

        def view(i: int) -> View:
            keyframe = frames[i]
            depth = torch.from_numpy(keyframe.depth.astype(np.float32))
            return View(keyframe.camera, torch.from_numpy(keyframe.rgb).float() / 255.0, depth,
                        torch.from_numpy(keyframe.static) & (depth > 0), self._ground(keyframe.camera).rgb.float())

        return LazyViews(len(frames), view)

    def object_views(self, track: ObjectTrack, min_pixels: int = 30) -> LazyViews:
        """The keyframes that show ``track`` on at least ``min_pixels`` pixels, as training views of
        its model in its own frame (placed by its pose at each keyframe's frame; built when drawn)."""
        chosen = []
        for keyframe in self.keyframes.frames:
            pose = track.pose_at(keyframe.frame)
            if pose is not None and int((self._object_map(keyframe) == track.id).sum()) >= min_pixels:
                chosen.append((keyframe, pose))
        settings = RasterSettings(eps2d=self.config.object_eps2d)

        def view(i: int) -> View:
            keyframe, pose = chosen[i]
            return View(keyframe.camera, torch.from_numpy(keyframe.rgb).float() / 255.0,
                        torch.from_numpy(keyframe.depth.astype(np.float32)),
                        torch.from_numpy(self._object_map(keyframe) == track.id), settings=settings,
                        pose=pose_to_matrix(torch.from_numpy(np.asarray(pose, np.float64))).float())

        return LazyViews(len(chosen), view)

    def refine(self, steps: int, config: RefineConfig | None = None, seed: int | None = None,
               on_step=None) -> list[float]:
        """Photometric refinement (:mod:`~splatworld.memory.refine`) on the keyframes: ``steps``
        steps of the static splats, then ``steps`` steps shared by the objects (in proportion to
        their keyframe views); the memory then draws the refined splats. Returns the static losses.

        Args:
            config: :class:`RefineConfig` defaults (with the memory's backend) if omitted.
            seed: seeds the choice of views (default: the steps taken so far, so that a memory
                saved and loaded refines on as one kept would).
            on_step: called with (step, loss) after each static step.
        """
        config = config or RefineConfig(backend=self.config.backend)
        refined = self.static_map.refined
        rng = np.random.default_rng(seed if seed is not None else (0 if refined is None else refined.steps))
        losses = self.static_map.refine(self.training_views(), steps, config, rng, on_step)
        self._render_static = None
        objects = [(t, self.object_views(t)) for t in self.tracks if len(t.model)]
        counts = np.array([len(views) for _, views in objects], dtype=np.float64)
        # each object step goes to an object drawn in proportion to its views: a few steps per keyframe
        # while observing still reach every object over time
        shares = rng.multinomial(steps, counts / counts.sum()) if counts.sum() else np.zeros(len(objects), int)
        for (track, views), share in zip(objects, shares):
            if not share:
                continue
            model = track.model
            if track.refined is None:
                track.refined = RefinedSplats.empty()
            track.refined.retain(model.keys)
            fresh = ~np.isin(model.keys, track.refined.keys)
            voxels = model.to_gaussians(object_id=track.id, scale=self.config.object_splat_scale)
            track.refined.adopt(voxels.select(torch.from_numpy(fresh)), torch.from_numpy(model.points[fresh]).float(),
                                model.keys[fresh])
            refine(track.refined, views, share, config, rng)
        return losses

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
    def view(self) -> MemoryView:
        """A read-only snapshot of what the memory holds now (copies: it stays as taken)."""
        objects = tuple(ObjectView(t.id, t.pose.copy(), t.model.points.copy(),
                                   np.asarray(t.poses[-2:] if len(t.poses) >= 2 else [t.poses[-1]] * 2, dtype=np.float64),
                                   t.state, float(t.belief), float(t.last_seen))
                        for t in self.tracks if t.poses)
        static = self.static_map
        refreshes = (self.frame_count - 1) // self.config.static_refresh_frames
        return MemoryView(self.time, objects, static.grid.points.copy(),
                          None if static.support_plane is None else static.support_plane.copy(),
                          static.support_region.copy(), refreshes)

    @property
    def static(self) -> VoxelGrid:
        """The static scaffold's voxels (:attr:`StaticMap.grid`)."""
        return self.static_map.grid

    @property
    def support_plane(self) -> np.ndarray | None:
        """``[4]`` the table top ``a x + b y + c z + d = 0`` (normal up), or None (:class:`StaticMap`)."""
        return self.static_map.support_plane

    def static_gaussians(self) -> Gaussians:
        """The static scaffold as Gaussians, as it is now, with unseen support-plane patches completed."""
        return self.static_map.gaussians()

    def objects(self) -> list[dict]:
        """Every remembered object: id, pose, extent, state, belief, last-seen time."""
        return [t.summary() for t in self.tracks]

    def objects_in_view(self, camera: Camera) -> list[int]:
        """Ids of objects (not displaced) whose centroid projects inside ``camera``'s image, in front of it."""
        return [t.id for t in self.tracks
                if t.state != TrackState.DISPLACED and bool(camera.in_image(torch.from_numpy(t.centroid)))]

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        """bool ``[N]``: points inside an occupied static voxel."""
        return self.static_map.occupancy(points)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Approximate signed distance ``[N]`` (m) to the static surfaces (:meth:`StaticMap.signed_distance`)."""
        return self.static_map.signed_distance(points)

    def support_height(self, xy: np.ndarray, radius: float = 0.03) -> np.ndarray:
        """Height ``[N]`` of the highest static surface under each ``xy`` point (NaN where none seen)."""
        return self.static_map.support_height(xy, radius)

    def poses_at(self, frame: int | None = None) -> dict[int, np.ndarray]:
        """world_from_object ``[4, 4]`` of each remembered (not displaced) object at ``frame`` (default:
        now), by track id; objects not born yet at ``frame`` are left out."""
        poses = {}
        for t in self.tracks:
            if t.state == TrackState.DISPLACED or not len(t.model):
                continue
            pose = t.pose if frame is None else t.pose_at(frame)
            if pose is not None:
                poses[t.id] = pose if pose.shape == (4, 4) else pose_to_matrix(torch.from_numpy(pose)).numpy()
        return poses

    # =============================================================== persistence
    def tracks_json(self) -> dict:
        """Tracks in the episode format's ``tracks.json`` layout, one entry per observed frame."""
        return tracks_json(self.tracks)

    def state_dict(self) -> dict:
        """Everything the memory needs to go on as it would have (what :meth:`save` writes)."""
        return memory_state(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole memory to ``path`` atomically (temporary file, then rename)."""
        return save_memory(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SceneMemory:
        """A memory saved by :meth:`save`; it goes on as the saved one would have.

        Raises:
            SplatworldError: not a saved memory, another format version, or a damaged file (named).
        """
        path = Path(path)
        state = read_state(path)
        try:
            memory = cls(MemoryConfig(**state["config"]), state["agent_label"])
            restore(memory, state)
        except DAMAGED as exc:
            raise SplatworldError(f"{path}: damaged SceneMemory ({type(exc).__name__}: {exc})") from exc
        return memory

    def export_tracks(self, path: str | os.PathLike) -> Path:
        """Write :meth:`tracks_json` to ``path`` atomically."""
        return export_tracks(self.tracks, path)


def _object_map(instances: np.ndarray, labels: dict[int, int]) -> np.ndarray:
    """``[H, W]`` uint16: the object id (track id) whose label ``labels`` gives each pixel of
    ``instances [H, W]``, 0 elsewhere."""
    out = np.zeros(instances.shape, np.uint16)
    for track_id, label in labels.items():
        out[instances == label] = track_id
    return out


def _running_mean(mean: np.ndarray, frames: int, values: np.ndarray) -> int:
    """Move ``mean [3]`` (in place) towards the mean of ``values [N, 3]`` as a running mean over at
    most the last 100 frames; returns the new frame count."""
    frames = min(frames + 1, 100)
    mean += (values.mean(axis=0) - mean) / frames
    return frames
