"""Photometric refinement: the CPU backward pass, and the memory's splats at views it did not observe.

    python benchmarks/refine.py [--parts backward heldout incremental job] [--preset long] [--seeds 0]
                                [--look lighting textures] [--seconds S] [--episodes DIR]
                                [--observe-seconds 60] [--steps 1000] [--out DIR]

- ``backward``: forward + backward of the 50k-Gaussian PyBullet tabletop at 256x256 (the renderer
  benchmark's scene and orbit), numba kernels against the torch reference under autograd, in the
  same run (median ms over the frames); and the gradients' relative error against torch autograd in
  float64 on an 8k-Gaussian tabletop.
- ``heldout``: (on the preset as generated, or lit and textured with ``--look lighting textures``)
  a memory observes the even frames of the first ``--observe-seconds`` of each seed and
  is drawn, keyframe pasting off and on, at every 10th odd frame of that span (views it never
  observed, inside the observed region): PSNR on static pixels, on static pixels above the floor
  (the table and occluders: the floor is drawn by the ground layer; views that show none are left
  out of that mean) and on the whole image, SSIM on
  static pixels, before and after ``--steps`` refinement steps (ms per step, splats).
- ``incremental``: the same observation with ``refine_steps_per_keyframe`` steps run after every new
  keyframe: frames/s, the time split, and the held-out PSNR it reaches.
- ``job``: ``splatworld refine`` (``--steps``) on a memory that observed the whole episode.

Writes ``OUT/refine.json``. Last line: ``backward_speedup=... grad_rel_err=... psnr_before=...
psnr_after=... ssim_after=... psnr_after_pasted=... ms_per_step=... observe_fps_incremental=... job_seconds=...``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from splatworld.evaluation.image import psnr, ssim
from splatworld.jobs.config import load_config
from splatworld.jobs.generate import generated_episode
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.progress import progress_bar
from splatworld.render import orbit_path, render
from splatworld.scene import Camera, look_at
from splatworld.scene.episode import Episode
from splatworld.sim.generate import generate_episode

FLOOR_MARGIN = 0.05  # m: static pixels higher than this above the floor (z = 0) are the table and occluders
PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _loss_and_grads(g, cam, backend: str, target: torch.Tensor) -> list[torch.Tensor]:
    params = [getattr(g, name).clone().requires_grad_(True) for name in PARAMS]
    out = render(type(g)(*params, g.object_ids), cam, background=(1.0, 1.0, 1.0), backend=backend)
    (((out.rgb - target) ** 2).mean() + 0.1 * out.depth.mean() + out.alpha.mean()).backward()
    return [p.grad for p in params]


def backward_part(frames: int, torch_frames: int) -> dict:
    from splatworld.sim import gaussians_from_pybullet, tabletop_world
    from splatworld.sim.pybullet_scene import TABLE_TOP_Z

    world = tabletop_world(n_objects=5, seed=0)
    try:
        g = gaussians_from_pybullet(world, total=50_000, seed=0)
        small = gaussians_from_pybullet(world, total=8_000, seed=1)
    finally:
        world.close()
    cameras = orbit_path(frames, center=(0.0, 0.0, TABLE_TOP_Z), radius=1.6, height=0.9, fov_y_deg=55.0, width=256,
                         height_px=256)
    target = torch.rand(256, 256, 3, generator=torch.Generator().manual_seed(0))
    _loss_and_grads(g, cameras[0], "cpu", target)  # compile
    times = {}
    for backend, cams in (("cpu", cameras), ("torch", cameras[:torch_frames])):
        ms = []
        for cam in cams:
            started = time.perf_counter()
            _loss_and_grads(g, cam, backend, target)
            ms.append(1000 * (time.perf_counter() - started))
        times[backend] = statistics.median(ms)
    with torch.no_grad():
        forward = []
        for cam in cameras:
            started = time.perf_counter()
            render(g, cam, background=(1.0, 1.0, 1.0), backend="cpu")
            forward.append(1000 * (time.perf_counter() - started))
    cam = Camera.from_fov(50.0, 128, 128, look_at([1.0, -1.1, TABLE_TOP_Z + 0.7], [0.0, 0.0, TABLE_TOP_Z]))
    small64 = small.to(dtype=torch.float64)
    target64 = torch.rand(128, 128, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, got = (_loss_and_grads(small64, cam, b, target64) for b in ("torch", "cpu"))
    errors = {name: float((c - r).norm() / r.norm()) for name, r, c in zip(PARAMS, ref, got)}
    return {"gaussians": len(g), "cpu_ms": times["cpu"], "torch_ms": times["torch"], "cpu_forward_ms":
            statistics.median(forward), "speedup": times["torch"] / times["cpu"], "grad_rel_err": errors,
            "grad_rel_err_max": max(errors.values())}


def _held_out_frames(k: int) -> list[int]:
    return list(range(1, k, 10))


def held_out_scores(episode: Episode, memory: SceneMemory, frames: list[int], paste: bool) -> dict:
    """Mean static-pixel PSNR / SSIM and whole-image PSNR of the memory drawn at ``frames`` (odd frames:
    the memory observed frame ``i`` as its frame ``i // 2``)."""
    static_psnr, image_psnr, static_ssim, above_psnr = [], [], [], []
    for i in frames:
        frame = episode[i]
        out = memory.render(frame.camera, frame=i // 2, paste_keyframes=paste)
        pred = (out.rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        static = (frame.instances == 0) & (frame.depth > 0)
        height = frame.camera.backproject(torch.from_numpy(frame.depth).double())[..., 2].numpy()
        static_psnr.append(psnr(pred, frame.rgb, static))
        above_psnr.append(psnr(pred, frame.rgb, static & (height > FLOOR_MARGIN)))
        image_psnr.append(psnr(pred, frame.rgb))
        static_ssim.append(ssim(pred, frame.rgb, static))
    return {"psnr_static": float(np.mean(static_psnr)), "psnr_above_floor": float(np.nanmean(above_psnr)),
            "psnr_image": float(np.mean(image_psnr)), "ssim_static": float(np.nanmean(static_ssim))}


def observe_even(episode: Episode, k: int, config: MemoryConfig, progress: bool) -> tuple[SceneMemory, float]:
    memory = SceneMemory(config, agent_label=episode.agent_label)
    started = time.perf_counter()
    for i in progress_bar(range(0, k, 2), desc="observe", unit="frame", disable=not progress):
        memory.observe(episode[i])
    return memory, time.perf_counter() - started


def heldout_part(episode: Episode, k: int, steps: int, progress: bool) -> dict:
    memory, _ = observe_even(episode, k, MemoryConfig(refine_steps_per_keyframe=0), progress)
    frames = _held_out_frames(k)
    before = {paste: held_out_scores(episode, memory, frames, paste) for paste in (False, True)}
    splats_before = len(memory.static_gaussians())
    bar = progress_bar(total=steps, desc="refine", unit="step", disable=not progress)
    started = time.perf_counter()
    losses = memory.refine(steps, on_step=lambda *_: bar.update(1))
    seconds = time.perf_counter() - started
    bar.close()
    after = {paste: held_out_scores(episode, memory, frames, paste) for paste in (False, True)}
    return {"observed_frames": len(range(0, k, 2)), "held_out_frames": len(frames), "keyframes": len(memory.keyframes),
            "steps": steps, "ms_per_step": 1000 * seconds / steps, "splats_before": splats_before,
            "splats_after": len(memory.static_gaussians()), "loss_first_50": float(np.mean(losses[:50])),
            "loss_last_50": float(np.mean(losses[-50:])),
            "before": before[False], "after": after[False], "before_pasted": before[True], "after_pasted": after[True]}


def incremental_part(episode: Episode, k: int, steps_per_keyframe: int, progress: bool) -> dict:
    memory, seconds = observe_even(episode, k, MemoryConfig(refine_steps_per_keyframe=steps_per_keyframe), progress)
    observed = len(range(0, k, 2))
    scores = held_out_scores(episode, memory, _held_out_frames(k), False)
    return {"steps_per_keyframe": steps_per_keyframe, "frames_per_second": observed / seconds,
            "refine_seconds": memory.refine_seconds, "other_seconds": seconds - memory.refine_seconds,
            "keyframes": len(memory.keyframes), "steps": memory.static_map.refined.steps, **scores}


def job_part(episode: Episode, steps: int, out: Path, progress: bool) -> dict:
    from splatworld.cli import main

    memory = SceneMemory(agent_label=episode.agent_label)
    for i in progress_bar(range(len(episode)), desc="observe all", unit="frame", disable=not progress):
        memory.observe(episode[i])
    path = memory.save(out / "memory_whole.pt")
    started = time.perf_counter()
    code = main(["refine", f"memory={path}", f"out={out / 'memory_whole_refined.pt'}", f"steps={steps}",
                 f"progress={str(progress).lower()}"])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"splatworld refine failed with {code}")
    return {"episode_seconds": len(episode) / episode.fps, "keyframes": len(memory.keyframes), "steps": steps,
            "seconds": seconds}


def look_episode(folder: Path, preset: str, seed: int, look: list[str], seconds: float | None,
                 progress: bool) -> Path:
    """The preset's episode (cached in ``folder``), generated with the ``look`` options if any."""
    if not look and seconds is None:
        return generated_episode(folder, preset, seed, progress=progress)
    path = folder / f"{preset}_{'_'.join(sorted(look)) or 'plain'}_{seconds or 'all'}s_seed{seed}"
    if not (path / "ground_truth.json").exists():
        overrides = [f"scenario={preset}", f"seed={seed}", f"out={path}", f"progress={str(progress).lower()}",
                     *(f"{option}=true" for option in look), *([f"seconds={seconds}"] if seconds else [])]
        generate_episode(load_config("generate", overrides))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["backward", "heldout", "incremental", "job"],
                        choices=["backward", "heldout", "incremental", "job"])
    parser.add_argument("--preset", default="long")
    parser.add_argument("--look", nargs="*", default=[], choices=["lighting", "textures"],
                        help="generate the preset with PyBullet lighting / procedural textures (sim/look.py)")
    parser.add_argument("--seconds", type=float, default=None, help="generate only this much of the preset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--episodes", type=Path, default=Path(__file__).parent / ".episodes")
    parser.add_argument("--observe-seconds", type=float, default=60.0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--steps-per-keyframe", type=int, default=2)
    parser.add_argument("--frames", type=int, default=20, help="orbit frames for the backward timing")
    parser.add_argument("--torch-frames", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("refine_out"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    progress = not args.quiet
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"torch_threads": torch.get_num_threads()}
    if "backward" in args.parts:
        results["backward"] = b = backward_part(args.frames, args.torch_frames)
        print(f"backward (50k tabletop, 256x256): cpu {b['cpu_ms']:.0f} ms vs torch {b['torch_ms']:.0f} ms forward + "
              f"backward = {b['speedup']:.1f}x (cpu forward alone {b['cpu_forward_ms']:.0f} ms); gradient relative "
              f"error (float64, 8k): max {b['grad_rel_err_max']:.1e}")
    for seed in args.seeds:
        episode = Episode(look_episode(args.episodes, args.preset, seed, args.look, args.seconds, progress))
        k = int(round(args.observe_seconds * episode.fps))
        per_seed = results.setdefault("seeds", {}).setdefault(str(seed), {})
        if "heldout" in args.parts:
            per_seed["heldout"] = h = heldout_part(episode, k, args.steps, progress)
            print(f"seed {seed} held-out ({h['held_out_frames']} views, pasting off): PSNR static "
                  f"{h['before']['psnr_static']:.2f} -> {h['after']['psnr_static']:.2f} dB (above the floor "
                  f"{h['before']['psnr_above_floor']:.2f} -> {h['after']['psnr_above_floor']:.2f}), image "
                  f"{h['before']['psnr_image']:.2f} -> {h['after']['psnr_image']:.2f} dB, SSIM static "
                  f"{h['before']['ssim_static']:.3f} -> {h['after']['ssim_static']:.3f}; pasting on: "
                  f"{h['before_pasted']['psnr_static']:.2f} -> {h['after_pasted']['psnr_static']:.2f} dB; "
                  f"{h['ms_per_step']:.0f} ms/step, splats {h['splats_before']} -> {h['splats_after']}")
        if "incremental" in args.parts:
            per_seed["incremental"] = inc = incremental_part(episode, k, args.steps_per_keyframe, progress)
            print(f"seed {seed} incremental ({inc['steps_per_keyframe']} steps per keyframe, {inc['steps']} steps): "
                  f"{inc['frames_per_second']:.1f} frames/s (refine {inc['refine_seconds']:.1f} s, the rest "
                  f"{inc['other_seconds']:.1f} s); held-out PSNR static {inc['psnr_static']:.2f} dB")
        if "job" in args.parts:
            per_seed["job"] = j = job_part(episode, args.steps, args.out, progress)
            print(f"seed {seed} splatworld refine on the {j['episode_seconds']:.0f} s memory: {j['steps']} steps on "
                  f"{j['keyframes']} keyframes in {j['seconds']:.0f} s")
    (args.out / "refine.json").write_text(json.dumps(results, indent=1))
    seeds = list(results.get("seeds", {}).values())

    def mean(part: str, *keys) -> str:
        values = []
        for s in seeds:
            if part in s:
                v = s[part]
                for key in keys:
                    v = v[key]
                values.append(v)
        return f"{np.mean(values):.3f}" if values else "nan"

    b = results.get("backward", {})
    print(f"backward_speedup={b.get('speedup', float('nan')):.2f} grad_rel_err={b.get('grad_rel_err_max', float('nan')):.1e} "
          f"psnr_before={mean('heldout', 'before', 'psnr_static')} psnr_after={mean('heldout', 'after', 'psnr_static')} "
          f"ssim_after={mean('heldout', 'after', 'ssim_static')} "
          f"psnr_after_pasted={mean('heldout', 'after_pasted', 'psnr_static')} "
          f"ms_per_step={mean('heldout', 'ms_per_step')} "
          f"observe_fps_incremental={mean('incremental', 'frames_per_second')} job_seconds={mean('job', 'seconds')}")


if __name__ == "__main__":
    main()
