#!/usr/bin/env bash
# A round trip through a running devcluster (start one with: npx shoal devcluster up --agents 2).
# Usage: examples/push-pull.sh [FILE]   (default: a generated 8 MiB file)
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=${1:-$work/reference-data.bin}
[ -f "$src" ] || head -c $((8 << 20)) /dev/urandom > "$src"

out=$(node dist/cmd/PushCLI.js push --src-path "$src" --version "example-$(date +%s)")
echo "$out"
tag=$(sed -n 's/^tag: *//p' <<<"$out")

for api in 127.0.0.1:16002 127.0.0.1:17002; do
  node dist/cmd/PullCLI.js pull --tag "$tag" --dst-path "$work/in-${api##*:}" --dst-host "$api"
  cmp "$src" "$work/in-${api##*:}/$(basename "$src")" && echo "identical copy via agent $api"
done

node dist/cmd/RemoveCLI.js remove --tag "$tag"
