"""Take part in the permanence benchmark with an outside model: here `last_frame`, written as mp4s.

Reads an exported suite's tasks (`splatworld benchmark export out=SUITE`) and writes one prediction
per task into PREDICTIONS/last_frame/: for an imagination task, its frames [k, T) as an mp4 (each a
copy of the last observed frame); for a return task, one frame per query (b, c), a copy of frame
b - 1. Score with `splatworld benchmark score suite=SUITE predictions=PREDICTIONS out=BOARD`.

    python examples/last_frame_mp4.py SUITE PREDICTIONS
"""

import json
import sys
from pathlib import Path

import imageio.v2 as imageio

suite, predictions = Path(sys.argv[1]), Path(sys.argv[2]) / "last_frame"
predictions.mkdir(parents=True, exist_ok=True)
for task in json.loads((suite / "suite.json").read_text())["tasks"]:
    folder = suite / "tasks" / task["id"]
    frames = json.loads((folder / "transforms.json").read_text())["frames"]
    image = lambda i: imageio.imread(folder / frames[i]["file_path"])  # noqa: E731
    if task["protocol"] == "imagination":
        copies = [image(task["observe_until"] - 1)] * task["frames"]
    else:
        copies = [image(b - 1) for b, _ in task["queries"]]
    with imageio.get_writer(predictions / f"{task['id']}.mp4", fps=task["fps"], macro_block_size=1) as video:
        for frame in copies:
            video.append_data(frame)
