#!/usr/bin/env bash
# Idempotent set-up: Debian's libusb for open3d and chromium for the viewer's browser test, a virtual environment in .venv,
# torch==2.13.0 first (an unpinned torch would pull several GB of CUDA wheels),
# then this package with its dev extras. Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    echo "[setup] installing Debian's libusb-1.0-0 (open3d needs it at import time)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
    # the viewer's browser test (tests/test_viewer.py) draws the scene in headless Chromium
    echo "[setup] installing Debian's chromium (the viewer's browser test)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; }; then
        echo "[setup] warning: chromium could not be installed; the viewer's browser test will skip" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    python3 -m venv .venv
fi
PY=.venv/bin/python
stamp=.venv/.splatworld-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && $PY -c "import splatworld, torch, open3d" 2>/dev/null; then
    exit 0  # already set up for this pyproject
fi
$PY -m pip install -q --upgrade pip setuptools wheel
if ! $PY -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0"
    $PY -m pip install -q "torch==2.13.0"
fi
echo "[setup] installing splatworld with its dependencies"
$PY -m pip install -q -e ".[dev]"
echo "$want" > "$stamp"
