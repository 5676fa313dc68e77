"""The viewer: its timeline against the memory and the episodes it reads, its splats against the
covariance definition, and the page itself drawn by headless Chromium (skipped only where
Chromium cannot start)."""

import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from splatworld.cli import main
from splatworld.errors import ConfigError
from splatworld.jobs.config import load_config
from splatworld.jobs.view import free_port
from splatworld.memory import SceneMemory
from splatworld.scene import Camera, look_at
from splatworld.scene.episode import Episode
from splatworld.scene.gaussians import Gaussians
from splatworld.sim.generate import generate_episode
from splatworld.viewer import MemoryViewer, Timeline, read_inputs, splat_arrays
from splatworld.viewer.browser import (BrowserUnavailableError, find_chromium, headless_chromium, wait_for_client,
                                       wait_until_drawn)
from splatworld.viewer.timeline import IMAGINED, IMAGINED_HIDDEN

OBSERVED = 80  # frames observed; the pushed teddy moves from frame 37 on


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 12 s `push` episode (an object pushed 12 cm while observed), its first 80 frames observed
    and the other 40 imagined."""
    root = tmp_path_factory.mktemp("view")
    episode = generate_episode(load_config("generate", [f"out={root / 'ep'}", "progress=false", "width=96",
                                                        "height=96", "scenario=push", "seconds=12", "seed=0"]))
    assert main(["imagine", f"episode={episode}", f"observe_until={OBSERVED}", f"out={root / 'im'}", "model=static",
                 "backend=cpu", "progress=false", "video=false"]) == 0
    return {"memory": root / "im" / "memory.pt", "episode": Episode(episode), "imagined": Episode(root / "im")}


def test_timeline_holds_what_the_memory_episode_and_imagination_say(run):
    memory, timeline = read_inputs(run["memory"], run["episode"].path, run["imagined"].path)
    episode, imagined = run["episode"], run["imagined"]
    assert len(timeline) == len(episode) and timeline.observed_until == OBSERVED == memory.frame_count
    np.testing.assert_allclose(timeline.times, [episode.info(i).time for i in range(len(episode))])
    predicted = {o["id"]: o for o in imagined.tracks()["objects"]}
    for obj in timeline.objects:
        track = next(t for t in memory.tracks if t.id == obj.id)
        for f in (track.first_frame, OBSERVED - 1):  # observed: the track's own record of that frame
            np.testing.assert_array_equal(obj.poses[f], track.pose_at(f))
            assert obj.states[f] == track.states[f - track.first_frame]
            assert obj.beliefs[f] == track.beliefs[f - track.first_frame]
        assert np.isnan(obj.poses[:track.first_frame]).all()
        for j in (0, len(imagined) - 1):  # imagined: the imagined tracks.json
            np.testing.assert_allclose(obj.poses[OBSERVED + j], predicted[obj.id]["poses"][j])
            assert obj.states[OBSERVED + j] == (IMAGINED if predicted[obj.id]["labels"][j] else IMAGINED_HIDDEN)
        low, high = track.model.points.min(axis=0), track.model.points.max(axis=0)
        np.testing.assert_allclose(obj.box_center, (low + high) / 2)
    truth = episode.ground_truth()["objects"]
    assert [t.id for t in timeline.truth] == [o["id"] for o in truth]
    np.testing.assert_allclose(timeline.truth[2].poses, truth[2]["poses"])
    np.testing.assert_array_equal(timeline.image(5), episode[5].rgb)
    np.testing.assert_array_equal(timeline.image(OBSERVED + 3), imagined[3].rgb)
    assert (timeline.phase(OBSERVED - 1), timeline.phase(OBSERVED)) == ("observed", "imagined")
    # the camera: OpenCV camera-to-world, the inverse of the episode camera's world-to-camera
    np.testing.assert_allclose(timeline.cameras[7] @ episode.camera(7).viewmat.numpy(), np.eye(4), atol=1e-9)

    alone = Timeline.read(memory)  # the memory alone: its own frames and times
    assert len(alone) == OBSERVED and alone.images == [None] * OBSERVED and not alone.truth
    np.testing.assert_allclose(alone.times, memory.times)


def test_timeline_rejects_episodes_that_do_not_fit_the_memory(run, tmp_path):
    with pytest.raises(ConfigError, match="no memory file"):
        read_inputs(tmp_path / "missing.pt")
    memory = SceneMemory.load(run["memory"])
    memory.frame_count = OBSERVED - 5  # as if it had observed fewer frames than the imagination started from
    with pytest.raises(ConfigError, match=f"imagined from frame {OBSERVED}"):
        Timeline.read(memory, run["episode"], run["imagined"])
    with pytest.raises(ConfigError, match="no episode"):
        read_inputs(run["memory"], tmp_path)


def test_splat_arrays_are_the_covariances_and_colours_of_the_gaussians():
    # a quarter turn about z with std devs (1, 2, 3): x and y swap, so the covariance is diag(4, 1, 9)
    s = np.sqrt(0.5)
    g = Gaussians(means=torch.tensor([[1.0, 2.0, 3.0]]), quats=torch.tensor([[s, 0.0, 0.0, s]]),
                  log_scales=torch.log(torch.tensor([[1.0, 2.0, 3.0]])), opacity_logits=torch.tensor([0.0]),
                  sh=torch.tensor([[[0.0, 1.0, -5.0]]]), object_ids=torch.tensor([0]))
    centers, covariances, rgbs, opacities = splat_arrays(g)
    np.testing.assert_allclose(centers, [[1, 2, 3]])
    np.testing.assert_allclose(covariances[0], np.diag([4.0, 1.0, 9.0]), atol=1e-5)
    np.testing.assert_allclose(rgbs, [[0.5, 0.5 + 0.28209479, 0.0]], atol=1e-6)  # SH DC -> RGB, clamped to [0, 1]
    np.testing.assert_allclose(opacities, [[0.5]])


def _box_corners(obj, frame: int) -> np.ndarray:
    from splatworld.scene.transforms import pose_to_matrix

    pose = pose_to_matrix(torch.from_numpy(obj.poses[frame])).numpy()
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    local = obj.box_center + signs * obj.box_size / 2
    return local @ pose[:3, :3].T + pose[:3, 3]


def test_the_page_draws_the_splats_where_the_boxes_project_and_follows_the_slider(run, tmp_path):
    import viser

    from splatworld.scene.transforms import rotmat_to_quat

    memory, timeline = read_inputs(run["memory"], run["episode"].path, run["imagined"].path)
    port = free_port("127.0.0.1")
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    viewer = MemoryViewer(server, memory, timeline, screenshot_dir=tmp_path)
    try:
        with headless_chromium(f"http://127.0.0.1:{port}", 640, 480) as browser:
            try:
                client = wait_for_client(server, browser, timeout=60.0)
                wait_until_drawn(client)
            except BrowserUnavailableError as exc:
                pytest.skip(f"Chromium cannot start here: {exc}")
            # the pushed object, before and after its push
            moved = max(timeline.objects, key=lambda o: np.nanmax(np.linalg.norm(o.poses[:OBSERVED, :3] -
                                                                                    o.poses[OBSERVED - 1, :3], axis=1)))
            before = int(np.flatnonzero(~np.isnan(moved.poses[:, 0]))[0])
            after = OBSERVED - 1
            travel = np.linalg.norm(moved.poses[after, :3] - moved.poses[before, :3])
            assert travel > 0.05
            middle = (moved.poses[before, :3] + moved.poses[after, :3]) / 2
            width, height = 320, 240
            probe = Camera.from_fov(50.0, width, height, look_at(middle + np.array([0.0, -0.25, 0.35]), middle))
            c2w = torch.linalg.inv(probe.viewmat)
            camera = {"wxyz": rotmat_to_quat(c2w[:3, :3]).numpy(), "position": c2w[:3, 3].numpy(),
                      "fov": float(np.deg2rad(50.0))}

            def project(points: np.ndarray) -> np.ndarray:
                return probe.project(torch.from_numpy(points))[0].numpy()

            splats, track = viewer.objects[moved.id].splats, viewer.objects[moved.id].track

            def settled_render() -> np.ndarray:
                """The probe's view once two renders in a row agree on nearly every pixel (the
                scene's nodes are redrawn asynchronously after each change)."""
                previous = client.get_render(height, width, **camera, timeout=60.0).astype(int)
                for _ in range(20):
                    frame = client.get_render(height, width, **camera, timeout=60.0).astype(int)
                    if (np.abs(frame - previous).sum(axis=-1) > 30).sum() < 5:
                        return frame
                    previous = frame
                raise AssertionError("the probe's view kept changing")

            def drawn_where(frame: int) -> tuple[np.ndarray, np.ndarray]:
                """Pixels the object's splats change at ``frame`` (with them vs without), and its
                box's projected footprint."""
                viewer.slider.value = frame
                wait_until_drawn(client)  # labels are redrawn asynchronously: let them settle first
                with_splats = settled_render()
                splats.visible = False
                wait_until_drawn(client)
                without = settled_render()
                splats.visible = True
                changed = np.abs(with_splats - without).sum(axis=-1) > 30
                uv = project(_box_corners(moved, frame))
                box = np.zeros((height, width), bool)
                (u0, v0), (u1, v1) = np.floor(uv.min(axis=0)).astype(int), np.ceil(uv.max(axis=0)).astype(int)
                box[max(v0 - 2, 0):v1 + 3, max(u0 - 2, 0):u1 + 3] = True
                return changed, box

            def drawn_settled(frame: int) -> tuple[np.ndarray, np.ndarray]:
                """:func:`drawn_where`, measured again (up to three times) while the object's pixels
                lie outside its box: the browser applies the slider's updates and sorts the splats
                asynchronously, and a render pair may straddle them (3 runs of 9, here). Splats
                drawn in the wrong place fail every time."""
                for _ in range(3):
                    changed, box = drawn_where(frame)
                    if (changed & box).sum() >= 0.9 * changed.sum():
                        break
                return changed, box

            changed, box = drawn_settled(before)
            assert changed.sum() >= 20, "the object's splats draw nothing"
            assert (changed & box).sum() >= 0.9 * changed.sum()  # where its box projects
            points_before = np.asarray(track.points).reshape(-1, 3)

            changed_after, box_after = drawn_settled(after)  # the slider, moved through viser's API
            assert changed_after.sum() >= 20 and (changed_after & box_after).sum() >= 0.9 * changed_after.sum()
            # it moved on screen as its box did (centroid of its pixels vs its box centre's projection)
            centres = project(np.stack([_box_corners(moved, f).mean(axis=0) for f in (before, after)]))
            shift = np.diff(centres, axis=0)[0]
            seen = np.array([np.argwhere(c)[:, ::-1].mean(axis=0) for c in (changed, changed_after)])
            assert np.linalg.norm(shift) > 15
            assert np.linalg.norm(np.diff(seen, axis=0)[0] - shift) < 0.25 * np.linalg.norm(shift)
            points_after = np.asarray(track.points).reshape(-1, 3)
            assert len(points_after) > len(points_before)  # the track grew along the push
            np.testing.assert_allclose(points_after[-1], moved.poses[after, :3], atol=1e-6)

            shot = viewer.save_view(client, tmp_path / "view.png", 640, 480)
            import imageio.v3 as iio

            image = iio.imread(shot)
            assert image.shape == (480, 640, 3) and image.std() > 10  # a scene, not a blank page
    finally:
        viewer.close()
        server.stop()


