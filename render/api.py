"""The one rendering entry point and its backend registry."""

from __future__ import annotations

import weakref
from typing import Callable, NamedTuple

import torch

from splatworld.errors import BackendUnavailableError, ConfigError, lookup
from splatworld.render.projection import RasterSettings, project_gaussians, sh_colors
from splatworld.scene.cameras import Camera
from splatworld.scene.gaussians import Gaussians


class RenderOutput(NamedTuple):
    """What a render returns for one camera, on the device the backend drew on (CPU for ``cpu``,
    the Gaussians' device for ``torch``, CUDA for ``gsplat``); :meth:`cpu` brings it over.

    Attributes:
        rgb: ``[H, W, 3]`` float in [0, 1] (background composited).
        depth: ``[H, W]`` expected z-depth in metres (0 where nothing was drawn).
        alpha: ``[H, W]`` accumulated opacity.
        object_id: ``[H, W]`` int64 id of the Gaussian with the largest blending weight
            (0 = static scene), -1 where nothing was drawn; ``None`` when not asked for.
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor
    object_id: torch.Tensor | None

    def cpu(self) -> RenderOutput:
        """The same output as CPU tensors (no copy where they already are)."""
        return RenderOutput(*(None if t is None else t.cpu() for t in self))


class Rendered(NamedTuple):
    """A render and the screen-space Gaussians it drew (what training reads).

    Attributes:
        output: the images.
        means2d: ``[N, 2]`` pixel positions of the Gaussians, in the autograd graph when the
            Gaussians require grad (``retain_grad()`` it to read the screen-space gradient).
        radii: ``[N, 2]`` int32 pixel half-extents, 0 where a Gaussian was not drawn.
    """

    output: RenderOutput
    means2d: torch.Tensor
    radii: torch.Tensor


def _render_torch(g: Gaussians, cam: Camera, bg: torch.Tensor, s: RasterSettings, ids: bool) -> Rendered:
    from splatworld.render.raster_torch import rasterize_torch

    projected = project_gaussians(g, cam, s)
    colors = sh_colors(g, cam.center)
    rgb, depth, alpha, object_id = rasterize_torch(projected, colors, g.object_ids, cam.width, cam.height, bg, s)
    return Rendered(RenderOutput(rgb, depth, alpha, object_id if ids else None), projected.means2d, projected.radii)


def _render_cpu(g: Gaussians, cam: Camera, bg: torch.Tensor, s: RasterSettings, ids: bool) -> Rendered:
    """The numba kernels; differentiable (their own backward pass) when autograd is on and a tensor of
    ``g`` requires grad, in ``g``'s dtype then; in float32 otherwise."""
    from splatworld.render.backward_cpu import ProjectCPU, RasterizeCPU

    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (g.means, g.quats, g.log_scales,
                                                                     g.opacity_logits, g.sh))
    gc = g.to(device="cpu") if grad else g.to(device="cpu", dtype=torch.float32)
    with torch.set_grad_enabled(grad):
        means2d, conics, depths, radii = ProjectCPU.apply(gc.means, gc.quats, gc.log_scales, cam, s)
        colors = sh_colors(gc, cam.center)
        rgb, depth, alpha, object_id = RasterizeCPU.apply(means2d, conics, depths, gc.opacities, colors, radii,
                                                          gc.object_ids, cam.width, cam.height, bg, s)
    return Rendered(RenderOutput(rgb, depth, alpha, object_id if ids else None), means2d, radii)


# Compositing rules compiled into gsplat's kernels (gsplat/cuda/include/Common.h and the
# rasterization kernels): settings that differ cannot be honoured there.
GSPLAT_FIXED_SETTINGS = {"alpha_min": 1.0 / 255.0, "alpha_max": 0.999, "transmittance_min": 1e-4}


_ID_CHANNELS: list = []  # the last (object_ids weakref, its version, (unique ids, one-hot channels))


