import hashlib
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from splatworld.cli import main
from splatworld.jobs.config import load_config
from splatworld.dynamics.models import DynamicsModel, make_model
from splatworld.errors import ConfigError, SplatworldError
from splatworld.evaluation.baselines import last_frame
from splatworld.evaluation.imagined import memory_to_truth
from splatworld.imagination import WorldModel
from splatworld.jobs import imagine as imagine_run
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.render.video import to_uint8
from splatworld.scene import Camera, look_at
from splatworld.scene.episode import Episode, Frame
from splatworld.scene.transforms import matrix_to_pose
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
        drawn = set(np.unique(out[j].instances).tolist()) - {0, episode.agent_label}  # the agent is no track
        assert drawn == set(labels[:, j][labels[:, j] > 0].tolist())
    for name in ("imagined.mp4", "side_by_side.mp4", "summary.json", "memory.pt"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["imagined_frames"] == len(out) and len(summary["static_psnr_per_minute"]) == 1

    # killed after 10 frames (checkpoint at 7), then started again: the same files, bit for bit
    _kill_and_resume(args, tmp_path / "b", 10, monkeypatch, capsys)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_imagine_without_video_writes_the_frames_and_scores_them(episode, tmp_path, capsys):
    args = [f"episode={episode.path}", f"observe_until={OBSERVED}", f"until={OBSERVED + 10}", "progress=false",
            "backend=cpu", "video=false", f"out={tmp_path / 'a'}"]
    assert main(["imagine", *args]) == 0
    assert capsys.readouterr().out.strip().endswith("(summary.json)")
    assert len(Episode(tmp_path / "a")) == 10
    assert not list((tmp_path / "a").glob("*.mp4"))
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["imagined_frames"] == 10


def _kill_and_resume(args: list[str], out, frames: int, monkeypatch, capsys) -> dict:
    """Run ``splatworld imagine *args out=OUT``, killed once ``frames`` frames are written, then
    start it again to the end; returns the resume checkpoint the killed run left."""
    write = imagine_run.EpisodeWriter.write

    def dying(self, *a, **k):
        if len(self.frames) == frames:
            raise KeyboardInterrupt
        write(self, *a, **k)

    monkeypatch.setattr(imagine_run.EpisodeWriter, "write", dying)
    with pytest.raises(KeyboardInterrupt):
        imagine_run.imagine_episode(load_config("imagine", [*args, f"out={out}"]))
    resume = out.with_name(out.name + ".partial") / "resume.pt"
    assert resume.exists() and not out.exists()
    left = torch.load(resume, weights_only=False)
    monkeypatch.setattr(imagine_run.EpisodeWriter, "write", write)
    assert main(["imagine", *args, f"out={out}"]) == 0
    assert "resuming" in capsys.readouterr().out
    return left


def test_imagine_rejects_bad_ranges(episode, tmp_path):
    assert main(["imagine", f"episode={episode.path}", f"observe_until={len(episode)}", f"out={tmp_path}"]) == 2


def test_untouched_since_observed_is_judged_over_the_whole_span():
    # an object pushed 2 cm and pushed back was touched; 5 mm of jitter is not a touch (1 cm rule)
    from splatworld.evaluation.imagined import _still_since

    x = [0.0, 0.005, 0.02, 0.0]
    obj = {"poses": [[v, 0.0, 0.6, 1.0, 0.0, 0.0, 0.0] for v in x]}
    assert _still_since(obj, 0, 1) and _still_since(obj, 3, 3)
    assert not _still_since(obj, 0, 2) and not _still_since(obj, 0, 3) and not _still_since(obj, 1, 3)


class _Drift(DynamicsModel):
    """Moves every object 1 mm along +x per step: a dynamics model whose prediction is known."""

    name = "drift"

    def propose(self, state, action):
        shape = state.position.shape[:2]
        return (torch.stack([torch.full(shape, 1e-3, dtype=state.position.dtype),
                             torch.zeros(shape, dtype=state.position.dtype)], -1),
                torch.zeros(shape, dtype=state.position.dtype), torch.ones(shape, dtype=torch.bool))


def _blank(frame: Frame) -> Frame:
    """``frame`` seen by a camera looking off the table at the sky: nothing in it."""
    away = Camera.from_fov(55.0, frame.camera.width, frame.camera.height, look_at([3.0, 0.0, 1.0], [10.0, 0.0, 1.0]))
    return Frame(frame.info, away, np.zeros_like(frame.rgb), np.zeros_like(frame.depth),
                 np.zeros_like(frame.instances))


def test_next_frame_prediction_is_the_memory_of_every_frame_before_it(episode):
    world = _world(episode)
    for i in range(OBSERVED, OBSERVED + 4):
        reference = SceneMemory(agent_label=episode.agent_label)
        for j in range(i):
            reference.observe(episode[j])
        predicted = world.predict(episode.info(i), episode.camera(i))
        # the static model moves nothing: the prediction is the memory of frames [0, i), drawn at frame i
        expected = reference.render(episode.camera(i), backend="cpu")
        assert np.abs(predicted.rgb.astype(int) - to_uint8(expected.rgb.numpy()).astype(int)).max() <= 1
        assert predicted.index == i and set(predicted.poses) == set(reference.poses_at())
        world.observe_next(episode[i])
        for track, ref in zip(world.memory.tracks, reference.tracks):
            assert track.id == ref.id and np.allclose(track.poses[:-1], ref.poses, atol=1e-9)
    with pytest.raises(SplatworldError, match="next frame to predict is 34"):
        world.predict(episode.info(OBSERVED + 6), episode.camera(OBSERVED + 6))
    with pytest.raises(SplatworldError, match="observe frames in order"):
        world.observe_next(episode[OBSERVED + 6])


def test_next_frame_dynamics_move_only_what_the_last_frame_did_not_show(episode):
    world = WorldModel(SceneMemory(agent_label=episode.agent_label), _Drift(), backend="cpu")
    world.observe(episode, OBSERVED)
    before = {t.id: t.pose.copy() for t in world.memory.tracks}
    unseen = {t.id for t in world.memory.tracks if t.labels[-1] == 0}
    world.predict(episode.info(OBSERVED), episode.camera(OBSERVED))
    assert all(np.array_equal(t.pose, before[t.id]) for t in world.memory.tracks)  # predicting changes nothing
    # observing a frame that shows nothing commits the prediction: the objects the last frame did not
    # show move where the dynamics took them, the ones in view are left to the observation
    world.observe_next(_blank(episode[OBSERVED]))
    moved = {t.id for t in world.memory.tracks if not np.array_equal(t.pose, before[t.id])}
    assert moved == unseen
    # next, every object is where the dynamics take it (1 mm per step along +x, unless that would
    # push it into its neighbour or an occluder)
    assert {t.state for t in world.memory.tracks} == {"out_of_view"}
    before = {t.id: t.pose.copy() for t in world.memory.tracks}
    frame = world.predict(episode.info(OBSERVED + 1), episode.camera(OBSERVED + 1))
    world.observe_next(_blank(episode[OBSERVED + 1]))
    steps = round((episode.info(OBSERVED + 1).time - episode.info(OBSERVED).time) / world.dynamics.config.dt)
    free = 0
    for track in world.memory.tracks:
        assert np.allclose(frame.poses[track.id], matrix_to_pose(torch.from_numpy(track.pose)).numpy(), atol=1e-12)
        shift = track.pose[:3, 3] - before[track.id][:3, 3]
        free += shift == pytest.approx([1e-3 * steps, 0, 0], abs=1e-9)
    assert free >= len(world.memory.tracks) - 1
    with pytest.raises(SplatworldError, match="no remembered object with id 999"):
        world.memory.move_unseen({999: np.eye(4)})


def test_next_frame_memoryless_model_forgets_and_starts_anew(episode):
    remembering = _world(episode)
    forgetful = _world(episode)
    forgetful.forget_after = 1.0
    known = {t.id for t in remembering.memory.tracks}
    for i in range(OBSERVED, OBSERVED + 12):  # 1.2 s of frames showing nothing
        for world in (remembering, forgetful):
            world.predict(episode.info(i), episode.camera(i))
            world.observe_next(_blank(episode[i]))
    assert {t.id for t in remembering.memory.tracks} == known
    assert forgetful.memory.tracks == []
    back = OBSERVED + 12
    kept = remembering.predict(episode.info(back), episode.camera(back))
    lost = forgetful.predict(episode.info(back), episode.camera(back))
    assert set(np.unique(kept.instances)) - {0} and set(np.unique(lost.instances)) == {0}
    for world in (remembering, forgetful):
        world.observe_next(episode[back])
    assert {t.id for t in remembering.memory.tracks} == known  # re-identified
    assert min(t.id for t in forgetful.memory.tracks) > max(known)  # new objects to a memoryless model


def test_imagine_cli_next_frame_protocol_resumes_identically(episode, tmp_path, monkeypatch, capsys):
    args = [f"episode={episode.path}", f"observe_until={OBSERVED}", "progress=false", "backend=cpu",
            "checkpoint_every=7", "protocol=next_frame", "compare=false"]
    assert main(["imagine", *args, f"out={tmp_path / 'a'}"]) == 0
    out = Episode(tmp_path / "a")
    assert len(out) == len(episode) - OBSERVED and out.meta["protocol"] == "next_frame"
    assert SceneMemory.load(tmp_path / "a" / "memory.pt").frame_count == len(episode)  # observed to the end
    left = _kill_and_resume(args, tmp_path / "b", 15, monkeypatch, capsys)
    # checkpoints fall where the memory refreshed its static map: after frame 40, the first one 7 frames on
    assert left["next"] == 41
    whole, resumed = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert whole.pop("memory.pt") and resumed.pop("memory.pt") and whole == resumed
    # the memory that observed on after the resume is the same (pickle lays out loaded arrays otherwise)
    saved = [SceneMemory.load(tmp_path / run / "memory.pt").state_dict() for run in ("a", "b")]
    _assert_same(*saved)
    assert main(["imagine", *args[:-2], "protocol=open_loop", f"out={tmp_path / 'c'}"]) == 2


def _assert_same(a, b, where="memory"):
    """Nested dicts, lists, arrays and tensors ``a`` and ``b`` hold the same values, bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, torch.Tensor)):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), where
    else:
        assert a == b or (a != a and b != b), where


def test_last_frame_baseline_under_both_protocols(episode, tmp_path):
    still = Episode(last_frame(episode.path, OBSERVED, tmp_path / "still", progress=False))
    assert len(still) == len(episode) - OBSERVED and still.meta["protocol"] == "imagination"
    assert np.array_equal(still[5].rgb, episode[OBSERVED - 1].rgb)
    with pytest.raises(ConfigError, match="needs the memory"):
        last_frame(episode.path, OBSERVED, tmp_path / "x", progress=False, protocol="next_frame")
    memory = SceneMemory(agent_label=episode.agent_label)
    for i in range(len(episode)):
        memory.observe(episode[i])
    memory.save(tmp_path / "memory.pt")
    lagged = Episode(last_frame(episode.path, OBSERVED, tmp_path / "lagged", progress=False,
                                protocol="next_frame", memory=tmp_path / "memory.pt"))
    tracks = {t["id"]: t for t in memory.tracks_json()["objects"]}
    written = {t["id"]: t["labels"] for t in lagged.tracks()["objects"]}
    assert set(written) == set(tracks)
    for j in (0, 7, len(lagged) - 1):
        source = episode[OBSERVED + j - 1]  # each frame is the one before it
        assert np.array_equal(lagged[j].rgb, source.rgb) and np.array_equal(lagged[j].depth, source.depth)
        for i, track in tracks.items():  # ...its labels the ids the memory tracked them under
            label = track["labels"][OBSERVED + j - 1]
            assert np.array_equal(lagged[j].instances == i, (source.instances == label) & (label != 0))
            assert written[i][j] == (i if label and (source.instances == label).any() else 0)


def test_the_agent_is_drawn_where_each_frame_puts_it(episode):
    drawing = WorldModel(SceneMemory(agent_label=episode.agent_label), make_model("static"), backend="cpu",
                         agent_shape=episode.meta["agent_shape"])
    drawing.observe(episode, OBSERVED)
    red, green, blue = drawing.memory.agent_color  # PyBullet's pusher is red (0.9, 0.1, 0.1), shaded
    assert red > 0.5 and green < 0.15 and blue < 0.15
    plain = _world(episode)
    steps = [(episode.info(i), episode.camera(i)) for i in range(OBSERVED, len(episode))]
    for drawn, bare in zip(drawing.imagine(steps), plain.imagine(steps)):
        truth = episode[drawn.index].instances == episode.agent_label
        agent = drawn.instances == episode.agent_label
        if truth.sum() >= 40:  # well in view (96 x 96 frames): its mask is the true one
            assert (agent & truth).sum() / (agent | truth).sum() >= 0.5
        assert not (bare.instances == episode.agent_label).any()
        # what the agent hides is hidden; away from its soft rim the two pictures agree
        near = binary_dilation(agent, np.ones((3, 3), bool), iterations=3)  # its splats reach 3 px out
        assert np.array_equal(drawn.rgb[~near], bare.rgb[~near])
    with pytest.raises(ConfigError, match="agent_shape.type"):
        WorldModel(drawing.memory, make_model("static"), agent_shape={"type": "cone", "radius": 0.1})


@pytest.mark.gpu
def test_imagination_on_gsplat_draws_what_the_cpu_backend_draws(episode):
    pytest.importorskip("gsplat")
    future = [(episode.info(i), episode.camera(i)) for i in range(OBSERVED, len(episode))]
    on_cpu = list(_world(episode).imagine(future))
    world = WorldModel(SceneMemory(MemoryConfig(backend="gsplat"), agent_label=episode.agent_label),
                       make_model("static"), backend="gsplat")
    world.observe(episode, OBSERVED)
    on_gpu = list(world.imagine(future))
    for a, b in zip(on_cpu, on_gpu):
        assert a.poses.keys() == b.poses.keys()
        assert all(np.allclose(a.poses[i], b.poses[i], atol=1e-3) for i in a.poses)
        # gsplat's bound reaches the faint tails of opaque splats a little further (GSPLAT_SIGMA_CUTOFF)
        assert np.abs(a.rgb.astype(float) - b.rgb).mean() < 2.0
        assert (a.instances == b.instances).mean() > 0.97


def test_the_suite_end_to_end_on_a_small_episode(tmp_path):
    """Export a one-episode suite, let every predictor predict both tasks through one interface, score
    the folder, and check the leaderboard's bookkeeping (counts, skips on rerun, clear errors)."""
    from splatworld.evaluation.evaluate import EvaluationConfig
    from splatworld.evaluation.suite import SuiteError, export_suite, score_suite
    from splatworld.jobs.benchmark import MODEL, PREDICTORS, predict_task

    cfg = load_config("generate", [f"out={tmp_path / 'ep'}", "progress=false", "width=96", "height=96",
                                   "scenario=occlusion", "seconds=20", "seed=0"])
    episode = Episode(generate_episode(cfg))
    manifest = export_suite({"tiny": episode.path}, tmp_path / "suite", observe_seconds=OBSERVED / episode.fps,
                            progress=False)
    tasks = {t["protocol"]: t for t in manifest["tasks"]}
    assert tasks["imagination"]["frames"] == len(episode) - OBSERVED
    assert [tuple(q) for q in tasks["return"]["queries"]] == [(114, 120), (144, 157), (153, 162), (154, 179)]
    task = Episode(tmp_path / "suite" / "tasks" / "tiny-imagination")
    assert len(task) == len(episode) and task.ground_truth() is None  # the truth stays apart
    with pytest.raises(Exception, match="future frame of a task"):
        task[OBSERVED]
    for t in manifest["tasks"]:
        assert set(predict_task(tmp_path / "suite" / "tasks" / t["id"], tmp_path / "pred")) == \
            {p.name for p in PREDICTORS}
    # the imagined baselines reuse the model's observation: the memory they start from is its memory
    model_memory = SceneMemory.load(tmp_path / "pred" / MODEL.name / "tiny-imagination" / "memory.pt").state_dict()
    for name in ("memoryless", "static_world"):
        _assert_same(model_memory, SceneMemory.load(tmp_path / "pred" / name / "tiny-imagination" / "memory.pt")
                     .state_dict())
    config = EvaluationConfig(workers=1, progress=False)
    board = score_suite(tmp_path / "suite", tmp_path / "pred", tmp_path / "board", config)
    for model in board:
        for protocol in ("imagination", "return"):
            assert board[model][protocol]["tasks"] == 1
    returns = tasks["return"]["frames"]
    assert all(board[m]["return"]["permanence"]["events"] == returns for m in board)
    assert (tmp_path / "board" / "leaderboard.md").read_text().count("| splatworld |") == 10  # 3 classes, 2 agreements, per protocol
    assert (tmp_path / "board" / "permanence_return.png").stat().st_size > 0
    # a broken prediction: one error naming the model and task, the rest kept and skipped on rerun
    scored = tmp_path / "board" / "scores" / "last_frame" / "tiny-return.json"
    scored.unlink()
    (tmp_path / "pred" / "last_frame" / "tiny-return" / "000000.png").unlink()
    with pytest.raises(SuiteError, match=r"last_frame / tiny-return: .*frames, expected"):
        score_suite(tmp_path / "suite", tmp_path / "pred", tmp_path / "board", config)
    assert not scored.exists() and (tmp_path / "board" / "scores" / "splatworld" / "tiny-return.json").exists()


def test_return_protocol_forks_match_observing_up_to_each_reappearance(episode):
    """Each fork of imagine_returns (one observation of the episode, shared by two model variants)
    draws exactly what a world that observed frames [0, b) alone imagines at c."""
    from splatworld.imagination import imagine_returns

    memory = SceneMemory(agent_label=episode.agent_label)
    worlds = [WorldModel(memory, make_model("static"), backend="cpu"),
              WorldModel(memory, make_model("static"), backend="cpu", forget_after=0.1)]
    queries = [(40, 44), (20, 21), (40, 40)]
    forks = dict(imagine_returns(worlds, episode, queries))
    assert sorted(forks) == [0, 1, 2] and memory.frame_count == 40  # observed once, up to the last b
    for q, (b, c) in enumerate(queries):
        alone = WorldModel(SceneMemory(agent_label=episode.agent_label), make_model("static"), backend="cpu")
        alone.observe(episode, b)
        *_, expected = alone.imagine((episode.info(i), episode.camera(i)) for i in range(b, c + 1))
        assert forks[q][0].index == c and np.array_equal(forks[q][0].rgb, expected.rgb)
        assert np.array_equal(forks[q][0].instances, expected.instances)
    assert (forks[0][1].instances == 0).all() or len(np.unique(forks[0][1].instances)) < \
        len(np.unique(forks[0][0].instances))  # the forgetful variant draws fewer objects
    with pytest.raises(SplatworldError, match="past b=10"):
        next(imagine_returns(worlds, episode, [(10, 12)]))


def test_imagine_scores_a_memory_that_segments_from_geometry_through_the_true_labels(episode, tmp_path, monkeypatch):
    seen = {}

    def spy(episode, imagined, memory, observed, video, progress=True, to_true=None):
        seen.update(memory=memory, observed=observed, to_true=to_true)
        return {}

    monkeypatch.setattr(imagine_run, "compare_with_ground_truth", spy)
    assert main(["imagine", f"episode={episode.path}", f"observe_until={OBSERVED}", f"until={OBSERVED + 3}",
                 "progress=false", "backend=cpu", "video=false", "segmentation=geometry", f"out={tmp_path / 'a'}"]) == 0
    to_true, memory = seen["to_true"], seen["memory"]
    assert memory.config.segmentation == "geometry" and len(to_true) == OBSERVED
    gt = episode.ground_truth()["objects"]
    for i, labels in enumerate(to_true):  # the memory's own labels map to objects in view at that frame (or not)
        assert set(labels.values()) - {0, episode.agent_label} <= {o["labels"][i] for o in gt if o["labels"][i] > 0}
    # its own labels are not the episode's: matched through the true ones, the objects its segments showed
    # are found, each where its track is (at 96 px, small objects touching others are not always segmented)
    assert memory_to_truth(memory, gt, OBSERVED) == {}
    mapping = memory_to_truth(memory, gt, OBSERVED, to_true)
    segmented = {g for g, o in enumerate(gt) if any(o["labels"][i] in labels.values() for i, labels in enumerate(to_true))}
    assert set(mapping) <= segmented and len(mapping) >= 3
    poses = memory.poses_at(OBSERVED - 1)
    for g, (track_id, align) in mapping.items():
        assert np.linalg.norm((poses[track_id] @ align)[:3, 3] - gt[g]["poses"][OBSERVED - 1][:3]) < 0.02


def test_imagine_refuses_to_score_a_saved_memory_that_segments_from_geometry(episode, tmp_path):
    memory = SceneMemory(MemoryConfig(segmentation="geometry"), agent_label=episode.agent_label)
    for i in range(OBSERVED):
        memory.observe(episode[i])
    memory.save(tmp_path / "memory.pt")
    args = [f"episode={episode.path}", f"observe_until={OBSERVED}", f"memory={tmp_path / 'memory.pt'}",
            "progress=false", "backend=cpu", "video=false"]
    assert main(["imagine", *args, f"out={tmp_path / 'a'}"]) == 2
    assert main(["imagine", *args, "compare=false", f"until={OBSERVED + 3}", f"out={tmp_path / 'b'}"]) == 0


def test_imagine_scores_a_saved_memory_of_instance_masks(episode, tmp_path):
    memory = SceneMemory(agent_label=episode.agent_label)
    for i in range(OBSERVED):
        memory.observe(episode[i])
    memory.save(tmp_path / "memory.pt")
    assert main(["imagine", f"episode={episode.path}", f"observe_until={OBSERVED}", f"memory={tmp_path / 'memory.pt'}",
                 f"until={OBSERVED + 3}", "progress=false", "backend=cpu", "video=false", f"out={tmp_path / 'a'}"]) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["imagined_frames"] == 3
