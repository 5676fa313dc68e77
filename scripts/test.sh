#!/usr/bin/env bash
# The test suite: set up if needed, check the import layers (pyproject's [tool.importlinter]),
# then pytest (extra arguments are passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/lint_imports.py
exec .venv/bin/python -m pytest "$@"
