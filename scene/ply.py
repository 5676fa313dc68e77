"""Read and write the standard 3DGS PLY layout.

Vertex properties, as written by the reference 3DGS code, gsplat's exporter and
most viewers: ``x y z [nx ny nz] f_dc_0..2 f_rest_0..M opacity scale_0..2 rot_0..3``
(all float32), where ``f_rest`` is channel-major (all red coefficients, then green,
then blue), ``opacity`` is a logit, ``scale_*`` are log standard deviations and
``rot_*`` a wxyz quaternion. We add an optional ``object_id`` (int32) that other
tools ignore; files without it load with every id 0 (static scene).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement

from splatworld.atomic import atomic_write
from splatworld.errors import PlyFormatError
from splatworld.scene.gaussians import Gaussians

_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]


def write_ply(path: str | os.PathLike, gaussians: Gaussians) -> Path:
    """Write ``gaussians`` as a binary little-endian 3DGS PLY, atomically (temp file, then rename)."""
    path = Path(path)
    g = gaussians.to(dtype=torch.float32)
    n, k = len(g), g.sh.shape[1]
    rest = g.sh[:, 1:, :].transpose(1, 2).reshape(n, 3 * (k - 1))  # channel-major
    columns = [g.means, torch.zeros(n, 3), g.sh[:, 0, :], rest, g.opacity_logits[:, None], g.log_scales, g.quats]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    floats = torch.cat(columns, dim=1).detach().cpu().numpy()
    dtype = [(name, "<f4") for name in names] + [("object_id", "<i4")]
    data = np.empty(n, dtype=dtype)
    for i, name in enumerate(names):
        data[name] = floats[:, i]
    data["object_id"] = g.object_ids.cpu().numpy().astype(np.int32)
    return atomic_write(path, lambda tmp: PlyData([PlyElement.describe(data, "vertex")], byte_order="<").write(str(tmp)))


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY (ours, gsplat's, or the reference implementation's).

    Raises:
        PlyFormatError: the file is missing, not a PLY, has no ``vertex`` element,
            lacks required properties (all missing ones are named), or has an
            ``f_rest`` count that is not ``3 * ((d + 1) ** 2 - 1)``.
    """
    path = Path(path)
    if not path.is_file():
        raise PlyFormatError(f"{path}: no such file")
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several unrelated types
        raise PlyFormatError(f"{path}: not a readable PLY file ({exc})") from exc
    if "vertex" not in ply:
        raise PlyFormatError(f"{path}: no 'vertex' element")
    vertex = ply["vertex"].data
    present = set(vertex.dtype.names)
    missing = [name for name in _REQUIRED if name not in present]
    if missing:
        raise PlyFormatError(f"{path}: missing vertex properties {missing}")
    n_rest = sum(1 for name in present if name.startswith("f_rest_"))
    k = n_rest // 3 + 1
    if n_rest % 3 or math.isqrt(k) ** 2 != k or any(f"f_rest_{i}" not in present for i in range(n_rest)):
        raise PlyFormatError(f"{path}: {n_rest} f_rest_* properties do not form a full SH degree")

    def cols(names):
        if not names:
            return torch.zeros(len(vertex), 0)
        return torch.from_numpy(np.stack([np.asarray(vertex[c], dtype=np.float32) for c in names], axis=1))

    n = len(vertex)
    sh = torch.cat([cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
                    cols([f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1).transpose(1, 2)], dim=1)
    ids = (torch.from_numpy(np.asarray(vertex["object_id"], dtype=np.int64)) if "object_id" in present
           else torch.zeros(n, dtype=torch.int64))
    return Gaussians(
        means=cols(["x", "y", "z"]),
        quats=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=cols(["scale_0", "scale_1", "scale_2"]),
        opacity_logits=cols(["opacity"])[:, 0],
        sh=sh.contiguous(),
        object_ids=ids,
    )
