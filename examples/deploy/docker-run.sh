#!/usr/bin/env bash
# The herd (proxy, origin, tracker, build-index) and one agent as containers.
# HOST_IP must be the address agents reach the herd at: the tracker hands it out as the
# origin's peer address, so 127.0.0.1 only works when everything runs on one host's loopback.
set -euo pipefail
HOST_IP=${HOST_IP:?set HOST_IP to this host's address, e.g. 172.17.0.1}

docker run -d --name shoal-herd \
  -p 15000-15005:15000-15005 \
  -v shoal-herd:/var/lib/shoal \
  -e SHOAL_ADVERTISE_HOST="$HOST_IP" \
  shoal-herd:dev

docker run -d --name shoal-agent-one \
  -p 16001:16001 -p 16002:16002 \
  -v shoal-agent-one:/var/lib/shoal \
  -e SHOAL_HERD_HOST="$HOST_IP" \
  -e AGENT_SERVER_HOST=0.0.0.0 \
  shoal-agent:dev
