#!/usr/bin/env bash
# The CUDA path end to end on one GPU, in under 8 minutes: set-up, the GPU-marked tests, the
# renderer benchmark (256x256 / 50k and 1920x1080 / 1M Gaussians: our gsplat backend vs gsplat's
# rasterization() called directly vs the cpu backend vs the torch reference), the demo's
# imagination on backend=gsplat, and batched rollouts on CUDA vs CPU. The last line holds the
# figures as key=value. Without a GPU it says so in one line and exits 0.
#
#   bash scripts/gpu_check.sh
#
# Set-up: scripts/setup.sh's .venv (torch==2.13.0 from PyPI is a CUDA build on Linux x86-64), or
# SPLATWORLD_PYTHON=/path/to/python: an interpreter that already has a CUDA torch and this
# package installed (an offline machine). Where PyBullet is missing there, the renderer benchmark
# takes SPLATWORLD_TABLETOP_PLY (a 3DGS PLY, e.g. `splatworld orbit`'s scene.ply) and the demo
# step SPLATWORLD_DEMO_EPISODE + SPLATWORLD_DEMO_MEMORY (an episode and the memory.pt observed on
# its first SPLATWORLD_DEMO_OBSERVED frames, default 300) instead of generating them.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none): nothing to check"
    exit 0
fi

started=$(date +%s)
export PYTHONSAFEPATH=1  # `python -m` from the repository root must import the installed package, not ./splatworld
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # every step runs in the foreground: nothing is left running
if [ -n "${SPLATWORLD_PYTHON:-}" ]; then
    PY=$SPLATWORLD_PYTHON
else
    bash scripts/setup.sh || { echo "gpu_check: set-up failed"; exit 1; }
    PY=.venv/bin/python
fi
"$PY" - <<'EOF' || exit 1
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no GPU (a CPU-only build?): install a CUDA build of torch")
print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"Python {sys.version.split()[0]}")
EOF

failed_steps=()
step() {  # step NAME TIMEOUT_S COMMAND...: run, log, keep its last key=value line
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s)
    echo "=== $name"
    timeout "$limit" "$@" 2>&1 | tee "$work/$name.log" | grep -v -E '^\s*$|it/s\]|frame/s\]'
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc in $(( $(date +%s) - t0 )) s"
    [ "$rc" -eq 0 ] || failed_steps+=("$name")
}

# gsplat compiles its CUDA kernels on first use (minutes on a fresh machine; cached afterwards).
step gsplat_build 400 env MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -c "
import time; t = time.perf_counter()
from gsplat.cuda._backend import _C
assert _C is not None, 'gsplat has no CUDA extension'
print(f'gsplat CUDA extension ready in {time.perf_counter() - t:.0f} s')"

has_pybullet=false
"$PY" -c "import pybullet" 2>/dev/null && has_pybullet=true
collect=()
if ! $has_pybullet; then
    echo "gpu_check: PyBullet is not installed: the test modules that generate episodes cannot be imported"
    collect=(--continue-on-collection-errors)
fi
step gpu_tests 300 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider "${collect[@]}" tests
count() {  # count WORD: the number before WORD in pytest's closing line (0 if absent)
    grep -E '(passed|failed|error|skipped|deselected).* in [0-9.]+s' "$work/gpu_tests.log" | tail -1 \
        | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0
}

ply_args=()
[ -n "${SPLATWORLD_TABLETOP_PLY:-}" ] && ply_args=(--ply "$SPLATWORLD_TABLETOP_PLY")
step render 240 "$PY" benchmarks/render_cuda.py "${ply_args[@]}"
step rollouts 120 "$PY" benchmarks/rollouts_cuda.py

if $has_pybullet; then
    step demo 300 "$PY" -m splatworld.cli demo backend=gsplat progress=false out="$work/demo"
elif [ -n "${SPLATWORLD_DEMO_EPISODE:-}" ] && [ -n "${SPLATWORLD_DEMO_MEMORY:-}" ]; then
    step demo 300 "$PY" -m splatworld.cli imagine episode="$SPLATWORLD_DEMO_EPISODE" \
        memory="$SPLATWORLD_DEMO_MEMORY" observe_until="${SPLATWORLD_DEMO_OBSERVED:-300}" backend=gsplat \
        video=false compare=false progress=false out="$work/imagined"
else
    echo "=== demo: skipped (PyBullet is not installed and no SPLATWORLD_DEMO_EPISODE / _MEMORY given)"
fi
realtime=$(grep -oE '[0-9.]+x real time' "$work/demo.log" 2>/dev/null | head -1 | grep -oE '^[0-9.]+' || echo nan)

last() { grep -E '^[a-z_0-9]+=' "$work/$1.log" 2>/dev/null | tail -1; }
failed_list=$(IFS=,; echo "${failed_steps[*]:-}")
echo "gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '_')" \
     "gpu_tests_passed=$(count passed) gpu_tests_failed=$(count failed)" \
     "gpu_tests_skipped=$(count skipped) test_modules_not_imported=$(count error)" \
     "$(last render) $(last rollouts) demo_x_real_time=$realtime" \
     "failed_steps=${failed_list:-none} seconds=$(( $(date +%s) - started ))"
