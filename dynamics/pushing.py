"""Quasi-static planar pushing: how an object on a surface moves under a point pusher.

The object's friction with its support is described by an ellipsoidal limit surface (Goyal,
Ruina & Papadopoulos 1991; Lee & Cutkosky 1991): a push force ``f`` at contact offset ``r`` from
the centre drives the twist ``(v, omega) ~ (f, (r x f) / c^2)``, with ``c`` the footprint's
mean distance from its centre under uniform pressure. The contact moves with the pusher while
the force stays inside the contact's friction cone (sticking, Lynch, Maekawa & Tanie 1992's
closed form); outside it the pusher slides along the face and the force lies on the cone's
edge. Centred pushes translate the object with the pusher; off-centre ones turn it towards
the pusher's line, which is what carries a long plate pushed near one end across the table.

Conventions: planar world x-y vectors, metres, seconds; contact offsets from the object's
box centre (its centre of friction under uniform pressure).
"""

from __future__ import annotations

import math

import torch


def cross2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[...]`` the z component of ``a x b`` for planar vectors ``[..., 2]``."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def limit_surface_length(outline: torch.Tensor) -> torch.Tensor:
    """``[...]`` the ellipsoidal limit surface's ``c`` (m) of footprints given by their outline
    ``[..., K]`` (reach along evenly spaced directions, taken as the footprint's radius there):
    the mean distance from the centre over the footprint, ``(2/3) sum R^3 / sum R^2``."""
    radius = outline.clamp(min=1e-4)
    return (2.0 / 3.0) * radius.pow(3).sum(-1) / radius.pow(2).sum(-1)


def _twist(offset: torch.Tensor, force: torch.Tensor, c2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The twist a unit force drives (up to scale) and the velocity of the contact point."""
    omega = cross2(offset, force) / c2
    contact = force + omega[..., None] * torch.stack([-offset[..., 1], offset[..., 0]], -1)
    return force, omega, contact


def quasi_static_push(offset: torch.Tensor, normal: torch.Tensor, velocity: torch.Tensor, c: torch.Tensor,
                      friction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The object's twist under a point pusher.

    Args:
        offset: ``[..., 2]`` contact point minus the object's centre.
        normal: ``[..., 2]`` unit contact normal, pointing into the object (the push direction).
        velocity: ``[..., 2]`` the pusher's velocity (m/s).
        c: ``[...]`` limit surface length (:func:`limit_surface_length`, m).
        friction: pusher-object friction coefficient.

    Returns ``(v [..., 2], omega [...])``: the centre's velocity (m/s) and the yaw rate (rad/s,
    counter-clockwise). A pusher moving away from the face (``velocity . normal <= 0``) moves
    nothing.
    """
    c2 = c.pow(2)
    px, py = offset[..., 0], offset[..., 1]
    vx, vy = velocity[..., 0], velocity[..., 1]
    den = c2 + px * px + py * py
    stick_v = torch.stack([((c2 + px * px) * vx + px * py * vy) / den, (px * py * vx + (c2 + py * py) * vy) / den], -1)
    stick_w = cross2(offset, stick_v) / c2
    # With an ellipsoidal limit surface the force is parallel to the centre's velocity: sticking
    # holds while that direction lies within the friction cone about the normal.
    half_angle = math.atan(friction)
    side = torch.sign(cross2(normal, stick_v))
    along = (stick_v * normal).sum(-1)
    sticking = along > torch.linalg.norm(stick_v, dim=-1) * math.cos(half_angle)
    turn = side * half_angle
    edge = torch.stack([normal[..., 0] * turn.cos() - normal[..., 1] * turn.sin(),
                        normal[..., 0] * turn.sin() + normal[..., 1] * turn.cos()], -1)
    slide_v, slide_w, contact = _twist(offset, edge, c2)
    # the pusher slides along the face: only its normal speed reaches the object
    scale = (velocity * normal).sum(-1) / (contact * normal).sum(-1).clamp(min=1e-9)
    v = torch.where(sticking[..., None], stick_v, slide_v * scale[..., None])
    omega = torch.where(sticking, stick_w, slide_w * scale)
    pushing = (velocity * normal).sum(-1) > 0
    return v * pushing[..., None], omega * pushing
