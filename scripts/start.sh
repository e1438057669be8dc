#!/usr/bin/env bash
# Starts Blockyard on the embedded default (SQLite under mlops/.blockyard) with the course workspace.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
export BLOCKYARD_WORKSPACE="$ROOT/mlops"
blockyard run unit_0_setup/example_pipeline "$@"
blockyard pipelines
