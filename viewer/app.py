"""The memory in a browser: a viser scene of the scaffold, the objects, their tracks and the camera.

:class:`MemoryViewer` puts everything that does not change with time on the server once (the
static splats, each object's splats in its own frame, the floor, the camera path) and, for each
frame the time slider asks for, moves what does: object frames, box colours and labels, track
polylines, true boxes, the current camera's frustum and image. A frame costs a few small
messages, not a scene: the splats never travel again.

Conventions: world z up; viser's cameras and frustums are OpenCV (x right, y down, z forward),
as the timeline's camera-to-world matrices are.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import viser

from splatworld.atomic import atomic_write, atomic_write_text
from splatworld.errors import ConfigError
from splatworld.memory import SceneMemory
from splatworld.memory.tracks import TrackState
from splatworld.render.projection import covariance_3d
from splatworld.scene.gaussians import Gaussians, sh0_to_rgb
from splatworld.scene.transforms import rotmat_to_quat
from splatworld.viewer.timeline import STATE_COLORS, Timeline

TRUTH_COLOR = (20, 20, 20)
CAMERA_COLOR = (200, 30, 30)
PATH_COLOR = (120, 120, 120)


@dataclass(frozen=True)
class ViewerConfig:
    """What the viewer draws and how much it sends per frame.

    Attributes:
        track_points: at most this many points of a track's polyline are sent per frame (evenly
            spaced in time, the last one always the current pose).
        path_points: at most this many points of the camera path.
        frustum_scale: size of the current camera's frustum (m).
        floor_cell: texel size of the floor drawn under the scene (m); 0 draws no floor.
        floor_reach: how far the floor reaches from the table's centre (m).
        play_hz: how often play advances the slider (per second).
        image_width: width of the image panel (pixels; the image keeps its aspect).
    """

    track_points: int = 300
    path_points: int = 2000
    frustum_scale: float = 0.08
    floor_cell: float = 0.02
    floor_reach: float = 1.5
    play_hz: float = 10.0
    image_width: int = 320


class ObjectNodes(NamedTuple):
    """The scene nodes of one remembered object: its frame (moved to its pose) holding its splats,
    box and label, and its track polyline (in the world frame)."""

    frame: viser.FrameHandle
    splats: viser.GaussianSplatHandle
    box: viser.BoxHandle
    label: viser.LabelHandle
    track: viser.LineSegmentsHandle


def splat_arrays(gaussians: Gaussians) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """viser's Gaussian-splat arrays of ``gaussians`` (view-independent colour: the SH DC term):
    centres ``[N, 3]``, covariances ``[N, 3, 3]``, RGB ``[N, 3]`` in [0, 1], opacities ``[N, 1]``."""
    g = gaussians.to(torch.float32)
    cov = covariance_3d(g.quats, g.scales)
    rgb = sh0_to_rgb(g.sh[:, 0]).clamp(0, 1)
    return (g.means.numpy(), cov.numpy(), rgb.numpy(), g.opacities[:, None].numpy())


def _subsample(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``n`` items, evenly spaced, the first and the last included."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _segments(points: np.ndarray) -> np.ndarray:
    """``[N - 1, 2, 3]`` line segments joining consecutive ``points [N, 3]``."""
    return np.stack([points[:-1], points[1:]], axis=1)


def check_recording_path(path: str | Path) -> Path:
    """``path`` as a :class:`Path` if it names a recording :meth:`MemoryViewer.record` writes."""
    path = Path(path)
    if path.suffix not in (".html", ".viser"):
        raise ConfigError(f"view: record={path} must end in .html (a self-contained page) or .viser")
    return path


def _home(memory: SceneMemory) -> np.ndarray:
    """``[3]`` where the viewer looks first: the centre of the support plane's observed part, or
    the static map's centre."""
    plane = memory.support_plane
    if plane is not None:
        x0, y0, x1, y1 = memory.static_map.support_region
        x, y = (x0 + x1) / 2, (y0 + y1) / 2
        return np.array([x, y, -(plane[0] * x + plane[1] * y + plane[3]) / plane[2]])
    points = memory.static.points
    return points.mean(axis=0) if len(points) else np.zeros(3)


