#!/usr/bin/env bash
# Entry point of the agent image. Ports from docs/architecture.md §3; the tracker and build-index
# are the herd's (SHOAL_HERD_HOST).
set -euo pipefail

SHOAL_HOME=${SHOAL_HOME:-$(cd "$(dirname "$0")/.." && pwd)}
SHOAL_HERD_HOST=${SHOAL_HERD_HOST:-127.0.0.1}
SHOAL_HERD_BASE_PORT=${SHOAL_HERD_BASE_PORT:-15000}
AGENT_PEER_PORT=${AGENT_PEER_PORT:-16001}
AGENT_SERVER_PORT=${AGENT_SERVER_PORT:-16002}
AGENT_SERVER_HOST=${AGENT_SERVER_HOST:-127.0.0.1}
SHOAL_DATA_DIR=${SHOAL_DATA_DIR:-/var/lib/shoal/agent}

args=(agent
  --port "$AGENT_SERVER_PORT" --host "$AGENT_SERVER_HOST" --peer-port "$AGENT_PEER_PORT"
  --data-dir "$SHOAL_DATA_DIR"
  --tracker "$SHOAL_HERD_HOST:$((SHOAL_HERD_BASE_PORT + 3))"
  --build-index "$SHOAL_HERD_HOST:$((SHOAL_HERD_BASE_PORT + 4))")
[ -n "${SHOAL_CONFIG:-}" ] && args+=(--config "$SHOAL_CONFIG")

mkdir -p "$SHOAL_DATA_DIR"
exec node "$SHOAL_HOME/dist/cmd/shoal.js" "${args[@]}"
