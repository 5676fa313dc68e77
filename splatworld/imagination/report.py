"""An imagined episode against its ground truth: side-by-side video and the permanence summary.

Used by ``splatworld imagine`` when the episode has ``ground_truth.json`` (the world model never
reads it; this is scoring and display only).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from tqdm.auto import tqdm

from splatworld.evaluation import fit_alignment, identity_metrics, psnr
from splatworld.memory.scene_memory import SceneMemory
from splatworld.render.video import FrameWriter
from splatworld.scene.episode import Episode
from splatworld.scene.transforms import pose_to_matrix

MIN_HIDDEN_SECONDS = 1.0  # shorter gaps (a frame or two behind the pusher) are not permanence events
UNTOUCHED = 0.01  # m: an object that moved less than this while hidden was not touched
_ERROR_COLORS = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _matrix(pose) -> np.ndarray:
    return pose_to_matrix(torch.as_tensor(np.asarray(pose, dtype=np.float64))).numpy()


def _memory_to_truth(memory: SceneMemory, gt: list[dict], observed: int) -> dict[int, tuple[int, np.ndarray]]:
    """gt object index -> (memory object id, object-frame alignment ``X [4, 4]``) for every object the
    memory tracked over the observed frames (IDF1 matching; alignment fitted where it was tracked)."""
    tracks = memory.tracks_json()["objects"]
    gt_labels = np.array([o["labels"][:observed] for o in gt])
    pred_labels = np.array([t["labels"] for t in tracks])
    out = {}
    for g, p in identity_metrics(gt_labels, pred_labels)["assignment"].items():
        tracked = np.flatnonzero((gt_labels[g] != 0) & (pred_labels[p] == gt_labels[g]))
        if len(tracked):
            out[g] = (tracks[p]["id"], fit_alignment([gt[g]["poses"][i] for i in tracked],
                                                     [tracks[p]["poses"][i] for i in tracked]))
    return out


_CORNERS = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)],
                        dtype=torch.float64)


def _box_in_image(camera, obj: dict, frame: int) -> bool:
    """Whether the ground-truth box of ``obj`` (``extent`` about its pose) projects wholly inside the image."""
    pose = _matrix(obj["poses"][frame])
    corners = torch.from_numpy(pose[:3, :3]) @ (_CORNERS * torch.tensor(obj["extent"])).T
    uv, z = camera.project(corners.T + torch.from_numpy(pose[:3, 3]))
    return bool((z > 0).all() and (uv[:, 0] >= 0).all() and (uv[:, 0] < camera.width).all()
                and (uv[:, 1] >= 0).all() and (uv[:, 1] < camera.height).all())


def _events(episode: Episode, gt: list[dict], start: int, end: int) -> list[dict]:
    """Hide-and-reappear events whose reappearance frame ``b`` lies in ``[start, end)``: the object's
    last visible frame ``a`` before, its hidden time, whether it was in view while hidden (then
    ``occluded``, else ``out_of_view``) and whether it moved (``untouched``: less than 1 cm)."""
    events = []
    for g, obj in enumerate(gt):
        visible = np.flatnonzero(np.asarray(obj["labels"][:end]) != 0)
        for a, b in zip(visible[:-1], visible[1:]):
            hidden = (b - a - 1) / episode.fps
            if b < start or hidden < MIN_HIDDEN_SECONDS:
                continue
            middle = (a + b) // 2
            camera = episode.camera(middle)
            uv, z = camera.project(torch.tensor(obj["poses"][middle][:3], dtype=torch.float64)[None])
            u, v = uv[0].tolist()
            in_view = z.item() > 0 and 0 <= u < camera.width and 0 <= v < camera.height
            # scored where it is back in sight: the first frame of its visible run with its whole box
            # inside the image and at least half of it unoccluded (its first frame back may show a
            # sliver of it at the image border); the run's last frame if it never is
            run_end = b
            while run_end + 1 < end and obj["labels"][run_end + 1] != 0:
                run_end += 1
            fraction = obj.get("visible_fraction", [1.0] * len(obj["labels"]))
            scored = next((int(c) for c in range(b, run_end + 1)
                           if fraction[c] >= 0.5 and _box_in_image(episode.camera(c), obj, c)), int(run_end))
            moved = float(np.linalg.norm(np.subtract(obj["poses"][scored][:3], obj["poses"][a][:3])))
            events.append({"object": g, "name": obj.get("name", str(obj.get("id", g))), "hidden_from": int(a) + 1,
                           "reappears": int(b), "scored_at": scored, "hidden_seconds": float(hidden),
                           "cause": "occluded" if in_view else "out_of_view", "untouched": bool(moved < UNTOUCHED)})
    return events


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
                              video: Path, progress: bool = True) -> dict:
    """Score ``imagined`` (frames ``[observed, observed + len(imagined))`` of ``episode``) and write
    ``video`` (ground truth | imagined | per-pixel error). Returns the permanence summary: static-region
    PSNR per minute of imagination, and per reappearance event the mask IoU and position error."""
    gt = episode.ground_truth()["objects"]
    n = len(imagined)
    end = observed + n
    if (imagined.width, imagined.height) != (episode.width, episode.height):
        return {"note": "imagined at another resolution than the episode: no comparison"}
    mapping = _memory_to_truth(memory, gt, observed)
    tracks = {t["id"]: t for t in imagined.tracks()["objects"]}
    events = _events(episode, gt, observed, end)
    at_frame = {}
    for e in events:
        at_frame.setdefault(e["scored_at"], []).append(e)

    static_psnr = np.full(n, np.nan)
    with ThreadPoolExecutor(2) as pool, FrameWriter(video, fps=episode.fps) as writer:
        for j, (truth, pred) in enumerate(tqdm(_prefetched(pool, episode, imagined, observed), total=n,
                                               desc="compare", unit="frame", disable=not progress)):
            static = truth.instances == 0
            static_psnr[j] = psnr(pred.rgb, truth.rgb, static)
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
    untouched = [e for e in events if e["untouched"]]
    return {"static_psnr_per_minute": per_minute,
            "static_psnr_drop_db": per_minute[0] - per_minute[-1] if per_minute else None,
            "events": events,
            "untouched_reappearances": len(untouched),
            "untouched_iou_min": min((e["iou"] for e in untouched), default=None),
            "untouched_iou_ge_0.5": sum(e["iou"] >= 0.5 for e in untouched)}


def print_summary(summary: dict, out: Path) -> None:
    """The permanence summary as a few lines of text."""
    if "static_psnr_per_minute" in summary:
        print("static-region PSNR per imagined minute (dB): "
              + " ".join(f"{v:.1f}" for v in summary["static_psnr_per_minute"]))
    events = summary.get("events", [])
    if events:
        print(f"{'object':<12}{'hidden':>8}  {'cause':<12}{'reappears':>10}{'moved?':>8}{'mask IoU':>10}{'error':>9}")
        for e in events:
            error = "-" if e.get("position_error") is None else f"{100 * e['position_error']:.1f} cm"
            print(f"{e['name']:<12}{e['hidden_seconds']:>7.1f}s  {e['cause']:<12}{e['reappears']:>10}"
                  f"{'no' if e['untouched'] else 'yes':>8}{e.get('iou', 0.0):>10.2f}{error:>9}")
        print(f"untouched objects reappearing with mask IoU >= 0.5: {summary['untouched_iou_ge_0.5']} of "
              f"{summary['untouched_reappearances']}")
    print(f"-> {out} (imagined.mp4{', side_by_side.mp4' if 'events' in summary else ''}, summary.json)")
