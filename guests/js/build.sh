#!/usr/bin/env bash
# Build the JavaScript guests (echo.wasm and broadcast.wasm of the handler
# world, chat.wasm and recover_chat.wasm of the event world) from ../../wit into OUT_DIR
# (default: dist/). Installs componentize-js into node_modules/ when missing;
# rebuilds only what changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
cd "$here"
# Test binaries may build at the same time: one at a time.
exec 9>"$here/.build.lock"
flock 9

if [ ! -x node_modules/.bin/componentize-js ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

for app in echo broadcast chat recover_chat; do
    world=handler
    case "$app" in chat | recover_chat) world=events ;; esac
    target="$out/$app.wasm"
    if [ -f "$target" ] && [ -z "$(find "$app.js" ../../wit -newer "$target" -print -quit)" ]; then
        continue
    fi
    # `-d http fetch-event`: without it the component imports wasi:http,
    # which wshost does not provide.
    node_modules/.bin/componentize-js --wit ../../wit --world-name "$world" \
        -d http fetch-event --out "$target.tmp" "$app.js" >/dev/null
    mv "$target.tmp" "$target"
done
