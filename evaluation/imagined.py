"""An imagined episode against its ground truth: side-by-side video and the permanence summary.

Used by ``splatworld imagine`` when the episode has ``ground_truth.json`` (the world model never
reads it; this is scoring and display only).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps

from splatworld.evaluation import fit_alignment, identity_metrics, majority_labels, psnr, to_true_labels
from splatworld.scene.events import UNTOUCHED, hide_events
from splatworld.imagination.world_model import WorldModel
from splatworld.memory import SceneMemory
from splatworld.progress import progress_bar
from splatworld.render.video import FrameWriter
from splatworld.scene.cameras import Cameras
from splatworld.scene.episode import Episode
from splatworld.scene.transforms import pose_to_matrix

MIN_HIDDEN_SECONDS = 1.0  # shorter gaps (a frame or two behind the pusher) are not permanence events
_ERROR_COLORS = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _matrix(pose) -> np.ndarray:
    return pose_to_matrix(torch.as_tensor(np.asarray(pose, dtype=np.float64))).numpy()


def memory_to_truth(memory: SceneMemory, gt: list[dict], observed: int,
                    to_true: list[dict[int, int]] | None = None) -> dict[int, tuple[int, np.ndarray]]:
    """gt object index -> (memory object id, object-frame alignment ``X [4, 4]``: ``T_gt ~ T_track X``)
    for every object the memory tracked over the first ``observed`` frames (IDF1 matching;
    alignment fitted where it was tracked). ``to_true``: per observed frame, the memory's own
    segment labels -> true labels (:func:`~splatworld.evaluation.majority_labels`), for a memory
    that segments from geometry; None when its labels are the episode's instance ids."""
    tracks = memory.tracks_json()["objects"]
    gt_labels = np.array([o["labels"][:observed] for o in gt])
    pred_labels = np.array([t["labels"][:observed] for t in tracks],  # a next-frame run observed on
                           dtype=np.int64).reshape(len(tracks), observed)
    if to_true is not None:
        pred_labels = to_true_labels(pred_labels, to_true[:observed])
    out = {}
    for g, p in identity_metrics(gt_labels, pred_labels)["assignment"].items():
        tracked = np.flatnonzero((gt_labels[g] != 0) & (pred_labels[p] == gt_labels[g]))
        if len(tracked):
            out[g] = (tracks[p]["id"], fit_alignment([gt[g]["poses"][i] for i in tracked],
                                                     [tracks[p]["poses"][i] for i in tracked]))
    return out


def observe_labelled(world: WorldModel, episode: Episode, until: int, progress: bool = False) -> list[dict[int, int]] | None:
    """Observe frames ``[0, until)`` with ``world`` (:meth:`WorldModel.observe`) and, for a memory
    that segments from geometry, record per frame its own labels -> the true ones
    (:func:`~splatworld.evaluation.majority_labels`: the ``to_true`` of :func:`memory_to_truth`);
    None for a memory whose labels are the episode's."""
    if world.memory.config.segmentation != "geometry":
        world.observe(episode, until, progress=progress)
        return None
    to_true = []
    world.observe(episode, until, progress=progress, after_frame=lambda frame: to_true.append(
        majority_labels(world.memory.last_instances, frame.instances)))
    return to_true


def _prefetched(pool: ThreadPoolExecutor, episode: Episode, imagined: Episode, observed: int, ahead: int = 8):
    """``(ground-truth frame, imagined frame)`` pairs in order, decoded a few frames ahead on ``pool``
    (never all at once: memory stays flat however long the episode)."""
    load = lambda j: (episode[observed + j], imagined[j])  # noqa: E731
    pending = [pool.submit(load, j) for j in range(min(ahead, len(imagined)))]
    for j in range(len(imagined)):
        if j + ahead < len(imagined):
            pending.append(pool.submit(load, j + ahead))
        yield pending.pop(0).result()


