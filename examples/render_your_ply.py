"""Render any 3DGS PLY (yours, gsplat's, the reference code's) along an orbit to an mp4.

    python examples/render_your_ply.py scene.ply orbit.mp4 --radius 2.0 --height 1.0
"""

import argparse

import torch

from splatworld.render import orbit_path, render, write_video
from splatworld.scene import read_ply

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("ply")
parser.add_argument("out", help="an .mp4 file or a folder for PNG frames")
parser.add_argument("--frames", type=int, default=60)
parser.add_argument("--radius", type=float, default=2.0, help="orbit radius around the splats' centre (m)")
parser.add_argument("--height", type=float, default=1.0, help="camera height above the centre (m)")
parser.add_argument("--backend", default="auto")
args = parser.parse_args()

gaussians = read_ply(args.ply)
center = gaussians.means.median(dim=0).values.tolist()
cameras = orbit_path(args.frames, center=center, radius=args.radius, height=args.height)
with torch.no_grad():
    frames = (render(gaussians, cam, backend=args.backend).rgb for cam in cameras)
    write_video(frames, args.out, total=len(cameras))
