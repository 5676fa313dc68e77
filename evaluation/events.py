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

from splatworld.scene.cameras import Cameras
from splatworld.scene.transforms import pose_to_matrix

UNTOUCHED = 0.01  # m: an object that moved less than this while hidden was not touched
_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])


def substantially_visible(obj: dict, frame: int, cameras: Cameras) -> bool:
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
        return bool(cameras.in_image(frame, corners).all())
    return True


def hide_events(objects: list[dict], cameras: Cameras, fps: float, start: int = 0, end: int | None = None,
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
            in_view = [bool(cameras.in_image(int(t), centres[t])) for t in range(a + 1, b)]
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
