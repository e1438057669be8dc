#!/usr/bin/env bash
# Runs the whole test suite (sets everything up first). Extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec python -m pytest -n 2 --dist loadfile -q "$@"
