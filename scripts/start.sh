#!/usr/bin/env bash
# Starts Blockyard on the embedded default (SQLite under mlops/.blockyard) with the course
# workspace: API, scheduler and worker in one process, on http://localhost:6789.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec blockyard start "$ROOT/mlops" "$@"
