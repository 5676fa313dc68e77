"""``splatworld train-dynamics``: fit the learned dynamics on the memory's own tracks of generated episodes.

    splatworld train-dynamics out=DIR [steps=...]                       # one process
    torchrun --nproc_per_node=2 -m splatworld.jobs.train_dynamics out=DIR  # DDP (gloo on CPU, NCCL on GPU)

Rank 0 builds the dataset (generate -> observe -> tracks) and caches it in ``out/dataset.pt``;
every rank draws its own batches; DDP averages the gradients; rank 0 writes ``checkpoint.pt``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from splatworld.atomic import atomic_write
from splatworld.dynamics.data import Sequence, box_frame, sequence_from_poses
from splatworld.dynamics.models import DynamicsConfig, InteractionModel
from splatworld.dynamics.state import HULL_VERTICES, OUTLINE_DIRECTIONS, Heightmap
from splatworld.dynamics.train import Unrolled, evaluate_loss, pushed_starts, rollout_loss, save_checkpoint
from splatworld.errors import ConfigError, SplatworldError
from splatworld.progress import progress_bar
from splatworld.scene.transforms import pose_to_matrix, rotmat_to_quat
from splatworld.jobs.config import load_config

DATASET_VERSION = 4  # the cached sequences' fields (2: yaw accumulated by swing-twist, tilt; 3: outline; 4: hull)


def sequence_from_memory(memory, episode) -> Sequence:
    """The tracks a :class:`~splatworld.memory.SceneMemory` estimated over ``episode``.

    A track's box is the least-footprint yaw-turned bounding box of its final model (:func:`yaw_box`),
    in its own frame; its pose each frame is that box's in the world. Frames where the episode has no agent pose or action
    raise, since the dynamics are conditioned on them."""
    n_frames = memory.frame_count
    infos = [episode.info(i) for i in range(n_frames)]
    missing = [i.index for i in infos if i.agent_pose is None or i.action is None]
    if missing:
        raise SplatworldError(f"{episode.path}: frame {missing[0]} has no agent_pose or action")
    tracks = memory.tracks  # every track is born with model points
    poses = np.full((n_frames, len(tracks), 7), np.nan)
    seen = np.zeros((n_frames, len(tracks)), bool)
    extent = np.zeros((len(tracks), 3))
    outline = np.zeros((len(tracks), OUTLINE_DIRECTIONS))
    hull = np.zeros((len(tracks), HULL_VERTICES, 3))
    for j, track in enumerate(tracks):
        frame, extent[j], outline[j], hull[j] = box_frame(track.model.points)
        mats = pose_to_matrix(torch.from_numpy(track.poses.array.copy())) @ frame  # [T_j, 4, 4] world_from_box
        centres = mats[:, :3, 3]
        quats = rotmat_to_quat(mats[:, :3, :3])
        k = track.first_frame
        poses[k:k + len(mats), j] = torch.cat([centres, quats], -1).numpy()
        seen[k:k + len(mats), j] = np.asarray(track.labels) != 0
    agent = np.array([i.agent_pose[:3] for i in infos])
    action = np.array([i.action for i in infos])
    return sequence_from_poses(poses, extent, seen, agent, action, 1.0 / episode.fps, Heightmap.from_memory(memory.view()),
                               outline, hull)


def observed_sequence(scenario: str, seconds: float, seed: int, folder: Path, progress: bool = True):
    """Generate (unless already there) and observe one episode. Returns its tracks as a
    :class:`Sequence`, the memory's ``tracks.json`` content and the episode. The first two are
    kept beside the episode (``<episode>_sequence.pt``) and read from there next time."""
    from splatworld.jobs.generate import generated_episode
    from splatworld.memory import SceneMemory
    from splatworld.scene.episode import Episode

    episode = Episode(generated_episode(folder, scenario, seed, seconds, progress))
    cache = episode.path.with_name(f"{episode.path.name}_sequence.pt")
    if cache.exists():
        saved = torch.load(cache, weights_only=False)
        if saved.get("version") == DATASET_VERSION and saved.get("frames") == len(episode):
            return _sequence_from_state(saved["sequence"]), saved["tracks"], episode
    memory = SceneMemory(agent_label=episode.agent_label)
    for i in progress_bar(range(len(episode)), desc=f"observe {episode.path.name}", unit="frame", disable=not progress):
        memory.observe(episode[i])
    seq, tracks = sequence_from_memory(memory, episode), memory.tracks_json()
    saved = {"version": DATASET_VERSION, "frames": len(episode), "sequence": _sequence_state(seq), "tracks": tracks}
    atomic_write(cache, lambda tmp: torch.save(saved, tmp))
    return seq, tracks, episode


def _sequence_state(seq: Sequence) -> dict:
    out = {f.name: getattr(seq, f.name) for f in dataclasses.fields(seq) if f.name != "geometry"}
    g = seq.geometry
    out["geometry"] = {"origin": g.origin, "cell": g.cell, "heights": g.heights, "floor": g.floor}
    return out


def _sequence_from_state(state: dict) -> Sequence:
    return Sequence(**{**state, "geometry": Heightmap(**state["geometry"])})


def build_dataset(cfg: DictConfig, progress: bool) -> dict[str, list[Sequence]]:
    """Train and validation sequences, cached in ``out/dataset.pt`` (keyed by the data settings)."""
    out = Path(cfg.out)
    key = {"version": DATASET_VERSION, "scenario": cfg.scenario, "seconds": cfg.seconds, "train": list(cfg.train_seeds),
           "val": list(cfg.val_seeds)}
    cache = out / "dataset.pt"
    if cache.exists():
        saved = torch.load(cache, weights_only=False)
        if saved.get("key") == key:
            return {split: [_sequence_from_state(s) for s in saved[split]] for split in ("train", "val")}
    data = {split: [observed_sequence(cfg.scenario, cfg.seconds, s, out / "episodes", progress)[0]
                    for s in cfg[f"{split}_seeds"]] for split in ("train", "val")}
    saved = {"key": key, **{k: [_sequence_state(s) for s in v] for k, v in data.items()}}
    atomic_write(cache, lambda tmp: torch.save(saved, tmp))
    return data


def train(cfg: DictConfig) -> Path:
    """Fit the learned model as configured; return the checkpoint path (rank 0's)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train-dynamics: device={cfg.device} but torch.cuda.is_available() is False")
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = bool(cfg.progress) and rank == 0
    if rank == 0:
        data = build_dataset(cfg, progress)
    if world > 1:
        dist.barrier()
        if rank != 0:
            data = build_dataset(cfg, False)  # the cache rank 0 just wrote
    if not data["train"]:
        raise SplatworldError("train-dynamics: no training episodes (train_seeds is empty)")
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = InteractionModel(DynamicsConfig(dt=data["train"][0].dt, hidden=int(cfg.hidden), prior=str(cfg.prior))).to(device)
    # a scene with one object never uses the object-object edge: let DDP skip those parameters
    unrolled = Unrolled(model)
    trained = unrolled if world == 1 else torch.nn.parallel.DistributedDataParallel(
        unrolled, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    rng = np.random.default_rng([cfg.seed, rank])  # each rank its own batches
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    horizon = int(cfg.horizon)
    starts = [pushed_starts(model, seq, horizon, cfg.max_tilt) for seq in data["train"]]
    sizes = np.array([len(s) for s in starts], dtype=float)
    if not sizes.sum():
        raise SplatworldError("train-dynamics: the training episodes hold no pushed object to fit")
    log, start = [], time.perf_counter()
    bar = progress_bar(range(cfg.steps), desc=f"train dynamics x{world}", disable=not progress)
    for step in bar:
        which = rng.choice(len(sizes), p=sizes / sizes.sum())
        frames = starts[which][torch.from_numpy(rng.integers(0, len(starts[which]), cfg.batch))]
        loss, _ = rollout_loss(trained, data["train"][which], frames, horizon, cfg.input_noise, generator,
                               cfg.max_tilt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": float(loss.detach())})
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    metrics = {"train_loss": evaluate_loss(model, data["train"], horizon, cfg.max_tilt),
               "val_loss": evaluate_loss(model, data["val"], horizon, cfg.max_tilt),
               "seconds": time.perf_counter() - start, "processes": world}
    path = out / "checkpoint.pt"
    if world > 1:
        # every rank reports a fingerprint of its weights: DDP keeps them identical
        digest = float(sum(p.double().sum() for p in model.parameters()))
        (out / f"weights_rank{rank}.txt").write_text(f"{digest:.12e}\n")
    if rank == 0:
        save_checkpoint(model, path, {"train": OmegaConf.to_container(cfg), "metrics": metrics, "log": log})
        print(f"train-dynamics: train loss {metrics['train_loss']:.4f}, val loss {metrics['val_loss']:.4f} "
              f"(cm^2 per simulated object-step), {metrics['seconds']:.0f} s -> {path}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m splatworld.jobs.train_dynamics key=value ...`` (torchrun)."""
    train(load_config("train_dynamics", list(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
