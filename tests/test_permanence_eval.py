"""The permanence evaluator: each metric on hand-made cases with known answers, and end to end
on tiny synthetic episodes (a perfect prediction, one that forgets, one with RGB only)."""

import json
import math

import imageio.v2 as imageio
import kornia
import numpy as np
import pytest
import torch

from splatworld.scene.events import hide_events
from splatworld.scene import Cameras
from splatworld.evaluation.evaluate import EvaluationConfig, evaluate_prediction
from splatworld.evaluation.image import depth_abs_rel, revisited_frames, ssim, ssim_map
from splatworld.evaluation.motion import frame_mse, motion_masks, motion_scores
from splatworld.evaluation.permanence import mask_scores, opr_rgb_verdict, permanence_rate, tau_bin
from splatworld.evaluation.report import evaluate
from splatworld.scene import Camera, look_at
from splatworld.scene.episode_writer import EpisodeWriter


# ------------------------------------------------------------------ image metrics
def test_ssim_matches_kornia_inside_the_border():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 40, 48, generator=gen, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(2, 40, 48, generator=gen, dtype=torch.float64)).clamp(0, 1)
    reference = kornia.metrics.ssim(x[:, None], y[:, None], 11)[:, 0, 5:-5, 5:-5]  # same window, padded map
    torch.testing.assert_close(ssim_map(x, y, 1.0), reference, atol=1e-9, rtol=0)


def test_ssim_hand_cases():
    a = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    # a constant image against another constant: variances 0, SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = (0.01 * 255) ** 2
    flat1, flat2 = np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 150, np.uint8)
    assert ssim(flat1, flat2) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), rel=1e-5)
    assert math.isnan(ssim(flat1, flat2, np.zeros((16, 16), bool)))
    assert math.isnan(ssim(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)))  # under one window


def test_depth_abs_rel_hand_computed():
    truth = np.array([[1.0, 2.0], [4.0, 0.0]])
    pred = np.array([[1.5, 2.0], [0.0, 3.0]])  # unknown pixels on either side are left out
    assert depth_abs_rel(pred, truth) == pytest.approx((0.5 / 1.0 + 0.0) / 2)
    assert math.isnan(depth_abs_rel(np.zeros((2, 2)), truth))


def test_revisit_needs_the_camera_to_leave():
    def pose(x):
        m = np.eye(4)
        m[0, 3] = x
        return m

    c2w = np.stack([pose(x) for x in (0.0, 0.01, 0.02, 1.0, 1.0, 0.0, 0.03)])
    # frames 1, 2 creep along from 0 (no revisit); 5 and 6 come back after leaving for 3-4
    assert revisited_frames(c2w, must_leave=True) == [(5, 0), (6, 0)]
    assert revisited_frames(c2w)[:2] == [(1, 0), (2, 0)]
    assert revisited_frames(c2w, must_leave=True, first=1) == [(5, 1), (6, 1)]


# ------------------------------------------------------------------ motion (Physics-IQ)
def test_motion_masks_find_a_moving_square_and_nothing_else():
    frames = [np.full((40, 40, 3), 90, np.uint8) for _ in range(4)]
    for t, frame in enumerate(frames):
        frame[10:20, 5 + 5 * t:15 + 5 * t] = 250  # a bright square sliding right
    masks = motion_masks(frames)
    assert masks.shape == (4, 40, 40) and not masks[0].any()  # the first frame has no motion
    assert masks[1, 12:18, 16:19].all()  # the square's new leading edge moves
    assert not masks[1, 30:, :].any() and not masks[:, :, 35:].any()  # far from it nothing does
    assert not motion_masks([frames[0]] * 3).any()