def _same(a, b) -> bool:
    """``a == b`` for values, arrays and tuples of them."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def _state_color(state: str) -> tuple[int, int, int]:
    return STATE_COLORS.get(state, STATE_COLORS[TrackState.VISIBLE.value])


def _label(object_id: int, state: str, belief: float) -> str:
    belief_text = "" if np.isnan(belief) else f" b={belief:.2f}"
    return f"#{object_id} {state}{belief_text}"


class MemoryViewer:
    """A viser scene of ``memory`` over ``timeline``, with a time slider, play / pause, layer
    toggles, an image panel and a save-PNG button.

    Attributes:
        objects: each object's scene nodes (:class:`ObjectNodes`), by id.
        slider, playing, speed: the time slider, the play checkbox and the speed slider (viser GUI handles).

    Args:
        server: a running :class:`viser.ViserServer`.
        memory: the memory the timeline was read from (its splats are drawn).
        timeline: see :class:`~splatworld.viewer.timeline.Timeline`.
        config: see :class:`ViewerConfig`.
        screenshot_dir: where the save-PNG button writes.
        first_frame: the frame shown first.
    """

    def __init__(self, server: viser.ViserServer, memory: SceneMemory, timeline: Timeline,
                 config: ViewerConfig | None = None, screenshot_dir: str | Path = ".", first_frame: int = 0):
        self.server, self.timeline = server, timeline
        self.config = config or ViewerConfig()
        self.screenshot_dir = Path(screenshot_dir)
        self.frame = -1
        self._lock = threading.RLock()  # show() sets the slider, whose callback calls show()
        self._shown: dict[str, object] = {}  # node key -> last value sent (only changes are sent)
        self._stop = threading.Event()
        server.scene.set_up_direction("+z")
        self._static(memory)
        self._objects(memory)
        self._truth()
        self._camera()
        self._gui()
        self._initial_camera()
        self.show(first_frame)
        self._player = threading.Thread(target=self._play, daemon=True, name="splatworld-view-play")
        self._player.start()

    # ------------------------------------------------------------------ build
    def _static(self, memory: SceneMemory) -> None:
        self.home = _home(memory)
        static = memory.static_gaussians()
        if len(static):
            self.server.scene.add_gaussian_splats("/static", *splat_arrays(static))
        ground = memory.static_map.ground
        if ground is not None and self.config.floor_cell > 0:
            self._floor(ground)

    def _floor(self, ground) -> None:
        """The memory's floor (plane and fitted pattern) as coloured squares around the table."""
        cell, reach = self.config.floor_cell, self.config.floor_reach
        low, high = self.home[:2] - reach, self.home[:2] + reach
        xs, ys = np.arange(low[0], high[0], cell), np.arange(low[1], high[1], cell)
        xy = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
        a, b, c, d = ground.plane
        z = -(a * xy[:, 0] + b * xy[:, 1] + d) / c
        if ground.period > 0:
            cells = ground.texture.shape[0]
            uv = np.clip(np.floor(np.remainder(xy / ground.period, 1.0) * cells).astype(int), 0, cells - 1)
            colors = ground.texture[uv[:, 0], uv[:, 1]]
        else:
            colors = np.broadcast_to(ground.mean_color, (len(xy), 3))
        self.server.scene.add_point_cloud("/floor", np.column_stack([xy, z - 0.002]).astype(np.float32),
                                          np.clip(colors, 0, 1).astype(np.float32), point_size=cell,
                                          point_shape="square")

    def _objects(self, memory: SceneMemory) -> None:
        tracks = {t.id: t for t in memory.tracks}
        self.objects: dict[int, ObjectNodes] = {}
        for obj in self.timeline.objects:
            root = f"/objects/{obj.id}"
            frame = self.server.scene.add_frame(root, show_axes=False, visible=False)
            own = memory.track_gaussians(tracks[obj.id], np.eye(4), memory.config.object_splat_scale)
            splats = self.server.scene.add_gaussian_splats(f"{root}/splats", *splat_arrays(own))
            box = self.server.scene.add_box(f"{root}/box", color=STATE_COLORS[TrackState.VISIBLE.value],
                                            dimensions=obj.box_size, position=obj.box_center, wireframe=True,
                                            cast_shadow=False, receive_shadow=False)
            top = obj.box_center + np.array([0.0, 0.0, obj.box_size[2] / 2 + 0.01])
            label = self.server.scene.add_label(f"{root}/label", f"#{obj.id}", position=top, font_screen_scale=0.7,
                                                anchor="bottom-center")
            track = self.server.scene.add_line_segments(f"/tracks/{obj.id}", np.zeros((1, 2, 3), np.float32),
                                                        STATE_COLORS[TrackState.VISIBLE.value], thickness=0.004,
                                                        visible=False)
            self.objects[obj.id] = ObjectNodes(frame, splats, box, label, track)

    def _truth(self) -> None:
        self._truth_nodes = {}
        for obj in self.timeline.truth:
            frame = self.server.scene.add_frame(f"/truth/{obj.id}", show_axes=False, visible=False)
            self.server.scene.add_box(f"/truth/{obj.id}/box", color=TRUTH_COLOR, dimensions=obj.extent,
                                      wireframe=True, cast_shadow=False, receive_shadow=False)
            self.server.scene.add_label(f"/truth/{obj.id}/label", f"true {obj.name}",
                                        position=(0.0, 0.0, -obj.extent[2] / 2 - 0.01), font_screen_scale=0.6,
                                        anchor="top-center")
            self._truth_nodes[obj.id] = frame

    def _camera(self) -> None:
        centres = self.timeline.cameras[:, :3, 3]
        known = np.flatnonzero(~np.isnan(centres[:, 0]))
        self._frustum = None
        if len(known) >= 2:
            keep = known[_subsample(len(known), self.config.path_points)]
            self.server.scene.add_line_segments("/camera/path", _segments(centres[keep]).astype(np.float32),
                                                PATH_COLOR, thickness=0.003)
        if len(known):
            self._frustum = self.server.scene.add_camera_frustum(
                "/camera/current", fov=self.timeline.fov_y, aspect=self.timeline.aspect,
                scale=self.config.frustum_scale, color=CAMERA_COLOR, thickness=0.004, format="jpeg",
                jpeg_quality=85, visible=False)

    def _gui(self) -> None:
        gui, n = self.server.gui, len(self.timeline)
        self.slider = gui.add_slider("frame", min=0, max=max(n - 1, 1), step=1, initial_value=0)
        self.playing = gui.add_checkbox("play", initial_value=False)
        self.speed = gui.add_slider("speed (x real time)", min=0.25, max=32.0, step=0.25, initial_value=1.0)
        self.status = gui.add_markdown("")
        with gui.add_folder("layers"):
            self.layer_truth = gui.add_checkbox("true boxes", initial_value=bool(self.timeline.truth))
            self.layer_tracks = gui.add_checkbox("tracks", initial_value=True)
            self.layer_camera = gui.add_checkbox("camera", initial_value=True)
        image = self.timeline.image(0)
        self.panel = gui.add_image(image if image is not None else np.zeros((2, 2, 3), np.uint8), label="frame",
                                   format="jpeg")
        self.save_button = gui.add_button("save view as PNG")

        @self.slider.on_update
        def _(_event) -> None:
            self.show(int(self.slider.value))

        for toggle in (self.layer_truth, self.layer_tracks, self.layer_camera):
            toggle.on_update(lambda _event: self.show(self.frame, force=True))

        @self.save_button.on_click
        def _(event) -> None:
            if event.client is not None:
                path = self.save_view(event.client, self.screenshot_dir / f"view_{self.frame:06d}.png")
                event.client.add_notification("saved", str(path), auto_close_seconds=4.0)

    def _initial_camera(self) -> None:
        """Start above and behind the first frame's camera, looking at the table (the support plane's
        observed part) or else at the static map's centre, with the episode camera's field of view."""
        self.server.initial_camera.position = tuple(self.home + 1.1 * (self._first_eye() - self.home) + [0, 0, 0.4])
        self.server.initial_camera.look_at = tuple(self.home)
        self.server.initial_camera.up = (0.0, 0.0, 1.0)
        self.server.initial_camera.fov = float(self.timeline.fov_y)

    def _first_eye(self) -> np.ndarray:
        first = self.timeline.cameras[0]
        return first[:3, 3] if not np.isnan(first).any() else self.home + np.array([1.5, -1.5, 1.0])

    # ------------------------------------------------------------------- show
    def _send(self, key: str, value, apply) -> None:
        """``apply(value)`` unless ``value`` is what was last sent for ``key``."""
        if key not in self._shown or not _same(self._shown[key], value):
            apply(value)
            self._shown[key] = value

    def show(self, frame: int, force: bool = False) -> None:
        """Move the scene to ``frame`` (clamped to the timeline); ``force`` re-applies the layers."""
        frame = int(np.clip(frame, 0, len(self.timeline) - 1))
        with self._lock:
            if frame == self.frame and not force:
                return
            self.frame = frame
            with self.server.atomic():
                self._show_objects(frame)
                self._show_truth(frame)
                self._show_camera(frame)
                if self.slider.value != frame:
                    self.slider.value = frame
            t = self.timeline
            self.status.content = (f"**t = {t.times[frame]:.1f} s** (frame {frame} of {len(t)}), "
                                   f"{t.phase(frame)}; memory observed frames [0, {t.observed_until})")

    def _show_objects(self, frame: int) -> None:
        tracks_on = self.layer_tracks.value
        for obj in self.timeline.objects:
            node, splats, box, label, track = self.objects[obj.id]
            pose, state, belief = obj.poses[frame], obj.states[frame], obj.beliefs[frame]
            alive = not np.isnan(pose[0])
            self._send(f"{obj.id}/visible", alive, lambda v: setattr(node, "visible", v))
            if not alive:
                self._send(f"{obj.id}/track", False, lambda v: setattr(track, "visible", v))
                continue
            self._send(f"{obj.id}/pose", pose, lambda p: (setattr(node, "position", p[:3]), setattr(node, "wxyz", p[3:])))
            self._send(f"{obj.id}/color", _state_color(state), lambda c: setattr(box, "color", c))
            self._send(f"{obj.id}/splats", state != TrackState.DISPLACED.value,
                       lambda v: setattr(splats, "visible", v))
            self._send(f"{obj.id}/label", _label(obj.id, state, belief), lambda s: setattr(label, "text", s))
            self._send(f"{obj.id}/track", tracks_on, lambda v: setattr(track, "visible", v))
            if tracks_on:
                born = np.flatnonzero(~np.isnan(obj.poses[:frame + 1, 0]))
                keep = born[_subsample(len(born), self.config.track_points)]
                if len(keep) == 1:
                    keep = np.repeat(keep, 2)
                colors = np.array([_state_color(obj.states[i]) for i in keep], np.uint8)
                self._send(f"{obj.id}/polyline", (obj.poses[keep, :3], colors), self._polyline(track))

    @staticmethod
    def _polyline(track):
        """Set ``track``'s segments to join ``points [N, 3]``, each coloured by ``colors [N, 3]`` at its ends."""
        def apply(value) -> None:
            points, colors = value
            track.points = _segments(points).astype(np.float32)
            track.colors = _segments(colors)
        return apply

    def _show_truth(self, frame: int) -> None:
        on = self.layer_truth.value
        for obj in self.timeline.truth:
            node = self._truth_nodes[obj.id]
            pose = obj.poses[frame] if frame < len(obj.poses) else obj.poses[-1]
            self._send(f"truth/{obj.id}/visible", on, lambda v: setattr(node, "visible", v))
            if on:
                self._send(f"truth/{obj.id}/pose", pose,
                           lambda p: (setattr(node, "position", p[:3]), setattr(node, "wxyz", p[3:])))

    def _show_camera(self, frame: int) -> None:
        image = self.timeline.image(frame)
        if image is not None:
            self.panel.image = image
        if self._frustum is None:
            return
        c2w = self.timeline.cameras[frame]
        on = self.layer_camera.value and not np.isnan(c2w).any()
        self._send("camera/visible", on, lambda v: setattr(self._frustum, "visible", v))
        if on:
            self._frustum.position = c2w[:3, 3]
            self._frustum.wxyz = rotmat_to_quat(torch.from_numpy(c2w[:3, :3])).numpy()
            if image is not None:
                self._frustum.image = image

    # ------------------------------------------------------------ play / save
    def _play(self) -> None:
        """Advance the slider while ``play`` is ticked, at ``speed`` times real time (by the clock,
        so late ticks do not slow it down)."""
        times = self.timeline.times
        last = time.monotonic()
        while not self._stop.wait(1.0 / self.config.play_hz):
            # a tick holds the lock from reading ``play`` to showing its frame, so pause() can wait it out
            with self._lock:
                now, elapsed = time.monotonic(), time.monotonic() - last
                if not self.playing.value:
                    last = now
                    continue
                target = times[max(self.frame, 0)] + self.speed.value * elapsed
                nxt = int(np.searchsorted(times, target, side="right")) - 1
                if nxt >= len(times) - 1 and self.frame >= len(times) - 1:
                    self.playing.value = False
                    continue
                if nxt > self.frame:  # a frame may last longer than a tick at low speed: wait for it
                    self.show(min(nxt, len(times) - 1))
                    last = now - (target - times[self.frame]) / self.speed.value

    def pause(self) -> int:
        """Untick ``play`` and wait for a tick in flight to finish; returns the frame shown, which
        no tick moves on from until ``play`` is ticked again."""
        self.playing.value = False
        with self._lock:
            return self.frame

    def save_view(self, client: viser.ClientHandle, path: str | Path, width: int = 1280, height: int = 960,
                  timeout: float = 60.0) -> Path:
        """Ask ``client``'s browser to draw its current view (at most its window's size) and write it
        as a PNG at ``path`` (atomically)."""
        import imageio.v3 as iio

        rgba = client.get_render(height=height, width=width, transport_format="png", timeout=timeout)
        alpha = rgba[..., 3:].astype(np.float32) / 255  # the page's background shows through where nothing is
        image = (rgba[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
        return atomic_write(path, lambda tmp: iio.imwrite(tmp, image, extension=".png"))

    def record(self, path: str | Path, every_seconds: float = 1.0, speed: float = 10.0) -> Path:
        """Write the whole timeline as a recording a browser opens without the memory: ``.html``
        (self-contained page) or ``.viser`` (viser's file), one state every ``every_seconds`` of
        episode time, played back at ``speed`` times real time."""
        path = check_recording_path(path)
        if every_seconds <= 0 or speed <= 0:
            raise ConfigError(f"view: record_every and record_speed must be > 0, got {every_seconds}, {speed}")
        times = self.timeline.times
        steps = np.unique(np.searchsorted(times, np.arange(times[0], times[-1] + 1e-9, every_seconds)))
        steps = steps[steps < len(times)]
        self.show(int(steps[0]), force=True)
        serializer = self.server.get_scene_serializer()
        for a, b in zip(steps[:-1], steps[1:]):
            serializer.insert_sleep(float(times[b] - times[a]) / speed)
            self.show(int(b))
        serializer.insert_sleep(1.0)
        if path.suffix == ".html":
            page = serializer.as_html()
            return atomic_write_text(path, page)
        data = serializer.serialize()
        return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))

    def close(self) -> None:
        """Stop playing (the server is the caller's to stop)."""
        self._stop.set()
        self._player.join(timeout=2.0)
