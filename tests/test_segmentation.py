"""Segments from geometry (no instance masks): against PyBullet's instance masks, and the memory
built from them."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from splatworld.dynamics.models import make_model
from splatworld.errors import ShapeError
from splatworld.evaluation import majority_labels
from splatworld.evaluation.imagined import memory_to_truth
from splatworld.imagination import WorldModel
from splatworld.jobs.config import load_config
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.memory.segmentation import bootstrap_plane, depth_edge_pixels
from splatworld.scene.episode import Episode
from splatworld.sim.generate import generate_episode
from splatworld.sim.pybullet_scene import TABLE_TOP_Z


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "ep"
    cfg = load_config("generate", [f"out={out}", "progress=false", "width=160", "height=160", "scenario=occlusion",
                                   "seconds=4", "seed=2"])
    return Episode(generate_episode(cfg))


def test_depth_edge_pixels_are_the_near_side_of_jumps_and_holes():
    """A wall at 2 m with a 1 m block (rows 2-5, columns 2-6) and one pixel without depth at (7, 8):
    the block's rim (its pixels within 1 px of the wall; 2 px with width 2) and the pixels around
    the hole, never the wall beside the block, nor a 1% step."""
    depth = np.full((10, 12), 2.0)
    depth[2:6, 2:7] = 1.0
    depth[0, 9:] = 2.02  # a step of 1%, under the 5% jump
    depth[7, 8] = 0.0
    expected = np.zeros(depth.shape, bool)
    expected[2:6, 2:7] = True
    expected[3:5, 3:6] = False  # the block's inside
    expected[6:9, 7:10] = True  # around the hole
    expected[7, 8] = False  # the hole itself has no depth
    np.testing.assert_array_equal(depth_edge_pixels(depth, 0.05), expected)
    wide = depth_edge_pixels(depth, 0.05, width=2)
    assert wide[2:6, 2:7].all() and not wide[:2].any() and wide[5:10, 6:11].sum() == 24


def test_bootstrap_plane_is_the_table_top(episode):
    frame = episode[0]
    points = frame.camera.backproject(torch.from_numpy(frame.depth).double()).numpy()
    plane, region = bootstrap_plane(points[(frame.depth > 0) & (frame.depth < 4.0)])
    assert -plane[3] == pytest.approx(TABLE_TOP_Z, abs=0.01) and tuple(plane[:3]) == (0.0, 0.0, 1.0)
    assert region[2] > region[0] and region[3] > region[1]


def test_geometric_segments_are_the_objects_and_build_the_same_memory(episode):
    memory = SceneMemory(MemoryConfig(segmentation="geometry", refine_steps_per_keyframe=0),
                         agent_label=episode.agent_label)
    ious, on_objects = [], []
    for i in range(len(episode)):
        frame = episode[i]
        memory.observe(frame)
        own, truth = memory.last_instances, frame.instances
        valid = (frame.depth > 0) & (frame.depth < memory.config.max_depth)
        if i % 5:
            continue
        for label in np.unique(truth[valid]):
            mask = (truth == label) & valid
            if label in (0, episode.agent_label) or mask.sum() < 60:
                continue
            ious.append(max(((own == s) & mask).sum() / ((own == s) | mask).sum() for s in np.unique(own[mask])
                            if s > 0) if (own[mask] > 0).any() else 0.0)
        segmented = own > 0
        on_objects.append(((truth > 0) & (truth != episode.agent_label))[segmented].mean())
    assert np.median(ious) > 0.8 and np.mean(np.array(ious) > 0.5) > 0.9
    # segments are objects, not the table, the occluders or the pusher (about a tenth of their pixels are
    # the rims and table right round an object)
    assert np.mean(on_objects) > 0.85
    gt = episode.ground_truth()["objects"]
    seen = [o for o in gt if sum(1 for v in o["visible_fraction"] if v > 0.3) > 10]
    remembered = [t for t in memory.tracks if t.observations > 10]
    assert len(seen) <= len(remembered) <= len(seen) + 2
    for obj in seen:  # each object seen is remembered where it stands (within 2 cm of a track)
        xyz = np.array(obj["poses"][-1][:3])
        assert min(np.linalg.norm(t.centroid - xyz) for t in remembered) < 0.03


def test_geometric_tracks_are_scored_by_the_true_label_under_their_segments(episode):
    world = WorldModel(SceneMemory(MemoryConfig(segmentation="geometry", refine_steps_per_keyframe=0),
                                   agent_label=episode.agent_label), make_model("static"), backend="cpu")
    to_true = []
    world.observe(episode, len(episode), after_frame=lambda frame: to_true.append(
        majority_labels(world.memory.last_instances, frame.instances)))
    assert len(to_true) == len(episode)
    gt = episode.ground_truth()["objects"]
    tracks = {t["id"]: t for t in world.memory.tracks_json()["objects"]}
    mapping = memory_to_truth(world.memory, gt, len(episode), to_true)
    seen = [g for g, o in enumerate(gt) if sum(1 for v in o["visible_fraction"] if v > 0.3) > 10]
    assert seen and set(seen) <= set(mapping)
    last = len(episode) - 1
    for g, (track_id, align) in mapping.items():  # the matched track, aligned, is where the object stands
        pose = tracks[track_id]["poses"][last]
        if pose is not None and g in seen:
            track = np.eye(4)
            track[:3, :3] = Rotation.from_quat(pose[3:], scalar_first=True).as_matrix()
            track[:3, 3] = pose[:3]
            assert np.linalg.norm((track @ align)[:3, 3] - gt[g]["poses"][last][:3]) < 0.01


def test_a_frame_without_masks_or_agent_pose_is_refused_by_name(episode):
    frame = episode[3]
    bare = dataclasses.replace(frame, instances=None, info=dataclasses.replace(frame.info, agent_pose=None))
    with pytest.raises(ShapeError, match="frame 3: no instance masks and no agent_pose"):
        SceneMemory(agent_label=episode.agent_label).observe(bare)
    SceneMemory(agent_label=episode.agent_label).observe(dataclasses.replace(frame, instances=None))  # with a pose: fine


def _track(track_id, points, color, observations, offset=(0.0, 0.0, 0.0)):
    from splatworld.memory import ObjectTrack, VoxelGrid

    model = VoxelGrid(0.005)
    model.integrate(points, np.full((len(points), 3), 0.5))
    pose = np.eye(4)
    pose[:3, 3] = offset
    return ObjectTrack(track_id, model, pose, color=np.asarray(color, float), observations=observations)


def _strip(instances, label, columns, xs):
    """A segment of the pixel ``columns`` of ``instances`` (relabelled ``label``): points along x at ``xs``."""
    from splatworld.memory.tracks import Segment

    mask = np.zeros(instances.shape, bool)
    mask[:, columns] = True
    instances[mask] = label
    pts = np.column_stack([xs, np.zeros(len(xs)), np.full(len(xs), 0.7)])
    return Segment(label, mask, pts, np.full((len(xs), 3), 0.5), np.median(pts, axis=0), np.full(3, 0.5), 0.05)


def _plate(track_id, observations=0):
    """A track whose model is a 10 cm square plate at (0.3, 0, 0.7)."""
    box = np.stack(np.meshgrid(*[np.linspace(-0.05, 0.05, 21)] * 2, indexing="ij"), -1).reshape(-1, 2)
    return _track(track_id, np.column_stack([box, np.zeros(len(box))]), (0.3, 0.3, 0.3), observations,
                  offset=(0.3, 0.0, 0.7))


def test_a_part_lying_on_a_matched_objects_model_joins_its_segment():
    from splatworld.memory.segmentation import merge_parts

    track = _plate(1)
    instances = np.zeros((4, 6), np.int64)
    left = _strip(instances, 1, slice(0, 2), np.linspace(0.26, 0.28, 8))  # matched
    right = _strip(instances, 2, slice(2, 4), np.linspace(0.32, 0.34, 8))  # the same object past an occluder
    other = _strip(instances, 3, slice(4, 6), np.linspace(0.40, 0.42, 8))  # a neighbour 5 cm beyond its edge
    segments, matches = merge_parts([left, right, other], {0: track}, instances, reach=0.02)
    assert [s.label for s in segments] == [1, 3] and matches == {0: track}
    assert segments[0].mask[:, :4].all() and len(segments[0].points) == 16
    assert (instances[:, :4] == 1).all() and (instances[:, 4:] == 3).all()


def _solid_cube(size: float, step: float = 0.005) -> np.ndarray:
    """``[M, 3]`` a grid of points filling a cube ``size`` wide, centred on the origin."""
    side = np.arange(-size / 2, size / 2 + 1e-9, step)
    return np.stack(np.meshgrid(side, side, side, indexing="ij"), -1).reshape(-1, 3)


def test_touching_objects_are_split_between_their_models():
    """Two 4 cm cubes side by side, one connected segment: each point goes to the cube it lies on.
    A segment that one model holds alone, or that a second model only grazes, stays whole."""
    from splatworld.memory.segmentation import split_touching

    side = np.linspace(-0.02, 0.02, 9)
    cube = np.stack(np.meshgrid(side, side, side, indexing="ij"), -1).reshape(-1, 3)
    left, right = cube + [0.0, 0.0, 0.72], cube + [0.041, 0.0, 0.72]
    # the frame sees the cubes a couple of millimetres off (noise), but not the faces they touch by
    rng = np.random.default_rng(0)
    seen = np.concatenate([left, right])
    truth = np.concatenate([np.ones(len(cube)), np.full(len(cube), 2)])
    apart = np.abs(seen[:, 0] - 0.0205) > 0.004
    points = (seen[apart] + rng.normal(0, 0.002, (apart.sum(), 3)))[:, None]  # an [N, 1] image
    truth = truth[apart][:, None]
    labels = np.full(truth.shape, 5)  # one merged segment
    split = split_touching(labels, points, [left, right], reach=0.02, min_points=12)
    assert set(np.unique(split)) == {5, 6}
    assert np.mean((split == 5) == (truth == 1)) > 0.98  # the first owner keeps the label
    assert (split_touching(labels, points, [left], 0.02, 12) == 5).all()
    # one object's model covers both cubes; another model touches only the far face (about 6% of the points)
    sliver = right[right[:, 0] > 0.055] + [0.01, 0.0, 0.0]
    assert (split_touching(labels, points, [np.concatenate([left, right]), sliver], 0.02, 12) == 5).all()
    # a third model near the segment that owns none of it, listed first: the owners are the second and third
    split = split_touching(labels, points, [sliver, left, right], reach=0.02, min_points=12)
    assert set(np.unique(split)) == {5, 6}
    assert np.mean((split == 5) == (truth == 1)) > 0.98


def test_a_small_object_pushed_against_a_large_one_claims_what_it_showed():
    """A 2 cm cube against an 8 cm one: about 7% of their component, under a fifth. It is split off
    when its object showed about that many points when last seen, and not when it showed far more
    (its model then only grazes the component) or nothing is known."""
    from splatworld.memory.segmentation import split_touching

    large, small = _solid_cube(0.08) + [0.0, 0.0, 0.74], _solid_cube(0.02) + [0.0505, 0.0, 0.71]
    points = np.concatenate([large, small])[:, None]
    labels = np.full(points.shape[:2], 3)
    assert len(small) / len(points) < 0.2
    split = split_touching(labels, points, [large, small], reach=0.02, min_points=12, shown=[len(large), len(small)])
    assert (split[len(large):] != 3).all() and (split[:len(large)] == 3).all()
    assert (split_touching(labels, points, [large, small], 0.02, 12) == 3).all()
    assert (split_touching(labels, points, [large, small], 0.02, 12, shown=[len(large), 3 * len(small)]) == 3).all()


def test_a_model_claims_nothing_of_a_neighbour_segment_it_touches():
    """An 8 cm cube, a segment of its own, and a 4 cm cube against it, a second segment whose model
    lags 3 cm behind it (a view the memory did not register): a third of the small cube's points
    lie within reach of the large cube's model, nearer to it than to their own. The large cube
    holds its points in its own segment, so it owns no part of the neighbour's, which stays
    whole; the same points as one segment are still split between the two."""
    from splatworld.memory.segmentation import split_touching

    large, small = _solid_cube(0.08) + [0.0, 0.0, 0.74], _solid_cube(0.04) + [0.0605, 0.0, 0.72]
    points = np.concatenate([large, small])[:, None]
    labels = np.concatenate([np.full(len(large), 1), np.full(len(small), 2)])[:, None]
    models = [large, small + [0.03, 0.0, 0.0]]
    grazed = cKDTree(large).query(small)[0] < 0.02
    assert 0.2 < grazed.mean() < 0.5  # enough for the large cube to own a part, were it the segment's only one
    shown = [len(large), len(small)]
    assert (split_touching(labels, points, models, reach=0.02, min_points=12, shown=shown) == labels).all()
    merged = split_touching(np.ones_like(labels), points, models, reach=0.02, min_points=12, shown=shown)
    assert len(np.unique(merged)) == 2 and (merged[:len(large)] == 1).all()


def test_two_tracks_of_one_object_are_told_from_two_objects_touching():
    """Two tracks with one model (two halves of one object's segment, one track each) keep the one
    observed more. A model that took in part of its neighbour holds the neighbour's model, but not
    the other way round: both stay. So do two objects touching, and one model of two colours."""
    from splatworld.memory.tracking import duplicate_tracks

    side = np.linspace(-0.02, 0.02, 9)
    cube = np.stack(np.meshgrid(side, side, side, indexing="ij"), -1).reshape(-1, 3)
    green, red = (0.2, 0.5, 0.3), (0.6, 0.2, 0.2)
    old, young = _track(1, cube, green, 40), _track(2, cube + 0.001, green, 12)
    assert duplicate_tracks([young, old], reach=0.01, color_gate=0.08) == [young]
    beside = _track(3, cube, green, 30, offset=(0.041, 0.0, 0.0))
    assert duplicate_tracks([old, beside], 0.01, 0.08) == []
    swallowed = _track(4, np.concatenate([cube, cube + [0.041, 0.0, 0.0], cube + [0.082, 0.0, 0.0]]), green, 90)
    assert duplicate_tracks([swallowed, beside], 0.01, 0.08) == []
    assert duplicate_tracks([old, _track(5, cube, red, 12)], 0.01, 0.08) == []


def test_a_sliver_on_a_hidden_objects_model_is_that_object():
    """A part no track was matched to, lying on the model of an object not matched in this frame
    (mostly hidden), is matched to it instead of being born as a new object; a second part of
    it joins that part."""
    from splatworld.memory.segmentation import merge_parts

    hidden = _plate(7, observations=50)
    instances = np.zeros((2, 4), np.int64)
    parts = [_strip(instances, 1, 0, np.linspace(0.26, 0.27, 6)), _strip(instances, 2, 1, np.linspace(0.33, 0.34, 6)),
             _strip(instances, 3, 2, np.linspace(0.45, 0.46, 6))]
    segments, matches = merge_parts(parts, {}, instances, reach=0.02, unmatched=[hidden])
    assert [s.label for s in segments] == [1, 3] and matches == {0: hidden}
    assert (instances[:, :2] == 1).all() and (instances[:, 2] == 3).all()
    assert merge_parts(parts[2:], {}, instances, 0.02, [hidden])[1] == {}


def test_an_object_joined_to_a_known_occluder_by_edge_noise_is_its_own_segment():
    """Depth noise at an occluder's edge joins the object behind it to the occluder (one component,
    too tall for an object). The occluder is in the scaffold already, so its points are left out
    of the connectivity and the object is a segment; a tall component not yet in the scaffold is
    static, as is the occluder."""
    from splatworld.memory.segmentation import STATIC, geometric_segments

    grid = np.arange(0.0, 0.04, 0.004)
    wall = np.stack(np.meshgrid([0.10, 0.104], np.arange(-0.05, 0.05, 0.004), np.arange(0.02, 0.3, 0.004),
                                indexing="ij"), -1).reshape(-1, 3)
    block = np.stack(np.meshgrid(grid + 0.05, grid - 0.02, grid + 0.02, indexing="ij"), -1).reshape(-1, 3)
    bridge = np.column_stack([np.linspace(0.09, 0.1, 4), np.zeros(4), np.full(4, 0.04)])  # flying pixels
    points = np.concatenate([wall, block, bridge])[:, None]
    valid = np.ones(points.shape[:2], bool)
    plane, region = np.array([0.0, 0.0, 1.0, 0.0]), np.array([-0.5, -0.5, 0.5, 0.5])
    cfg = MemoryConfig()
    on_wall = np.zeros(len(points), bool)
    on_wall[:len(wall)] = True

    known = geometric_segments(points, valid, plane, region, lambda p: p[:, 0] >= 0.0995, np.zeros_like(valid), cfg)[:, 0]
    assert (known[on_wall] == STATIC).all()
    block_labels = known[len(wall):len(wall) + len(block)]
    assert (block_labels > 0).all() and len(np.unique(block_labels)) == 1
    unknown = geometric_segments(points, valid, plane, region, lambda p: np.zeros(len(p), bool),
                                 np.zeros_like(valid), cfg)[:, 0]
    assert (unknown == STATIC).all()


@pytest.mark.parametrize("block_y", [-0.1, 0.24])
def test_a_strip_of_the_table_raised_by_noise_is_neither_an_object_nor_static(block_y):
    """A 1 m strip of the table's top 2 cm up (depth noise at range, or a camera pose a degree off,
    lifts it over the plane's tolerance) is left unexplained: no segment, and nothing to fuse.
    A 15 cm block beside it, as long as the longest object, is still a segment (``block_y``
    -0.1); one touching it (0.24) is left unexplained with it, never fused into the scaffold."""
    from splatworld.memory.segmentation import UNEXPLAINED, geometric_segments

    strip = np.stack(np.meshgrid(np.arange(-0.5, 0.5, 0.005), np.arange(0.2, 0.24, 0.005), [0.02],
                                 indexing="ij"), -1).reshape(-1, 3)
    block = np.stack(np.meshgrid(np.arange(0.0, 0.15, 0.005), np.arange(block_y, block_y + 0.05, 0.005),
                                 np.arange(0.02, 0.05, 0.005), indexing="ij"), -1).reshape(-1, 3)
    points = np.concatenate([strip, block])[:, None]
    valid = np.ones(points.shape[:2], bool)
    plane, region = np.array([0.0, 0.0, 1.0, 0.0]), np.array([-0.6, -0.6, 0.6, 0.6])
    labels = geometric_segments(points, valid, plane, region, lambda p: np.zeros(len(p), bool),
                                np.zeros_like(valid), MemoryConfig())[:, 0]
    assert (labels[:len(strip)] == UNEXPLAINED).all()
    if block_y < 0:
        assert (labels[len(strip):] > 0).all() and len(np.unique(labels[len(strip):])) == 1
    else:
        assert (labels[len(strip):] == UNEXPLAINED).all()


def _cut_by_agent(right_color, right_offset=(0.0, 0.0, 0.0)):
    """A 10 x 30 pixel view of a block 4 cm high with the agent in front of its middle: the block's
    points (x 0-5.5 cm and 9-14.5 cm, the right part shifted by ``right_offset`` and coloured
    ``right_color``) and the agent's, in front. Returns (points, colours, the agent's pixels,
    labels from :func:`geometric_segments`)."""
    from splatworld.memory.segmentation import geometric_segments

    rows, cols = np.meshgrid(np.arange(10), np.arange(30), indexing="ij")
    points = np.stack([0.005 * cols, np.zeros(cols.shape), 0.015 + 0.004 * rows], -1)
    agent = (cols >= 12) & (cols < 18)
    points[agent, 0] = 0.075
    points[agent, 1] = -0.03  # nearer the camera, which looks along +y
    points[cols >= 18, 0] += 0.03
    points[cols >= 18] += right_offset
    colors = np.broadcast_to([0.8, 0.3, 0.2], points.shape).copy()
    colors[cols >= 18] = right_color
    colors[agent] = [0.9, 0.1, 0.1]
    plane, region = np.array([0.0, 0.0, 1.0, 0.0]), np.array([-0.5, -0.5, 0.5, 0.5])
    labels = geometric_segments(points, np.ones(agent.shape, bool), plane, region, lambda p: np.zeros(len(p), bool),
                                agent, MemoryConfig())
    return points, colors, agent, labels


def test_an_object_the_agent_cuts_in_two_is_one_segment():
    """The pusher in front of a block leaves two components, 3.5 cm apart; they are joined, also
    when both lie on one remembered object's model. Not when they lie on two objects' models (or
    one on a model, one on none), when their colours differ, or when they lie farther apart than
    the agent is wide."""
    from splatworld.memory.segmentation import AGENT_MARGIN, join_across_agent

    cfg = MemoryConfig()
    gap = 2 * (cfg.agent_radius + AGENT_MARGIN) + cfg.part_reach
    points, colors, agent, labels = _cut_by_agent([0.8, 0.3, 0.2])
    left, right = labels[0, 0], labels[0, -1]
    assert left > 0 and right > 0 and left != right and (labels[agent] < 0).all()
    joined = join_across_agent(labels, points, colors, agent, gap, cfg.color_gate)
    assert (joined[:, :12] == min(left, right)).all() and (joined[:, 18:] == min(left, right)).all()
    assert (joined[agent] == labels[agent]).all()
    left_model, right_model = points[:, :12].reshape(-1, 3), points[:, 18:].reshape(-1, 3)
    whole = join_across_agent(labels, points, colors, agent, gap, cfg.color_gate, [np.concatenate([left_model, right_model])])
    assert (whole == joined).all()  # both parts on one remembered object's model
    for models in ([left_model, right_model], [left_model]):  # two remembered objects, or one and a new one
        assert (join_across_agent(labels, points, colors, agent, gap, cfg.color_gate, models) == labels).all()
    for color, offset in (([0.2, 0.3, 0.8], (0.0, 0.0, 0.0)), ([0.8, 0.3, 0.2], (0.08, 0.0, 0.0))):
        points, colors, agent, labels = _cut_by_agent(color, offset)
        assert len(np.unique(labels[labels > 0])) == 2
        assert (join_across_agent(labels, points, colors, agent, gap, cfg.color_gate) == labels).all()


def test_observe_cli_segments_from_geometry_with_the_episodes_agent(episode, tmp_path):
    import json

    from splatworld.cli import main
    from splatworld.memory.segmentation import agent_dimensions

    assert agent_dimensions(episode.meta["agent_shape"]) == {"agent_radius": 0.025, "agent_height": 0.1}
    assert agent_dimensions({"type": "box", "half_extents": [0.03, 0.04, 0.05]}) == pytest.approx(
        {"agent_radius": 0.05, "agent_height": 0.1})
    assert main(["observe", f"episode={episode.path}", f"out={tmp_path}", "until=20", "segmentation=geometry",
                 "progress=false"]) == 0
    memory = SceneMemory.load(tmp_path / "memory.pt")
    assert memory.config.segmentation == "geometry" and memory.config.agent_radius == 0.025
    assert json.loads((tmp_path / "summary.json").read_text())["objects"] >= 3


@pytest.mark.parametrize("segmentation", ["instances", "geometry"])
def test_a_frame_without_depth_moves_nothing_and_is_counted(episode, segmentation, tmp_path):
    memory = SceneMemory(MemoryConfig(segmentation=segmentation, refine_steps_per_keyframe=0),
                         agent_label=episode.agent_label)
    for i in range(10):
        memory.observe(episode[i])
    before = {t.id: (t.pose.copy(), t.belief) for t in memory.tracks}
    voxels, keyframes = len(memory.static), len(memory.keyframes)
    frame = episode[10]
    memory.observe(dataclasses.replace(frame, depth=np.zeros_like(frame.depth)))  # a sensor fault
    assert memory.depthless_frames == 1 and len(memory.static) == voxels and len(memory.keyframes) == keyframes
    for track in memory.tracks:  # not seen, not contradicted: where they were, as sure as before
        pose, belief = before[track.id]
        np.testing.assert_array_equal(track.pose, pose)
        assert track.belief == belief and track.state.value in ("occluded", "out_of_view")
    memory.save(tmp_path / "m.pt")
    assert SceneMemory.load(tmp_path / "m.pt").depthless_frames == 1