def _id_channels(object_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unique ids [K], one-hot channels [N, K - 1] of all ids but the first)`` for ``object_ids [N]``.

    Sorting the ids waits for the GPU (the number of channels must be known on the host), which
    would stall every frame; the last tensor's channels are kept, so a scene drawn from many
    cameras sorts its ids once (the same tensor, unchanged since: its ``_version``)."""
    if _ID_CHANNELS:
        ref, version, channels = _ID_CHANNELS[0]
        if ref() is object_ids and version == object_ids._version:
            return channels
    unique_ids, inverse = torch.unique(object_ids, return_inverse=True)
    channels = (unique_ids, torch.nn.functional.one_hot(inverse, len(unique_ids))[:, 1:].float())
    _ID_CHANNELS[:] = [(weakref.ref(object_ids), object_ids._version, channels)]
    return channels


def _render_gsplat(g: Gaussians, cam: Camera, bg: torch.Tensor, s: RasterSettings, ids: bool) -> Rendered:
    """gsplat's CUDA ``rasterization``, one call per image.

    Colours are our SH evaluation (:func:`sh_colors`, as the other backends), passed as plain
    channels; the id map rides in the same call as one-hot channels, one per object id but the
    first, whose weight is the pixel's alpha minus the others'. gsplat does not report
    per-Gaussian weights, so the map is the object whose Gaussians together have the largest
    blending weight: the CPU backends' map except where two objects' weights nearly tie.
    gsplat reaches each Gaussian wherever its alpha is at least ``alpha_min`` (its bound is
    opacity-aware), which is ``sigma_cutoff`` = :data:`~splatworld.render.projection.GSPLAT_SIGMA_CUTOFF` in our rules; with a
    smaller cutoff the faint tails of opaque Gaussians differ.
    """
    from gsplat import rasterization

    for name, value in GSPLAT_FIXED_SETTINGS.items():
        if getattr(s, name) != value:
            raise ConfigError(f"RasterSettings.{name}={getattr(s, name)} cannot be honoured by the gsplat backend, "
                              f"whose kernels fix it at {value}; use backend='torch' or 'cpu'")
    dev = g.means.device if g.means.is_cuda else torch.device("cuda")
    gd = g.to(device=dev, dtype=torch.float32)
    channels = [sh_colors(gd, cam.center)]
    if ids:
        unique_ids, one_hot = _id_channels(gd.object_ids)
        channels.append(one_hot)
    rendered, alphas, meta = rasterization(
        means=gd.means, quats=gd.quats, scales=gd.scales, opacities=gd.opacities,
        colors=torch.cat(channels, -1) if len(channels) > 1 else channels[0],
        viewmats=cam.viewmat.to(dev, torch.float32)[None], Ks=cam.K.to(dev, torch.float32)[None],
        width=cam.width, height=cam.height, near_plane=s.near_plane, far_plane=s.far_plane,
        eps2d=s.eps2d, tile_size=s.tile_size, render_mode="RGB+ED", packed=False,
    )
    rendered, alpha = rendered[0], alphas[0, ..., 0]
    drawn = alpha > 0
    rgb = rendered[..., :3] + (1 - alpha)[..., None] * bg.to(dev, torch.float32)
    depth = torch.where(drawn, rendered[..., -1], torch.zeros_like(alpha))
    object_id = None
    if ids:
        others = rendered[..., 3:-1]
        weights = torch.cat([(alpha - others.sum(-1))[..., None], others], -1)
        best = unique_ids[weights.argmax(dim=-1)]
        object_id = torch.where(drawn, best, torch.full_like(best, -1))
    radii = meta["radii"][0].reshape(len(gd), -1).expand(-1, 2)  # [N] before gsplat 1.5, [N, 2] since
    return Rendered(RenderOutput(rgb, depth, alpha, object_id), meta["means2d"][0], radii)


def _cpu_available() -> str | None:
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"numba is not installed ({exc})"
    return None


def _gsplat_available() -> str | None:
    if not torch.cuda.is_available():
        return "gsplat's rasterizer is CUDA only and torch.cuda.is_available() is False"
    try:
        import gsplat  # noqa: F401
    except ImportError as exc:
        return f"gsplat is not installed ({exc}); pip install gsplat"
    return None


BACKENDS: dict[str, tuple[Callable, Callable[[], str | None]]] = {
    "torch": (_render_torch, lambda: None),
    "cpu": (_render_cpu, _cpu_available),
    "gsplat": (_render_gsplat, _gsplat_available),
}


def available_backends() -> list[str]:
    """Backends that can run on this machine."""
    return [name for name, (_, why_not) in BACKENDS.items() if why_not() is None]


def default_backend() -> str:
    """``gsplat`` where CUDA works, else the fast ``cpu`` backend, else ``torch``."""
    for name in ("gsplat", "cpu", "torch"):
        if BACKENDS[name][1]() is None:
            return name
    return "torch"


def resolve_backend(name: str) -> str:
    """Validate a backend name (``auto`` picks :func:`default_backend`).

    Raises:
        ConfigError: unknown name (the message lists valid ones).
        BackendUnavailableError: a known backend that cannot run here (says why).
    """
    if name == "auto":
        return default_backend()
    _, unavailable = lookup({"auto": None, **BACKENDS}, name, "renderer backend")  # "auto" listed as valid
    why_not = unavailable()
    if why_not is not None:
        raise BackendUnavailableError(f"renderer backend {name!r} cannot run here: {why_not}")
    return name


def render(
    gaussians: Gaussians,
    camera: Camera,
    *,
    background=(0.0, 0.0, 0.0),
    backend: str = "auto",
    settings: RasterSettings | None = None,
    object_ids: bool = True,
) -> RenderOutput:
    """Rasterize Gaussians from one camera into RGB, depth, alpha and an object-id map.

    Args:
        gaussians: N Gaussians in world coordinates.
        camera: pinhole camera (OpenCV world-to-camera); fixes the image size.
        background: RGB ``[3]`` in [0, 1] behind everything.
        backend: ``"auto"``, ``"torch"`` (differentiable reference), ``"cpu"`` (numba, with its
            own backward pass) or ``"gsplat"`` (CUDA, differentiable).
        settings: compositing rules; :class:`RasterSettings` defaults if omitted.
        object_ids: also draw the object-id map (``False`` leaves ``object_id`` as ``None``; the
            ``gsplat`` backend then composites no id channels).

    Returns:
        :class:`RenderOutput` on the device the backend drew on (:meth:`RenderOutput.cpu`).

    Example:
        >>> from splatworld.scene import Camera, Gaussians, look_at
        >>> g = Gaussians.from_points(torch.zeros(1, 3), torch.ones(1, 3), scale=0.05)
        >>> cam = Camera.from_fov(60.0, 32, 32, look_at([0.0, -1.0, 0.0], [0.0, 0.0, 0.0]))
        >>> out = render(g, cam, backend="cpu")
        >>> out.rgb.shape, int(out.object_id[16, 16])
        (torch.Size([32, 32, 3]), 0)
    """
    return render_with_screen_space(gaussians, camera, background=background, backend=backend, settings=settings,
                                    object_ids=object_ids).output


def render_with_screen_space(
    gaussians: Gaussians,
    camera: Camera,
    *,
    background=(0.0, 0.0, 0.0),
    backend: str = "auto",
    settings: RasterSettings | None = None,
    object_ids: bool = True,
) -> Rendered:
    """:func:`render`, also returning the projected means and radii (:class:`Rendered`): the
    screen-space gradient that densification reads (``Rendered.means2d.retain_grad()``)."""
    fn = BACKENDS[resolve_backend(backend)][0]
    bg = torch.as_tensor(background, dtype=gaussians.dtype)
    if bg.shape != (3,):
        raise ConfigError(f"background must be 3 values (RGB), got shape {list(bg.shape)}")
    return fn(gaussians, camera, bg, settings or RasterSettings(), object_ids)
