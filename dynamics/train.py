"""Training pieces of the learned dynamics: the unrolled loss over a track sequence, the windows
worth fitting, checkpoints. The job that builds the data and runs the loop (DDP too) is
:mod:`splatworld.jobs.train_dynamics`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from splatworld.atomic import atomic_write
from splatworld.dynamics.data import Sequence, window_batch
from splatworld.dynamics.models import DynamicsConfig, DynamicsModel, InteractionModel, make_model
from splatworld.dynamics.state import WorldState
from splatworld.errors import SplatworldError

CHECKPOINT_VERSION = 3  # 2: features in the frame of the push; 3: footprint outlines (older weights mean nothing to it)
DEFAULT_CHECKPOINT = Path(__file__).with_name("checkpoints") / "default.pt"


class Unrolled(nn.Module):
    """A model stepped along recorded agent commands, as one module (DDP needs one forward per loss)."""

    def __init__(self, model: DynamicsModel):
        super().__init__()
        self.model = model

    def forward(self, state: WorldState, actions: torch.Tensor):
        """``actions [B, H, 2]`` -> ``(position [B, H, N, 3], turned [B, H, N], touched [B, H, N])``
        after each step: positions, yaw turned since the start, and whether the model has
        simulated the object at any step so far."""
        positions, turns, touches = [], [], []
        turned, touched = torch.zeros_like(state.yaw_rate), torch.zeros_like(state.valid)
        for h in range(actions.shape[1]):
            state, active = self.model.advance(state, actions[:, h])
            turned = turned + state.yaw_rate * self.model.config.dt
            touched = touched | active
            positions.append(state.position)
            turns.append(turned)
            touches.append(touched)
        return torch.stack(positions, 1), torch.stack(turns, 1), torch.stack(touches, 1)


def rollout_loss(unrolled: nn.Module, seq: Sequence, frames: torch.Tensor, horizon: int, noise: float = 0.0,
                 generator=None, max_tilt: float = 0.1) -> tuple[torch.Tensor, int]:
    """Mean squared error, over every step of ``horizon``-step rollouts from ``frames [B]``, of
    x-y positions (cm) and yaw turned (0.1 rad) against the memory's tracks, over objects
    that were seen and that the model has simulated; and how many such object-steps there
    were. ``unrolled``: an :class:`Unrolled` (or its DDP wrapper). ``noise``, ``max_tilt``: see
    :func:`~splatworld.dynamics.data.window_batch`. The batch runs on the model's device."""
    state, actions, target_xy, target_yaw, mask = window_batch(seq, frames, horizon, noise, generator, max_tilt)
    device = _device_of(unrolled)
    state = state.to(device)
    actions, target_xy, target_yaw, mask = (t.to(device) for t in (actions, target_xy, target_yaw, mask))
    position, turned, touched = unrolled(state, actions)
    use = (mask & touched).float()
    err = ((position[..., :2] - target_xy) * 100).pow(2).sum(-1) + ((turned - target_yaw) * 10).pow(2)
    count = int(use.sum())
    return (err * use).sum() / max(count, 1), count


def _device_of(module: nn.Module) -> torch.device:
    weights = next(module.parameters(), None)  # a model with nothing learned runs on the CPU
    return torch.device("cpu") if weights is None else weights.device


def _starts(seq: Sequence, horizon: int) -> torch.Tensor:
    return torch.arange(1, len(seq) - horizon)


@torch.no_grad()
def pushed_starts(model: DynamicsModel, seq: Sequence, horizon: int, max_tilt: float) -> torch.Tensor:
    """Start frames ``[K]`` of the windows in which the model simulates a tracked object at the
    first step. Its contact gating is fixed geometry, not learned, so the other windows give
    the loss nothing to fit, whatever the weights (in a push episode, most of them)."""
    frames = _starts(seq, horizon)
    state, actions, _, _, mask = window_batch(seq, frames, 1, max_tilt=max_tilt)
    device = _device_of(model)
    _, active = model.advance(state.to(device), actions[:, 0].to(device))
    return frames[(active.cpu() & mask[:, 0]).any(-1)]


def evaluate_loss(model: DynamicsModel, sequences: list[Sequence], horizon: int, max_tilt: float) -> float:
    """:func:`rollout_loss` over every window of every sequence."""
    unrolled, total, count = Unrolled(model), 0.0, 0
    with torch.no_grad():
        for seq in sequences:
            loss, n = rollout_loss(unrolled, seq, _starts(seq, horizon), horizon, max_tilt=max_tilt)
            total, count = total + float(loss) * n, count + n
    return total / max(count, 1)


def save_checkpoint(model: InteractionModel, path: Path, extra: dict) -> Path:
    state = {"format_version": CHECKPOINT_VERSION, "config": dataclasses.asdict(model.config),
             "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, **extra}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_dynamics(model: str, checkpoint: str | os.PathLike | None = None) -> DynamicsModel:
    """The dynamics model ``model`` (``learned``, ``quasi_static``, ``physics``, ``constant_velocity``, ``static``), with the
    constants of the learned ``checkpoint`` (default: the one shipped with the package)."""
    learned = load_checkpoint(checkpoint)
    return learned if model == "learned" else make_model(model, learned.config)


def load_checkpoint(path: str | os.PathLike | None = None) -> InteractionModel:
    """The learned model from ``path`` (default: the checkpoint shipped with the package)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise SplatworldError(f"{path}: not a dynamics checkpoint ({exc})") from exc
    if not isinstance(saved, dict) or saved.get("format_version") != CHECKPOINT_VERSION:
        raise SplatworldError(f"{path}: dynamics checkpoint version {saved.get('format_version')!r}, "
                              f"this code reads {CHECKPOINT_VERSION}")
    model = InteractionModel(DynamicsConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()
