import hashlib
import json

import numpy as np
import pytest
import torch

from splatworld.cli import main
from splatworld.config import load_config
from splatworld.dynamics.models import make_model
from splatworld.errors import SplatworldError
from splatworld.imagination import WorldModel
from splatworld.imagination import run as imagine_run
from splatworld.memory import SceneMemory
from splatworld.render.video import to_uint8
from splatworld.scene.episode import Episode
from splatworld.sim.generate import generate_episode

OBSERVED = 30


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    out = tmp_path_factory.mktemp("imag") / "ep"
    cfg = load_config("generate", [f"out={out}", "progress=false", "width=96", "height=96", "scenario=occlusion",
                                   "seconds=6", "seed=1"])
    return Episode(generate_episode(cfg))


def _world(episode, model="static"):
    world = WorldModel(SceneMemory(agent_label=episode.agent_label), make_model(model), backend="cpu")
    world.observe(episode, OBSERVED)
    return world


def test_static_imagination_keeps_remembered_poses_and_reads_only_the_protocol(episode):
    world = _world(episode)
    remembered = world.memory.poses_at()
    future = [(episode.info(i), episode.camera(i)) for i in range(OBSERVED, len(episode))]  # no images
    frames = list(world.imagine(future))
    assert [f.index for f in frames] == list(range(OBSERVED, len(episode)))
    last = frames[-1]
    assert last.rgb.shape == (96, 96, 3) and last.rgb.dtype == np.uint8
    assert last.depth.dtype == np.float32 and last.instances.dtype == np.uint16
    assert set(np.unique(last.instances)) - {0} <= set(remembered)
    assert set(last.poses) == set(remembered)
    for i, pose in last.poses.items():  # nothing moves under the static model (objects at rest)
        drawn = torch.from_numpy(remembered[i])
        assert np.allclose(pose[:3], drawn[:3, 3].numpy(), atol=1e-6)
    # the memory, drawn at its own poses, is what imagination draws at the start
    first = world.memory.render(episode.camera(len(episode) - 1), backend="cpu", poses=remembered)
    assert np.array_equal(to_uint8(first.rgb.numpy()), last.rgb)


def test_memoryless_world_forgets_what_it_has_not_seen_for_a_second(episode):
    from splatworld.scene import Camera, look_at

    away = Camera.from_fov(55.0, 96, 96, look_at([3.0, 0.0, 1.0], [10.0, 0.0, 1.0]))  # looking off the table
    steps = [(episode.info(i), away if i < OBSERVED + 15 else episode.camera(i)) for i in range(OBSERVED, len(episode))]
    remembering, forgetful = _world(episode), _world(episode)
    forgetful.forget_after = 1.0
    last_kept, last_lost = list(remembering.imagine(steps))[-1], list(forgetful.imagine(steps))[-1]
    assert set(np.unique(last_kept.instances)) - {0}  # back in view, the remembering model draws objects
    assert set(np.unique(last_lost.instances)) == {0} and last_lost.poses == {}  # 1.5 s unseen: forgotten
    # a short look away is not long enough to forget
    brief = _world(episode)
    brief.forget_after = 1.0
    short = [(episode.info(i), away if i < OBSERVED + 5 else episode.camera(i)) for i in range(OBSERVED, len(episode))]
    assert set(np.unique(list(brief.imagine(short))[-1].instances)) == set(np.unique(last_kept.instances))


def test_frames_must_be_whole_dynamics_steps_apart(episode):
    world = _world(episode)
    info = episode.info(OBSERVED)
    bad = type(info)(info.index, info.time + 0.03, info.transform_matrix, info.agent_pose, info.action)
    with pytest.raises(SplatworldError, match="dynamics step"):
        next(world.imagine([(bad, episode.camera(OBSERVED))]))


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_imagine_cli_writes_an_episode_and_resumes_identically(episode, tmp_path, monkeypatch, capsys):
    args = [f"episode={episode.path}", f"observe_until={OBSERVED}", "progress=false", "backend=cpu",
            "checkpoint_every=7"]
    assert main(["imagine", *args, f"out={tmp_path / 'a'}"]) == 0
    printed = capsys.readouterr().out
    assert "real time" in printed and "PSNR per imagined minute" in printed
    out = Episode(tmp_path / "a")
    assert len(out) == len(episode) - OBSERVED
    assert out.info(0).time == pytest.approx(episode.info(OBSERVED).time)
    tracks = out.tracks()["objects"]
    labels = np.array([t["labels"] for t in tracks])
    for j in (0, len(out) - 1):  # a track's label is drawn in its frame exactly when it says so
        drawn = set(np.unique(out[j].instances).tolist()) - {0}
        assert drawn == set(labels[:, j][labels[:, j] > 0].tolist())
    for name in ("imagined.mp4", "side_by_side.mp4", "summary.json", "memory.pt"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["imagined_frames"] == len(out) and len(summary["static_psnr_per_minute"]) == 1

    # killed after 10 frames (checkpoint at 7), then started again: the same files, bit for bit
    write = imagine_run.EpisodeWriter.write

    def dying(self, *a, **k):
        if len(self.frames) == 10:
            raise KeyboardInterrupt
        write(self, *a, **k)

    monkeypatch.setattr(imagine_run.EpisodeWriter, "write", dying)
    with pytest.raises(KeyboardInterrupt):
        imagine_run.imagine_episode(load_config("imagine", [*args, f"out={tmp_path / 'b'}"]))
    assert (tmp_path / "b.partial" / "resume.pt").exists() and not (tmp_path / "b").exists()
    monkeypatch.setattr(imagine_run.EpisodeWriter, "write", write)
    assert main(["imagine", *args, f"out={tmp_path / 'b'}"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_imagine_rejects_bad_ranges(episode, tmp_path):
    assert main(["imagine", f"episode={episode.path}", f"observe_until={len(episode)}", f"out={tmp_path}"]) == 2


def test_untouched_since_observed_is_judged_over_the_whole_span():
    # an object pushed 2 cm and pushed back was touched; 5 mm of jitter is not a touch (1 cm rule)
    from splatworld.imagination.report import _still_since

    x = [0.0, 0.005, 0.02, 0.0]
    obj = {"poses": [[v, 0.0, 0.6, 1.0, 0.0, 0.0, 0.0] for v in x]}
    assert _still_since(obj, 0, 1) and _still_since(obj, 3, 3)
    assert not _still_since(obj, 0, 2) and not _still_since(obj, 0, 3) and not _still_since(obj, 1, 3)
