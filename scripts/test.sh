#!/usr/bin/env bash
# Runs the whole test suite (sets everything up first). Extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
# The UI tests drive Debian's Chromium (never a downloaded browser build).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian's chromium for the UI tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) > "$ROOT/.venv/apt.log" 2>&1 \
    || { tail -20 "$ROOT/.venv/apt.log" >&2; echo "setup: WARNING: chromium install failed; the browser tests will be skipped" >&2; }
fi
# The deployment tests check deploy/compose.yaml with Debian's docker-compose (no engine needed).
if ! command -v docker-compose >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian's docker-compose for the deployment tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >> "$ROOT/.venv/apt.log" 2>&1 \
    || { tail -20 "$ROOT/.venv/apt.log" >&2; echo "setup: WARNING: docker-compose install failed; the compose test will be skipped" >&2; }
fi
cd "$ROOT"
exec python -m pytest -n 2 --dist loadfile -q "$@"
