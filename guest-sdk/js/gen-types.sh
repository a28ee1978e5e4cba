#!/usr/bin/env bash
# Generate src/wit/ (the TypeScript declarations of the host's interfaces)
# from ../../wit with jco, for the two worlds JavaScript can implement.
# Usage: gen-types.sh [JCO] [OUT]; JCO defaults to node_modules/.bin/jco,
# OUT to src/wit. The tests run it into a scratch folder and compare, so
# src/wit never drifts from the WIT.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
jco="${1:-$here/node_modules/.bin/jco}"
out="${2:-$here/src/wit}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# jco reads the WIT through a sandbox rooted at the working directory.
cp -r "$here/../../wit" "$scratch/wit"
cd "$scratch"
for world in handler events; do
    "$jco" guest-types wit --world-name "$world" -o "gen/$world" >/dev/null
done
mkdir -p all/interfaces
cp gen/handler/handler.d.ts gen/events/events.d.ts all/
# The worlds share most interfaces; a shared one must come out the same.
for file in gen/*/interfaces/*.d.ts; do
    name="$(basename "$file")"
    if [ ! -e "all/interfaces/$name" ]; then
        cp "$file" all/interfaces/
    elif ! cmp -s "$file" "all/interfaces/$name"; then
        echo "gen-types.sh: the worlds generate $name differently" >&2
        exit 1
    fi
done
# Replaced only when whole.
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -r all "$out"
