"""Object permanence of a model's tracks: what happens when a hidden object becomes visible again."""

from __future__ import annotations

import numpy as np

from splatworld.evaluation.identity import identity_metrics


def reappearances(gt_objects: list[dict], tracks: list[dict], fps: float, still_tolerance: float = 1e-3,
                  min_visible_fraction: float = 0.5) -> list[dict]:
    """One record per ground-truth hide-and-reappear event of an object nobody moved while hidden.

    An event runs from an object's last visible frame ``a`` to its next visible frame ``b``
    (``b > a + 1``); it counts when the true position changed by less than ``still_tolerance``.
    The object's track is the one the IDF1 matching assigns to it. The model *reclaims* the
    object at the first frame ``c >= b`` of that visible run where some track owns the
    object's label (an object that re-emerges by a sliver of pixels may be claimed a frame or
    two later). Per event: ``reidentified`` (the reclaiming track is the object's own),
    ``reclaim_delay`` (``c - b`` frames; None if never reclaimed in the run), ``belief`` (the
    track's existence belief at ``b - 1``, before seeing it again; NaN if the tracks record
    none), ``pose_error`` (how far the track's remembered displacement from ``a`` to ``c``
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
                record["reidentified"] = owner == assignment[g]
                record["reclaim_delay"] = c - b
                if track.get("beliefs") and track["beliefs"][b - 1] is not None:
                    record["belief"] = float(track["beliefs"][b - 1])
                if track["poses"][a] is not None and track["poses"][c] is not None:
                    moved = np.array(track["poses"][c][:3]) - np.array(track["poses"][a][:3])
                    true_moved = np.array(obj["poses"][c][:3]) - gt_pos[0]
                    record["pose_error"] = float(np.linalg.norm(moved - true_moved))
            events.append(record)
    return events


TAU_BINS = ((1.0, "<=1s"), (10.0, "<=10s"), (60.0, "<=60s"), (300.0, "<=300s"), (float("inf"), ">300s"))
CAUSES = ("occluded", "out_of_view")


def tau_bin(hidden_seconds: float) -> str:
    """The hidden-duration bin of an event: ``<=1s``, ``<=10s``, ``<=60s``, ``<=300s`` or ``>300s``."""
    return next(name for limit, name in TAU_BINS if hidden_seconds <= limit)


def permanence_rate(events: list[dict], min_iou: float = 0.5) -> dict:
    """Object permanence rate OPR(tau) of scored events (each with ``iou``, ``cause`` and
    ``hidden_seconds``): the fraction with ``iou >= min_iou``, and the mean IoU, overall
    (``opr_all``, ``mean_iou_all``) and per cause (``all``, ``occluded``, ``out_of_view``) and
    hidden-duration bin. A cell without events holds None (nothing to score, not 0).

    >>> e = [{"iou": 0.9, "cause": "occluded", "hidden_seconds": 0.5},
    ...      {"iou": 0.2, "cause": "out_of_view", "hidden_seconds": 30.0}]
    >>> r = permanence_rate(e)
    >>> r["opr_all"], r["bins"]["occluded"]["<=1s"]["opr"], r["bins"]["all"]["<=60s"]["mean_iou"]
    (0.5, 1.0, 0.2)
    """
    def cell(chosen: list[dict]) -> dict:
        ious = [e["iou"] for e in chosen]
        return {"events": len(chosen), "successes": sum(i >= min_iou for i in ious),
                "opr": sum(i >= min_iou for i in ious) / len(ious) if ious else None,
                "mean_iou": float(np.mean(ious)) if ious else None}

    bins = {}
    for cause in ("all",) + CAUSES:
        of_cause = [e for e in events if cause in ("all", e["cause"])]
        bins[cause] = {name: cell([e for e in of_cause if tau_bin(e["hidden_seconds"]) == name])
                       for _, name in TAU_BINS}
    overall = cell(events)
    return {"opr_all": overall["opr"], "mean_iou_all": overall["mean_iou"], "events": overall["events"],
            "bins": bins}
