#!/usr/bin/env bash
# Creates .venv and installs Blockyard with everything the demo and the tests need.
# Sourced by scripts/start.sh and scripts/test.sh; safe to run again (quick when up to date).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
fi
STAMP="$ROOT/.venv/.blockyard-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[all,dev]"
  touch "$STAMP"
fi
# The offline data mirror: ../shared/data beside the clone, when it exists.
if [ -z "${BLOCKYARD_DATA_MIRROR:-}" ] && [ -d "$ROOT/../shared/data" ]; then
  export BLOCKYARD_DATA_MIRROR="$(cd "$ROOT/../shared/data" && pwd)"
fi
export PATH="$ROOT/.venv/bin:$PATH"
