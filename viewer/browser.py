"""Headless Chromium pointed at a viewer: for screenshots without a display, and for tests.

Debian's ``chromium`` with SwiftShader (software WebGL): no GPU, no display server needed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import viser

from splatworld.errors import SplatworldError

BINARIES = ("chromium", "chromium-browser", "google-chrome")


class BrowserUnavailableError(SplatworldError, RuntimeError):
    """No headless browser could be started or connect to the viewer."""


def find_chromium() -> str | None:
    """The path of a Chromium binary on ``PATH``, or None."""
    return next((path for path in map(shutil.which, BINARIES) if path), None)


@contextmanager
def headless_chromium(url: str, width: int = 1280, height: int = 960) -> Iterator[subprocess.Popen]:
    """Chromium, headless with software WebGL, showing ``url`` in a ``width`` x ``height`` window;
    killed with every process it started on exit.

    Raises:
        BrowserUnavailableError: no Chromium on ``PATH``.
    """
    binary = find_chromium()
    if binary is None:
        raise BrowserUnavailableError(f"no Chromium on PATH (looked for {', '.join(BINARIES)}; "
                                      f"Debian: apt-get install chromium)")
    args = [binary, "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
            "--disable-gpu-sandbox", "--no-first-run", f"--window-size={width},{height}", url]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def wait_for_client(server: viser.ViserServer, browser: subprocess.Popen, timeout: float = 60.0) -> viser.ClientHandle:
    """The first client connected to ``server`` (waiting up to ``timeout`` s).

    Raises:
        BrowserUnavailableError: ``browser`` exited, or no client connected in time.
    """
    deadline = time.monotonic() + timeout
    while not server.get_clients():
        if browser.poll() is not None:
            raise BrowserUnavailableError(f"Chromium exited with status {browser.returncode} before connecting")
        if time.monotonic() > deadline:
            raise BrowserUnavailableError(f"no browser connected to the viewer within {timeout:g} s")
        time.sleep(0.05)
    return next(iter(server.get_clients().values()))


def wait_until_drawn(client: viser.ClientHandle, timeout: float = 60.0, size: tuple[int, int] = (120, 160)) -> None:
    """Wait until ``client``'s browser draws the same small frame twice in a row: the scene has
    arrived, its splats are sorted and its camera has settled (each arrives asynchronously).

    Raises:
        BrowserUnavailableError: the frames still change after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        frame = client.get_render(*size, timeout=timeout).astype(np.int16)
        if previous is not None and np.abs(frame - previous).mean() < 0.5:
            return
        previous = frame
        time.sleep(0.3)
    raise BrowserUnavailableError(f"the browser's view was still changing after {timeout:g} s")
