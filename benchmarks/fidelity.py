"""How faithful the imagined video is to the memory: still objects, model extents, the static picture.

    python benchmarks/fidelity.py [--preset long] [--seeds 0 1 2] [--episodes DIR] [--out DIR] [--parts imagine extent]
                                  [--memory KEY=VALUE ...] [--refine-steps N] [--checkpoint FILE] [--model NAME]
                                  [--sensor ideal|kinect|realsense]

For each seed of the preset, under the imagination protocol (observe the first ``--observe-seconds``,
imagine the rest from the camera path and the agent's commands):

- OPR (IoU >= 0.5), presence and mean IoU of the `still` and `moved` events per hidden-time bin
  (:func:`splatworld.scene.events.hide_events`, scored with :func:`splatworld.evaluation.permanence.mask_scores`),
  every frame in which an object the memory held when imagination began is missing from the
  imagined state (vanished), and, apart, every frame in which one the truth shows substantially is
  drawn nowhere (its imagined pose put it out of sight: a question of dynamics for moved objects);
- static-region PSNR per imagined minute, split into pixels whose surface (a 5 cm cell of the true
  depth's world point) was seen during the observation ("revisited") and ground pixels (floor or
  table top) never seen ("unseen ground"), and the revisited pixels the imagined frame also draws as
  static ("revisited_static": without the pixels an object the dynamics misplaced covers); the peer
  on the unseen ground is the memory's background
  colour drawn there (what the renderer showed before the ground was completed);
- imagination frames/s (drawing only, scoring excluded), against the episode's frame rate;
- after a separate memory observes the whole episode: each object's model extent along the true
  object's axes (its points, aligned with :func:`splatworld.evaluation.imagined.memory_to_truth`) over the true
  ``extent``, the largest of the three axes' ratios.

Writes ``OUT/fidelity.json`` (the command's arguments, every event, every object, every minute;
``fidelity_<part>.json`` when one part runs alone) and ``OUT/fidelity.png``.
Last line: ``opr_still=... mean_iou_still=... presence_moved=... opr_moved=... extent_ratio_p90=...
extent_ratio_max=... psnr_revisited=... psnr_unseen=... psnr_unseen_background=... vanished_frames=... realtime=...``
(PSNRs: the worst imagined minute over all seeds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from splatworld.dynamics.models import MODELS
from splatworld.dynamics.train import load_dynamics
from splatworld.evaluation.image import psnr_of_mse
from splatworld.evaluation.imagined import memory_to_truth, observe_labelled
from splatworld.evaluation.permanence import TAU_BINS, mask_scores, permanence_rate
from splatworld.imagination import WorldModel
from splatworld.jobs.generate import generated_episode
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.progress import progress_bar
from splatworld.scene.cameras import Cameras
from splatworld.scene.episode import Episode
from splatworld.scene.events import hide_events, substantially_visible
from splatworld.sim.pybullet_scene import TABLE_HALF, TABLE_TOP_Z

CELL = 0.05  # m: a surface point counts as seen when a seen point fell in its cell
MIN_HIDDEN_SECONDS = 1.0


def cell_keys(points: np.ndarray) -> np.ndarray:
    """int64 keys ``[N]`` of the ``CELL`` cells holding ``points [N, 3]``."""
    ijk = np.floor(points / CELL).astype(np.int64) + (1 << 20)
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def world_points(episode: Episode, frame) -> tuple[np.ndarray, np.ndarray]:
    """``(points [H, W, 3], has_depth [H, W])`` of a ground-truth frame's depth."""
    depth = torch.from_numpy(frame.depth.astype(np.float64))
    return episode.camera(frame.info.index).backproject(depth).numpy(), frame.depth > 0


def is_ground(points: np.ndarray) -> np.ndarray:
    """bool ``[...]``: on the floor (z = 0) or on the table top."""
    z = points[..., 2]
    on_table = (np.abs(points[..., 0]) <= TABLE_HALF[0]) & (np.abs(points[..., 1]) <= TABLE_HALF[1])
    return (np.abs(z) < 0.01) | (on_table & (np.abs(z - TABLE_TOP_Z) < 0.01))


