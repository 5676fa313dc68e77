"""Object permanence of a model's tracks: what happens when a hidden object becomes visible again."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from scipy import ndimage

from splatworld.evaluation.identity import identity_metrics
from splatworld.scene.episode import Frame


def reappearances(gt_objects: list[dict], tracks: list[dict], fps: float, still_tolerance: float = 1e-3,
                  min_visible_fraction: float = 0.5) -> list[dict]:
    """One record per ground-truth hide-and-reappear event of an object nobody moved while hidden.

    An event runs from an object's last visible frame ``a`` to its next visible frame ``b``
    (``b > a + 1``); it counts when the true position changed by less than ``still_tolerance``.
    The object's track is the one the IDF1 matching assigns to it. The model *reclaims* the
    object at the first frame ``c >= b`` of that visible run where some track owns the
    object's label (an object that re-emerges by a sliver of pixels may be claimed a frame or
    two later). Per event: ``reidentified`` (the reclaiming track is the object's own and held it
    at ``a``: a track born while the object was hidden met it as new),
    ``reclaim_delay`` (``c - b`` frames; None if never reclaimed in the run), ``belief`` (the
    track's existence belief at ``b - 1``, before seeing it again; NaN if the tracks record
    none; a track with no pose at ``a``, born while the object was hidden, does not re-identify it),
    ``pose_error`` (how far the track's remembered displacement from ``a`` to ``c``
    differs from the true one, metres) and ``glimpse``: the object never became substantially
    visible in that run (``visible_fraction`` below ``min_visible_fraction`` throughout, e.g. two
    pixels for one frame; False when the ground truth records no ``visible_fraction``), a
    reappearance no model can be asked to re-identify.

    Args:
        gt_objects: ``ground_truth.json`` objects (``labels``, ``poses``).
        tracks: ``tracks.json`` objects (``labels``, ``poses``; ``beliefs`` optional).
    """
    n = min(len(gt_objects[0]["labels"]), len(tracks[0]["labels"])) if gt_objects and tracks else 0
    gt_labels = np.array([o["labels"][:n] for o in gt_objects])
    pred_labels = np.array([t["labels"][:n] for t in tracks])
    assignment = identity_metrics(gt_labels, pred_labels)["assignment"] if n else {}
    events = []
    for g, obj in enumerate(gt_objects):
        visible = np.flatnonzero(gt_labels[g] != 0)
        for a, b in zip(visible[:-1], visible[1:]):
            if b == a + 1:
                continue
            gt_pos = np.array([obj["poses"][a][:3], obj["poses"][b][:3]])
            if np.linalg.norm(gt_pos[1] - gt_pos[0]) >= still_tolerance:
                continue
            record = {"object": obj.get("id", g), "hidden_seconds": (b - a - 1) / fps, "reidentified": False,
                      "reclaim_delay": None, "belief": float("nan"), "pose_error": float("nan"), "glimpse": False}
            run_end = b
            while run_end + 1 < n and gt_labels[g, run_end + 1] != 0:
                run_end += 1
            if "visible_fraction" in obj:
                record["glimpse"] = max(obj["visible_fraction"][b:run_end + 1]) < min_visible_fraction
            claims = [k for k in range(b, run_end + 1) if (pred_labels[:, k] == gt_labels[g, k]).any()]
            if claims and g in assignment:
                c = claims[0]
                owner = int(np.flatnonzero(pred_labels[:, c] == gt_labels[g, c])[0])
                track = tracks[assignment[g]]
                # the object's own track, holding it since before it hid: one born during the gap
                # met it as new, and remembers nothing to re-identify it by
                remembered = track["poses"][a] is not None and track["poses"][c] is not None
                record["reidentified"] = owner == assignment[g] and remembered
                record["reclaim_delay"] = c - b
                if track.get("beliefs") and track["beliefs"][b - 1] is not None:
                    record["belief"] = float(track["beliefs"][b - 1])
                if remembered:
                    moved = np.array(track["poses"][c][:3]) - np.array(track["poses"][a][:3])
                    true_moved = np.array(obj["poses"][c][:3]) - gt_pos[0]
                    record["pose_error"] = float(np.linalg.norm(moved - true_moved))
            events.append(record)
    return events


TAU_BINS = ((1.0, "<=1s"), (10.0, "<=10s"), (60.0, "<=60s"), (300.0, "<=300s"), (float("inf"), ">300s"))
CAUSES = ("occluded", "out_of_view")
GROUPS = ("all", "still", "moved") + CAUSES
"""Every permanence table reports these groups of events: all, each class, each cause."""
PRESENCE_RADIUS_PX = 25.0
RGB_DILATION_PX = 3
RGB_MIN_PIXELS = 30


def tau_bin(hidden_seconds: float) -> str:
    """The hidden-duration bin of an event: ``<=1s``, ``<=10s``, ``<=60s``, ``<=300s`` or ``>300s``."""
    return next(name for limit, name in TAU_BINS if hidden_seconds <= limit)


def mask_scores(true_mask: np.ndarray, pred_mask: np.ndarray | None, radius: float = PRESENCE_RADIUS_PX) -> dict:
    """``iou`` of the predicted mask of the object's matched id with its true mask ``[H, W]``, and
    ``presence``: the predicted mask is non-empty and its centroid lies within ``radius`` pixels of
    the true mask's. No predicted mask (the object matched nothing): IoU 0, absent.

    >>> t = np.zeros((10, 40), bool); t[2:6, 2:6] = True
    >>> mask_scores(t, np.roll(t, 20, axis=1))  # moved 20 px: no overlap, still present
    {'iou': 0.0, 'presence': True}
    """
    if pred_mask is None or not pred_mask.any():
        return {"iou": 0.0, "presence": False}
    union = (true_mask | pred_mask).sum()
    iou = float((true_mask & pred_mask).sum() / union) if union else 0.0
    true_c = np.argwhere(true_mask).mean(axis=0)
    pred_c = np.argwhere(pred_mask).mean(axis=0)
    return {"iou": iou, "presence": bool(np.linalg.norm(true_c - pred_c) <= radius)}


def dilated(mask: np.ndarray, pixels: int = RGB_DILATION_PX) -> np.ndarray:
    """``mask`` grown by ``pixels`` in every direction (a square: Chebyshev distance)."""
    return ndimage.binary_dilation(mask, np.ones((2 * pixels + 1,) * 2, bool))


def opr_rgb_verdict(pred_rgb: np.ndarray, true_rgb: np.ndarray, counterfactual_rgb: np.ndarray,
                    differs: np.ndarray, min_pixels: int = RGB_MIN_PIXELS) -> bool | None:
    """Whether the object is present in a predicted frame, from RGB alone: over the pixels where
    the true frame and its counterfactual (the same frame without the object) differ (``differs``
    ``[H, W]``, dilated by :data:`RGB_DILATION_PX`), the prediction is closer (mean squared error)
    to the true frame than to the counterfactual. None when fewer than ``min_pixels`` pixels decide.

    >>> truth = np.zeros((40, 40, 3), np.uint8); truth[10:20, 10:20] = 200
    >>> without = np.zeros_like(truth); differs = (truth != without).any(-1)
    >>> opr_rgb_verdict(truth, truth, without, differs), opr_rgb_verdict(without, truth, without, differs)
    (True, False)
    """
    region = dilated(differs)
    if region.sum() < min_pixels:
        return None
    p, t, c = (np.asarray(x, np.float64)[region] for x in (pred_rgb, true_rgb, counterfactual_rgb))
    return bool(((p - t) ** 2).mean() < ((p - c) ** 2).mean())


def permanence_rate(events: list[dict], min_iou: float = 0.5) -> dict:
    """The permanence scores of scored events, overall and per group (:data:`GROUPS`: all, each
    class, each cause) and hidden-duration bin.

    Each event holds ``class``, ``cause``, ``hidden_seconds`` and its scores: ``iou`` (OPR is the
    fraction with ``iou >= min_iou``), ``presence`` and ``opr_rgb`` (booleans); a score that could
    not be computed for an event is None and that event is left out of its rate. A cell holds
    ``events``, each rate (``opr``, ``presence``, ``opr_rgb``; None where no event was scored: nothing
    to score, not 0), the events each rate is over (``opr_events``, ...) and ``mean_iou``.

    >>> e = [{"iou": 0.9, "presence": True, "opr_rgb": True, "class": "still", "cause": "occluded",
    ...       "hidden_seconds": 0.5},
    ...      {"iou": 0.2, "presence": True, "opr_rgb": None, "class": "moved", "cause": "out_of_view",
    ...       "hidden_seconds": 30.0}]
    >>> r = permanence_rate(e)
    >>> r["opr_all"], r["presence_all"], r["opr_rgb_all"], r["classes"]["moved"]["opr"]
    (0.5, 1.0, 1.0, 0.0)
    >>> r["bins"]["occluded"]["<=1s"]["opr"], r["bins"]["all"]["<=60s"]["mean_iou"]
    (1.0, 0.2)
    """
    def rate(values: list) -> tuple[float | None, int]:
        scored = [bool(v) for v in values if v is not None]
        return (sum(scored) / len(scored) if scored else None), len(scored)

    def cell(chosen: list[dict]) -> dict:
        ious = [e["iou"] for e in chosen if e.get("iou") is not None]
        out = {"events": len(chosen)}
        for name, values in (("opr", [None if e.get("iou") is None else e["iou"] >= min_iou for e in chosen]),
                             ("presence", [e.get("presence") for e in chosen]),
                             ("opr_rgb", [e.get("opr_rgb") for e in chosen])):
            out[name], out[f"{name}_events"] = rate(values)
        out["mean_iou"] = float(np.mean(ious)) if ious else None
        return out

    def group(name: str) -> list[dict]:
        return [e for e in events if name in ("all", e["class"], e["cause"])]

    bins = {g: {b: cell([e for e in group(g) if tau_bin(e["hidden_seconds"]) == b]) for _, b in TAU_BINS}
            for g in GROUPS}
    overall = cell(events)
    return {"opr_all": overall["opr"], "presence_all": overall["presence"], "opr_rgb_all": overall["opr_rgb"],
            "mean_iou_all": overall["mean_iou"], "events": overall["events"],
            "classes": {g: cell(group(g)) for g in GROUPS}, "bins": bins}


def counterfactual_frames(truth: dict) -> tuple[dict, str | None]:
    """``{(object id, scored_at): counterfactual entry}`` of a ``ground_truth.json``, or the reason
    there are none."""
    if "events" not in truth:
        return {}, "the ground truth has no counterfactual frames (an episode generated before they were written)"
    return {(e["id"], e["scored_at"]): e["counterfactual"] for e in truth["events"] if "counterfactual" in e}, None


def score_event(label: int, truth: Frame, pred: Frame, pred_mask, counterfactual: dict | None, root: Path) -> dict:
    """The scores of one event at its scoring frame: ``iou`` and ``presence``
    (:func:`mask_scores` of ``pred_mask``, the predicted mask of
    the object's matched id, None if it matched none; ``False``: the prediction has no masks, so
    both are None) and ``opr_rgb`` (:func:`opr_rgb_verdict`
    against the ``counterfactual`` entry of the ground truth under ``root``; None without one),
    with ``opr_rgb_pixels``, the pixels that decided it."""
    out = {"iou": None, "presence": None, "opr_rgb": None}
    if pred_mask is not False and truth.instances is not None:
        out.update(mask_scores(truth.instances == label, pred_mask))
    if counterfactual is not None:
        without = imageio.imread(root / counterfactual["file_path"])
        differs = imageio.imread(root / counterfactual["mask_file_path"]) > 0
        out["opr_rgb_pixels"] = int(dilated(differs).sum())
        out["opr_rgb"] = opr_rgb_verdict(pred.rgb, truth.rgb, without, differs)
    return out