def test_motion_scores_hand_computed():
    a = np.zeros((2, 2, 2), bool)
    b = np.zeros((2, 2, 2), bool)
    a[0, 0, 0] = a[1, 0, 0] = True  # truth: one pixel moving in both frames
    b[1, 0, 0] = b[1, 0, 1] = True  # prediction: that pixel in frame 1 only, and a neighbour
    scores = motion_scores(a, b, np.array([0.1, 0.3]))
    assert scores["spatial_iou"] == pytest.approx(1 / 2)  # any-time masks {00} vs {00, 01}
    assert scores["spatiotemporal_iou"] == pytest.approx((0 / 1 + 1 / 2) / 2)
    # weights: truth {00: 1}, prediction {00: 0.5, 01: 0.5}: min sum 0.5, max sum 1.5
    assert scores["weighted_spatial_iou"] == pytest.approx(0.5 / 1.5)
    assert scores["mse"] == pytest.approx(0.2)
    empty = motion_scores(np.zeros((3, 2, 2), bool), np.zeros((3, 2, 2), bool), np.zeros(3))
    assert empty["spatial_iou"] == empty["spatiotemporal_iou"] == empty["weighted_spatial_iou"] == 1.0
    x, y = np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 255, np.uint8)
    assert frame_mse(x, y) == 1.0


# ------------------------------------------------------------------ permanence rate
def test_tau_bins_and_empty_rate():
    assert [tau_bin(s) for s in (0.1, 1.0, 1.1, 60.0, 300.0, 301.0)] == \
        ["<=1s", "<=1s", "<=10s", "<=60s", "<=300s", ">300s"]
    rate = permanence_rate([])
    assert rate["opr_all"] is None and rate["bins"]["occluded"][">300s"]["opr"] is None


# ------------------------------------------------------------------ synthetic episodes
T, K, SIZE = 40, 10, 32
HIDDEN_A = range(15, 25)  # object A hides behind something (label 0 while the camera looks on)
AWAY = range(30, 35)  # the camera looks away: both objects out of view
SQUARES = {0: (slice(12, 18), slice(6, 12)), 1: (slice(12, 18), slice(18, 24))}


def _camera(t):
    target = [1.0, 5.0, 1.0] if t in AWAY else [0.0, 0.0, 0.0]
    return Camera.from_fov(60.0, SIZE, SIZE, look_at([1.0, 0.0, 1.0], target))


def _visible(obj, t):
    return t not in AWAY and not (obj == 0 and t in HIDDEN_A)


def _write(path, frames, *, instances=True, tracks=None, ground_truth=None, consistent=False, first=0):
    writer = EpisodeWriter(path, _camera(0), 10.0, extra={"instance_ids_consistent": consistent})
    for t in range(first, T):
        rgb, inst = frames(t)
        writer.write(rgb, _camera(t).c2w_nerfstudio.numpy(), t / 10.0, depth=np.full((SIZE, SIZE), 2.0, np.float32),
                     instances=inst if instances else None)
    return writer.close(ground_truth=ground_truth, tracks=tracks)


def _truth_frame(t, label_of=lambda obj, t: 3 + obj + 2 * (t % 3), drop=()):
    rgb = np.full((SIZE, SIZE, 3), 100, np.uint8)
    rgb[::4] = 140  # some texture for SSIM
    inst = np.zeros((SIZE, SIZE), np.uint16)
    for obj, (rows, cols) in SQUARES.items():
        if _visible(obj, t) and (obj, t) not in drop:
            rgb[rows, cols] = (220, 40 + 150 * obj, 40)
            inst[rows, cols] = label_of(obj, t)
    return rgb, inst


