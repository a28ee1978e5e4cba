#!/usr/bin/env bash
# Build the raw-bindings guests `wshost-bench sdk` measures the SDKs
# against: the JavaScript and Python echo, chat (and Python coro echo) as
# they were written on the generated bindings before the SDKs, into OUT_DIR
# (default: dist/); a second argument, js or python, builds only that
# language's: `build.sh [OUT_DIR [js|python]]`. Uses
# the toolchains guests/js/build.sh and guests/python/build.sh install (run
# those first).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
langs="${2:-js python}"
case "$langs" in
    "js python" | js | python) ;;
    *) echo "usage: build.sh [OUT_DIR [js|python]]; not $langs" >&2; exit 2 ;;
esac
guests="$here/../../guests"
wit="$here/../../wit"
mkdir -p "$out/js" "$out/python"
if [[ " $langs " == *" js "* ]]; then
    for app in echo chat; do
        world=handler
        [ "$app" = chat ] && world=events
        "$guests/js/node_modules/.bin/componentize-js" --wit "$wit" --world-name "$world" \
            -d http fetch-event --out "$out/js/$app.wasm" "$here/js/$app.js" >/dev/null
    done
fi
if [[ " $langs " == *" python "* ]]; then
    cd "$here/python"
    for app in echo chat coro_echo; do
        case "$app" in chat) world=events ;; coro_*) world=coro ;; *) world=handler ;; esac
        "$guests/python/.venv/bin/componentize-py" -d "$wit" -w "$world" componentize "$app" \
            -p . -o "$out/python/$app.wasm" >/dev/null
    done
fi
