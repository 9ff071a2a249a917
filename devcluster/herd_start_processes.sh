#!/usr/bin/env bash
# Entry point of the herd image: proxy + origin + tracker + build-index in one process
# (`shoal herd`). Ports follow docs/architecture.md §3 from SHOAL_BASE_PORT. exec so that the
# container's SIGTERM reaches node and the herd stops cleanly.
set -euo pipefail

SHOAL_HOME=${SHOAL_HOME:-$(cd "$(dirname "$0")/.." && pwd)}
SHOAL_BASE_PORT=${SHOAL_BASE_PORT:-15000}
SHOAL_DATA_DIR=${SHOAL_DATA_DIR:-/var/lib/shoal/herd}
# The address agents reach this host at: handed out as the origin's peer address. Set it in any
# deployment where agents are not on this host's loopback.
SHOAL_ADVERTISE_HOST=${SHOAL_ADVERTISE_HOST:-127.0.0.1}
SHOAL_ENV=${SHOAL_ENV:-development}
export SHOAL_ENV

args=(herd --base-port "$SHOAL_BASE_PORT" --data-dir "$SHOAL_DATA_DIR" --host "$SHOAL_ADVERTISE_HOST")
[ -n "${SHOAL_CONFIG:-}" ] && args+=(--config "$SHOAL_CONFIG")

mkdir -p "$SHOAL_DATA_DIR"
exec node "$SHOAL_HOME/dist/cmd/shoal.js" "${args[@]}"
