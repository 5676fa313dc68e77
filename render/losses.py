"""Image similarity as a differentiable loss: SSIM (Wang et al., 2004), used by training and by evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from splatworld.errors import ShapeError

SSIM_SIGMA = 1.5  # Wang et al. (2004): an 11-tap Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03
SSIM_RADIUS = 5


def ssim_map(prediction: torch.Tensor, target: torch.Tensor, peak: float) -> torch.Tensor:
    """Structural similarity at each pixel (Wang et al., 2004) of grey images ``[B, H, W]``.

    Gaussian window of sigma 1.5 and radius 5 (11 taps), constants ``(0.01 peak)^2`` and
    ``(0.03 peak)^2``, population (co)variances. Only pixels whose whole window lies inside the
    image are returned, as scikit-image does before averaging: ``[B, H - 10, W - 10]``.
    """
    if prediction.shape != target.shape or prediction.ndim != 3:
        raise ShapeError(f"ssim_map: images must be [B, H, W] of one shape, got {tuple(prediction.shape)} "
                         f"and {tuple(target.shape)}")
    taps = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=prediction.dtype)
    window = torch.exp(-taps**2 / (2 * SSIM_SIGMA**2))
    window = window / window.sum()
    x, y = prediction[:, None], target[:, None]
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5, H, W], filtered as 5 channels
    stats = F.conv2d(stats, window.view(1, 1, 1, -1).expand(5, 1, 1, -1), groups=5)
    stats = F.conv2d(stats, window.view(1, 1, -1, 1).expand(5, 1, -1, 1), groups=5)
    mx, my, xx, yy, xy = stats.unbind(1)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