def _counterfactuals(objects):
    """The ``events`` entries of the synthetic ground truth, found by the generator's event code."""
    cameras = Cameras.from_nerfstudio({"fl_x": _camera(0).fx, "fl_y": _camera(0).fy, "cx": _camera(0).cx,
                                       "cy": _camera(0).cy, "w": SIZE, "h": SIZE},
                                      np.stack([_camera(t).c2w_nerfstudio.numpy() for t in range(T)]))
    return [{"id": e["id"], "scored_at": e["scored_at"],
             "counterfactual": {"file_path": f"counterfactual/{e['scored_at']:06d}_{e['id']}.png",
                                "mask_file_path": f"counterfactual/{e['scored_at']:06d}_{e['id']}_mask.png"}}
            for e in hide_events(objects, cameras, 10.0)]


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("perm")
    objects = [{"id": obj + 1, "name": f"obj{obj}", "extent": [0.05, 0.05, 0.05],
                "poses": [[0.0, 0.0, 0.0, 1, 0, 0, 0]] * T,
                "labels": [3 + obj + 2 * (t % 3) if _visible(obj, t) else 0 for t in range(T)],
                "visible_fraction": [1.0 if _visible(obj, t) else 0.0 for t in range(T)]} for obj in SQUARES]
    objects.append({"id": 9, "name": "never_seen", "extent": [0.05] * 3, "poses": [[0.0, 0, 0, 1, 0, 0, 0]] * T,
                    "labels": [0] * T})
    gt = _write(root / "gt", _truth_frame, ground_truth={"objects": objects, "events": _counterfactuals(objects)})
    for entry in json.loads((gt / "ground_truth.json").read_text())["events"]:  # as the generator draws them
        c, obj = entry["scored_at"], entry["id"] - 1
        without, _ = _truth_frame(c, drop={(obj, c)})
        (gt / "counterfactual").mkdir(exist_ok=True)
        imageio.imwrite(gt / entry["counterfactual"]["file_path"], without)
        imageio.imwrite(gt / entry["counterfactual"]["mask_file_path"],
                        ((_truth_frame(c)[0] != without).any(-1) * 255).astype(np.uint8))

    def tracks(drop=()):
        return {"objects": [{"id": 10 + obj, "poses": [[0.0, 0, 0, 1, 0, 0, 0]] * (T - K),
                             "labels": [0 if not _visible(obj, t) or (obj, t) in drop else 10 + obj
                                        for t in range(K, T)]} for obj in SQUARES]}

    consistent = lambda obj, t: 10 + obj  # noqa: E731
    perfect = _write(root / "perfect", lambda t: _truth_frame(t, consistent), tracks=tracks(), first=K)
    gone = {(0, t) for t in range(15, T)}  # forgets object A once it is hidden
    forgetful = _write(root / "forgetful", lambda t: _truth_frame(t, consistent, gone), tracks=tracks(gone),
                       first=K)
    rgb_only = _write(root / "rgb_only", lambda t: _truth_frame(t, consistent), instances=False, first=K)
    return gt, perfect, forgetful, rgb_only


def test_events_of_the_synthetic_episode(episodes):
    gt = episodes[0]
    truth = json.loads((gt / "ground_truth.json").read_text())["objects"]
    meta = json.loads((gt / "transforms.json").read_text())
    cameras = Cameras.from_nerfstudio(meta, np.array([f["transform_matrix"] for f in meta["frames"]]))
    events = hide_events(truth, cameras, 10.0, start=K)
    summary = [(e["name"], e["last_visible"], e["reappears"], e["cause"], e["scored_at"]) for e in events]
    assert summary == [("obj0", 14, 25, "occluded", 25), ("obj0", 29, 35, "out_of_view", 35),
                       ("obj1", 29, 35, "out_of_view", 35)]
    assert [e["hidden_seconds"] for e in events] == pytest.approx([1.0, 0.5, 0.5])


def test_a_perfect_prediction_scores_perfectly(episodes):
    gt, perfect, _, _ = episodes
    r = evaluate_prediction(gt, perfect, EvaluationConfig(workers=1, progress=False))
    assert r["opr_all"] == 1.0 and r["permanence"]["events"] == 3
    assert r["permanence"]["bins"]["occluded"]["<=1s"] == {
        "events": 1, "opr": 1.0, "opr_events": 1, "presence": 1.0, "presence_events": 1, "opr_rgb": 1.0,
        "opr_rgb_events": 1, "mean_iou": 1.0}
    assert r["opr_rgb"] == 1.0 and r["permanence"]["presence_all"] == 1.0
    # nothing moves: every event is `still`; the squares are 6x6 px, 12x12 once dilated by 3 px
    assert r["permanence"]["classes"]["still"]["events"] == 3 and r["permanence"]["classes"]["moved"]["events"] == 0
    assert [e["opr_rgb_pixels"] for e in r["events"]] == [144, 144, 144]
    assert r["identity"]["idf1"] == 1.0 and r["identity"]["vanishings"] == 0
    assert r["identity"]["spurious_objects"] == 0 and r["identity"]["id_switches"] == 0
    # hidden frames after first sight: A 15-24 and 30-34, B 30-34; "never_seen" is not counted
    assert r["hidden_state"]["hidden_frames"] == 20 and r["hidden_state"]["success_2cm"] == 1.0
    assert r["drift"]["psnr_per_second"][0] == math.inf and r["drift"]["abs_rel_per_second"][0] == 0.0
    assert r["motion"]["spatial_iou"] == 1.0 and r["motion"]["mse"] == 0.0
    assert r["not_available"] == {}


