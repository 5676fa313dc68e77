"""Scene-memory benchmark on generated episodes with reshuffled labels: identity (IDF1, switches),
object permanence after hiding (re-identification, belief, remembered pose), pose accuracy of
visible objects and how far their tracks moved while they stood still, revisit consistency (PSNR
of the memory rendered from a revisited viewpoint, before that frame is observed, on static
pixels), speed, and size (Gaussians and saved bytes at the end vs after the first minute).

    python benchmarks/observe.py [--scenarios occlusion out_of_view long] [--episodes DIR] [--sensor kinect]
                                 [--segmentation geometry] [--poses estimate] [--plot FILE.png]

Episodes are generated into --episodes (default: a temporary folder) unless already there,
with ``--sensor``'s noise (sim/sensor.py; the truth and the given poses are exact); with
``--segmentation geometry`` the memory makes its own segments (the instance masks are only scored);
each run's tracks.json is written beside them (with geometric segments also the tracks as scored,
their labels mapped to the true ones: ``*_tracks_scored.json``), and the objects whose identity
switched are listed with the tracks that took turns holding them.
The peer for speed is real time at the episode's frame rate. Last line:
``idf1_min=... switches_per_10min_max=... reid_rate=... pose_error_max=... belief_min=...
position_median=... centre_position_median=... rotation_median_deg=... still_moved_share=...
revisit_psnr_min=... size_ratio_max=... observe_fps=... ate_rmse_max=...`` (the last with ``--poses estimate``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

import numpy as np
import torch

from splatworld.evaluation import (aligned_pose_errors, centre_errors, depth_edges, identity_metrics, majority_labels, psnr, reappearances,
                                   revisited_frames, still_motion, to_true_labels)
from splatworld.evaluation.report import plot_trajectory_error
from splatworld.jobs.observe import camera_path_errors
from splatworld.atomic import atomic_write_text
from splatworld.render.video import to_uint8
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.scene.episode import Episode
from splatworld.scene.transforms import pose_to_matrix
from splatworld.jobs.generate import generated_episode


def scenarios_and_objects(visible: list[tuple]) -> list[tuple[str, str | None]]:
    """Each scenario (``(name, None)``) followed by its objects (``(name, object)``), in the order seen."""
    groups = []
    for scenario, obj, *_ in visible:
        groups += [g for g in ((scenario, None), (scenario, obj)) if g not in groups]
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["occlusion", "out_of_view", "long"])
    parser.add_argument("--episodes", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sensor", default="ideal", help="ideal | kinect | realsense (splatworld generate sensor=)")
    parser.add_argument("--segmentation", default="instances", help="instances | geometry (MemoryConfig.segmentation)")
    parser.add_argument("--poses", default="given", help="given | estimate (MemoryConfig.poses)")
    parser.add_argument("--plot", type=Path, default=None, help="with --poses estimate: camera error over time (PNG)")
    args = parser.parse_args()
    root = args.episodes or Path(tempfile.mkdtemp())
    rows, all_events = [], []
    visible = []  # per object: scenario, name, and per tracked visible frame its position, rotation, centre errors
    wander = {}  # per scenario: steps the truth stood still, those the track moved on anyway, and how far (m)
    glimpses, paths = 0, {}
    total_frames, total_seconds = 0, 0.0
    for name in args.scenarios:
        extra = () if args.sensor == "ideal" else (f"sensor={args.sensor}",)
        episode = Episode(generated_episode(root, name, args.seed, extra=extra))
        memory = SceneMemory(MemoryConfig(segmentation=args.segmentation, poses=args.poses),
                             agent_label=episode.agent_label)
        c2w = np.stack([episode.info(i).transform_matrix for i in range(len(episode))])
        revisits = revisited_frames(c2w, min_gap=int(30 * episode.fps))[::10]  # a spread-out sample
        revisit_at = {k for k, _ in revisits}
        minute = int(60 * episode.fps)
        seconds, psnrs, interior_psnrs, sizes, to_true = 0.0, [], [], {}, []
        upcoming = episode[0]
        for i in tqdm(range(len(episode)), desc=name, unit="frame"):
            frame, upcoming = upcoming, episode[i + 1] if i + 1 < len(episode) else None
            if i in revisit_at:  # what the memory shows before it sees this frame again (from the true pose)
                image = to_uint8(memory.render(frame.camera, backend="cpu").rgb.numpy())
                static = (frame.instances == 0) & (frame.depth > 0) & (frame.depth < memory.config.max_depth)
                psnrs.append(psnr(image, frame.rgb, static))
                interior_psnrs.append(psnr(image, frame.rgb, static & ~depth_edges(frame.depth)))
            start = time.perf_counter()
            memory.observe(frame, upcoming)
            seconds += time.perf_counter() - start
            if args.segmentation == "geometry":  # the true label under each of the memory's own segments
                to_true.append(majority_labels(memory.last_instances, frame.instances))
            if i + 1 in (minute, len(episode)) and len(episode) >= 2 * minute:
                saved = memory.save(root / f"{name}_seed{args.seed}_memory.pt")
                sizes[i + 1] = (len(memory.gaussians_at()), saved.stat().st_size)
        memory.export_tracks(root / f"{name}_seed{args.seed}_tracks.json")  # for a closer look
        if args.poses == "estimate":
            paths[name] = camera_path_errors(memory, episode)
            position, rotation = paths[name]["position"], paths[name]["rotation"]
            print(f"{name}: camera ATE RMSE {np.sqrt(np.mean(position ** 2)) * 1000:.1f} mm, max "
                  f"{position.max() * 1000:.1f} mm, median rotation error {np.median(rotation):.2f} deg; "
                  f"{memory.lost_frames} frames lost; {len(memory.camera_tracker.references)} references")
        gt = episode.ground_truth()["objects"]
        tracks = memory.tracks_json()["objects"]
        gt_labels, pred_labels = np.array([o["labels"] for o in gt]), np.array([t["labels"] for t in tracks])
        if to_true:
            pred_labels = to_true_labels(pred_labels, to_true)
            for track, row in zip(tracks, pred_labels):
                track["labels"] = row.tolist()
        ident = identity_metrics(gt_labels, pred_labels)
        if to_true:  # the tracks as scored (labels mapped to the true ones)
            atomic_write_text(root / f"{name}_seed{args.seed}_tracks_scored.json", json.dumps({"objects": tracks}))
        for g, count in enumerate(ident["switches_by_object"]):
            if count:  # which tracks took turns holding it, and for how many frames each
                held = {t["id"]: int(n) for t, n in zip(tracks, ident["co_occurrence"][g])}
                print(f"{name}: {gt[g].get('name', gt[g]['id'])}: {count} switches between tracks "
                      + ", ".join(f"{k} ({n} frames)" for k, n in sorted(held.items(), key=lambda kv: -kv[1]) if n))
        for g, p in ident["assignment"].items():  # visible frames where the object's own track holds it
            tracked = np.flatnonzero((gt_labels[g] != 0) & (pred_labels[p] == gt_labels[g]))
            if not len(tracked):
                continue
            pos, rot = aligned_pose_errors([gt[g]["poses"][k] for k in tracked],
                                           [tracks[p]["poses"][k] for k in tracked])
            # the point a symmetric object's wrong rotation cannot move: its final model's centre, placed
            track = next(t for t in memory.tracks if t.id == tracks[p]["id"])
            placed = pose_to_matrix(torch.tensor([tracks[p]["poses"][k] for k in tracked], dtype=torch.float64)).numpy()
            centre = centre_errors([gt[g]["poses"][k] for k in tracked],
                                   placed[:, :3, :3] @ track.box_centre + placed[:, :3, 3])
            visible.append((name, str(gt[g].get("name", gt[g]["id"])), pos, rot, centre))
            still, moved, distance = still_motion([gt[g]["poses"][k] for k in tracked],
                                                  [tracks[p]["poses"][k] for k in tracked])
            counts = wander.setdefault(name, [0, 0, 0.0])
            counts[0] += int(still.sum())
            counts[1] += int((still & moved).sum())
            counts[2] += float(distance[still & moved].sum())
        # a glimpse (a few pixels for a frame or two, never half in sight) is counted, not scored
        events = [e for e in reappearances(gt, tracks, episode.fps) if e["hidden_seconds"] >= 1.0]
        glimpses += sum(e["glimpse"] for e in events)
        events = [e for e in events if not e["glimpse"]]
        all_events += events
        minutes = len(episode) / episode.fps / 60
        if sizes:
            (n0, b0), (n1, b1) = sizes[minute], sizes[len(episode)]
            size_ratio = max(n1 / n0, b1 / b0)
            print(f"{name}: Gaussians {n0} after 1 min, {n1} at the end; saved {b0 / 1e6:.1f} MB -> {b1 / 1e6:.1f} MB; "
                  f"{len(memory.keyframes)} keyframes")
        else:
            size_ratio = float("nan")
        rows.append((name, len(episode), len(gt), len(tracks), ident["idf1"], ident["id_switches"] / minutes * 10,
                     len(events), np.mean([e["reidentified"] for e in events]) if events else float("nan"),
                     len(episode) / seconds, len(memory.static), np.min(psnrs) if psnrs else float("nan"),
                     np.mean(psnrs) if psnrs else float("nan"), len(psnrs), size_ratio,
                     np.mean(interior_psnrs) if psnrs else float("nan")))
        total_frames += len(episode)
        total_seconds += seconds
    print(f"{'scenario':<12}{'frames':>7}{'objects':>8}{'tracks':>7}{'IDF1':>7}{'sw/10min':>9}{'events':>7}"
          f"{'re-id':>7}{'fps':>6}{'static vox':>11}{'revisit PSNR min/mean (n)':>27}{'off-edges':>10}{'size x':>8}")
    for r in rows:
        print(f"{r[0]:<12}{r[1]:>7}{r[2]:>8}{r[3]:>7}{r[4]:>7.3f}{r[5]:>9.2f}{r[6]:>7}{r[7]:>7.3f}{r[8]:>6.1f}{r[9]:>11}"
              f"{r[10]:>14.1f} /{r[11]:>5.1f} ({r[12]:>3}){r[14]:>10.1f}{r[13]:>8.2f}")
    print("visible objects, frames their own track holds: position error of the aligned pose, median (p90) mm; "
          "rotation, median (p90) degrees; position of the model's centre, median (p90) mm")
    for group in [*scenarios_and_objects(visible), ("all", None)]:
        chosen = [v for v in visible if group[0] == "all" or (v[0] == group[0] and group[1] in (None, v[1]))]
        pos, rot, centre = (np.concatenate([v[k] for v in chosen]) for k in (2, 3, 4))
        print(f"  {group[0] if group[1] is None else '  ' + group[1]:<16}{len(pos):>7} frames "
              f"{np.median(pos) * 1000:>6.1f} ({np.percentile(pos, 90) * 1000:>5.1f})  {np.median(rot):>6.1f} "
              f"({np.percentile(rot, 90):>5.1f})  {np.median(centre) * 1000:>6.1f} ({np.percentile(centre, 90) * 1000:>5.1f})")
    for name, (still, moved, distance) in wander.items():
        print(f"{name}: objects standing still, tracks moving anyway (over 1 mm or 1 degree between held frames): "
              f"{moved} of {still} steps ({moved / max(still, 1):.1%}), {distance * 1000:.0f} mm in all")
    still_moved_share = sum(w[1] for w in wander.values()) / max(sum(w[0] for w in wander.values()), 1)
    position_errors, rotation_errors, centre_position_errors = (np.concatenate([v[k] for v in visible]) for k in (2, 3, 4))
    reid = np.mean([e["reidentified"] for e in all_events]) if all_events else float("nan")
    errors = [e["pose_error"] for e in all_events if e["reidentified"]]
    beliefs = [e["belief"] for e in all_events if e["reidentified"]]
    long_hidden = [e for e in all_events if e["hidden_seconds"] >= 60]
    print(f"hide-and-reappear events of untouched objects: {len(all_events)} ({len(long_hidden)} hidden >= 60 s; "
          f"{glimpses} more were glimpses, not scored); "
          f"pose error after re-id: median {np.median(errors) if errors else float('nan'):.4f} m, "
          f"max {max(errors) if errors else float('nan'):.4f} m")
    print(f"idf1_min={min(r[4] for r in rows):.4f} switches_per_10min_max={max(r[5] for r in rows):.2f} "
          f"reid_rate={reid:.4f} pose_error_max={max(errors) if errors else float('nan'):.4f} "
          f"belief_min={min(beliefs) if beliefs else float('nan'):.3f} "
          f"position_median={np.median(position_errors):.4f} centre_position_median={np.median(centre_position_errors):.4f} "
          f"rotation_median_deg={np.median(rotation_errors):.2f} still_moved_share={still_moved_share:.4f} "
          f"revisit_psnr_min={min(r[10] for r in rows):.1f} size_ratio_max={max((r[13] for r in rows if r[13] == r[13]), default=float('nan')):.2f} "
          f"observe_fps={total_frames / total_seconds:.1f}"
          + (f" ate_rmse_max={max(np.sqrt(np.mean(p['position'] ** 2)) for p in paths.values()):.4f}" if paths else ""))
    if paths and args.plot:
        plot_trajectory_error(paths, args.plot)
        print(f"-> {args.plot}")


if __name__ == "__main__":
    main()