def test_play_advances_the_slider_at_the_chosen_speed(run):
    import viser

    memory, timeline = read_inputs(run["memory"], run["episode"].path)
    server = viser.ViserServer(host="127.0.0.1", port=free_port("127.0.0.1"), verbose=False)
    viewer = MemoryViewer(server, memory, timeline)
    try:
        viewer.speed.value = 8.0
        started = time.perf_counter()
        viewer.playing.value = True
        time.sleep(1.0)
        shown = viewer.pause()
        elapsed = time.perf_counter() - started
        assert viewer.slider.value == shown
        time.sleep(0.3)  # three ticks: paused, none of them moves on
        assert viewer.frame == shown and viewer.slider.value == shown
        # 8 s of episode per second of play, in ticks of 0.1 s
        assert 8.0 * (elapsed - 0.3) <= timeline.times[shown] - timeline.times[0] <= 8.0 * elapsed + 1e-6
        viewer.playing.value = True  # it stops at the last frame
        time.sleep(2.0)
        assert viewer.frame == len(timeline) - 1 and not viewer.playing.value
    finally:
        viewer.close()
        server.stop()


def test_view_cli_port_in_use_ctrl_c_screenshot_and_recording(run, tmp_path):
    args = [f"memory={run['memory']}", f"episode={run['episode'].path}", f"imagined={run['imagined'].path}"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.run([sys.executable, "-m", "splatworld.cli", "view", *args, f"port={port}"],
                                 capture_output=True, text=True, timeout=120)
    assert process.returncode == 2 and f"port {port}" in process.stderr

    port = free_port("127.0.0.1")
    server = subprocess.Popen([sys.executable, "-u", "-m", "splatworld.cli", "view", *args, f"port={port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in server.stdout:  # serving once the scene is ready
            lines.append(line)
            if "scene ready" in line:
                break
        assert any(f"http://127.0.0.1:{port}" in line for line in lines), lines
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    with socket.socket() as again:  # the port is released
        again.bind(("127.0.0.1", port))

    record = tmp_path / "run.html"
    assert main(["view", *args, f"record={record}", "record_every=2.0"]) == 0
    page = record.read_text()
    assert page.startswith("<!") and "__VISER_EMBED_DATA__" in page and len(page) > 100_000

    if find_chromium() is None:
        pytest.skip("no Chromium on PATH (scripts/setup.sh installs Debian's chromium)")
    shot = tmp_path / "shot.png"
    assert main(["view", *args, f"screenshot={shot}", "screenshot_size=[320,240]", "frame=60"]) == 0
    import imageio.v3 as iio

    image = iio.imread(shot)
    assert image.shape == (240, 320, 3) and image.std() > 10
