#!/usr/bin/env bash
# Build the Python guests on the `wshost` package (../../guest-sdk/python):
# echo.wasm, broadcast.wasm and sdk_handler.wasm (tests/sdk.rs) of the
# handler world; chat.wasm,
# recover_chat.wasm and sdk_events.wasm (which tests/sdk.rs drives) of the
# event world; coro_echo.wasm and coro_broadcast.wasm of the coro world;
# into OUT_DIR (default: dist/). Installs componentize-py and mypy into
# .venv/ when missing; checks every example and the package with
# `mypy --strict` against its world's bindings; rebuilds only what changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
cd "$here"
sdk="$here/../../guest-sdk/python"
# Test binaries may build at the same time: one at a time.
exec 9>"$here/.build.lock"
flock 9

if [ ! -x .venv/bin/componentize-py ] || [ ! -x .venv/bin/mypy ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check componentize-py==0.25.1 mypy==2.4.1
fi

world_of() {
    case "$1" in
        chat | recover_chat | sdk_events) echo events ;;
        coro_*) echo coro ;;
        *) echo handler ;;
    esac
}
apps=(echo broadcast chat recover_chat sdk_events sdk_handler coro_echo coro_broadcast)

# Types: each world's examples against that world's bindings.
for world in handler events coro; do
    rm -rf "gen/$world"
    .venv/bin/componentize-py -d ../../wit -w "$world" bindings "gen/$world" >/dev/null
    files=()
    for app in "${apps[@]}"; do
        [ "$(world_of "$app")" = "$world" ] && files+=("$app.py")
    done
    MYPYPATH="gen/$world:$sdk" .venv/bin/mypy --config-file "$sdk/wshost/mypy.ini" --no-error-summary \
        --cache-dir "gen/.mypy_cache/$world" "${files[@]}"
done

for app in "${apps[@]}"; do
    world="$(world_of "$app")"
    target="$out/$app.wasm"
    if [ -f "$target" ] && [ -z "$(find "$app.py" "$sdk/wshost" ../../wit -newer "$target" -print -quit)" ]; then
        continue
    fi
    .venv/bin/componentize-py -d ../../wit -w "$world" componentize "$app" \
        -p . -p "$sdk" -o "$target.tmp" >/dev/null
    mv "$target.tmp" "$target"
done
