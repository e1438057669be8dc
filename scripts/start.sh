#!/usr/bin/env bash
# Starts Blockyard on the embedded default (SQLite under mlops/.blockyard) with the course
# workspace: API, scheduler and worker in one process, on http://localhost:6789.
# While the first run installs (a few minutes on a fresh machine) it prints its progress,
# and before starting it says whether the offline data mirror is active.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Progress of scripts/setup.sh (its pip output goes to a log): elapsed time and the number
# of packages already in .venv, every 5 s, on stderr. Only while setup takes a while.
progress() {
  local start=$SECONDS
  sleep 3
  while true; do
    local n=0
    for d in "$ROOT"/.venv/lib/python*/site-packages; do
      [ -d "$d" ] && n=$(find "$d" -maxdepth 1 -name "*.dist-info" 2>/dev/null | wc -l)
    done
    echo "start: installing Blockyard and its dependencies… $((SECONDS - start)) s, $n packages in .venv so far" >&2
    sleep 5
  done
}
progress &
PROGRESS_PID=$!
trap 'kill "$PROGRESS_PID" 2>/dev/null || true' EXIT
source "$ROOT/scripts/setup.sh"
kill "$PROGRESS_PID" 2>/dev/null || true
wait "$PROGRESS_PID" 2>/dev/null || true
trap - EXIT

if [ -n "${BLOCKYARD_DATA_MIRROR:-}" ] && [ -d "$BLOCKYARD_DATA_MIRROR" ]; then
  files=$(find "$BLOCKYARD_DATA_MIRROR" -type f \( -name "*.parquet" -o -name "*.csv" \) | wc -l)
  echo "start: data mirror active: $BLOCKYARD_DATA_MIRROR ($files data files; the course's datasets are read from it, offline)" >&2
elif [ -n "${BLOCKYARD_DATA_MIRROR:-}" ]; then
  echo "start: data mirror NOT active: BLOCKYARD_DATA_MIRROR=$BLOCKYARD_DATA_MIRROR is not a folder; datasets are downloaded on first use" >&2
else
  echo "start: data mirror not set (BLOCKYARD_DATA_MIRROR, or ../shared/data beside the clone): datasets are downloaded on first use" >&2
fi
echo "start: open http://localhost:6789 once the server says it is listening" >&2
cd "$ROOT"
exec blockyard start "$ROOT/mlops" "$@"
