"""Photometric refinement: the memory's splats trained on its keyframes.

The scaffold's splats start as fused voxels (:meth:`VoxelGrid.to_gaussians`): the right surfaces,
drawn a voxel soft. Refinement treats them as 3D Gaussian splatting does: positions, scales,
rotations, opacities and colours are optimised with Adam so that, drawn over the ground layer
from each keyframe's camera, they reproduce its static pixels (L1 + D-SSIM, as 3DGS) and its depth
(L1), while a regulariser keeps every splat within ``anchor_margin`` of the surface it was fused
from (its anchor: the voxel's observed mean), so that views far from every keyframe still see the
observed geometry. Objects are refined the same way in their own frames, on the keyframe pixels
labelled with their id, placed by their track's pose at that keyframe (so refined models move with
their tracks); around an object, pixels seen behind where it is drawn are free space and teach
it its silhouette. Densification and pruning follow gsplat's default strategy
(``gsplat/strategy/default.py``): every ``refine_every`` steps, a splat whose mean screen-space
gradient exceeds ``grow_grad2d`` is cloned when small and split in two when large; splats fainter
than ``prune_opacity`` or larger than ``prune_scale`` go. (Its periodic opacity reset is left out:
refinement here runs hundreds of steps at a time, not tens of thousands.)

The gradients come from the renderer's backends: the numba CPU kernels' own backward pass
(:mod:`splatworld.render.backward_cpu`) or gsplat's CUDA backward.

:class:`RefinedSplats` holds the trained splats with their Adam moments and anchors;
:func:`refine` runs steps on it. New scaffold voxels (seen after the last refinement) join as
fresh splats the next time refinement runs (:meth:`RefinedSplats.adopt`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np
import torch

from splatworld.errors import ConfigError
from splatworld.render.api import RenderOutput, render_with_screen_space
from splatworld.render.losses import SSIM_RADIUS, ssim_map
from splatworld.render.projection import RasterSettings
from splatworld.scene.cameras import Camera
from splatworld.scene.gaussians import Gaussians
from splatworld.scene.transforms import quat_to_rotmat

PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh")


@dataclass(frozen=True)
class RefineConfig:
    """Constants of :func:`refine` (learning rates are Adam's, per step; lengths in metres).

    The learning rates are 3DGS's (gsplat's ``simple_trainer``) for a scene of about a metre, with
    the colour's raised from 2.5e-3 to 1e-2: refinement runs hundreds of steps, not 30k.
    """

    lr_means: float = 1.6e-4
    lr_log_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_sh: float = 1e-2
    ssim_weight: float = 0.2
    depth_weight: float = 0.5  # per metre of L1 depth error, against the RGB loss in [0, 1]
    anchor_weight: float = 100.0  # per square metre a splat lies beyond anchor_margin from its anchor
    anchor_margin: float = 0.01
    refine_every: int = 50
    grow_grad2d: float = 2e-4
    grow_scale: float = 0.01  # larger splats (largest std) are split, smaller ones cloned
    prune_opacity: float = 0.005
    prune_scale: float = 0.1
    max_splats: int = 200_000
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.refine_every < 1:
            raise ConfigError(f"refine: refine_every must be >= 1, got {self.refine_every}")


@dataclass
class View:
    """One training view: a keyframe's camera, its pixels, and where the splats stand in it.

    Attributes:
        camera: the camera it was seen from.
        rgb: ``[H, W, 3]`` float in [0, 1].
        depth: ``[H, W]`` z-depth (m), 0 where unknown.
        mask: ``[H, W]`` bool, the pixels showing what the splats stand for (static scene with a
            depth; one object).
        backdrop: ``[H, W, 3]`` the colour behind static splats (the ground layer, the sky); None
            for an object, which is trained against the observed pixels around it (:func:`view_loss`).
        pose: ``[4, 4]`` world_from_object for an object's splats (kept in its own frame); None for
            the static scene.
        settings: the rules the splats are drawn with where they are shown (defaults if None).
    """

    camera: Camera
    rgb: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    backdrop: torch.Tensor | None = None
    pose: torch.Tensor | None = None
    settings: RasterSettings | None = None


class LazyViews(Sequence):
    """``n`` training views, each built by ``make(i)`` when drawn: a memory's keyframes stay
    compressed until a step uses one."""

    def __init__(self, n: int, make: Callable[[int], View]):
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> View:
        if not 0 <= i < self.n:
            raise IndexError(f"view {i} of {self.n}")
        return self.make(i)


@dataclass
class RefinedSplats:
    """Trained splats and what training them goes on from.

    Attributes:
        params: :data:`PARAMS` tensors (float32, leaves): ``means [N, 3]``, ``quats [N, 4]``,
            ``log_scales [N, 3]``, ``opacity_logits [N]``, ``sh [N, K, 3]``.
        anchors: ``[N, 3]`` the surface point each splat was fused from (its voxel's mean).
        keys: ``[N]`` int64 the packed voxel key each splat descends from.
        moments: Adam's first and second moments per parameter.
        grad2d, seen: screen-space gradient norms summed since the last densification, and how
            many times each splat was drawn.
        steps: steps taken.
    """

    params: dict[str, torch.Tensor]
    anchors: torch.Tensor
    keys: np.ndarray
    moments: dict[str, tuple[torch.Tensor, torch.Tensor]]
    grad2d: torch.Tensor
    seen: torch.Tensor
    steps: int = 0

    @classmethod
    def empty(cls) -> RefinedSplats:
        return cls.of(Gaussians.empty(), torch.zeros(0, 3), np.zeros(0, np.int64))

    @classmethod
    def of(cls, gaussians: Gaussians, anchors: torch.Tensor, keys: np.ndarray) -> RefinedSplats:
        params = {name: getattr(gaussians, name).detach().float().clone() for name in PARAMS}
        moments = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in params.items()}
        n = len(gaussians)
        return cls(params, anchors.float(), np.asarray(keys, np.int64), moments, torch.zeros(n), torch.zeros(n))

    def __len__(self) -> int:
        return len(self.keys)

    def gaussians(self, object_id: int = 0) -> Gaussians:
        """The splats as (detached) Gaussians."""
        p = {name: t.detach() for name, t in self.params.items()}
        return Gaussians(**p, object_ids=torch.full((len(self),), object_id, dtype=torch.int64))

    def adopt(self, gaussians: Gaussians, anchors: torch.Tensor, keys: np.ndarray) -> None:
        """Add fresh splats (new scaffold voxels) with zero Adam moments."""
        if not len(gaussians):
            return
        self._append(RefinedSplats.of(gaussians, anchors, keys))

    def _append(self, other: RefinedSplats) -> None:
        k = max(self.params["sh"].shape[1], other.params["sh"].shape[1])
        for name in PARAMS:
            a, b = self.params[name], other.params[name]
            if name == "sh":
                a, b = (torch.nn.functional.pad(t, (0, 0, 0, k - t.shape[1])) for t in (a, b))
            self.params[name] = torch.cat([a, b])
            self.moments[name] = tuple(torch.cat([m, torch.zeros_like(b)]) for m in self.moments[name])
        self.anchors = torch.cat([self.anchors, other.anchors])
        self.keys = np.concatenate([self.keys, other.keys])
        self.grad2d = torch.cat([self.grad2d, other.grad2d])
        self.seen = torch.cat([self.seen, other.seen])

    def retain(self, keys: np.ndarray) -> None:
        """Drop the splats descending from voxels no longer among ``keys`` (carved, removed)."""
        alive = np.isin(self.keys, keys)
        if not alive.all():
            self.keep(torch.from_numpy(alive))

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the splats where ``mask [N]`` is true."""
        for name in PARAMS:
            self.params[name] = self.params[name][mask]
            self.moments[name] = tuple(m[mask] for m in self.moments[name])
        self.anchors, self.keys = self.anchors[mask], self.keys[mask.numpy()]
        self.grad2d, self.seen = self.grad2d[mask], self.seen[mask]

    def state_dict(self) -> dict:
        return {"params": self.params, "anchors": self.anchors, "keys": self.keys, "moments": self.moments,
                "grad2d": self.grad2d, "seen": self.seen, "steps": self.steps}

    @classmethod
    def from_state_dict(cls, state: dict) -> RefinedSplats:
        return cls(**{f.name: state[f.name] for f in fields(cls)})


def _adam(splats: RefinedSplats, grads: dict[str, torch.Tensor], cfg: RefineConfig) -> None:
    """One Adam step (betas 0.9, 0.999, eps 1e-15 as gsplat's trainer) on every parameter."""
    step = splats.steps + 1
    rates = {"means": cfg.lr_means, "quats": cfg.lr_quats, "log_scales": cfg.lr_log_scales,
             "opacity_logits": cfg.lr_opacity, "sh": cfg.lr_sh}
    for name, grad in grads.items():
        m, v = splats.moments[name]
        m.mul_(0.9).add_(grad, alpha=0.1)
        v.mul_(0.999).addcmul_(grad, grad, value=0.001)
        update = (m / (1 - 0.9**step)) / ((v / (1 - 0.999**step)).sqrt() + 1e-15)
        splats.params[name] = splats.params[name] - rates[name] * update


def view_loss(out: RenderOutput, view: View, cfg: RefineConfig) -> torch.Tensor:
    """The photometric loss of splats drawn in ``view`` (``out`` on a black background).

    Static scene (``view.backdrop`` given): L1 + D-SSIM of the splats over the backdrop on the
    view's mask, plus the depth L1 where the splats cover a pixel, plus their alpha where they are
    drawn off the mask in front of a surface seen farther away (free space). An object: the splats over the
    observed pixels, L1 on its mask and wherever it is drawn in front of a surface seen farther
    away (free space: the object is not there), plus ``1 - alpha`` on its mask (the observed
    pixels behind would hide a hole) and the depth L1 on its mask."""
    mask = view.mask
    if view.backdrop is None:
        rgb = out.rgb + (1 - out.alpha)[..., None] * view.rgb
        free = ~mask & (view.depth > out.depth.detach() + 0.01) & (out.alpha.detach() > 1.0 / 255.0)
        region = mask | free
        l1 = (rgb - view.rgb).abs().mean(-1)[region].mean()
        depth = (out.depth - view.depth).abs()[mask & (view.depth > 0)].mean()
        return l1 + (1 - out.alpha)[mask].mean() + cfg.depth_weight * depth
    rgb = out.rgb + (1 - out.alpha)[..., None] * view.backdrop
    l1 = (rgb - view.rgb).abs().mean(-1)[mask].mean()
    r = SSIM_RADIUS  # per channel; the map covers the pixels whose window lies inside the image
    inner = mask[r:-r, r:-r]
    d_ssim = 1 - ssim_map(rgb.permute(2, 0, 1), view.rgb.permute(2, 0, 1), 1.0)[:, inner].mean()
    covered = mask & (out.alpha.detach() > 0.5) & (view.depth > 0)
    depth = (out.depth - view.depth).abs()[covered].mean() if covered.any() else rgb.new_zeros(())
    # off the mask (objects, the agent), a static splat drawn in front of the surface seen there is
    # in free space: without this the splats would grow over every object unpunished
    free = ~mask & (view.depth > out.depth.detach() + 0.01) & (out.alpha.detach() > 1.0 / 255.0)
    intrusion = out.alpha[free].sum() / max(int(mask.sum()), 1)
    return (1 - cfg.ssim_weight) * l1 + cfg.ssim_weight * d_ssim + cfg.depth_weight * depth + intrusion


def refine(splats: RefinedSplats, views: Sequence[View], steps: int, cfg: RefineConfig,
           rng: np.random.Generator, on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Take ``steps`` refinement steps on ``splats`` (in place), one random view of ``views`` each.
    Returns the loss of every step."""
    if not views or not len(splats):
        return []
    losses = []
    for _ in range(steps):
        view = views[int(rng.integers(len(views)))]
        params = {name: t.requires_grad_(True) for name, t in splats.params.items()}
        g = Gaussians(**params, object_ids=torch.zeros(len(splats), dtype=torch.int64))
        if view.pose is not None:
            g = g.transform(view.pose)
        drawn = render_with_screen_space(g, view.camera, backend=cfg.backend, settings=view.settings, object_ids=False)
        drawn.means2d.retain_grad()
        offset = params["means"] - splats.anchors
        beyond = (offset.norm(dim=-1) - cfg.anchor_margin).clamp_min(0)
        loss = view_loss(drawn.output.cpu(), view, cfg) + cfg.anchor_weight * (beyond**2).mean()
        loss.backward()
        grads = {name: p.grad for name, p in params.items()}
        with torch.no_grad():
            for p in params.values():
                p.requires_grad_(False)
                p.grad = None
            visible = (drawn.radii > 0).all(-1).cpu()
            cam = view.camera
            scaled = drawn.means2d.grad.cpu() * torch.tensor([cam.width / 2, cam.height / 2])  # gsplat's NDC units
            splats.grad2d += torch.where(visible, scaled.norm(dim=-1), torch.zeros(()))
            splats.seen += visible.float()
            _adam(splats, grads, cfg)
        splats.steps += 1
        if splats.steps % cfg.refine_every == 0:
            densify(splats, cfg, rng)
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(splats.steps, losses[-1])
    return losses


def densify(splats: RefinedSplats, cfg: RefineConfig, rng: np.random.Generator) -> tuple[int, int, int]:
    """gsplat's default strategy, once: clone small and split large splats whose mean screen-space
    gradient exceeds ``grow_grad2d``, then prune faint and huge ones. Returns (cloned, split, pruned)."""
    with torch.no_grad():
        p = splats.params
        average = splats.grad2d / splats.seen.clamp_min(1)
        grow = (average > cfg.grow_grad2d) & (splats.seen > 0)
        room = cfg.max_splats - len(splats)
        if grow.sum() > max(room, 0):  # the largest gradients first
            order = torch.argsort(torch.where(grow, average, torch.full_like(average, -1.0)), descending=True)
            grow = torch.zeros_like(grow)
            grow[order[: max(room, 0)]] = True
        largest = p["log_scales"].exp().max(-1).values
        clone, split = grow & (largest <= cfg.grow_scale), grow & (largest > cfg.grow_scale)
        n_clone, n_split = int(clone.sum()), int(split.sum())
        new = [_subset(splats, clone)] if n_clone else []
        if n_split:
            halves = [_subset(splats, split) for _ in range(2)]
            rot = quat_to_rotmat(halves[0].params["quats"])
            scales = halves[0].params["log_scales"].exp()
            gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
            for half in halves:  # sampled from the parent's Gaussian, 1.6x smaller (3DGS)
                noise = torch.randn(len(half), 3, generator=gen)
                half.params["means"] = half.params["means"] + torch.einsum("nij,nj->ni", rot, scales * noise)
                half.params["log_scales"] = half.params["log_scales"] - math.log(1.6)
            splats.keep(~split)
            new += halves
        for part in new:
            splats._append(part)
        opacity = torch.sigmoid(splats.params["opacity_logits"])
        largest = splats.params["log_scales"].exp().max(-1).values
        prune = (opacity < cfg.prune_opacity) | (largest > cfg.prune_scale)
        n_prune = int(prune.sum())
        if n_prune:
            splats.keep(~prune)
        splats.grad2d.zero_()
        splats.seen.zero_()
    return n_clone, n_split, n_prune


def _subset(splats: RefinedSplats, mask: torch.Tensor) -> RefinedSplats:
    """A copy of the splats where ``mask`` is true, with zero Adam moments (gsplat's ops do the same)."""
    g = Gaussians(**{name: t[mask] for name, t in splats.params.items()},
                  object_ids=torch.zeros(int(mask.sum()), dtype=torch.int64))
    return RefinedSplats.of(g, splats.anchors[mask], splats.keys[mask.numpy()])
