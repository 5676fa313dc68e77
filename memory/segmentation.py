"""Segments from geometry, for frames without instance masks (a real RGB-D camera gives none).

Each frame's points are explained in turn:

1. the support surface: points within ``plane_tolerance`` of the support plane (the static map's,
   or, before it has one, the highest horizontal plane holding a tenth of the frame's points),
   and everything below it (the floor, the table's legs);
2. the static scaffold: points within ``static_margin`` of a static voxel standing out of the
   table (left out of segments, and not fused into the scaffold again);
3. the agent: points within its radius (plus a margin) of its axis, at its pose (a robot knows where
   its gripper is);
4. what is left above the table, over its observed part, is split into objects by 3D
   connectivity: the points are binned into ``segment_voxel`` cells and the cells'
   26-connected components (``scipy.ndimage.label``) are the segments, so two objects a
   centimetre apart, or an object cut in two by an occluder in front, are separate components.
   Points near the scaffold are left out of it, so an object touching a known occluder is a
   component of its own; a component rising higher than ``object_max_height`` above the table
   is static (an occluder not yet in the scaffold; an object touching one is taken with it). One
   lower but spanning more than ``object_max_size`` is a strip of the table's top raised by depth
   noise or a pose error: it is left unexplained, neither an object nor fused into the scaffold
   (fused, it would make the table there near the scaffold, and an object touching it would be
   fused with it: either way the objects later seen there go untracked);
5. an object the agent cuts in two (standing over it, or in front of it) is two components: those
   beside the agent's pixels whose colours agree and whose points come within the agent's width
   of each other are joined, unless they lie on two remembered objects' models
   (:func:`join_across_agent`);
6. objects touching each other are one component: a component on which two remembered objects'
   models each hold a good share of the points (or of what the object showed when last seen) is
   split between them, each point to the nearest model (:func:`split_touching`; the memory's own
   models, at their last poses).

The labels are per frame; association downstream does not need them consistent.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from splatworld.errors import ConfigError
from splatworld.memory.association import color_distance
from splatworld.memory.config import MemoryConfig
from splatworld.memory.tracks import ObjectTrack, Segment

STATIC, UNEXPLAINED = 0, -1  # labels before objects are numbered (UNEXPLAINED: too small to say, a raised table strip)
AGENT_MARGIN = 0.015  # beyond the agent's radius and half-height, points still taken for the agent (depth noise)


def depth_edge_pixels(depth: np.ndarray, jump: float, width: int = 1) -> np.ndarray:
    """bool ``[H, W]``: pixels on the near side of a depth edge, where a pixel within ``width``
    (in each direction) has no depth or lies farther by more than ``jump`` times the pixel's depth
    (``depth [H, W]``, m, 0 = none). A depth camera's edges fray: a pixel beside an occluder's
    silhouette reads the occluder's depth now and then (Kinect's lateral noise, mixed pixels), and
    its point floats a pixel or two outside the occluder, in front of what lies behind."""
    far = ndimage.maximum_filter(np.where(depth > 0, depth, np.inf), size=2 * width + 1)
    return (depth > 0) & (far > depth * (1.0 + jump))


def bootstrap_plane(points: np.ndarray, cell: float = 0.01, share: float = 0.1) -> tuple[np.ndarray, np.ndarray] | None:
    """The highest horizontal plane holding at least ``share`` of ``points [N, 3]`` (a histogram of
    heights in ``cell`` bins): ``(plane [4], region [4] x0 y0 x1 y1)``, or None."""
    if len(points) < 100:
        return None
    z = points[:, 2]
    edges = np.arange(z.min(), z.max() + 2 * cell, cell)
    counts, _ = np.histogram(z, edges)
    counts = counts + np.concatenate([counts[1:], [0]])  # a surface straddling two bins
    full = np.flatnonzero(counts >= share * len(points))
    if not len(full):
        return None
    top = full[-1]
    on = (z >= edges[top]) & (z < edges[top] + 2 * cell)
    height = float(np.median(z[on]))
    region = np.concatenate(np.percentile(points[on, :2], [1, 99], axis=0))
    return np.array([0.0, 0.0, 1.0, -height]), region


def geometric_segments(points: np.ndarray, valid: np.ndarray, plane: np.ndarray, region: np.ndarray,
                       near_static: Callable[[np.ndarray], np.ndarray], agent: np.ndarray,
                       cfg: MemoryConfig) -> np.ndarray:
    """``[H, W]`` int64 labels: 0 static scene (and pixels with no valid depth, as in an instance
    mask), 1..n segments, -1 left unexplained (the agent, a component too small to be an object,
    a raised strip of the table).

    Args:
        points: ``[H, W, 3]`` world points of the depth.
        valid: ``[H, W]`` pixels with a depth in range.
        plane: ``[4]`` the support plane ``a x + b y + c z + d = 0``, normal up.
        region: ``[4]`` x0, y0, x1, y1 of its observed part.
        near_static: bool ``[N]`` of world points ``[N, 3]``: close to the static scaffold (asked
            only of the points above the table).
        agent: ``[H, W]`` points on the agent.
        cfg: ``plane_tolerance``, ``object_max_height``, ``object_max_size``, ``segment_voxel``,
            ``min_segment_points``.
    """
    labels = np.where(valid, UNEXPLAINED, STATIC).astype(np.int64)
    height = points @ plane[:3] + plane[3]
    x0, y0, x1, y1 = region
    margin = 0.02
    over = ((points[..., 0] > x0 - margin) & (points[..., 0] < x1 + margin)
            & (points[..., 1] > y0 - margin) & (points[..., 1] < y1 + margin))
    above = valid & ~agent & over & (height > cfg.plane_tolerance)
    labels[valid & ~above & ~agent] = STATIC
    if not above.any():
        return labels
    # near the scaffold: static scene. Those points are fused into the scaffold again only as part
    # of a component too tall to be an object (an object touching an occluder would otherwise grow
    # into the scaffold a voxel at a time), and the objects are the components of the rest: an
    # object behind a known occluder, joined to it by the noisy depth at its edge, is not taken
    # for part of it
    candidates, candidate_height = points[above], height[above]
    near = near_static(candidates)
    _, tall, _ = _components(candidates, candidate_height, cfg)
    out = np.where(tall, STATIC, UNEXPLAINED)
    rest = ~near
    if rest.any():
        component, tall, wide = _components(candidates[rest], candidate_height[rest], cfg)
        sizes = np.bincount(component)
        small = sizes[component] < cfg.min_segment_points
        out[rest] = np.where(tall, STATIC, np.where(wide | small, UNEXPLAINED, component))
    labels[above] = out
    return labels


def _components(points: np.ndarray, height: np.ndarray, cfg: MemoryConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 26-connected components of ``points [N, 3]`` binned into ``segment_voxel`` cells: each
    point's component (1..n), whether its component is too tall to be an object (rising above
    ``object_max_height``; ``height [N]``: above the table) and whether it is too wide (spanning
    more than ``object_max_size`` along x or y)."""
    keys = np.floor(points / cfg.segment_voxel).astype(np.int64)
    keys -= keys.min(axis=0)
    grid = np.zeros(keys.max(axis=0) + 1, bool)
    grid[tuple(keys.T)] = True
    components, count = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    component = components[tuple(keys.T)]
    top = np.asarray(ndimage.maximum(height, component, np.arange(1, count + 1)))
    # each component's bounding box in the grid: its widest side along x or y, in cells
    cells = np.array([max(x.stop - x.start, y.stop - y.start) for x, y, _ in ndimage.find_objects(components)])
    tall = top > cfg.object_max_height
    wide = cells * cfg.segment_voxel > cfg.object_max_size
    return component, tall[component - 1], wide[component - 1]


