"""The per-frame pass of the evaluator: each predicted frame against its ground-truth frame (image
scores and the joint histogram of labels), on a process pool."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from splatworld.errors import EpisodeFormatError
from splatworld.evaluation.image import depth_abs_rel, mse, ssim_means
from splatworld.progress import progress_bar
from splatworld.scene.episode import Episode, Frame

_OPEN: dict = {}


def _open(gt_path: str, pred_path: str) -> None:
    torch.set_num_threads(1)  # the pool is the parallelism
    _OPEN.update(gt=Episode(gt_path, check_files=False), pred=Episode(pred_path, check_files=False))


def fit_frame(frame: Frame, width: int, height: int) -> Frame:
    """The predicted frame at the ground truth's size (bilinear RGB, nearest depth and labels)."""
    if frame.rgb.shape[:2] == (height, width):
        return frame
    rgb = torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].float()
    rgb = F.interpolate(rgb, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    nearest = lambda a: None if a is None else F.interpolate(  # noqa: E731
        torch.from_numpy(a.astype(np.float64))[None, None], size=(height, width), mode="nearest")[0, 0].numpy()
    instances = nearest(frame.instances)
    return Frame(frame.info, frame.camera, rgb[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy(),
                 None if frame.depth is None else nearest(frame.depth).astype(np.float32),
                 None if instances is None else instances.astype(np.int64))


def _frame_task(task: tuple) -> dict:
    """Scores of predicted frame ``i`` against ground-truth frame ``m``, or (``kind == 'self'``)
    of predicted frame ``i`` against predicted frame ``j`` on both truths' static pixels."""
    kind, i, m, j, mj = task
    gt_ep, pred_ep = _OPEN["gt"], _OPEN["pred"]
    truth, pred = gt_ep[m], fit_frame(pred_ep[i], gt_ep.width, gt_ep.height)
    static = None if truth.instances is None else truth.instances == 0
    if kind == "self":
        other = fit_frame(pred_ep[j], gt_ep.width, gt_ep.height)
        if static is not None:
            static = static & (gt_ep[mj].instances == 0)
        return {"mse": mse(pred.rgb, other.rgb, static),
                "ssim": ssim_means(pred.rgb, other.rgb, [static], torch.float32)[0]}
    ssim_all, ssim_static = ssim_means(pred.rgb, truth.rgb, [None, static], torch.float32)
    out = {"mse": mse(pred.rgb, truth.rgb), "mse_static": mse(pred.rgb, truth.rgb, static),
           "ssim": ssim_all, "ssim_static": ssim_static,
           "abs_rel": float("nan") if truth.depth is None or pred.depth is None else depth_abs_rel(pred.depth,
                                                                                                   truth.depth)}
    if truth.instances is not None and pred.instances is not None:
        g, p = truth.instances.ravel(), pred.instances.ravel()
        either = (g != 0) | (p != 0)  # most pixels are static in both: no need to count them
        keys, counts = np.unique(g[either] * 65536 + p[either], return_counts=True)
        out["joint"] = np.stack([keys // 65536, keys % 65536, counts], axis=1)
    return out


def run_frames(tasks: list[tuple], gt: Episode, pred: Episode, workers: int, progress: bool, desc: str) -> list[dict]:
    """The scores of every ``task`` (see :func:`_frame_task`), on ``workers`` processes."""
    bar = dict(total=len(tasks), desc=desc, unit="frame", disable=not progress)
    if workers <= 1 or len(tasks) < 64:
        _open(str(gt.path), str(pred.path))
        return [_frame_task(t) for t in progress_bar(tasks, **bar)]
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_open,
                             initargs=(str(gt.path), str(pred.path))) as pool:
        return list(progress_bar(pool.map(_frame_task, tasks, chunksize=16), **bar))


def frame_pairs(gt: Episode, pred: Episode) -> np.ndarray:
    """Ground-truth frame index of each predicted frame, matched by time (within half a frame)."""
    gt_times = np.array([gt.info(i).time for i in range(len(gt))])
    out = np.empty(len(pred), dtype=np.int64)
    for i in range(len(pred)):
        t = pred.info(i).time
        m = int(np.clip(np.searchsorted(gt_times, t), 0, len(gt) - 1))
        if m > 0 and abs(gt_times[m - 1] - t) < abs(gt_times[m] - t):
            m -= 1
        if abs(gt_times[m] - t) > 0.5 / gt.fps:
            raise EpisodeFormatError(pred.path / "transforms.json", f"time {t:.4f} s has no ground-truth frame in "
                                     f"{gt.path} (nearest {gt_times[m]:.4f} s)", frame=i, key="time")
        out[i] = m
    return out
