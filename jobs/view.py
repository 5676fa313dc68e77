"""``splatworld view``: serve the memory in a browser (viser) until Ctrl-C, or write a recording."""

from __future__ import annotations

import signal
import socket
import threading
import time

from omegaconf import DictConfig

from splatworld.errors import ConfigError


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`ConfigError` naming ``port`` if nothing can listen on it at ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"view: port {port} on {host} is in use or not allowed ({exc.strerror}); "
                              f"give another with port=N") from exc


def free_port(host: str) -> int:
    """A port nothing listens on at ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def view_memory(cfg: DictConfig) -> None:
    """Serve the viewer of ``cfg.memory`` (and its episodes) on ``cfg.host:cfg.port`` until Ctrl-C;
    or, with ``cfg.screenshot`` / ``cfg.record``, write the screenshot / the recording and return.
    The server answers at once; the scene follows when the memory is read."""
    import viser

    from splatworld.viewer import MemoryViewer, read_inputs
    from splatworld.viewer.app import check_recording_path
    from splatworld.viewer.browser import headless_chromium, wait_for_client, wait_until_drawn

    if cfg.record:
        check_recording_path(cfg.record)
    once = bool(cfg.record or cfg.screenshot)  # write a file and exit, on a port of its own
    port = free_port(cfg.host) if once else int(cfg.port)
    check_port_free(cfg.host, port)
    started = time.perf_counter()
    server = viser.ViserServer(host=cfg.host, port=port, verbose=False)
    viewer = None
    # Ctrl-C sets a flag instead of raising wherever the main thread is: raised inside viser's
    # message queue while the scene is being sent, it left the server unable to stop (seen under load)
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT) if once else signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        if server.get_port() != port:  # viser moves to the next free port; a user asked for this one
            raise ConfigError(f"view: port {port} on {cfg.host} is in use; give another with port=N")
        if not once:
            print(f"viewer at http://{cfg.host}:{port} (Ctrl-C to stop)", flush=True)
        memory, timeline = read_inputs(cfg.memory, cfg.episode, cfg.imagined)
        loaded = time.perf_counter() - started
        viewer = MemoryViewer(server, memory, timeline, screenshot_dir=cfg.screenshots, first_frame=int(cfg.frame))
        print(f"{len(timeline)} frames ({timeline.times[-1] - timeline.times[0]:.0f} s), "
              f"{len(timeline.objects)} objects, {len(timeline.truth)} true objects; "
              f"read in {loaded:.2f} s, scene ready in {time.perf_counter() - started:.2f} s", flush=True)
        if cfg.screenshot:
            width, height = (int(v) for v in cfg.screenshot_size)
            with headless_chromium(f"http://{cfg.host}:{port}", width, height) as browser:
                client = wait_for_client(server, browser)
                wait_until_drawn(client)
                out = viewer.save_view(client, cfg.screenshot, width, height)
            print(f"-> {out}")
        if cfg.record:
            out = viewer.record(cfg.record, float(cfg.record_every), float(cfg.record_speed))
            print(f"-> {out} (open it in a browser)")
        if once:
            return
        while not stop.wait(0.5):
            pass
        print("stopping the viewer")
    finally:
        signal.signal(signal.SIGINT, previous)
        if viewer is not None:
            viewer.close()
        server.stop()
