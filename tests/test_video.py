import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from splatworld.errors import ShapeError
from splatworld.render import FrameWriter, write_video


def _frames(n, h=32, w=48):
    for i in range(n):
        frame = torch.zeros(h, w, 3)
        frame[:, : (i + 1) * 4, 0] = 1.0  # a red bar that grows
        yield frame


def test_mp4_is_written_and_readable(tmp_path):
    path = write_video(_frames(12), tmp_path / "v.mp4", fps=12, total=12, progress=False)
    reader = imageio.get_reader(path)
    frames = [f for f in reader]
    assert len(frames) == 12 and frames[0].shape == (32, 48, 3)
    assert frames[-1][16, 40, 0] > 200 and frames[0][16, 40, 0] < 50  # content survives encoding
    assert not (tmp_path / "v.partial.mp4").exists()


def test_png_folder(tmp_path):
    write_video(_frames(3), tmp_path / "frames", progress=False)
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ["000000.png", "000001.png", "000002.png"]
    np.testing.assert_array_equal(imageio.imread(tmp_path / "frames" / "000001.png")[0, :8, 0], [255] * 8)


def test_a_failed_run_leaves_the_previous_video_intact(tmp_path):
    path = write_video(_frames(4), tmp_path / "v.mp4", progress=False)
    before = path.read_bytes()

    def broken():
        yield from _frames(2)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_video(broken(), path, progress=False)
    assert path.read_bytes() == before
    assert not (tmp_path / "v.partial.mp4").exists()


def test_frame_size_change_is_rejected(tmp_path):
    with pytest.raises(ShapeError, match="frame 1"):
        with FrameWriter(tmp_path / "v.mp4") as writer:
            writer.write(torch.zeros(32, 32, 3))
            writer.write(torch.zeros(16, 32, 3))
