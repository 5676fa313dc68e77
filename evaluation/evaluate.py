"""Score a predicted episode against its ground truth: object permanence, hidden state, identity,
revisit fidelity, drift and Physics-IQ motion scores.

The ground truth is an episode directory; the prediction an episode directory (frames matched to
ground-truth frames by time: an imagined episode holds frames ``[k, T)``), a folder of frames or an
mp4 (:mod:`splatworld.evaluation.predictions`). RGB alone is enough for the image metrics and
OPR_rgb; predicted ``instances/`` with ``tracks.json`` (or with ``instance_ids_consistent``) unlock
permanence and identity, and ``tracks.json`` poses the hidden-state error. A metric that cannot be
computed is reported as None with the reason under ``not_available``, never as 0.

Definitions (all over the predicted frames):

- *matching*: a ground-truth object and a predicted id co-occur in a frame when their masks have
  IoU >= 0.5; one global Hungarian assignment maximises co-occurrences (the IDF1 matching), and
  every metric below uses it.
- *OPR(tau)*: per hide-and-reappear event (:mod:`splatworld.scene.events`; class ``still`` or
  ``moved`` with respect to the first predicted frame), success when the matched predicted mask has
  IoU >= 0.5 with the true mask at the event's scoring frame; *presence*: that mask is non-empty
  with its centroid within 25 px of the true one's; *OPR_rgb*: from RGB alone, the predicted frame is
  closer to the true frame than to its counterfactual (the object removed) over the object's
  footprint (:mod:`splatworld.evaluation.permanence`).
- *hidden-state error*: in every frame where an object is hidden (after it was first seen), the
  distance between the true position and the matched track's position, after one constant
  object-frame alignment per track fitted on the frames where the object is visible
  (:func:`~splatworld.evaluation.poses.fit_alignment`). Success rates count hidden frames without a
  predicted pose as failures.
- *identity*: IDF1, ID switches, spurious objects (predicted ids drawn but matched to nothing) and
  vanishings (maximal runs of frames where a matched object is substantially visible in ground truth
  but its predicted id draws nothing), per minute of prediction.
- *revisit fidelity RF(delta)*: PSNR (of the mean squared error) and mean SSIM on static pixels (ground-truth label 0) of predicted
  frames whose camera returns, after leaving, to within 5 cm and 5 degrees of an earlier frame's,
  binned by the time since that earliest frame; the self-consistency version compares with the
  predicted frame at that earlier pose (both frames' static pixels).
- *drift*: per second of horizon, PSNR of the second's whole frames taken together (from their mean
  squared error), mean SSIM and mean depth AbsRel; the PSNR curve's area (trapezoid, dB s) and
  half-life (first second at least 3 dB below the first).
- *motion*: Physics-IQ scores (:mod:`splatworld.evaluation.motion`) on the first 5 s.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splatworld.errors import ConfigError
from splatworld.evaluation.frames import fit_frame, frame_pairs, run_frames
from splatworld.evaluation.identity import identity_metrics
from splatworld.evaluation.image import psnr_of_mse, revisited_frames
from splatworld.evaluation.motion import frame_mse, motion_masks, motion_scores
from splatworld.evaluation.permanence import (
    RGB_MIN_PIXELS,
    counterfactual_frames,
    permanence_rate,
    score_event,
    tau_bin,
)
from splatworld.evaluation.poses import fit_alignment
from splatworld.evaluation.predictions import as_episode, prediction_kind
from splatworld.progress import progress_bar
from splatworld.scene.cameras import Cameras
from splatworld.scene.episode import Episode
from splatworld.scene.events import hide_events, substantially_visible
from splatworld.scene.transforms import pose_to_matrix

DELTA_BINS = ((10.0, "<=10s"), (60.0, "<=60s"), (300.0, "<=300s"), (float("inf"), ">300s"))


@dataclass(frozen=True)
class EvaluationConfig:
    """Thresholds of the metrics (defaults are the documented definitions) and how to run.

    Attributes:
        min_iou: mask IoU of a match and of a permanence success.
        revisit_distance: metres between camera centres of a revisit.
        revisit_angle_deg: degrees between viewing directions of a revisit.
        psnr_drop_db: the drop that ends the drift half-life.
        motion_seconds: the Physics-IQ window at the start of the prediction.
        workers: processes for the per-frame pass (1: in this process).
        progress: show a progress bar.
        resize: accept a prediction of another resolution (resized to the ground truth's, bilinear
            RGB, nearest depth and labels); False: refuse it.
    """

    min_iou: float = 0.5
    revisit_distance: float = 0.05
    revisit_angle_deg: float = 5.0
    psnr_drop_db: float = 3.0
    motion_seconds: float = 5.0
    workers: int = 2
    progress: bool = True
    resize: bool = False


# ------------------------------------------------------------------ assembling the metrics
def _predicted_ids(pred: Episode, results: list[dict]) -> tuple[list, list[dict] | None, str | None]:
    """The predicted object ids, per frame ``{label: id index}``, or the reason there are none."""
    if not pred.has_instances:
        return [], None, "the prediction has no instances/"
    tracks = pred.tracks()
    if tracks is not None:
        ids = [t.get("id", n) for n, t in enumerate(tracks["objects"])]
        per_frame = [{int(t["labels"][i]): n for n, t in enumerate(tracks["objects"]) if t["labels"][i]}
                     for i in range(len(pred))]
        return ids, per_frame, None
    if pred.instance_ids_consistent:
        labels = sorted({int(p) for r in results for p in r["joint"][:, 1]} - {0, pred.agent_label})
        index = {label: n for n, label in enumerate(labels)}
        return labels, [index] * len(pred), None
    return [], None, "predicted labels are not consistent across frames and there is no tracks.json"


def _overlaps(results, objects, frame_map, per_frame, n_ids):
    """Ground-truth areas ``[G, T]``, predicted areas ``[P, T]`` and intersections ``[G, P, T]`` in pixels."""
    n_gt, n = len(objects), len(results)
    gt_area, pred_area = np.zeros((n_gt, n)), np.zeros((n_ids, n))
    inter = np.zeros((n_gt, n_ids, n))
    for i, r in enumerate(results):
        gt_of = {o["labels"][frame_map[i]]: g for g, o in enumerate(objects) if o["labels"][frame_map[i]]}
        for gl, pl, count in r["joint"]:
            g, p = gt_of.get(int(gl)), per_frame[i].get(int(pl))
            if g is not None:
                gt_area[g, i] += count
            if p is not None:
                pred_area[p, i] += count
            if g is not None and p is not None:
                inter[g, p, i] += count
    return gt_area, pred_area, inter


def _hidden_state(objects, tracks, assignment, frame_map, visible) -> dict:
    """Position error of each matched track while its object is hidden (see the module docstring)."""
    errors, misses = [], 0
    for g, obj in enumerate(objects):
        labels = np.asarray(obj["labels"])
        seen = np.flatnonzero(labels != 0)
        if not len(seen):
            continue  # never visible: nobody could know it
        hidden = [i for i, m in enumerate(frame_map) if labels[m] == 0 and m > seen[0]]
        if not hidden:
            continue
        track = tracks[assignment[g]] if g in assignment else None
        poses = [None] * len(frame_map) if track is None else track["poses"]
        fit = [i for i in range(len(frame_map)) if visible[g, i] and poses[i] is not None] or \
            [i for i in range(len(frame_map)) if poses[i] is not None]
        if not fit:
            misses += len(hidden)
            continue
        align = fit_alignment([obj["poses"][frame_map[i]] for i in fit], [poses[i] for i in fit])
        for i in hidden:
            if poses[i] is None:
                misses += 1
                continue
            where = (pose_to_matrix(torch.tensor(poses[i], dtype=torch.float64)).numpy() @ align)[:3, 3]
            errors.append(float(np.linalg.norm(where - np.asarray(obj["poses"][frame_map[i]][:3]))))
    total = len(errors) + misses
    e = np.asarray(errors)
    return {"hidden_frames": total, "frames_with_pose": len(errors),
            "mean_error_m": float(e.mean()) if len(e) else None,
            "median_error_m": float(np.median(e)) if len(e) else None,
            "success_2cm": float((e <= 0.02).sum() / total) if total else None,
            "success_5cm": float((e <= 0.05).sum() / total) if total else None}


def _runs(flags: np.ndarray) -> int:
    """Number of maximal runs of True."""
    return int(flags[0] + (flags[1:] & ~flags[:-1]).sum()) if len(flags) else 0


def _binned(values: list[tuple[float, float, float]], bins) -> dict:
    """``{bin: {pairs, psnr, ssim}}`` of ``(seconds, mse, ssim)`` triples: the PSNR of the bin's mean
    squared error and the mean SSIM (NaN values left out)."""
    out = {}
    for limit, name in bins:
        lower = max([b for b, _ in bins if b < limit], default=-1.0)
        chosen = [(p, s) for d, p, s in values if lower < d <= limit]
        ps = [p for p, _ in chosen if not np.isnan(p)]
        ss = [s for _, s in chosen if not np.isnan(s)]
        out[name] = {"pairs": len(chosen), "psnr": psnr_of_mse(float(np.mean(ps)), 255.0) if ps else None,
                     "ssim": float(np.mean(ss)) if ss else None}
    return out


def _nanmean(values) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]  # identical images give PSNR inf, a value, not a gap
    return float(v.mean()) if len(v) else None


def _drift(results, times, drop_db) -> dict:
    horizon = np.floor(np.asarray(times) - times[0] + 1e-6).astype(int)
    curve = {key: [_nanmean([r[key] for r, h in zip(results, horizon) if h == s]) for s in range(horizon[-1] + 1)]
             for key in ("mse", "ssim", "abs_rel")}
    # a second's PSNR is that of its frames together (from their mean squared error): an identical
    # frame among them does not make it infinite
    curve["psnr"] = [None if m is None else psnr_of_mse(m, 255.0) for m in curve.pop("mse")]
    psnr_curve = np.array([np.nan if v is None else v for v in curve["psnr"]])
    finite = ~np.isnan(psnr_curve)
    below = np.flatnonzero(finite & (psnr_curve <= psnr_curve[0] - drop_db)) if finite[0] else []
    xs = np.flatnonzero(finite)
    return {"seconds": list(range(horizon[-1] + 1)), **{f"{k}_per_second": v for k, v in curve.items()},
            "psnr_area_db_s": float(np.trapezoid(psnr_curve[xs], xs)) if len(xs) > 1 else None,  # inf if identical
            "half_life_s": float(below[0]) if len(below) else None}


def evaluate_prediction(gt_path, pred_path, config: EvaluationConfig = EvaluationConfig(),
                        observe_until: int | None = None) -> dict:
    """All metrics of the prediction at ``pred_path`` against the ground truth at ``gt_path``.

    Args:
        pred_path: an episode directory, a folder of numbered frames or an mp4
            (:mod:`splatworld.evaluation.predictions`).
        observe_until: ``k``: frames or a video hold the ground truth's frames ``[k, T)``
            (required for them; an episode says its own frames' times).

    Returns:
        a JSON-ready dict: ``frames``, ``seconds``, ``opr_all``, ``opr_rgb`` and ``permanence``
        (OPR, presence and OPR_rgb per class, cause and hidden-duration bin), ``events``,
        ``hidden_state``, ``identity``, ``revisit``, ``drift``, ``motion`` and ``not_available``
        (metric -> reason).
    """
    gt = Episode(gt_path)
    kind = prediction_kind(Path(pred_path))
    if kind != "episode" and observe_until is None:
        raise ConfigError(f"{pred_path}: a prediction as a {kind} needs observe_until (the first predicted frame)")
    with tempfile.TemporaryDirectory(prefix="splatworld-prediction-") as scratch:
        frames = [] if kind == "episode" else list(range(int(observe_until), len(gt)))
        episode = as_episode(pred_path, gt, frames, Path(scratch) / "prediction", config.resize)
        report = _evaluate_episode(gt, Episode(episode), config)
    report["prediction"] = str(pred_path)
    return report


def _evaluate_episode(gt: Episode, pred: Episode, config: EvaluationConfig) -> dict:
    truth = gt.ground_truth()
    objects = truth["objects"] if truth else []
    frame_map = frame_pairs(gt, pred)
    times = [pred.info(i).time for i in range(len(pred))]
    not_available = {}
    index_of = {int(m): i for i, m in enumerate(frame_map)}  # ground-truth frame -> predicted frame
    results = run_frames([("gt", i, int(m), None, None) for i, m in enumerate(frame_map)], gt, pred, config.workers, config.progress, "score")

    gt_c2w = np.stack([gt.info(i).transform_matrix for i in range(len(gt))])
    pred_c2w = np.stack([pred.info(i).transform_matrix for i in range(len(pred))])
    cameras = Cameras.from_nerfstudio(gt.meta, gt_c2w)
    report = {"ground_truth": str(gt.path), "prediction": str(pred.path), "frames": len(pred),
              "seconds": len(pred) / gt.fps}

    # ---- permanence, hidden state, identity: need ground truth and predicted instances
    ids, per_frame, why = [], None, None
    if not truth:
        why = "the ground-truth episode has no ground_truth.json"
    elif not gt.has_instances:
        why = "the ground-truth episode has no instances/"
    else:
        ids, per_frame, why = _predicted_ids(pred, results)
    if why is None:
        gt_area, pred_area, inter = _overlaps(results, objects, frame_map, per_frame, len(ids))
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.nan_to_num(inter / (gt_area[:, None] + pred_area[None] - inter))
        matched = iou >= config.min_iou  # [G, P, T]
        gt_labels = np.where(gt_area > 0, np.arange(1, len(objects) + 1)[:, None], 0)
        best = np.where(matched.any(axis=0), matched.argmax(axis=0) + 1, 0)  # [P, T]: the object each id matches
        pred_labels = np.where(best > 0, best, np.where(pred_area > 0, -np.arange(1, len(ids) + 1)[:, None], 0))
        identity = identity_metrics(gt_labels, pred_labels)
        assignment = identity.pop("assignment")
        for detail in ("switches_by_object", "co_occurrence"):  # per ground-truth index: the report names objects
            identity.pop(detail)
        minutes = report["seconds"] / 60
        visible = np.array([substantially_visible(o, frame_map, cameras) for o in objects]) \
            .reshape(len(objects), len(frame_map))
        vanishings = sum(_runs(visible[g] & (pred_area[p] == 0)) for g, p in assignment.items())
        spurious = sum(1 for p in range(len(ids)) if pred_area[p].any() and p not in assignment.values())
        identity.update(id_switches_per_min=identity["id_switches"] / minutes, spurious_objects=spurious,
                        spurious_objects_per_min=spurious / minutes, vanishings=vanishings,
                        vanishings_per_min=vanishings / minutes)
        report["identity"] = identity
        report["matching"] = {objects[g].get("name", str(objects[g].get("id", g))): ids[p]
                              for g, p in assignment.items()}

        tracks = pred.tracks()
        if tracks is not None and any(p is not None for t in tracks["objects"] for p in t["poses"]):
            report["hidden_state"] = _hidden_state(objects, tracks["objects"], assignment, frame_map, visible)
        else:
            not_available["hidden_state"] = "the prediction has no tracks.json poses"
    else:
        assignment = {}
        for key in ("identity", "hidden_state", "opr", "presence"):
            not_available[key] = why
    if "hidden_state" in not_available:
        report["hidden_state"] = None

    # ---- permanence: each hide-and-reappear event scored at its first substantially visible frame
    if truth:
        events = hide_events(objects, cameras, gt.fps, start=int(frame_map[0]), end=int(frame_map[-1]) + 1,
                             observed_until=int(frame_map[0]))
        counterfactuals, why_rgb = counterfactual_frames(truth)
        if why_rgb:
            not_available["opr_rgb"] = why_rgb
        scored = []
        for e in progress_bar(events, desc="events", unit="event", disable=not config.progress):
            i = index_of.get(e["scored_at"]) if e["scored_at"] is not None else None
            e["tau_bin"] = tau_bin(e["hidden_seconds"])
            if i is None:
                continue  # never substantially visible in the predicted range: nothing to score
            truth_frame, pred_frame = gt[e["scored_at"]], fit_frame(pred[i], gt.width, gt.height)
            pred_mask = None
            if per_frame is not None and e["object"] in assignment:
                own = [label for label, n in per_frame[i].items() if n == assignment[e["object"]]]
                pred_mask = np.isin(pred_frame.instances, own)
            e.update(score_event(objects[e["object"]]["labels"][e["scored_at"]], truth_frame, pred_frame,
                                 pred_mask if per_frame is not None else False,
                                 counterfactuals.get((e["id"], e["scored_at"])), gt.path))
            scored.append(e)
        report["permanence"] = permanence_rate(scored, config.min_iou)
        report["permanence"]["unscorable_events"] = len(events) - len(scored)
        report["permanence"]["opr_rgb_unscored"] = {
            "too_few_pixels": sum(e.get("opr_rgb_pixels", 0) < RGB_MIN_PIXELS for e in scored
                                  if e["opr_rgb"] is None and "opr_rgb_pixels" in e),
            "no_counterfactual": sum("opr_rgb_pixels" not in e for e in scored)}
        report["events"] = events
    else:
        not_available["permanence"] = "the ground-truth episode has no ground_truth.json"
        report["permanence"] = None
    perm = report["permanence"] or {}
    report["opr_all"] = perm.get("opr_all")
    report["opr_rgb"] = perm.get("opr_rgb_all")

    # ---- revisit fidelity (vs ground truth, and self-consistency)
    pairs = revisited_frames(gt_c2w, 1, config.revisit_distance, config.revisit_angle_deg, must_leave=True,
                             frames=[int(m) for m in frame_map])
    gt_times = [gt.info(i).time for i in range(len(gt))]
    versus_truth = [(gt_times[k] - gt_times[j], results[index_of[k]]["mse_static"],
                     results[index_of[k]]["ssim_static"]) for k, j in pairs]
    self_pairs = revisited_frames(pred_c2w, 1, config.revisit_distance, config.revisit_angle_deg, must_leave=True)
    self_scores = run_frames([("self", k, int(frame_map[k]), j, int(frame_map[j])) for k, j in self_pairs], gt, pred,
                             config.workers, config.progress, "self-consistency") if self_pairs else []
    report["revisit"] = {"versus_truth": _binned(versus_truth, DELTA_BINS),
                         "self_consistency": _binned([(times[k] - times[j], s["mse"], s["ssim"])
                                                      for (k, j), s in zip(self_pairs, self_scores)], DELTA_BINS)}

    # ---- drift and Physics-IQ motion
    report["drift"] = _drift(results, times, config.psnr_drop_db)
    if all(not np.isfinite(r["abs_rel"]) for r in results):
        not_available["abs_rel"] = "no depth in the prediction or the ground truth"
    n_motion = min(len(pred), max(2, round(config.motion_seconds * gt.fps)))
    truth_rgb = [gt[int(frame_map[i])].rgb for i in range(n_motion)]
    pred_rgb = [fit_frame(pred[i], gt.width, gt.height).rgb for i in range(n_motion)]
    report["motion"] = {"seconds": n_motion / gt.fps,
                        **motion_scores(motion_masks(truth_rgb), motion_masks(pred_rgb),
                                        np.array([frame_mse(p, t) for p, t in zip(pred_rgb, truth_rgb)]))}
    report["not_available"] = not_available
    return report
