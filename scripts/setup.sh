#!/usr/bin/env bash
# Creates .venv and installs Blockyard with everything the demo and the tests need.
# Sourced by scripts/start.sh and scripts/test.sh; safe to run again (quick when up to date).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
pip_quiet() {  # pip's output goes to a log, shown only when it fails
  if ! "$ROOT/.venv/bin/python" -m pip "$@" > "$ROOT/.venv/pip.log" 2>&1; then
    grep -v "is ignored: it is neither" "$ROOT/.venv/pip.log" | tail -40 >&2
    echo "setup: pip $* failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
}
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "setup: creating .venv and installing Blockyard (first run takes a minute or two)" >&2
  "$PY" -m venv "$ROOT/.venv"
  pip_quiet install -q --upgrade pip
fi
STAMP="$ROOT/.venv/.blockyard-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  pip_quiet install -q -e "$ROOT[all,dev]"
  touch "$STAMP"
fi
# An editable install is not byte-compiled by pip, and with PYTHONDONTWRITEBYTECODE
# set (as in CI) nothing would ever cache it: every `blockyard` command would compile
# the package from source (~0.1 s). Quick when the cache is current.
"$ROOT/.venv/bin/python" -m compileall -q "$ROOT/src/blockyard" > /dev/null
# The offline data mirror: ../shared/data beside the clone, when it exists.
if [ -z "${BLOCKYARD_DATA_MIRROR:-}" ] && [ -d "$ROOT/../shared/data" ]; then
  export BLOCKYARD_DATA_MIRROR="$(cd "$ROOT/../shared/data" && pwd)"
fi
export PATH="$ROOT/.venv/bin:$PATH"