def test_a_forgetful_prediction_fails_the_hidden_object(episodes):
    gt, _, forgetful, _ = episodes
    r = evaluate_prediction(gt, forgetful, EvaluationConfig(workers=1, progress=False))
    assert r["opr_all"] == pytest.approx(1 / 3)  # only obj1's return is right
    assert r["opr_rgb"] == pytest.approx(1 / 3) and r["permanence"]["presence_all"] == pytest.approx(1 / 3)
    assert r["permanence"]["bins"]["out_of_view"]["<=1s"]["opr"] == pytest.approx(0.5)
    # A is visible in truth in 25-29 and 35-39 without a prediction: two vanishings in 3 s
    assert r["identity"]["vanishings"] == 2
    assert r["identity"]["vanishings_per_min"] == pytest.approx(2 / (30 / 600))
    # its track keeps a pose while hidden (the poses were written), so hidden-state error is still 0
    assert r["hidden_state"]["success_2cm"] == 1.0
    assert r["drift"]["psnr_per_second"][0] == math.inf > r["drift"]["psnr_per_second"][1]


def test_rgb_only_prediction_says_not_available(episodes, tmp_path):
    gt, perfect, _, rgb_only = episodes
    r = evaluate_prediction(gt, rgb_only, EvaluationConfig(workers=1, progress=False))
    assert r["opr_all"] is None and "identity" not in r
    assert "no instances" in r["not_available"]["opr"]
    assert r["opr_rgb"] == 1.0  # from RGB alone: every object drawn where the truth has it
    assert r["hidden_state"] is None
    assert r["drift"]["psnr_per_second"][0] == math.inf  # image metrics still work
    no_truth = evaluate_prediction(perfect, rgb_only, EvaluationConfig(workers=1, progress=False))
    assert "no ground_truth.json" in no_truth["not_available"]["permanence"] and no_truth["opr_all"] is None
    report = evaluate(str(gt), [str(perfect), str(rgb_only)], str(tmp_path / "out"),
                      config=EvaluationConfig(workers=1, progress=False))
    assert report["opr_all"] == 1.0 and set(report["predictions"]) == {"perfect", "rgb_only"}
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["predictions"]["rgb_only"]["opr_all"] is None
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| OPR, all events | 100.0% | n/a |" in md
    assert (tmp_path / "out" / "permanence.png").stat().st_size > 0 and (tmp_path / "out" / "drift.png").exists()


def test_prediction_times_must_match_ground_truth(episodes, tmp_path):
    from splatworld.errors import EpisodeFormatError

    gt = episodes[0]
    writer = EpisodeWriter(tmp_path / "odd", _camera(0), 10.0)
    writer.write(np.zeros((SIZE, SIZE, 3), np.uint8), _camera(0).c2w_nerfstudio.numpy(), 100.0)
    with pytest.raises(EpisodeFormatError, match=r"frame 0.*'time'.*no ground-truth frame"):
        evaluate_prediction(gt, writer.close(), EvaluationConfig(workers=1, progress=False))


