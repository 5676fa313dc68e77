"""Identity metrics: IDF1 (Ristani et al., 2016) and identity switches, from per-frame labels.

A ground-truth object and a predicted track *co-occur* in a frame when both carry the same
non-zero instance label there (``ground_truth.json`` and ``tracks.json`` both record, per
frame, which label of the frame's ``instances/`` image each object or track owns). A memory that
makes its own segments (``segmentation=geometry``) labels tracks with those; the scorer maps each
frame's own labels to true ones while it observes (:func:`majority_labels`) and scores
:func:`to_true_labels` of the tracks.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def identity_metrics(gt_labels: np.ndarray, pred_labels: np.ndarray) -> dict:
    """IDF1, IDP, IDR and identity switches.

    Args:
        gt_labels: ``[G, T]`` label of each ground-truth object per frame (0 = not visible).
        pred_labels: ``[P, T]`` label each predicted track claims per frame (0 = none).

    Returns:
        dict with ``idf1``, ``idp``, ``idr``, ``idtp``, ``idfp``, ``idfn`` and ``id_switches``:
        the number of times an object's per-frame predicted track changes from the previous
        frame where it had one (frames without a track in between do not reset it),
        ``switches_by_object``: ``[G]`` the same per ground-truth object,
        ``co_occurrence``: ``[G, P]`` the frames in which each track holds each object, and
        ``assignment``: ``{ground-truth index: track index}`` of the IDF1 matching.

    >>> gt = np.array([[5, 5, 7, 0], [8, 9, 9, 9]])
    >>> pred = np.array([[5, 5, 7, 0], [8, 9, 0, 0], [0, 0, 9, 9]])
    >>> m = identity_metrics(gt, pred)
    >>> round(m["idf1"], 4), m["id_switches"], m["switches_by_object"]
    (0.7143, 1, [0, 1])
    >>> m["co_occurrence"].tolist()
    [[3, 0, 0], [0, 2, 2]]
    """
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1, np.shape(gt_labels)[-1])
    pred_labels = np.asarray(pred_labels, dtype=np.int64).reshape(-1, gt_labels.shape[1])
    n_gt, n_pred = int((gt_labels != 0).sum()), int((pred_labels != 0).sum())
    co = ((gt_labels[:, None, :] == pred_labels[None, :, :]) & (gt_labels[:, None, :] != 0)).sum(axis=2)
    idtp, assignment = 0, {}
    if co.size:
        rows, cols = linear_sum_assignment(-co)
        idtp = int(co[rows, cols].sum())
        assignment = {int(r): int(c) for r, c in zip(rows, cols) if co[r, c] > 0}
    switches_by_object = [0] * gt_labels.shape[0]
    for g in range(gt_labels.shape[0]):
        previous = None
        for t in range(gt_labels.shape[1]):
            if gt_labels[g, t] == 0:
                continue
            owners = np.flatnonzero(pred_labels[:, t] == gt_labels[g, t])
            if len(owners) == 0:
                continue
            if previous is not None and owners[0] != previous:
                switches_by_object[g] += 1
            previous = owners[0]
    total = n_gt + n_pred
    return {
        "idf1": 2 * idtp / total if total else 1.0,
        "idp": idtp / n_pred if n_pred else 0.0,
        "idr": idtp / n_gt if n_gt else 0.0,
        "idtp": idtp,
        "idfp": n_pred - idtp,
        "idfn": n_gt - idtp,
        "id_switches": sum(switches_by_object),
        "switches_by_object": switches_by_object,
        "co_occurrence": co,
        "assignment": assignment,
    }


def majority_labels(own: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """For each positive label of ``own [H, W]``, the label of ``truth [H, W]`` under most of it,
    if that covers at least half of it (else 0).

    >>> own = np.array([[1, 1, 1, 2], [3, 3, 3, 2]])
    >>> truth = np.array([[7, 7, 0, 9], [5, 6, 0, 9]])
    >>> majority_labels(own, truth)
    {1: 7, 2: 9, 3: 0}
    """
    out = {}
    for label in np.unique(own[own > 0]):
        values, counts = np.unique(truth[own == label], return_counts=True)
        best = int(np.argmax(counts))
        out[int(label)] = int(values[best]) if counts[best] >= 0.5 * counts.sum() else 0
    return out


def to_true_labels(pred_labels: np.ndarray, to_true: list[dict[int, int]]) -> np.ndarray:
    """``pred_labels [P, T]`` (each track's own segment label per frame) as the true labels under
    them: ``to_true[t]`` maps frame ``t``'s own labels (:func:`majority_labels`); unmapped -> 0.

    >>> to_true_labels(np.array([[1, 2, 0], [2, 0, 4]]), [{1: 7, 2: 9}, {2: 7}, {}])
    array([[7, 7, 0],
           [9, 0, 0]])
    """
    pred_labels = np.asarray(pred_labels, dtype=np.int64)
    if pred_labels.shape[-1] != len(to_true):
        raise ValueError(f"pred_labels cover {pred_labels.shape[-1]} frames, to_true {len(to_true)}")
    return np.array([[to_true[t].get(int(label), 0) for t, label in enumerate(row)] for row in pred_labels],
                    dtype=np.int64).reshape(pred_labels.shape)