def agent_dimensions(shape: dict | None) -> dict[str, float]:
    """``MemoryConfig`` keys ``agent_radius`` and ``agent_height`` of an episode's ``agent_shape``
    (cylinder, sphere or box; the box by its x-y half-diagonal); none without a shape."""
    if shape is None:
        return {}
    kind = shape.get("type")
    if kind == "cylinder":
        return {"agent_radius": float(shape["radius"]), "agent_height": float(shape["height"])}
    if kind == "sphere":
        return {"agent_radius": float(shape["radius"]), "agent_height": 2.0 * float(shape["radius"])}
    if kind == "box":
        hx, hy, hz = (float(v) for v in shape["half_extents"])
        return {"agent_radius": float(np.hypot(hx, hy)), "agent_height": 2.0 * hz}
    raise ConfigError(f"agent_shape: unknown type {kind!r} (cylinder, sphere or box)")


def agent_pixels(points: np.ndarray, valid: np.ndarray, agent_pose: np.ndarray | None, radius: float,
                 height: float, margin: float = AGENT_MARGIN) -> np.ndarray:
    """``[H, W]`` valid points within ``radius + margin`` of the vertical axis through the agent's
    position ``agent_pose [7]`` and within ``height / 2 + margin`` of it vertically (none without a pose)."""
    if agent_pose is None:
        return np.zeros(valid.shape, bool)
    offset = points - np.asarray(agent_pose[:3])
    return (valid & (np.hypot(offset[..., 0], offset[..., 1]) < radius + margin)
            & (np.abs(offset[..., 2]) < height / 2 + margin))