def test_evaluate_cli_side_by_side(episodes, tmp_path, capsys):
    from splatworld.cli import main

    gt, perfect, forgetful, _ = episodes
    out = tmp_path / "cli"
    assert main(["evaluate", f"gt={gt}", f"pred=[{perfect},{forgetful}]", "names=[good,bad]", f"out={out}",
                 "workers=1", "progress=false"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["opr_all"] == 1.0 and report["predictions"]["bad"]["opr_all"] == pytest.approx(1 / 3)
    assert "| OPR, all events | 100.0% | 33.3% |" in capsys.readouterr().out
    assert main(["evaluate", f"gt={gt}", f"out={out}"]) == 2  # pred missing: a clear error, no traceback


# ------------------------------------------------------------------ predictions as frames or video
def _frames_of(episode, folder, suffix=".png", size=None):
    folder.mkdir()
    for n, file in enumerate(sorted((episode / "rgb").iterdir())):
        image = imageio.imread(file)
        if size is not None:
            image = np.kron(image, np.ones((size // SIZE, size // SIZE, 1), np.uint8))
        imageio.imwrite(folder / f"{n}{suffix}", image)
    return folder


def test_frames_and_videos_score_from_rgb_alone(episodes, tmp_path):
    from splatworld.render.video import FrameWriter

    gt, _, forgetful, _ = episodes
    config = EvaluationConfig(workers=1, progress=False)
    frames = _frames_of(forgetful, tmp_path / "frames")
    r = evaluate_prediction(gt, frames, config, observe_until=K)
    assert r["opr_rgb"] == pytest.approx(1 / 3) and r["opr_all"] is None and r["frames"] == T - K
    with FrameWriter(tmp_path / "forgetful.mp4", fps=10.0) as video:
        for file in sorted((forgetful / "rgb").iterdir()):
            video.write(imageio.imread(file))
    r = evaluate_prediction(gt, tmp_path / "forgetful.mp4", config, observe_until=K)
    assert r["opr_rgb"] == pytest.approx(1 / 3)  # lossy, but the verdicts hold


def test_malformed_predictions_are_refused_naming_expected_and_actual(episodes, tmp_path):
    from splatworld.errors import ConfigError
    from splatworld.evaluation.predictions import PredictionError

    gt, perfect, _, _ = episodes
    config = EvaluationConfig(workers=1, progress=False)
    frames = _frames_of(perfect, tmp_path / "frames")
    with pytest.raises(PredictionError, match="frames: 30 frames, expected 31"):
        evaluate_prediction(gt, frames, config, observe_until=K - 1)
    with pytest.raises(ConfigError, match="needs observe_until"):
        evaluate_prediction(gt, frames, config)
    big = _frames_of(perfect, tmp_path / "big", size=2 * SIZE)
    with pytest.raises(PredictionError, match="frames are 64x64, expected 32x32 .resize=true"):
        evaluate_prediction(gt, big, config, observe_until=K)
    resized = evaluate_prediction(gt, big, EvaluationConfig(workers=1, progress=False, resize=True), observe_until=K)
    assert resized["opr_rgb"] == 1.0
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(PredictionError, match="broken.mp4.*unreadable video"):
        evaluate_prediction(gt, tmp_path / "broken.mp4", config, observe_until=K)
    with pytest.raises(PredictionError, match="no such file"):
        evaluate_prediction(gt, tmp_path / "missing", config, observe_until=K)


def test_event_classes_still_and_moved():
    """An object nudged 2 cm while hidden is `moved`; one back within 1 cm of where it was last seen
    and of where it was at the end of the observation is `still`, measured from the given k."""
    meta = {"fl_x": 30.0, "fl_y": 30.0, "cx": 16.0, "cy": 16.0, "w": SIZE, "h": SIZE}
    cameras = Cameras.from_nerfstudio(meta, np.stack([_camera(0).c2w_nerfstudio.numpy()] * 12))
    still = [[0.0, 0, 0, 1, 0, 0, 0]] * 12
    nudged = [[0.0, 0, 0, 1, 0, 0, 0]] * 6 + [[0.02, 0, 0, 1, 0, 0, 0]] * 6
    early = [[0.02, 0, 0, 1, 0, 0, 0]] * 2 + [[0.0, 0, 0, 1, 0, 0, 0]] * 10  # moved before the observation ended
    labels = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    objects = [{"poses": p, "labels": labels} for p in (still, nudged, early)]
    assert [e["class"] for e in hide_events(objects, cameras, 10.0, observed_until=5)] == ["still", "moved", "still"]
    # observed only up to frame 1: the third object was 2 cm away at the last observed frame
    assert [e["class"] for e in hide_events(objects, cameras, 10.0, observed_until=2)] == ["still", "moved", "moved"]


# ------------------------------------------------------------------ the return protocol
def test_return_protocol_calibration(episodes, tmp_path):
    """Ground truth as the prediction scores 1 on every score; the counterfactual frames (each event's
    object erased) score 0; last_frame (frame b - 1, where the object is hidden) scores 0."""
    from splatworld.evaluation.baselines import last_frame_returns
    from splatworld.evaluation.returns import ReturnWriter, evaluate_returns, return_events
    from splatworld.scene.episode import Episode

    gt = Episode(episodes[0])
    events = return_events(gt, gt.ground_truth())
    assert [(e["name"], e["reappears"], e["scored_at"], e["class"]) for e in events] == [
        ("obj0", 25, 25, "still"), ("obj0", 35, 35, "still"), ("obj1", 35, 35, "still")]
    truth, erased = ReturnWriter(tmp_path / "truth"), ReturnWriter(tmp_path / "erased")
    counterfactual = {(e["id"], e["scored_at"]): e["counterfactual"] for e in gt.ground_truth()["events"]}
    for n, e in enumerate(events):
        frame = gt[e["scored_at"]]
        truth.write(n, frame.rgb, frame.instances)
        label = gt.ground_truth()["objects"][e["object"]]["labels"][e["scored_at"]]
        without = imageio.imread(gt.path / counterfactual[e["id"], e["scored_at"]]["file_path"])
        erased.write(n, without, np.where(frame.instances == label, 0, frame.instances))
    config = EvaluationConfig(workers=1, progress=False)
    perfect = evaluate_returns(gt.path, truth.close(), config)
    assert (perfect["opr_all"], perfect["opr_rgb"], perfect["permanence"]["presence_all"]) == (1.0, 1.0, 1.0)
    gone = evaluate_returns(gt.path, erased.close(), config)
    assert (gone["opr_all"], gone["opr_rgb"], gone["permanence"]["presence_all"]) == (0.0, 0.0, 0.0)
    queries = [(e["reappears"], e["scored_at"]) for e in events]
    copied = evaluate_returns(gt.path, last_frame_returns(gt, queries, tmp_path / "last", progress=False), config)
    assert (copied["opr_all"], copied["opr_rgb"]) == (0.0, 0.0)
    assert copied["permanence"]["classes"]["still"]["events"] == 3
    from splatworld.evaluation.predictions import PredictionError

    (tmp_path / "last" / "000002.png").unlink()
    with pytest.raises(PredictionError, match="2 frames, expected 3 .one per event"):
        evaluate_returns(gt.path, tmp_path / "last", config)


# ------------------------------------------------------------------ calibration on a simulated episode
@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from splatworld.jobs.config import load_config
    from splatworld.scene.episode import Episode
    from splatworld.sim.generate import generate_episode

    out = tmp_path_factory.mktemp("sim") / "ep"
    return Episode(generate_episode(load_config("generate", [f"out={out}", "progress=false", "width=96", "height=96",
                                                             "scenario=occlusion", "seconds=20", "seed=0"])))


def test_ground_truth_as_the_prediction_scores_one_in_both_classes(simulated, tmp_path):
    """The held-out episode's own frames [k, T), with its labels as one consistent track per object,
    score 1.0 on OPR, presence and OPR_rgb for `still` and `moved` events alike."""
    k = 50
    truth = simulated.ground_truth()["objects"]
    writer = EpisodeWriter(tmp_path / "truth", simulated.camera(0), simulated.fps)
    for i in range(k, len(simulated)):
        frame = simulated[i]
        writer.write(frame.rgb, frame.info.transform_matrix, frame.info.time, instances=frame.instances)
    tracks = {"objects": [{"id": o["id"], "poses": o["poses"][k:], "labels": o["labels"][k:]} for o in truth]}
    r = evaluate_prediction(simulated.path, writer.close(tracks=tracks), EvaluationConfig(workers=1, progress=False))
    classes = r["permanence"]["classes"]
    assert classes["still"]["events"] >= 1 and classes["moved"]["events"] >= 1
    for group in ("still", "moved"):
        assert (classes[group]["opr"], classes[group]["presence"], classes[group]["opr_rgb"]) == (1.0, 1.0, 1.0)
    assert r["hidden_state"]["success_2cm"] == 1.0


def test_counterfactual_frames_erase_exactly_their_object(simulated):
    """The generator's counterfactual frame differs from the true frame only on the object's own
    pixels, and as a prediction it scores 0 on that object by OPR_rgb."""
    from splatworld.evaluation.permanence import opr_rgb_verdict

    truth = simulated.ground_truth()
    objects = {o["id"]: o for o in truth["objects"]}
    scored = [e for e in truth["events"] if "counterfactual" in e]
    assert scored
    for e in scored:
        c, frame = e["scored_at"], simulated[e["scored_at"]]
        without = imageio.imread(simulated.path / e["counterfactual"]["file_path"])
        differs = imageio.imread(simulated.path / e["counterfactual"]["mask_file_path"]) > 0
        own = frame.instances == objects[e["id"]]["labels"][c]
        assert np.array_equal(differs, own) and np.array_equal((frame.rgb != without).any(-1), differs)
        assert opr_rgb_verdict(without, frame.rgb, without, differs) in (False, None)
        assert opr_rgb_verdict(frame.rgb, frame.rgb, without, differs) in (True, None)


def test_opr_rgb_leaves_out_events_of_too_few_pixels():
    truth = np.zeros((40, 40, 3), np.uint8)
    truth[20, 20] = 255  # one pixel differs: 7 x 7 = 49 once dilated
    without = np.zeros_like(truth)
    differs = (truth != without).any(-1)
    assert opr_rgb_verdict(truth, truth, without, differs) is True
    assert opr_rgb_verdict(truth, truth, without, differs, min_pixels=50) is None
    # a tie (the prediction as far from both) is not presence
    half = np.full_like(truth, 0)
    assert opr_rgb_verdict(half, truth, truth, differs) is False


def test_presence_hand_cases():
    true = np.zeros((60, 80), bool)
    true[10:14, 10:14] = True  # centroid (11.5, 11.5)
    assert mask_scores(true, true) == {"iou": 1.0, "presence": True}
    assert mask_scores(true, np.roll(true, 25, axis=1)) == {"iou": 0.0, "presence": True}  # 25 px: present
    assert mask_scores(true, np.roll(true, 26, axis=1))["presence"] is False
    assert mask_scores(true, None) == {"iou": 0.0, "presence": False}
    assert mask_scores(true, np.zeros_like(true)) == {"iou": 0.0, "presence": False}
    half = np.zeros_like(true)
    half[10:14, 12:16] = True  # 8 of 24 pixels shared
    assert mask_scores(true, half)["iou"] == pytest.approx(8 / 24)


def test_agreement_of_rgb_and_mask_verdicts():
    from splatworld.evaluation.suite import agreement

    events = [{"iou": 0.6, "presence": True, "opr_rgb": True}, {"iou": 0.2, "presence": True, "opr_rgb": True},
              {"iou": None, "presence": None, "opr_rgb": False}, {"iou": 0.0, "presence": False, "opr_rgb": False},
              {"iou": 0.7, "presence": True, "opr_rgb": None}]
    assert agreement(events) == {"events": 3, "mask_yes_rgb_yes": 1, "mask_yes_rgb_no": 0, "mask_no_rgb_yes": 1,
                                 "mask_no_rgb_no": 1, "agreement": pytest.approx(2 / 3)}
    assert agreement(events, "presence")["agreement"] == 1.0
    assert agreement([])["agreement"] is None
