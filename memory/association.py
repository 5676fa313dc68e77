"""Which remembered object each segment of a frame is (labels need not be consistent across frames).

Stage 1 tracks (:func:`match_in_place`): segments are matched to objects not displaced by
Hungarian assignment on 3D distance, overlap with the object's footprint in the memory's render of
the frame, and colour. Between the stages, the memory folds the parts of an object cut in two by
an occluder into its matched part (:func:`~splatworld.memory.segmentation.merge_parts`). Stage 2
(:func:`reidentify`) re-identifies: unmatched segments are matched to unmatched objects (hidden, out of view
or displaced, however long ago) by colour and size, wherever they reappear.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from splatworld.memory.config import MemoryConfig
from splatworld.memory.tracks import ObjectTrack, Segment, TrackState


def segments_of(instances: np.ndarray, valid: np.ndarray, points: np.ndarray, colors: np.ndarray,
                agent_label: int, min_points: int) -> list[Segment]:
    """One segment per instance label (positive, not ``agent_label``) with at least ``min_points``
    valid pixels (``valid [H, W]``; ``points [H, W, 3]`` world, ``colors [H, W, 3]`` in [0, 1])."""
    out = []
    for label in np.unique(instances[valid]):
        if label <= 0 or label == agent_label:
            continue
        mask = (instances == label) & valid
        if mask.sum() < min_points:
            continue
        out.append(Segment.of(label, mask, points[mask], colors[mask]))
    return out


def color_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of two mean colours: chromaticity mostly, brightness a little (shading varies)."""
    sa, sb = a.sum() + 1e-6, b.sum() + 1e-6
    return float(np.linalg.norm(a / sa - b / sb) + 0.15 * abs(sa - sb) / 3)


def downsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``shape`` (pixel centres)."""
    ys = ((np.arange(shape[0]) + 0.5) * image.shape[0] / shape[0]).astype(int)
    xs = ((np.arange(shape[1]) + 0.5) * image.shape[1] / shape[1]).astype(int)
    return image[ys][:, xs]


def hungarian(cost: np.ndarray, rows: list, cols: list) -> dict:
    """Minimum-cost one-to-one assignment over finite entries: ``{rows[i]: cols[j]}``."""
    finite = np.isfinite(cost)
    if not finite.any():
        return {}
    r, c = linear_sum_assignment(np.where(finite, cost, 1e9))
    return {rows[i]: cols[j] for i, j in zip(r, c) if finite[i, j]}


def match_in_place(segments: list[Segment], tracks: list[ObjectTrack], object_ids: np.ndarray | None,
                   cfg: MemoryConfig) -> dict[int, ObjectTrack]:
    """Stage 1: ``{segment index: track}`` for the objects not displaced that the segments show
    where they are remembered. ``object_ids [h, w]``: the memory's render of the frame at
    ``render_scale`` (track id per pixel), or None where the memory drew nothing."""
    matches: dict[int, ObjectTrack] = {}
    candidates = [t for t in tracks if t.state != TrackState.DISPLACED]
    if segments and candidates:
        cost = np.full((len(segments), len(candidates)), np.inf)
        for i, seg in enumerate(segments):
            seg_small = downsample(seg.mask, object_ids.shape) if object_ids is not None else None
            for j, t in enumerate(candidates):
                d = np.linalg.norm(seg.centroid - t.centroid)
                gate = max(cfg.track_gate, 0.5 * float(np.linalg.norm(t.extent)))
                c = color_distance(seg.color, t.color)
                if d > gate or c > cfg.color_gate:
                    continue
                iou = 0.0
                if seg_small is not None:
                    foot = object_ids == t.id
                    union = (foot | seg_small).sum()
                    iou = (foot & seg_small).sum() / union if union else 0.0
                cost[i, j] = d / gate + 0.5 * (1 - iou) + c / cfg.color_gate
        matches.update(hungarian(cost, list(range(len(segments))), candidates))
    return matches


def reidentify(segments: list[Segment], tracks: list[ObjectTrack], matches: dict[int, ObjectTrack],
               cfg: MemoryConfig) -> dict[int, ObjectTrack]:
    """Stage 2: ``matches`` (stage 1's) extended by re-identifying objects not tracked in place,
    wherever they reappear, in the segments left (by colour and size)."""
    matches = dict(matches)
    left = [i for i in range(len(segments)) if i not in matches]
    taken = {t.id for t in matches.values()}
    pool = [t for t in tracks if t.id not in taken]
    if left and pool:
        cost = np.full((len(left), len(pool)), np.inf)
        for a, i in enumerate(left):
            seg = segments[i]
            for b, t in enumerate(pool):
                c = color_distance(seg.color, t.color)
                size = float(np.max(t.extent))
                if c > cfg.reid_color_gate or seg.extent > 1.5 * size + 0.02:
                    continue
                # prefer objects known to have left their place
                left_place = t.state in (TrackState.DISPLACED, TrackState.CONTRADICTED, TrackState.OUT_OF_VIEW)
                prior = 0.0 if left_place else 0.5
                cost[a, b] = c / cfg.reid_color_gate + prior + 0.2 * min(1.0, np.linalg.norm(
                    seg.centroid - t.centroid))
        matches.update(hungarian(cost, left, pool))
    return matches
