"""Ground-truth hide-and-reappear events, read from ``ground_truth.json`` and the camera path.

An *event* is a gap in an object's visibility: ``a`` is its last frame with visible pixels
(label != 0), ``b > a + 1`` the next one. Its hidden time is ``(b - a - 1) / fps``. Its *cause* is
``occluded`` when the object's centre projects into the image (in front of the camera) in at least
half of the hidden frames, else ``out_of_view``. It is scored at the first frame ``c`` of the
visible run starting at ``b`` where the object is *substantially visible* (:func:`substantially_visible`):
a model cannot be judged on a sliver of an object peeking around an edge. An event whose run never
gets there has ``scored_at = None``.
"""

from __future__ import annotations

import numpy as np
import torch

from splatworld.scene.cameras import in_image
from splatworld.scene.transforms import pose_to_matrix

UNTOUCHED = 0.01  # m: an object that moved less than this while hidden was not touched
_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
_NERFSTUDIO_TO_OPENCV = np.diag([1.0, -1.0, -1.0])  # flip y and z: camera looks along +z, y down


class EpisodeCameras:
    """The cameras of an episode as arrays, for projecting many points at once.

    Args:
        meta: ``transforms.json`` top level (``fl_x fl_y cx cy w h``).
        camera_to_world: ``[T, 4, 4]`` nerfstudio camera-to-world.
    """

    def __init__(self, meta: dict, camera_to_world: np.ndarray):
        self.fx, self.fy, self.cx, self.cy = (float(meta[k]) for k in ("fl_x", "fl_y", "cx", "cy"))
        self.width, self.height = int(meta["w"]), int(meta["h"])
        c2w = np.asarray(camera_to_world, dtype=np.float64)
        self.rotation = c2w[:, :3, :3] @ _NERFSTUDIO_TO_OPENCV  # world_from_camera, OpenCV axes
        self.centre = c2w[:, :3, 3]

    def project(self, frame: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``[N, 2]`` and depths ``[N]`` of world points ``[N, 3]`` in ``frame``."""
        cam = (np.asarray(points, dtype=np.float64) - self.centre[frame]) @ self.rotation[frame]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([self.fx * cam[:, 0] / z + self.cx, self.fy * cam[:, 1] / z + self.cy], axis=1)
        return uv, z

    def inside(self, frame: int, points: np.ndarray) -> np.ndarray:
        """bool ``[N]``: the points project in front of the camera and inside the image."""
        uv, z = self.project(frame, points)
        return in_image(uv, z, self.width, self.height)


def substantially_visible(obj: dict, frame: int, cameras: EpisodeCameras) -> bool:
    """Whether ground-truth object ``obj`` is well in sight at ``frame``: it has visible pixels, at
    least half of its in-image silhouette is unoccluded (``visible_fraction``, when recorded) and
    its whole box (``extent`` about its pose, when recorded) projects inside the image."""
    if obj["labels"][frame] == 0:
        return False
    if "visible_fraction" in obj and obj["visible_fraction"][frame] < 0.5:
        return False
    if "extent" in obj:
        pose = pose_to_matrix(torch.tensor(obj["poses"][frame], dtype=torch.float64)).numpy()
        corners = (_CORNERS * np.asarray(obj["extent"])) @ pose[:3, :3].T + pose[:3, 3]
        return bool(cameras.inside(frame, corners).all())
    return True


def hide_events(objects: list[dict], cameras: EpisodeCameras, fps: float, start: int = 0, end: int | None = None,
                min_hidden_seconds: float = 0.0) -> list[dict]:
    """Every hide-and-reappear event of ``objects`` (``ground_truth.json`` entries) whose
    reappearance frame ``b`` lies in ``[start, end)`` and whose hidden time is at least
    ``min_hidden_seconds``.

    Returns:
        one dict per event: ``object`` (index in ``objects``), ``id``, ``name``, ``last_visible``
        (``a``), ``reappears`` (``b``), ``scored_at`` (``c`` or None), ``hidden_seconds``, ``cause``
        and ``untouched`` (the true position at ``c``, or ``b``, is within 1 cm of that at ``a``).
    """
    events = []
    for g, obj in enumerate(objects):
        labels = np.asarray(obj["labels"])
        stop = len(labels) if end is None else min(end, len(labels))
        visible = np.flatnonzero(labels[:stop] != 0)
        centres = np.asarray(obj["poses"], dtype=np.float64)[:, :3]
        for a, b in zip(visible[:-1], visible[1:]):
            hidden = (b - a - 1) / fps
            if b < start or b == a + 1 or hidden < min_hidden_seconds:
                continue
            in_view = [cameras.inside(int(t), centres[t][None])[0] for t in range(a + 1, b)]
            run_end = b
            while run_end + 1 < stop and labels[run_end + 1] != 0:
                run_end += 1
            scored = next((int(c) for c in range(b, run_end + 1) if substantially_visible(obj, c, cameras)), None)
            moved = np.linalg.norm(centres[b if scored is None else scored] - centres[a])
            events.append({"object": g, "id": obj.get("id", g), "name": obj.get("name", str(obj.get("id", g))),
                           "last_visible": int(a), "reappears": int(b), "scored_at": scored,
                           "hidden_seconds": float(hidden),
                           "cause": "occluded" if np.mean(in_view) >= 0.5 else "out_of_view",
                           "untouched": bool(moved < UNTOUCHED)})
    return events
