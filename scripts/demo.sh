#!/usr/bin/env bash
# The main job on its built-in default: set up if needed, then run `splatworld demo`
# (extra key=value overrides are passed through, e.g. imagine_seconds=60 out=/tmp/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/splatworld demo "$@"
