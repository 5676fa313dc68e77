"""What an unmatched frame says of each remembered object: out of view, occluded, or contradicted.

Each object no segment claimed is rendered alone and its expected depth compared with the
observed depth: ``out_of_view`` (less than half of its footprint's core in the image),
``occluded`` (something observed in front of it, or nothing contradicts it: pixels with no depth
are no evidence), or ``contradicted`` (its place is in view and the depth shows what is behind it). Belief drops only on
contradiction; ``displace_after`` contradictions in a row mark the object ``displaced``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from splatworld.memory.association import downsample
from splatworld.memory.config import MemoryConfig
from splatworld.memory.tracks import ObjectTrack, TrackState
from splatworld.render.api import RenderOutput
from splatworld.scene.cameras import Camera


def reason_visibility(tracks: list[ObjectTrack], matched: set, depth: np.ndarray, small: Camera,
                      draw_alone: Callable[[ObjectTrack, Camera], RenderOutput], cfg: MemoryConfig) -> None:
    """Set the state (and belief) of every track not in ``matched`` (ids), not displaced and with a
    model, from the frame's ``depth [H, W]`` seen by ``small`` (the camera at ``render_scale``);
    ``draw_alone(track, camera)`` renders one track's model on CPU."""
    observed = downsample(depth, (small.height, small.width))
    # Render on a canvas padded by a quarter of the image on each side: an object whose place
    # is mostly outside the image gives no evidence (its inflated rim may poke into view).
    pad = max(small.width, small.height) // 4
    canvas = Camera(small.fx, small.fy, small.cx + pad, small.cy + pad, small.width + 2 * pad,
                    small.height + 2 * pad, small.viewmat)
    image = (slice(pad, pad + small.height), slice(pad, pad + small.width))  # the real image in the canvas
    for track in tracks:
        if track.id in matched or track.state == TrackState.DISPLACED or not len(track.model):
            continue
        alone = draw_alone(track, canvas)
        core = alone.alpha.numpy() > 0.9  # the core: a slightly inflated model's rim is not evidence
        foot = core[image]
        if foot.sum() < cfg.min_evidence_pixels or foot.sum() < cfg.min_in_view_fraction * core.sum():
            # (almost) nothing of it, or only its edge, would be in the image: no evidence either way
            track.state = TrackState.OUT_OF_VIEW
            continue
        known = observed[foot] > 0  # no return is no evidence: a real sensor's holes, not free space
        if known.sum() < cfg.min_evidence_pixels:
            track.state = TrackState.OCCLUDED
            continue
        behind = observed[foot][known] > alone.depth.numpy()[image][foot][known] + cfg.depth_margin
        if behind.mean() > cfg.contradiction_fraction:
            track.state = TrackState.CONTRADICTED
            track.contradictions += 1
            track.belief *= cfg.belief_decay
            if track.contradictions >= cfg.displace_after:
                track.state = TrackState.DISPLACED
        else:
            # something observed in front of it, or its place agrees with the memory
            # but no segment claimed it (e.g. hidden by the agent): not evidence of absence
            track.state = TrackState.OCCLUDED
