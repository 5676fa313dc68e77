"""The viewer on a memory: time to first frame and cost of a slider step.

    python benchmarks/view.py [--memory FILE --episode DIR] [--imagined DIR] [--steps 30] [--out DIR]

Without ``--memory``, the ``long`` preset (seed 0, 10 minutes) is generated (cached in
``benchmarks/.episodes``) and observed whole; that memory is kept beside it.

- ready: the viser server starts, the memory and the episode are read and the scene is built and
  queued (no browser running: it would share the cores). Python's imports (torch, open3d, viser)
  are timed apart, in a fresh interpreter.
- step: the slider is moved through viser's API to ``--steps`` frames spread over the timeline;
  each step is timed on the server (:meth:`MemoryViewer.show`), and what it sends to a browser is
  counted as viser puts it on the wire (arrays raw, the rest zstd-compressed msgpack). The peer, in the same run: a viewer that sends
  the scene again at each step (the memory's Gaussians at that frame,
  :meth:`SceneMemory.gaussians_at`, as one splat node).
- browser: then headless Chromium (software GL, on the same cores) opens the page: seconds until
  its first render returns, a 320x240 render with nothing changed, and one after a step. These
  measure the software rasterizer more than the viewer; they are reported for context.

Writes ``OUT/view.json``. Last line: ``ready_s=... import_s=... step_server_ms=... step_kb=...
resend_server_ms=... resend_kb=... speedup=... browser_first_s=... browser_render_ms=...``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from splatworld.jobs.config import load_config
from splatworld.jobs.generate import generated_episode
from splatworld.jobs.observe import observe_episode
from splatworld.jobs.view import free_port
from splatworld.viewer.browser import headless_chromium, wait_for_client

RENDER = (240, 320)  # height, width of the probe renders


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import splatworld.viewer, viser; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def render_ms(client) -> float:
    started = time.perf_counter()
    client.get_render(*RENDER, timeout=120.0)
    return 1000 * (time.perf_counter() - started)


def timed_steps(server, frames, step) -> tuple[list[float], int]:
    """Milliseconds of ``step(frame)`` for each frame, and the bytes they put on the wire to each
    browser, encoded as viser sends them (binary arrays raw, the rest zstd-compressed msgpack)."""
    import msgspec
    import zstandard

    sent = []
    queue = server._websock_server  # viser's outgoing queue (private): every message to every browser
    original = queue.queue_message
    queue.queue_message = lambda message: (sent.append(message), original(message))[1]
    times = []
    try:
        for f in frames:
            started = time.perf_counter()
            step(int(f))
            times.append(1000 * (time.perf_counter() - started))
    finally:
        queue.queue_message = original
    buffers: list = []
    inner = msgspec.msgpack.encode([message.as_serializable_dict(buffers) for message in sent])
    return times, len(zstandard.ZstdCompressor(level=1).compress(inner)) + sum(b.nbytes for b in buffers)


def run(memory_path: Path, episode: Path, imagined: Path | None, steps: int) -> dict:
    import viser

    from splatworld.viewer import MemoryViewer, read_inputs
    from splatworld.viewer.app import splat_arrays

    port = free_port("127.0.0.1")
    started = time.perf_counter()
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    try:
        memory, timeline = read_inputs(memory_path, episode, imagined)
        read = time.perf_counter() - started
        viewer = MemoryViewer(server, memory, timeline)
        ready = time.perf_counter() - started

        frames = np.linspace(0, len(timeline) - 1, steps + 1).round().astype(int)[1:]
        step_ms, step_bytes = timed_steps(server, frames, lambda f: setattr(viewer.slider, "value", f))
        viewer.show(0)

        def resend(f: int) -> None:
            server.scene.add_gaussian_splats("/resent", *splat_arrays(memory.gaussians_at(f)))

        resend_ms, resend_bytes = timed_steps(server, frames[:5], resend)
        server.scene.remove_by_name("/resent")

        started = time.perf_counter()
        with headless_chromium(f"http://127.0.0.1:{port}") as browser:
            client = wait_for_client(server, browser, timeout=120.0)
            client.get_render(*RENDER, timeout=120.0)
            browser_first = time.perf_counter() - started
            still = [render_ms(client) for _ in range(3)]
            moved = []
            for f in frames[:3]:
                viewer.slider.value = int(f)
                moved.append(render_ms(client))
        viewer.close()
        return {"frames": len(timeline), "objects": len(timeline.objects),
                "static_splats": len(memory.static_gaussians()), "read_s": read, "ready_s": ready,
                "step_server_ms": statistics.median(step_ms), "step_server_max_ms": max(step_ms),
                "step_kb": step_bytes / 1e3 / len(frames),
                "resend_server_ms": statistics.median(resend_ms), "resend_kb": resend_bytes / 1e3 / len(resend_ms),
                "browser_first_s": browser_first, "browser_render_ms": statistics.median(still),
                "browser_step_render_ms": statistics.median(moved)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", type=Path)
    parser.add_argument("--episode", type=Path)
    parser.add_argument("--imagined", type=Path)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    if args.memory is None:
        args.episode = generated_episode(Path("benchmarks/.episodes"), "long", 0)
        args.memory = args.episode.parent / "long_seed0_memory" / "memory.pt"
        if not args.memory.is_file():
            observe_episode(load_config("observe", [f"episode={args.episode}", f"out={args.memory.parent}"]))
    elif args.episode is None:
        raise SystemExit("--memory needs --episode (the episode it observed)")
    result = {"import_s": import_seconds(), **run(args.memory, args.episode, args.imagined, args.steps)}
    result["speedup"] = result["resend_server_ms"] / result["step_server_ms"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "view.json").write_text(json.dumps(result, indent=1))
    for key, value in result.items():
        print(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    print(f"ready_s={result['ready_s']:.2f} import_s={result['import_s']:.2f} "
          f"step_server_ms={result['step_server_ms']:.1f} step_kb={result['step_kb']:.1f} "
          f"resend_server_ms={result['resend_server_ms']:.0f} resend_kb={result['resend_kb']:.0f} "
          f"speedup={result['speedup']:.1f} browser_first_s={result['browser_first_s']:.1f} "
          f"browser_render_ms={result['browser_render_ms']:.0f}")


if __name__ == "__main__":
    main()
