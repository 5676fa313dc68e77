"""Segments from geometry (no instance masks): against PyBullet's instance masks, and the memory
built from them."""

import dataclasses

import numpy as np
import pytest
import torch

from splatworld.errors import ShapeError
from splatworld.jobs.config import load_config
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.memory.segmentation import bootstrap_plane
from splatworld.scene.episode import Episode
from splatworld.sim.generate import generate_episode
from splatworld.sim.pybullet_scene import TABLE_TOP_Z


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "ep"
    cfg = load_config("generate", [f"out={out}", "progress=false", "width=160", "height=160", "scenario=occlusion",
                                   "seconds=4", "seed=2"])
    return Episode(generate_episode(cfg))


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


def test_a_frame_without_masks_or_agent_pose_is_refused_by_name(episode):
    frame = episode[3]
    bare = dataclasses.replace(frame, instances=None, info=dataclasses.replace(frame.info, agent_pose=None))
    with pytest.raises(ShapeError, match="frame 3: no instance masks and no agent_pose"):
        SceneMemory(agent_label=episode.agent_label).observe(bare)
    SceneMemory(agent_label=episode.agent_label).observe(dataclasses.replace(frame, instances=None))  # with a pose: fine
