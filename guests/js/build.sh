#!/usr/bin/env bash
# Build the TypeScript guests on @wshost/guest (echo.wasm and broadcast.wasm
# of the handler world; chat.wasm, recover_chat.wasm and sdk_events.wasm,
# which tests/sdk.rs drives, of the event world)
# into OUT_DIR (default: dist/). Installs the toolchain into node_modules/
# when missing; checks that the SDK's WIT types are current and that every
# example type-checks; rebuilds only what changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
cd "$here"
sdk="$here/../../guest-sdk/js"
# Test binaries may build at the same time: one at a time.
exec 9>"$here/.build.lock"
flock 9

if [ ! -x node_modules/.bin/componentize-js ] || [ ! -x node_modules/.bin/tsc ] ||
    [ ! -x node_modules/.bin/rolldown ] || [ ! -x node_modules/.bin/jco ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

# The SDK's declarations of the host's interfaces come from the WIT.
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
"$sdk/gen-types.sh" "$here/node_modules/.bin/jco" "$fresh/wit"
if ! diff -r "$fresh/wit" "$sdk/src/wit" >&2; then
    echo "guest-sdk/js/src/wit is not what the WIT generates: run guest-sdk/js/gen-types.sh" >&2
    exit 1
fi
node_modules/.bin/tsc -p .

for app in echo broadcast chat recover_chat sdk_events; do
    world=handler
    case "$app" in chat | recover_chat | sdk_events) world=events ;; esac
    target="$out/$app.wasm"
    if [ -f "$target" ] && [ -z "$(find "$app.ts" "$sdk/src" ../../wit -newer "$target" -print -quit)" ]; then
        continue
    fi
    APP="$app.ts" OUT="$out/$app.js" node_modules/.bin/rolldown -c "$sdk/rolldown.config.mjs" >/dev/null
    # `-d http fetch-event`: without it the component imports wasi:http,
    # which wshost does not provide.
    # An exception at start-up names the bundle: locate.mjs points it back
    # at the source through the bundle's source map.
    if ! node_modules/.bin/componentize-js --wit ../../wit --world-name "$world" \
        -d http fetch-event --out "$target.tmp" "$out/$app.js" >"$out/$app.log" 2>&1; then
        node "$sdk/locate.mjs" "$out/$app.js.map" <"$out/$app.log" || cat "$out/$app.log" >&2
        exit 1
    fi
    mv "$target.tmp" "$target"
done
