"""``splatworld observe``: run the memory over an episode and save what it built."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from splatworld.atomic import atomic_write_text
from splatworld.errors import ConfigError
from splatworld.evaluation import trajectory_errors
from splatworld.evaluation.report import plot_trajectory_error
from splatworld.memory import MemoryConfig, SceneMemory
from splatworld.memory.segmentation import agent_dimensions
from splatworld.progress import progress_bar
from splatworld.scene.episode import Episode
from splatworld.scene.cameras import opencv_to_nerfstudio
from splatworld.scene.ply import write_ply


def observe_episode(cfg: DictConfig) -> SceneMemory:
    """Observe frames ``[0, until)`` of ``cfg.episode``; write memory.pt, tracks.json, scene.ply, summary.json."""
    episode = Episode(cfg.episode)
    until = len(episode) if cfg.until is None else int(cfg.until)
    if not 0 < until <= len(episode):
        raise ConfigError(f"until={until} outside [1, {len(episode)}] for {cfg.episode}")
    config = MemoryConfig(backend=cfg.backend, segmentation=cfg.segmentation, poses=cfg.poses,
                          **agent_dimensions(episode.meta.get("agent_shape")))
    memory = SceneMemory(config, agent_label=episode.agent_label)
    start = time.perf_counter()
    upcoming = episode[0]
    for i in progress_bar(range(until), desc="observe", unit="frame", disable=not cfg.progress):
        frame, upcoming = upcoming, episode[i + 1] if i + 1 < until else None
        memory.observe(frame, upcoming)
    seconds = time.perf_counter() - start
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    memory.save(out / "memory.pt")
    memory.export_tracks(out / "tracks.json")
    write_ply(out / "scene.ply", memory.gaussians_at())
    states = Counter(t.state for t in memory.tracks)
    summary = {"frames": until, "objects": len(memory.tracks), "states": dict(states),
               "static_gaussians": len(memory.static), "object_gaussians": sum(len(t.model) for t in memory.tracks),
               "keyframes": len(memory.keyframes), "depthless_frames": memory.depthless_frames,
               "seconds_per_frame": seconds / until}
    if config.poses == "estimate":
        summary.update(_camera_path(memory, episode, out))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(f"observed {until} frames in {seconds:.1f} s ({until / seconds:.1f} frames/s, "
          f"{1000 * seconds / until:.0f} ms/frame)")
    print(f"objects: {len(memory.tracks)} ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}); "
          f"Gaussians: {summary['static_gaussians']} static, {summary['object_gaussians']} in objects; "
          f"{summary['keyframes']} keyframes")
    if memory.depthless_frames:
        print(f"warning: {memory.depthless_frames} frames had depth on under "
              f"{memory.config.min_depth_fraction:.0%} of their pixels: they moved no object and took no keyframe")
    if config.poses == "estimate":
        print(f"camera path: ATE RMSE {summary['ate_rmse'] * 1000:.1f} mm (max {summary['ate_max'] * 1000:.1f} mm) "
              f"against the episode's {summary['ate_truth']}; {summary['lost_frames']} frames lost")
        if memory.lost_frames:
            print(f"warning: {memory.lost_frames} frames could not be placed by odometry: they kept the last pose "
                  f"and were observed as frames without depth (see cameras.json, tracked=false)")
    print(f"-> {out / 'memory.pt'}, {out / 'tracks.json'}, {out / 'scene.ply'}")
    return memory


def true_camera_path(episode: Episode, frames: int) -> tuple[np.ndarray, str]:
    """The true camera-to-world matrices ``[frames, 4, 4]`` (nerfstudio axes) and where they come
    from: ground_truth.json's ``camera_transform_matrices`` when the recorded poses drift
    (``pose_noise``), else the frames' own ``transform_matrix``."""
    truth = episode.ground_truth() or {}
    if "camera_transform_matrices" in truth:
        return np.asarray(truth["camera_transform_matrices"][:frames], np.float64), "true camera path (ground_truth.json)"
    return np.stack([episode.info(i).transform_matrix for i in range(frames)]), "transform_matrix poses"


def camera_path_errors(memory: SceneMemory, episode: Episode) -> dict:
    """The memory's estimated camera path against the episode's true one: ``estimated``
    camera-to-world ``[T, 4, 4]`` (nerfstudio axes), per frame ``times``, ``position`` (m) and
    ``rotation`` (degrees) errors and ``lost`` frames (what :func:`plot_trajectory_error` draws),
    and ``source``, where the truth came from (:func:`true_camera_path`)."""
    estimated = opencv_to_nerfstudio(torch.linalg.inv(torch.from_numpy(np.stack(memory.camera_path)))).numpy()
    truth, source = true_camera_path(episode, len(estimated))
    position, rotation = trajectory_errors(estimated, truth)
    return {"estimated": estimated, "times": memory.times, "position": position, "rotation": rotation,
            "lost": ~np.asarray(memory.tracked), "source": source}


def _camera_path(memory: SceneMemory, episode: Episode, out: Path) -> dict:
    """Write the estimated camera path (cameras.json, nerfstudio camera-to-world) and its error
    over time (trajectory.png); return the summary's pose fields."""
    path = camera_path_errors(memory, episode)
    position = path["position"]
    frames = [{"index": i, "time": t, "transform_matrix": np.round(m, 7).tolist(), "tracked": k}
              for i, (t, m, k) in enumerate(zip(memory.times, path["estimated"], memory.tracked))]
    atomic_write_text(out / "cameras.json", json.dumps({"frames": frames}))
    plot_trajectory_error({"estimated": path}, out / "trajectory.png")
    return {"poses": "estimate", "ate_rmse": float(np.sqrt(np.mean(position ** 2))), "ate_max": float(position.max()),
            "rotation_error_median_deg": float(np.median(path["rotation"])), "ate_truth": path["source"],
            "lost_frames": memory.lost_frames}