def join_across_agent(labels: np.ndarray, points: np.ndarray, colors: np.ndarray, agent: np.ndarray, gap: float,
                      color_gate: float, models: list[np.ndarray] = (), reach: float = 0.02, border: int = 3) -> np.ndarray:
    """Join the segments of an object the agent cuts in two: the pusher standing over an object, or
    in front of it, leaves its parts on either side as separate components, which association would
    take for two objects. Segments within ``border`` pixels of the agent's (``agent [H, W]``) whose
    mean colours agree within ``color_gate`` (:func:`~splatworld.memory.association.color_distance`)
    and whose points (``points [H, W, 3]``) come within ``gap`` of each other (the agent's width)
    become one, under the smallest label, unless they lie on two remembered objects: each part's
    owner is the model (of ``models``, ``[M_k, 3]`` world points at the objects' last poses) holding
    half its points within ``reach``, if any, and parts with different owners (or one owner and
    none) stay apart. Colour alone does not tell two neighbours from one object: on `occlusion`
    the pusher between the cube and the object it pushed, whose colours are 0.088-0.101 apart,
    joined them. ``colors [H, W, 3]`` in [0, 1]. Returns the relabelled ``[H, W]`` map (a copy)."""
    out = labels.copy()
    beside = ndimage.binary_dilation(agent, iterations=border)
    cut = [int(label) for label in np.unique(labels[beside]) if label > 0]
    if len(cut) < 2:
        return out
    masks = {label: labels == label for label in cut}
    color = {label: colors[mask].mean(axis=0) for label, mask in masks.items()}
    trees = [cKDTree(m) for m in models]
    owner = {}
    for label, mask in masks.items():
        shares = [np.isfinite(tree.query(points[mask], distance_upper_bound=reach)[0]).mean() for tree in trees]
        owner[label] = int(np.argmax(shares)) if shares and max(shares) >= 0.5 else -1
    root = {label: label for label in cut}

    def find(label: int) -> int:
        while root[label] != label:
            label = root[label]
        return label

    for i, a in enumerate(cut):
        tree = cKDTree(points[masks[a]])
        for b in cut[i + 1:]:
            if (owner[a] == owner[b] and color_distance(color[a], color[b]) <= color_gate
                    and np.isfinite(tree.query(points[masks[b]], distance_upper_bound=gap)[0]).any()):
                ra, rb = find(a), find(b)
                root[max(ra, rb)] = min(ra, rb)
    for label in cut:
        out[masks[label]] = find(label)
    return out