def compare_with_ground_truth(episode: Episode, imagined: Episode, memory: SceneMemory, observed: int,
                              video: Path | None, progress: bool = True,
                              to_true: list[dict[int, int]] | None = None) -> dict:
    """Score ``imagined`` (frames ``[observed, observed + len(imagined))`` of ``episode``) and write
    ``video`` (ground truth | imagined | per-pixel error) unless it is ``None``. Returns the permanence summary: static-region
    PSNR per minute of imagination, and per reappearance event the mask IoU and position error.
    ``to_true``: for a memory that segments from geometry, as in :func:`memory_to_truth`."""
    gt = episode.ground_truth()["objects"]
    n = len(imagined)
    end = observed + n
    if (imagined.width, imagined.height) != (episode.width, episode.height):
        return {"note": "imagined at another resolution than the episode: no comparison"}
    mapping = memory_to_truth(memory, gt, observed, to_true)
    tracks = {t["id"]: t for t in imagined.tracks()["objects"]}
    cameras = Cameras.from_nerfstudio(episode.meta, np.stack([episode.info(i).transform_matrix
                                                              for i in range(len(episode))]))
    events = hide_events(gt, cameras, episode.fps, observed, end, MIN_HIDDEN_SECONDS)
    at_frame = {}
    for e in events:
        e.update(iou=None, position_error=None)  # until scored (never, if the object is only ever a sliver)
        e["untouched_since_observed"] = _still_since(gt[e["object"]], observed - 1,
                                                     e["reappears"] if e["scored_at"] is None else e["scored_at"])
        at_frame.setdefault(e["scored_at"], []).append(e)

    static_psnr = np.full(n, np.nan)
    with ThreadPoolExecutor(2) as pool, (nullcontext() if video is None else FrameWriter(video, fps=episode.fps)) as writer:
        for j, (truth, pred) in enumerate(progress_bar(_prefetched(pool, episode, imagined, observed), total=n,
                                               desc="compare", unit="frame", disable=not progress)):
            static = truth.instances == 0
            static_psnr[j] = psnr(pred.rgb, truth.rgb, static)
            if writer is not None:
                error = np.abs(pred.rgb.astype(np.int16) - truth.rgb.astype(np.int16)).mean(-1)
                heat = _ERROR_COLORS[np.clip(error * 4, 0, 255).astype(np.uint8)]  # 64 levels of error fill the scale
                writer.write(np.concatenate([truth.rgb, pred.rgb, heat], axis=1))
            for e in at_frame.get(observed + j, []):
                g, frame = e["object"], observed + j
                if g not in mapping:
                    e.update(remembered=False, iou=0.0, position_error=None)
                    continue
                track_id, align = mapping[g]
                truth_mask = truth.instances == gt[g]["labels"][frame]
                pred_mask = pred.instances == track_id
                union = (truth_mask | pred_mask).sum()
                pose = tracks[track_id]["poses"][j]
                e.update(remembered=pose is not None, iou=float((truth_mask & pred_mask).sum() / max(union, 1)),
                         position_error=None if pose is None else float(np.linalg.norm(
                             (_matrix(pose) @ align)[:3, 3] - np.asarray(gt[g]["poses"][frame][:3]))))
    per_minute = [float(np.nanmean(static_psnr[i:i + int(60 * episode.fps)]))
                  for i in range(0, n, int(60 * episode.fps))]
    scored = [e for e in events if e["iou"] is not None]
    return {"static_psnr_per_minute": per_minute,
            "static_psnr_drop_db": per_minute[0] - per_minute[-1] if per_minute else None,
            "events": events,
            **_iou_counts("untouched", [e for e in scored if e["untouched_since_observed"]]),
            **_iou_counts("untouched_out_of_view", [e for e in scored if e["untouched_since_observed"]
                                                    and e["cause"] == "out_of_view"]),
            **_iou_counts("still_while_hidden", [e for e in scored if e["untouched"]])}


def _still_since(obj: dict, start: int, stop: int) -> bool:
    """The ground-truth object stayed within ``UNTOUCHED`` of its position at frame ``start`` through ``stop``."""
    path = np.asarray(obj["poses"][start:stop + 1], dtype=np.float64)[:, :3]
    return bool(np.linalg.norm(path - path[0], axis=1).max() < UNTOUCHED)


def _iou_counts(name: str, events: list[dict]) -> dict:
    return {f"{name}_reappearances": len(events), f"{name}_iou_min": min((e["iou"] for e in events), default=None),
            f"{name}_iou_ge_0.5": sum(e["iou"] >= 0.5 for e in events)}


def print_summary(summary: dict, out: Path) -> None:
    """The permanence summary as a few lines of text."""
    if "static_psnr_per_minute" in summary:
        print("static-region PSNR per imagined minute (dB): "
              + " ".join(f"{v:.1f}" for v in summary["static_psnr_per_minute"]))
    events = summary.get("events", [])
    if events:
        # moved: "no" (nothing moved it since the observation), "before" (moved earlier, still while
        # hidden) or "hidden" (moved while hidden)
        print(f"{'object':<12}{'hidden':>8}  {'cause':<12}{'reappears':>10}{'moved':>8}{'mask IoU':>10}{'error':>9}")
        for e in events:
            error = "-" if e.get("position_error") is None else f"{100 * e['position_error']:.1f} cm"
            iou = "-" if e.get("iou") is None else f"{e['iou']:.2f}"
            moved = "no" if e["untouched_since_observed"] else "before" if e["untouched"] else "hidden"
            print(f"{e['name']:<12}{e['hidden_seconds']:>7.1f}s  {e['cause']:<12}{e['reappears']:>10}"
                  f"{moved:>8}{iou:>10}{error:>9}")
        print(f"objects nothing moved since the observation, back in view with mask IoU >= 0.5: after being out of "
              f"view {summary['untouched_out_of_view_iou_ge_0.5']} of {summary['untouched_out_of_view_reappearances']}, "
              f"all returns {summary['untouched_iou_ge_0.5']} of {summary['untouched_reappearances']} "
              f"(objects still while hidden: {summary['still_while_hidden_iou_ge_0.5']} of "
              f"{summary['still_while_hidden_reappearances']})")
    written = [name for name in ("imagined.mp4", "side_by_side.mp4") if (out / name).exists()]
    print(f"-> {out} ({', '.join([*written, 'summary.json'])})")
