"""Ground-truth hide-and-reappear events, read from ``ground_truth.json`` and the camera path.

The one definition both the generator (which renders each event's counterfactual frame) and the
evaluator (which scores it) use.

An *event* is a gap in an object's visibility: ``a`` is its last frame with visible pixels
(label != 0), ``b > a + 1`` the next one. Its hidden time is ``(b - a - 1) / fps``. Its *cause* is
``occluded`` when the object's centre projects into the image (in front of the camera) in at least
half of the hidden frames, else ``out_of_view``. It is scored at the first frame ``c`` of the
visible run starting at ``b`` where the object is *substantially visible* (:func:`substantially_visible`):
a model cannot be judged on a sliver of an object peeking around an edge. An event whose run never
gets there has ``scored_at = None``.

Its *class* depends on what the model observed: ``still`` when the object's true position at ``c``
is within :data:`UNTOUCHED` of its position at the last observed frame and at ``a`` (nothing moved
it after the observation ended: whether it comes back is memory and rendering alone), else
``moved`` (where it comes back is also a question of dynamics).
"""

from __future__ import annotations

import numpy as np
import torch

from splatworld.scene.cameras import Cameras
from splatworld.scene.transforms import pose_to_matrix

UNTOUCHED = 0.01  # m: an object that moved less than this while hidden was not touched
_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])


def substantially_visible(obj: dict, frames, cameras: Cameras) -> np.ndarray:
    """Whether ground-truth object ``obj`` is well in sight at each of ``frames`` (bool ``[F]``): it
    has visible pixels, at least half of its in-image silhouette is unoccluded (``visible_fraction``,
    when recorded) and its whole box (``extent`` about its pose, when recorded) projects inside the
    image (all frames in one batched projection)."""
    frames = np.asarray(frames, dtype=np.int64)
    out = np.asarray(obj["labels"])[frames] != 0
    if "visible_fraction" in obj:
        out &= np.asarray(obj["visible_fraction"])[frames] >= 0.5
    if "extent" in obj and out.any():
        chosen = frames[out]
        poses = pose_to_matrix(torch.as_tensor(np.asarray(obj["poses"])[chosen], dtype=torch.float64)).numpy()
        corners = np.einsum("kj,fij->fki", _CORNERS * np.asarray(obj["extent"]), poses[:, :3, :3]) \
            + poses[:, None, :3, 3]
        out[out] = cameras.in_image(chosen, corners).all(dim=1).numpy()
    return out


EVENT_CLASSES = ("still", "moved")


def hide_events(objects: list[dict], cameras: Cameras, fps: float, start: int = 0, end: int | None = None,
                min_hidden_seconds: float = 0.0, observed_until: int | None = None) -> list[dict]:
    """Every hide-and-reappear event of ``objects`` (``ground_truth.json`` entries) whose
    reappearance frame ``b`` lies in ``[start, end)`` and whose hidden time is at least
    ``min_hidden_seconds``.

    Args:
        observed_until: the model observed frames ``[0, observed_until)`` (the imagination
            protocol's ``k``); None: each event's own ``[0, b)`` (the return protocol).

    Returns:
        one dict per event: ``object`` (index in ``objects``), ``id``, ``name``, ``last_visible``
        (``a``), ``reappears`` (``b``), ``scored_at`` (``c`` or None), ``hidden_seconds``, ``cause``,
        ``untouched`` (the true position at ``c``, or ``b``, is within 1 cm of that at ``a``) and
        ``class`` (``still`` or ``moved``, see the module docstring).
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
            in_view = cameras.in_image(np.arange(a + 1, b), centres[a + 1:b]).numpy()
            run_end = b
            while run_end + 1 < stop and labels[run_end + 1] != 0:
                run_end += 1
            well_seen = np.flatnonzero(substantially_visible(obj, np.arange(b, run_end + 1), cameras))
            scored = int(b + well_seen[0]) if len(well_seen) else None
            at = b if scored is None else scored
            last_observed = b - 1 if observed_until is None else observed_until - 1
            moved = np.linalg.norm(centres[at] - centres[a])
            moved_since_observed = np.linalg.norm(centres[at] - centres[max(last_observed, 0)])
            events.append({"object": g, "id": obj.get("id", g), "name": obj.get("name", str(obj.get("id", g))),
                           "last_visible": int(a), "reappears": int(b), "scored_at": scored,
                           "hidden_seconds": float(hidden),
                           "cause": "occluded" if np.mean(in_view) >= 0.5 else "out_of_view",
                           "untouched": bool(moved < UNTOUCHED),
                           "class": "still" if max(moved, moved_since_observed) < UNTOUCHED else "moved"})
    return events