def split_touching(labels: np.ndarray, points: np.ndarray, models: list[np.ndarray], reach: float,
                   min_points: int, shown: list[int] | None = None) -> np.ndarray:
    """Split each segment that two or more remembered objects share: objects touching each other
    are one connected component, but each lies on its own model. ``models``: each object's model
    points ``[M_k, 3]`` in the world at its last pose; ``shown``: the points each object showed
    when last seen (0 or omitted: unknown). A model owns part of a segment when it holds (is the
    nearest, within ``reach``) ``min_points`` of its points and either a fifth of them or half of
    what its object last showed: a small object pushed against a large one is a small share of
    their component, but all of itself. A model owns part only of the segment where it holds the
    most points: one whose object is a segment of its own claims nothing of a neighbour's it
    touches (the neighbour's points along their contact lie within ``reach`` of it, and taking
    them would grow its model onto the neighbour a strip per frame). A segment with two owners or
    more is split, every point to its nearest owner, as new labels. Returns the relabelled
    ``[H, W]`` map (a copy)."""
    out = labels.copy()
    if len(models) < 2:
        return out
    trees = [cKDTree(m) for m in models]
    bounds = [(m.min(axis=0) - reach, m.max(axis=0) + reach) for m in models]
    shares = {}  # label -> (its mask, the models near it, their distances [N, K], points each holds [K])
    for label in np.unique(labels[labels > 0]):
        mask = labels == label
        seg = points[mask]
        lo, hi = seg.min(axis=0), seg.max(axis=0)
        near = [k for k, (a, b) in enumerate(bounds) if (a <= hi).all() and (b >= lo).all()]
        if not near:
            continue
        distances = np.stack([trees[k].query(seg)[0] for k in near], axis=1)  # [N, K]
        held = np.bincount(distances.argmin(axis=1)[distances.min(axis=1) < reach], minlength=len(near))
        shares[label] = mask, near, distances, held
    most = np.zeros(len(models), np.int64)  # the most points each model holds of any one segment
    for _, near, _, held in shares.values():
        most[near] = np.maximum(most[near], held)
    next_label = int(labels.max()) + 1
    for label, (mask, near, distances, held) in shares.items():
        if len(near) < 2:
            continue
        last = np.array([shown[k] if shown else 0 for k in near])
        owners = np.flatnonzero((held >= min_points) & (held == most[near])
                                & ((held >= 0.2 * len(distances)) | ((last > 0) & (held >= 0.5 * last))))
        if len(owners) < 2:
            continue
        part = np.argmin(distances[:, owners], axis=1)  # every point to its nearest owner (its index in owners)
        out[mask] = np.where(part == 0, label, next_label + part - 1)
        next_label += len(owners) - 1
    return out


def merge_parts(segments: list[Segment], matches: dict[int, ObjectTrack], instances: np.ndarray, reach: float,
                unmatched: list[ObjectTrack] = ()) -> tuple[list[Segment], dict[int, ObjectTrack]]:
    """Fold each segment no track was matched to into the matched segment whose track's model it
    lies on (at least half its points within ``reach`` of the model's points, at the track's pose):
    the parts of one object seen on both sides of a thin occluder. A segment lying on the model of
    a track in ``unmatched`` (not matched, not displaced) is matched to that track instead of
    being born as a new object: a sliver of an object mostly hidden, whose colour, mixed with the
    background's at its edge, failed the match. Relabels ``instances [H, W]`` in place to match.
    Returns the segments left and the matches re-indexed to them."""
    if len(matches) == len(segments):
        return segments, matches
    candidates = [t for t in [*matches.values(), *unmatched] if len(t.model)]
    trees = {t.id: cKDTree(t.world_points) for t in candidates}
    by_id = {t.id: t for t in candidates}
    owner = {t.id: i for i, t in matches.items()}  # track id -> the segment it is matched to
    merged, matched = {i: segments[i] for i in matches}, dict(matches)
    for j, part in enumerate(segments):
        if j in matches:
            continue
        near = {k: float(np.mean(np.isfinite(tree.query(part.points, distance_upper_bound=reach)[0])))
                for k, tree in trees.items()}
        best = max(near, key=near.get, default=None)
        if best is None or near[best] < 0.5:
            merged[j] = part
        elif best not in owner:  # the first part of an unmatched track's object in this frame
            merged[j], matched[j], owner[best] = part, by_id[best], j
        else:
            i = owner[best]
            whole = merged[i]
            instances[part.mask] = whole.label
            merged[i] = Segment.of(whole.label, whole.mask | part.mask, np.concatenate([whole.points, part.points]),
                                   np.concatenate([whole.colors, part.colors]))
    order = sorted(merged)
    return [merged[i] for i in order], {order.index(i): t for i, t in matched.items()}
