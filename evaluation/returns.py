"""The ``return`` protocol: each reappearance predicted from everything observed before it.

For each hide-and-reappear event (:mod:`splatworld.scene.events`) a model observes every frame
before ``b`` (the object's first visible frame again; while it was hidden, everything else was
observed), imagines frames ``b..c`` from the cameras, times, agent poses and actions alone, and is
scored on its frame ``c`` (the event's scoring frame). A return prediction is therefore one frame
per event, in the order of :func:`return_events`: a folder of numbered frames (optionally with
``instances/`` holding uint16 labels of the same numbers, for the mask scores) or an mp4.

A predicted frame has no sequence to match identities over, so the object's match is the predicted
label that overlaps its true mask most (IoU); none overlapping: the object is not drawn. OPR_rgb
needs no labels at all. Event classes are taken with the last observed frame at ``b - 1``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from splatworld.evaluation.evaluate import EvaluationConfig
from splatworld.evaluation.frames import fit_frame
from splatworld.evaluation.permanence import counterfactual_frames, permanence_rate, score_event, tau_bin
from splatworld.evaluation.predictions import PredictionError, prediction_kind, read_frames
from splatworld.progress import progress_bar
from splatworld.scene.cameras import Cameras
from splatworld.scene.episode import Episode, Frame
from splatworld.scene.events import hide_events

INSTANCES = "instances"


def return_events(episode: Episode, truth: dict | None) -> list[dict]:
    """The events of ``episode`` (``truth``: its ``ground_truth.json``, read once by the caller) that
    the return protocol scores: every one with a scoring frame, in order of ``reappears`` then object."""
    if not truth:
        raise PredictionError(episode.path, "the return protocol needs ground_truth.json")
    cameras = Cameras.from_nerfstudio(episode.meta, np.stack([episode.info(i).transform_matrix
                                                              for i in range(len(episode))]))
    events = [e for e in hide_events(truth["objects"], cameras, episode.fps) if e["scored_at"] is not None]
    return sorted(events, key=lambda e: (e["reappears"], e["object"]))


class ReturnWriter:
    """Write a return prediction: frame ``n`` (and its labels) as ``NNNNNN.png`` (and
    ``instances/NNNNNN.png``); the folder appears under its name on :meth:`close`."""

    def __init__(self, path):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        shutil.rmtree(self.tmp, ignore_errors=True)
        (self.tmp / INSTANCES).mkdir(parents=True)

    def write(self, n: int, rgb: np.ndarray, instances: np.ndarray | None = None) -> None:
        imageio.imwrite(self.tmp / f"{n:06d}.png", rgb, compress_level=1)
        if instances is not None:
            imageio.imwrite(self.tmp / INSTANCES / f"{n:06d}.png", instances.astype(np.uint16), compress_level=1)

    def close(self) -> Path:
        if not any((self.tmp / INSTANCES).iterdir()):
            (self.tmp / INSTANCES).rmdir()
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path


def _best_label(true_mask: np.ndarray, instances: np.ndarray, exclude: set[int]) -> np.ndarray | None:
    """The mask of the predicted label overlapping ``true_mask`` most (IoU), or None."""
    labels, counts = np.unique(instances[true_mask], return_counts=True)
    best, best_iou = None, 0.0
    for label, inter in zip(labels.tolist(), counts.tolist()):
        if label == 0 or label in exclude:
            continue
        iou = inter / (true_mask.sum() + (instances == label).sum() - inter)
        if iou > best_iou:
            best, best_iou = label, iou
    return None if best is None else instances == best


def evaluate_returns(gt_path, pred_path, config: EvaluationConfig = EvaluationConfig()) -> dict:
    """Score a return prediction (one frame per event of :func:`return_events`) against the ground
    truth at ``gt_path``.

    Returns:
        a JSON-ready dict: ``protocol``, ``frames``, ``opr_all``, ``opr_rgb``, ``permanence`` (as
        :func:`~splatworld.evaluation.permanence.permanence_rate`), ``events`` and ``not_available``.

    Raises:
        PredictionError: a frame count other than the number of events, a wrong size (unless
            ``config.resize``), an unreadable file.
    """
    gt, pred_path = Episode(gt_path), Path(pred_path)
    truth = gt.ground_truth()
    events = return_events(gt, truth)
    if prediction_kind(pred_path) == "episode":
        raise PredictionError(pred_path, "a return prediction is one frame per event (a frame folder or an mp4), "
                                         "not an episode")
    count, stream = read_frames(pred_path, gt.fps)
    if count is not None and count != len(events):
        raise PredictionError(pred_path, f"{count} frames, expected {len(events)} (one per event)")
    labels = pred_path / INSTANCES if pred_path.is_dir() else None
    has_labels = labels is not None and labels.is_dir()
    counterfactuals, why_rgb = counterfactual_frames(truth)
    objects = truth["objects"]
    not_available = {} if has_labels else {k: "the prediction has no instances/" for k in ("opr", "presence")}
    if why_rgb:
        not_available["opr_rgb"] = why_rgb
    n = 0
    for n, (e, rgb) in enumerate(zip(progress_bar(events, desc="return: score", unit="event",
                                                  disable=not config.progress), stream), start=1):
        c = e["scored_at"]
        truth = gt[c]
        instances = None
        if has_labels:
            file = labels / f"{n - 1:06d}.png"
            if not file.exists():
                raise PredictionError(file, "missing: instances/ needs one label image per frame", frame=n - 1)
            instances = np.asarray(imageio.imread(file)).astype(np.int64)
        if rgb.shape[:2] != (gt.height, gt.width) and not config.resize:
            raise PredictionError(pred_path, f"frames are {rgb.shape[1]}x{rgb.shape[0]}, expected "
                                             f"{gt.width}x{gt.height} (resize=true accepts another size)", frame=n - 1)
        pred = fit_frame(Frame(truth.info, truth.camera, rgb, None, instances), gt.width, gt.height)
        label = objects[e["object"]]["labels"][c]
        pred_mask = False if not has_labels else \
            _best_label(truth.instances == label, pred.instances, {gt.agent_label})
        e.update(tau_bin=tau_bin(e["hidden_seconds"]),
                 **score_event(label, truth, pred, pred_mask, counterfactuals.get((e["id"], c)), gt.path))
    if n != len(events):
        raise PredictionError(pred_path, f"{n} frames, expected {len(events)} (one per event)")
    permanence = permanence_rate(events, config.min_iou)
    return {"protocol": "return", "ground_truth": str(gt.path), "prediction": str(pred_path), "frames": n,
            "opr_all": permanence["opr_all"], "opr_rgb": permanence["opr_rgb_all"], "permanence": permanence,
            "events": events, "not_available": not_available}
