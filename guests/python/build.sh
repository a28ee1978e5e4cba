#!/usr/bin/env bash
# Build the Python guests (echo.wasm and broadcast.wasm of the handler
# world, chat.wasm and recover_chat.wasm of the event world, coro_echo.wasm and coro_broadcast.wasm
# of the coro world) from ../../wit into OUT_DIR
# (default: dist/). Installs componentize-py into .venv/ when missing;
# rebuilds only what changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
cd "$here"
# Test binaries may build at the same time: one at a time.
exec 9>"$here/.build.lock"
flock 9

if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check componentize-py==0.25.1
fi

for app in echo broadcast chat recover_chat coro_echo coro_broadcast; do
    case "$app" in
        chat | recover_chat) world=events ;;
        coro_*) world=coro ;;
        *) world=handler ;;
    esac
    target="$out/$app.wasm"
    if [ -f "$target" ] && [ -z "$(find "$app.py" ../../wit -newer "$target" -print -quit)" ]; then
        continue
    fi
    .venv/bin/componentize-py -d ../../wit -w "$world" componentize "$app" -o "$target.tmp" >/dev/null
    mv "$target.tmp" "$target"
done
