"""How a matched view updates its object: whether it may have moved, where ICP registers it,
whether the view is fused into the model, and how a new object is born.

Objects move only when something moves them. A track whose agent stood still (or far) keeps its
remembered pose as long as the view lies on or next to its model; a part not seen before is no
evidence of motion (ICP on partial views slides along elongated objects). An agent that steps into
where an object is remembered pushes it out along its step first (:meth:`AgentMotion.push_out`).
The rule for one view (:func:`update_track`), from the view and the track:

- ``pushed``: the agent moved within reach in the last ``agent_settle`` seconds, or the track was
  moving at its last step, or no agent pose is known (:meth:`AgentMotion.may_push`);
- ``moved_away``: pushed and under half the view on the model's surface; or, not pushed, the
  track is known to have left (``displaced`` / ``contradicted``), the view lies off the model, or
  it stretches the model by more than ``max_stretch``;
- ``jumped``: moved away and known to have left or aside (mostly off its surface and stretching it
  by more than ICP reaches), farther than the track gate, and not a sliver (unless known to have
  left or farther than the object's size): the pose jumps to the view's centroid first;
- registration: none for a sliver (a view spanning under ``sliver_fraction`` of the model's size);
  none while the model is too small; ICP from the predicted pose (the pushed-out one, if the agent
  stepped into it) when pushed or moved away
  (reaching farther after a jump), unless the agent is not pushing it and ICP from the remembered
  pose fits the view as well (a slide along the faces in view is invisible to ICP); when a view moved
  away or stretching the model cannot be registered so, once more from its centroid as after a
  jump; none otherwise. A registered move (other than after a jump) is taken only if the view fits
  it better than the remembered pose by ``min_motion_evidence`` (:func:`motion_evidence`): ICP
  fitted to noise moves a still object too;
- fusion: only when registered within ``fuse_max_rmse`` and, for a stretching view, when the
  registered view no longer stretches the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

from splatworld.memory.association import color_distance
from splatworld.memory.config import MemoryConfig
from splatworld.memory.registration import estimate_normals, icp_point_to_plane, plane_height
from splatworld.memory.tracks import ObjectTrack, Segment, TrackState, to_object_frame
from splatworld.memory.voxels import VoxelGrid
from splatworld.scene.cameras import Camera, in_image
from splatworld.scene.transforms import rotation_angle


class AgentMotion:
    """When the agent last moved: an agent at rest beside an object does not move it."""

    def __init__(self) -> None:
        self.position: np.ndarray | None = None  # at the last frame that gave one
        self.moved_at = -math.inf  # time the agent was last seen moving
        self.step = np.zeros(2)  # its horizontal move (m) from the frame before (0 without both poses)

    def note(self, agent_pose, time: float) -> None:
        if agent_pose is None:
            self.step = np.zeros(2)
            return
        position = np.asarray(agent_pose[:3], dtype=np.float64)
        self.step = np.zeros(2) if self.position is None else position[:2] - self.position[:2]
        # a resting agent's pose repeats exactly; 0.1 mm is well above float noise
        if self.position is None or np.linalg.norm(position - self.position) > 1e-4:
            self.moved_at = time
        self.position = position

    def may_push(self, track: ObjectTrack, agent_pose, time: float, cfg: MemoryConfig) -> bool:
        """Something may be moving the object: it was moving at its last step, or the agent is
        within reach and moved within the last ``agent_settle`` seconds (tabletop pushing is
        quasi-static: an agent standing still beside an object does not move it)."""
        if agent_pose is None or in_motion(track):
            return True  # no agent information: any object may have been moved
        return self._within_reach(track, agent_pose, time, cfg)

    def coasting(self, track: ObjectTrack, agent_pose, time: float, cfg: MemoryConfig) -> bool:
        """The object is taken to move only because it moved at its last step: the agent is known,
        and at rest or out of its reach (an object left sliding, or a still one's ICP jitter)."""
        return agent_pose is not None and in_motion(track) and not self._within_reach(track, agent_pose, time, cfg)

    def push_out(self, track: ObjectTrack, agent_pose, cfg: MemoryConfig) -> bool:
        """Move ``track`` (not turned) along the agent's last horizontal step until its model, where
        remembered, no longer lies inside the agent (an upright cylinder of ``cfg.agent_radius`` and
        ``cfg.agent_height`` centred at ``agent_pose [7]``'s position): two solids do not overlap, so
        an object the agent walked into was pushed at least that far. Returns whether
        it moved. The move is :func:`push_distance` over the model's points less half a voxel (they
        sample its surface to within that)."""
        length = float(np.linalg.norm(self.step))
        if agent_pose is None or length < 1e-4 or not len(track.model):  # an agent at rest pushes nothing
            return False
        position = np.asarray(agent_pose[:3], dtype=np.float64)
        if np.linalg.norm(position[:2] - track.centroid[:2]) > cfg.agent_radius + np.linalg.norm(track.extent):
            return False
        direction = self.step / length
        points = track.model.points @ track.pose[:3, :3].T + track.pose[:3, 3]
        shift = push_distance(points, position, direction, cfg.agent_radius, cfg.agent_height,
                              cfg.agent_contact_points) - cfg.object_voxel / 2
        if shift <= 0:
            return False
        track.pose = track.pose.copy()
        track.pose[:2, 3] += shift * direction
        return True

    def _within_reach(self, track: ObjectTrack, agent_pose, time: float, cfg: MemoryConfig) -> bool:
        if time - self.moved_at > cfg.agent_settle:
            return False
        reach = cfg.agent_reach + float(np.linalg.norm(track.extent)) / 2
        return float(np.linalg.norm(np.asarray(agent_pose[:3]) - track.centroid)) < reach


def push_distance(points: np.ndarray, agent_position: np.ndarray, direction: np.ndarray, radius: float,
                  height: float, min_points: int) -> float:
    """How far (m) the world ``points [P, 3]`` must move along the horizontal unit ``direction [2]``
    to leave an upright cylinder of ``radius`` and ``height`` centred at ``agent_position [3]``: the
    ``min_points``-th largest of the points' distances to its wall ahead (0 when fewer lie inside;
    a stray point or two of a model is no contact)."""
    offset = points - agent_position
    flat = offset[np.abs(offset[:, 2]) < height / 2, :2]
    along = flat @ direction
    radial_squared = np.square(flat).sum(axis=1)
    across_squared = radial_squared - np.square(along)
    inside = radial_squared < radius ** 2
    if inside.sum() < min_points:
        return 0.0
    exits = -along[inside] + np.sqrt(radius ** 2 - across_squared[inside])
    return float(np.partition(exits, len(exits) - min_points)[len(exits) - min_points])


def in_motion(track: ObjectTrack) -> bool:
    """The track moved between its last two frames, seen in both (ICP's still steps are exact zeros)."""
    return track.seen_last_two and not np.array_equal(track.poses[-1], track.poses[-2])


def predicted_pose(track: ObjectTrack) -> np.ndarray:
    """The pose ``[4, 4]`` one frame on at the last observed motion (the track was visible in its
    last two frames), else the remembered pose: a pushed object keeps moving between frames."""
    if not track.seen_last_two:
        return track.pose
    return track.pose_matrix_at(-1) @ np.linalg.inv(track.pose_matrix_at(-2)) @ track.pose


def stretch(track: ObjectTrack, local: np.ndarray) -> float:
    """How much larger (m) the largest size of the model and of points ``local [P, 3]`` (in its
    frame) together is than the larger of theirs alone (sizes along the object's axes; the
    points' from their 2nd to 98th percentile: depth edges fly). About 0 for a new side of the
    object where remembered (each view spans the object's largest size, if not its depth), the
    offset for a view of it moved aside."""
    lo, hi = track.model.points.min(axis=0), track.model.points.max(axis=0)
    seg_lo, seg_hi = np.percentile(local, [2, 98], axis=0)
    both = np.maximum(hi, seg_hi) - np.minimum(lo, seg_lo)
    return float(both.max() - max((hi - lo).max(), (seg_hi - seg_lo).max()))


def explained(track: ObjectTrack, seg: Segment, radii: tuple[float, ...]) -> tuple[list[float], float]:
    """Fraction of the segment's points within each of ``radii`` of the model at the remembered
    pose (one nearest-neighbour query for all), and the segment's :func:`stretch` of the model."""
    local = to_object_frame(track.pose, seg.points)
    dist, _ = cKDTree(track.model.points).query(local, distance_upper_bound=max(radii))
    return [float((dist <= r).mean()) for r in radii], stretch(track, local)


def register(track: ObjectTrack, seg: Segment, predicted: np.ndarray, cfg: MemoryConfig,
             rough: bool = False, coasting: bool = False) -> tuple[np.ndarray, float]:
    """world_from_object ``[4, 4]`` refined by ICP of the segment's points onto the model, from the
    ``predicted`` pose, and the registration's inlier RMSE (m; inf when it failed). ``rough``: the
    prediction is a centroid jump, off by as much as a partial view's centroid is from the
    object's, so a last attempt reaches twice as far. ``coasting``: the prediction continues the
    object's last motion alone (:meth:`AgentMotion.coasting`), and the remembered pose is preferred
    where it fits the view as well."""
    target = track.model.points
    target_tree = cKDTree(target)
    normals = estimate_normals(target, 3 * cfg.object_voxel, tree=target_tree)
    segment_tree = cKDTree(seg.points)

    def attempt(init: np.ndarray, reach: float):
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
    # moved there before (see update_track).
    def search(start: np.ndarray):
        result = None
        for reach in (1, 2, 4) if rough else (1, 2):
            result = result or attempt(np.linalg.inv(start), reach * cfg.icp_max_distance)
        return result

    result = search(predicted)
    if result is not None and coasting and not rough and not np.array_equal(predicted, track.pose):
        # ICP cannot see a slide along the faces in view (a cube seen face-on): from the predicted
        # pose it keeps the predicted slide, and a still object kept "moving" by its own jitter
        # would drift on. Nothing pushes it: it stayed unless its motion fits the view better. (While
        # the agent pushes, the prediction is the better guess for the slide ICP cannot see.)
        stayed = search(track.pose)
        if (stayed is not None and stayed.fitness >= result.fitness - cfg.still_fitness_margin
                and stayed.inlier_rmse <= result.inlier_rmse * (1 + cfg.still_rmse_margin)):
            result = stayed
    if result is None:
        return track.pose, math.inf
    new = np.linalg.inv(result.transformation)
    delta = np.linalg.inv(track.pose) @ new
    angle = float(rotation_angle(torch.from_numpy(delta[:3, :3])))
    if np.linalg.norm(delta[:3, 3]) < cfg.still_translation and angle < cfg.still_rotation_deg:
        return track.pose, result.inlier_rmse
    if not rough and motion_evidence(seg.points, track.pose, new, target_tree, cfg.icp_max_distance / 4,
                                     result.inlier_rmse) < cfg.min_motion_evidence:
        return track.pose, result.inlier_rmse
    return new, result.inlier_rmse


def motion_evidence(points: np.ndarray, remembered: np.ndarray, moved: np.ndarray, model_tree: cKDTree,
                    radius: float, noise: float) -> float:
    """How much better the world ``points [P, 3]`` fit the model (``model_tree``, in the object's
    frame) at the ``moved`` pose ``[4, 4]`` than at the ``remembered`` one, in units of the
    registration's ``noise`` (m): the drop in the sum of squared distances to the model, each
    capped at ``radius`` (a point off the model counts ``radius^2``), over ``noise^2``.

    ICP fitted to a still object's noisy view moves it anyway: under Kinect noise, a few mm and
    degrees a frame for a 5 cm brick, which the constant-velocity prediction then carries on
    (`long` seed 0: the untouched lego turned 100 degrees in 20 frames as the pusher passed it).
    Fitting 6 parameters to noise lowers the sum by about 6 noise^2; a real push of a centimetre
    a frame by 25-180 noise^2 (`long` seed 0's jenga)."""
    capped = []
    for pose in (remembered, moved):
        distances, _ = model_tree.query(to_object_frame(pose, points), distance_upper_bound=radius)
        capped.append(float(np.square(np.minimum(distances, radius)).sum()))
    return (capped[0] - capped[1]) / max(noise, 1e-4) ** 2  # a fit exact to 0.1 mm gives no infinite evidence


def centred_on(track: ObjectTrack, seg: Segment) -> np.ndarray:
    """The track's pose ``[4, 4]`` moved (not turned) to put its model's centroid on the view's."""
    pose = track.pose.copy()
    pose[:3, 3] += seg.centroid - track.centroid
    return pose


def update_track(track: ObjectTrack, seg: Segment, pushed: bool, time: float, cfg: MemoryConfig,
                 coasting: bool = False, pushed_out: bool = False) -> bool:
    """Update ``track`` with the view ``seg`` matched to it at ``time`` (the rule in the module
    docstring); ``pushed``: :meth:`AgentMotion.may_push` for it, ``coasting``: :meth:`AgentMotion.coasting`
    (taken to move by its last motion alone), ``pushed_out``: :meth:`AgentMotion.push_out` moved it
    this frame (registered from there: the agent's step is a better guess than the object's last
    motion, which it already contains). Returns whether the view was fused
    into the model (it was registered well: its depth may also carve the model, :func:`carve`)."""
    known_moved = track.state in (TrackState.DISPLACED, TrackState.CONTRADICTED)
    (on_fit, on_model), stretch_m = explained(track, seg, (cfg.icp_max_distance / 2, cfg.near_model))
    off_model = on_model < 0.5  # not on or next to it where remembered
    # next to it but stretching it: a view of it moved aside (or of something beside it), which fused
    # where remembered would smear the model; registered instead, it is fused only if it fits
    stretched = stretch_m > cfg.max_stretch
    moved_away = on_fit < 0.5 if pushed else known_moved or off_model or stretched
    # mostly off its surface and stretching it by more than ICP reaches: the object itself, moved
    # aside (a model smeared by earlier views reaches far enough to hold such a view "next to" it;
    # a strip of it moved by less is left to ICP, since a partial view's centroid is not the object's)
    aside = off_model or (on_fit < 0.5 and stretch_m > 2 * cfg.icp_max_distance)
    # a mostly hidden object (a sliver beside an occluder): too little of it to register
    sliver = seg.extent < cfg.sliver_fraction * track.size
    away = float(np.linalg.norm(seg.centroid - track.centroid))
    jumped = moved_away and (known_moved or aside) and away > cfg.track_gate and (
        not sliver or known_moved or away > np.linalg.norm(track.extent))
    if jumped:
        # re-identified away from where it was remembered, or lost while in view (pushed while only
        # slivers of it showed, now beyond ICP's reach): jump there before refining. The centroids of
        # a partial view (a sliver, or a strip of a large object at an occluder's edge) and of the object
        # differ, so a segment lying on the model where remembered is no sign of a move.
        track.pose = centred_on(track, seg)
    if sliver:
        rmse = math.inf
    elif len(track.model) < cfg.min_register_points:
        rmse = 0.0  # a model still too small to register against grows from its first views
    elif pushed or moved_away:  # otherwise still: keep the pose, only grow the model
        start = predicted_pose(track) if pushed and not pushed_out else track.pose
        track.pose, rmse = register(track, seg, start, cfg, rough=jumped, coasting=coasting)
        if math.isinf(rmse) and (moved_away or stretched) and not jumped:
            # beyond ICP's reach of where it was remembered, yet nearer than the track gate (moved
            # 4-6 cm while in view): search again from the view's centroid, reaching as after a jump
            remembered = track.pose
            track.pose = centred_on(track, seg)
            track.pose, rmse = register(track, seg, track.pose, cfg, rough=True)
            if math.isinf(rmse):
                track.pose = remembered
    else:
        rmse = 0.0
    # a poorly registered view would smear the model, and so would one registered short of where
    # the object moved to (ICP's inliers fit, the rest of the view lies beside the model)
    local = to_object_frame(track.pose, seg.points)
    fused = rmse <= cfg.fuse_max_rmse and (not stretched or stretch(track, local) <= cfg.max_stretch)
    if fused:
        track.model.integrate(local, seg.colors, time)
    track.color = (track.color * min(track.observations, 20) + seg.color) / (min(track.observations, 20) + 1)
    track.observations += 1
    track.view_points = len(seg.points)
    track.state, track.contradictions, track.last_seen = TrackState.VISIBLE, 0, time
    track.belief = min(0.999, track.belief + (1 - track.belief) * 0.5)
    return fused


def drop_if_falling(track: ObjectTrack, support_plane: np.ndarray | None, support_region: np.ndarray,
                    floor: np.ndarray | None, cfg: MemoryConfig) -> bool:
    """Move a track the frame did not show straight down onto the ``floor`` plane ``[4]``,
    orientation kept, when it was last registered falling: its lowest point more than
    ``fall_depth`` below the ``support_plane [4]`` (the table top) and its centroid beyond the
    table's observed ``support_region [4]`` (x0, y0, x1, y1), yet above the floor. An object pushed
    over the edge leaves the view as it falls, and nothing holds it where it was last seen. Returns
    whether the track was moved."""
    if support_plane is None or floor is None or not len(track.model):
        return False
    x, y = track.centroid[:2]
    x0, y0, x1, y1 = support_region
    if x0 <= x <= x1 and y0 <= y <= y1:  # over the table: what nearly every unseen object is, each frame
        return False
    points = track.world_points
    bottom = points[points[:, 2].argmin()]
    floor_z = float(plane_height(floor, bottom[:2]))
    sunk = bottom[2] < plane_height(support_plane, bottom[:2]) - cfg.fall_depth
    if not (sunk and bottom[2] > floor_z + cfg.fall_depth):
        return False
    track.pose = track.pose.copy()
    track.pose[2, 3] -= bottom[2] - floor_z
    return True


def carve(track: ObjectTrack, nearest_depth: np.ndarray, camera: Camera, cfg: MemoryConfig,
          support_plane: np.ndarray | None = None, support_region: np.ndarray | None = None) -> int:
    """Free-space evidence against the model of a track registered in this view: each model voxel
    the view sees through (its pixel and the 8 around it, ``nearest_depth [H, W]``, the smallest
    valid depth of each 3x3 neighbourhood, 0 where any is missing, lie farther than the voxel by
    more than ``carve_margin``) loses half its weight (rounded down), and goes at none: a voxel
    fused at the weight cap (30 views) goes after five views through it. Smears left by views fused
    off (a "double" object, parts fused while a push was registered short) are seen through from
    the next views; what lies on the surface or behind it is never seen through.

    The support is solid too: with ``support_plane [4]`` (normal up) and its observed
    ``support_region [4]`` (x0, y0, x1, y1) holding the object's centroid above it, voxels more than
    ``carve_margin / 2`` under the plane (fused while the object was registered tilted into the
    table, and hidden by the table top from every later view) lose weight the same way. Returns the
    voxels removed."""
    model = track.model
    if not len(model):
        return 0
    world = track.world_points
    uv, z = camera.project(torch.from_numpy(world))
    uv, z = uv.numpy(), z.numpy()
    inside = in_image(uv, z, camera.width, camera.height)
    seen_through = np.zeros(len(model), bool)
    u, v = uv[inside, 0].astype(np.int64), uv[inside, 1].astype(np.int64)
    seen_through[inside] = nearest_depth[v, u] > z[inside] + cfg.carve_margin
    if support_plane is not None and support_region is not None:
        x0, y0, x1, y1 = support_region
        centroid = track.centroid
        if x0 <= centroid[0] <= x1 and y0 <= centroid[1] <= y1 and centroid @ support_plane[:3] + support_plane[3] > 0:
            seen_through |= world @ support_plane[:3] + support_plane[3] < -cfg.carve_margin / 2
    return model.weaken(seen_through)


def duplicate_tracks(tracks: list[ObjectTrack], reach: float, color_gate: float, share: float = 0.5) -> list[ObjectTrack]:
    """Of ``tracks`` matched in one frame, those remembering an object another of them remembers
    too. A segment split between two tracks of one object keeps both alive (each registers and
    fuses its part), so they must be told apart by what they remember: two models of one object
    lie on each other at their poses, while two solid objects meet only along their contact. Of
    each pair whose colours agree within ``color_gate`` (:func:`color_distance`) and where
    ``share`` of each model's points lie within ``reach`` of the other's (each way: a model that
    took in part of a neighbour while they touched holds that neighbour's model, but not the
    other way round), the track observed fewer times (then the younger) is returned, to be dropped."""
    world = {t.id: t.world_points for t in tracks if len(t.model)}
    order = sorted((t for t in tracks if t.id in world), key=lambda t: (-t.observations, t.id))
    dropped: list[ObjectTrack] = []
    for i, kept in enumerate(order):
        if kept in dropped:
            continue
        for other in order[i + 1:]:
            if other in dropped or color_distance(kept.color, other.color) > color_gate:
                continue
            a, b = world[kept.id], world[other.id]
            if (a.min(axis=0) > b.max(axis=0) + reach).any() or (a.max(axis=0) < b.min(axis=0) - reach).any():
                continue
            if all(np.isfinite(cKDTree(y).query(x, distance_upper_bound=reach)[0]).mean() >= share
                   for x, y in ((a, b), (b, a))):
                dropped.append(other)
    return dropped


def new_track(track_id: int, seg: Segment, frame: int, time: float, cfg: MemoryConfig) -> ObjectTrack:
    """A track born from an unmatched segment: its model the segment around its centroid."""
    pose = np.eye(4)
    pose[:3, 3] = seg.centroid
    track = ObjectTrack(track_id, VoxelGrid(cfg.object_voxel), pose, first_frame=frame,
                        color=seg.color.copy(), last_seen=time, observations=1, view_points=len(seg.points))
    track.model.integrate(seg.points - seg.centroid, seg.colors, time)
    return track