def extent_ratios(episode: Episode, progress: bool) -> list[dict]:
    """Each object's model extent over its true extent after a memory observed the whole episode."""
    memory = SceneMemory(agent_label=episode.agent_label)
    for i in progress_bar(range(len(episode)), desc="observe all", unit="frame", disable=not progress):
        memory.observe(episode[i])
    gt = episode.ground_truth()["objects"]
    by_id = {t.id: t for t in memory.tracks}
    out = []
    for g, (track_id, align) in memory_to_truth(memory, gt, len(episode)).items():
        model = by_id[track_id].model.points
        local = (model - align[:3, 3]) @ align[:3, :3]  # X^-1 p: the track's frame into the true object's
        size = local.max(axis=0) - local.min(axis=0)
        ratios = size / np.asarray(gt[g]["extent"])
        out.append({"object": gt[g]["name"], "true_extent": gt[g]["extent"], "model_extent": size.tolist(),
                    "ratio": float(ratios.max()), "voxels": len(model)})
    return out


def imagine_and_score(episode: Episode, k: int, progress: bool, config: MemoryConfig | None = None,
                      refine_steps: int = 0, checkpoint: str | None = None, model: str = "learned") -> dict:
    """Observe ``[0, k)`` (then refine the memory ``refine_steps`` steps), imagine the rest with the
    dynamics ``model`` (``learned``: the weights of ``checkpoint``, None for the shipped ones), score
    it frame by frame (see the module docstring)."""
    truth = episode.ground_truth()
    gt, fps, n = truth["objects"], episode.fps, len(episode)
    world = WorldModel(SceneMemory(config, agent_label=episode.agent_label), load_dynamics(model, checkpoint),
                       agent_shape=episode.meta.get("agent_shape"))
    to_true = observe_labelled(world, episode, k, progress)
    if refine_steps:
        world.memory.refine(refine_steps)
    mapping = memory_to_truth(world.memory, gt, k, to_true)
    cameras = Cameras.from_nerfstudio(episode.meta, np.stack([episode.info(i).transform_matrix for i in range(n)]))
    events = hide_events(gt, cameras, fps, k, n, MIN_HIDDEN_SECONDS, observed_until=k)
    at_frame = {}
    for e in events:
        if e["scored_at"] is not None:
            at_frame.setdefault(e["scored_at"], []).append(e)
    seen = []
    for i in range(k):
        frame = episode[i]
        points, has_depth = world_points(episode, frame)
        seen.append(np.unique(cell_keys(points[has_depth & (frame.instances == 0)])))
    seen = np.unique(np.concatenate(seen))
    well_seen = {g: substantially_visible(gt[g], np.arange(k, n), cameras) for g in mapping}

    minute = int(round(60 * fps))
    sums = {name: np.zeros((n - k + minute - 1) // minute) for name in
            ("revisited", "revisited_px", "revisited_static", "revisited_static_px", "unseen", "unseen_background",
             "unseen_px")}
    background = np.asarray(world.memory.background) * 255.0
    vanished, unseen_drawn, draw_seconds = [], [], 0.0
    stream = world.imagine((episode.info(i), episode.camera(i)) for i in range(k, n))
    for i in progress_bar(range(k, n), desc="imagine", unit="frame", disable=not progress):
        started = time.perf_counter()
        pred = next(stream)
        draw_seconds += time.perf_counter() - started
        frame = episode[i]
        points, has_depth = world_points(episode, frame)
        static = (frame.instances == 0) & has_depth
        keys = cell_keys(points.reshape(-1, 3))
        at = np.minimum(np.searchsorted(seen, keys), len(seen) - 1)
        observed = (seen[at] == keys).reshape(static.shape)
        m = (i - k) // minute
        err = ((pred.rgb.astype(np.float64) - frame.rgb) ** 2).mean(-1)
        revisited, unseen = static & observed, static & ~observed & is_ground(points)
        sums["revisited"][m] += err[revisited].sum()
        sums["revisited_px"][m] += revisited.sum()
        drawn_static = revisited & (pred.instances == 0)  # not covered by an object the imagination misplaced
        sums["revisited_static"][m] += err[drawn_static].sum()
        sums["revisited_static_px"][m] += drawn_static.sum()
        sums["unseen"][m] += err[unseen].sum()
        sums["unseen_background"][m] += ((frame.rgb[unseen] - background) ** 2).mean(-1).sum()
        sums["unseen_px"][m] += unseen.sum()
        drawn = set(np.unique(pred.instances).tolist())
        for g, (track_id, _) in mapping.items():
            if track_id not in pred.poses:
                vanished.append({"object": gt[g]["name"], "frame": i})
            elif well_seen[g][i - k] and track_id not in drawn:
                unseen_drawn.append({"object": gt[g]["name"], "frame": i})
        for e in at_frame.get(i, []):
            label = gt[e["object"]]["labels"][i]
            pred_mask = pred.instances == mapping[e["object"]][0] if e["object"] in mapping else None
            e.update(mask_scores(frame.instances == label, pred_mask))
    scored = [e for e in events if e["scored_at"] is not None]
    per_minute = {name: [psnr_of_mse(s / max(px, 1), 255.0) if px else None for s, px in zip(sums[name], sums[f"{key}_px"])]
                  for name, key in (("revisited", "revisited"), ("revisited_static", "revisited_static"), ("unseen", "unseen"),
                                    ("unseen_background", "unseen"))}
    return {"events": scored, "psnr_per_minute": per_minute, "vanished": vanished, "out_of_sight": unseen_drawn,
            "imagined_frames": n - k, "draw_seconds": draw_seconds, "fps": fps}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for seed, r in results.items():
        for name, style in (("revisited", "-"), ("unseen", "--"), ("unseen_background", ":")):
            values = [np.nan if v is None else v for v in r["psnr_per_minute"][name]]
            left.plot(np.arange(1, len(values) + 1), values, style, label=f"seed {seed} {name}")
    left.set(xlabel="imagined minute", ylabel="static PSNR (dB)", title="static picture")
    left.legend(fontsize=6)
    rates = permanence_rate([e for r in results.values() for e in r["events"]])
    names = [b for _, b in TAU_BINS]
    for cls, color in (("still", "tab:blue"), ("moved", "tab:orange")):
        cells = [rates["bins"][cls][b] for b in names]
        right.plot(names, [np.nan if c["opr"] is None else c["opr"] for c in cells], "o-", color=color, label=f"{cls} OPR")
        right.plot(names, [np.nan if c["presence"] is None else c["presence"] for c in cells], "s--", color=color,
                   label=f"{cls} presence")
    right.set(xlabel="hidden time", ylim=(-0.05, 1.05), title="object permanence (imagination protocol)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="long")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", default="benchmarks/.episodes", help="generated episodes are cached here")
    parser.add_argument("--observe-seconds", type=float, default=30.0)
    parser.add_argument("--out", default="fidelity_out")
    parser.add_argument("--parts", nargs="+", choices=("imagine", "extent"), default=["imagine", "extent"],
                        help="imagine: the imagination protocol's scores; extent: observe whole episodes for model extents")
    parser.add_argument("--memory", nargs="*", default=[], metavar="KEY=VALUE",
                        help="MemoryConfig overrides for the imagine part, e.g. paste_keyframes=false")
    parser.add_argument("--refine-steps", type=int, default=0, help="imagine: refinement steps after the observation")
    parser.add_argument("--sensor", default="ideal", help="the episodes' sensor noise (splatworld generate sensor=)")
    parser.add_argument("--checkpoint", default=None, help="imagine: learned dynamics (default: the shipped checkpoint)")
    parser.add_argument("--model", default="learned", choices=sorted(MODELS), help="imagine: the dynamics model")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    config = MemoryConfig(**{key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in args.memory)})
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, extents = {}, {}
    for seed in args.seeds:
        extra = () if args.sensor == "ideal" else (f"sensor={args.sensor}",)
        episode = Episode(generated_episode(Path(args.episodes), args.preset, seed, progress=not args.quiet, extra=extra))
        k = int(round(args.observe_seconds * episode.fps))
        if "imagine" in args.parts:
            r = results[seed] = imagine_and_score(episode, k, not args.quiet, config, args.refine_steps,
                                                     args.checkpoint, args.model)
            print(f"seed {seed}: imagined {r['imagined_frames']} frames in {r['draw_seconds']:.1f} s "
                  f"({r['imagined_frames'] / r['draw_seconds'] / r['fps']:.2f}x real time)")
        if "extent" in args.parts:
            extents[seed] = extent_ratios(episode, not args.quiet)
    events = [e for r in results.values() for e in r["events"]]
    rates = permanence_rate(events)
    print(f"{'class':<7}{'bin':>8}{'events':>8}{'OPR':>7}{'presence':>10}{'mean IoU':>10}")
    for cls in ("still", "moved"):
        for _, b in TAU_BINS:
            c = rates["bins"][cls][b]
            if c["events"]:
                print(f"{cls:<7}{b:>8}{c['events']:>8}{c['opr']:>7.3f}{c['presence']:>10.3f}{c['mean_iou']:>10.3f}")
    for e in events:
        if e["class"] == "still" and e["iou"] < 0.5:
            print(f"  still miss: {e['name']} hidden {e['hidden_seconds']:.1f} s ({e['cause']}) scored at frame "
                  f"{e['scored_at']}: IoU {e['iou']:.2f}, presence {e['presence']}")
    ratios = [o["ratio"] for objects in extents.values() for o in objects]
    for seed, objects in extents.items():
        print(f"seed {seed} extent ratios: " + " ".join(f"{o['object']} {o['ratio']:.2f}" for o in objects))
    worst = {}
    for name in ("revisited", "revisited_static", "unseen", "unseen_background"):
        values = [v for r in results.values() for v in r["psnr_per_minute"][name] if v is not None]
        worst[name] = min(values) if values else float("nan")
        for seed, r in results.items():
            print(f"seed {seed} PSNR {name:>17} per minute: "
                  + " ".join("-" if v is None else f"{v:.1f}" for v in r["psnr_per_minute"][name]))
    vanished = sum(len(r["vanished"]) for r in results.values())
    print(f"frames with a truly visible object drawn nowhere (its imagined pose out of sight): "
          f"{sum(len(r['out_of_sight']) for r in results.values())}")
    drawn = sum(r["draw_seconds"] for r in results.values())
    realtime = sum(r["imagined_frames"] / r["fps"] for r in results.values()) / drawn if drawn else float("nan")
    name = "fidelity" if len(args.parts) == 2 else f"fidelity_{args.parts[0]}"
    (out / f"{name}.json").write_text(json.dumps({"arguments": vars(args),
                                                    "results": {str(s): r for s, r in results.items()},
                                                    "extents": {str(s): e for s, e in extents.items()},
                                                    "rates": rates}, indent=1))
    if results:
        plot(results, out / "fidelity.png")
    still, moved = rates["classes"]["still"], rates["classes"]["moved"]
    fmt = lambda v: "nan" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"opr_still={fmt(still['opr'])} mean_iou_still={fmt(still['mean_iou'])} presence_moved={fmt(moved['presence'])} "
          f"opr_moved={fmt(moved['opr'])} extent_ratio_p90={np.percentile(ratios, 90) if ratios else float('nan'):.3f} "
          f"extent_ratio_max={max(ratios) if ratios else float('nan'):.3f} psnr_revisited={worst['revisited']:.2f} "
          f"psnr_revisited_static={worst['revisited_static']:.2f} "
          f"psnr_unseen={worst['unseen']:.2f} psnr_unseen_background={worst['unseen_background']:.2f} "
          f"vanished_frames={vanished} realtime={realtime:.2f}")


if __name__ == "__main__":
    main()
