#!/usr/bin/env bash
# Build dist/{{name}}.wasm (a wshost component of the {{world}} world) from
# {{source}}: type-checked with tsc, bundled with the SDK (wshost-guest/) by
# rolldown, made a component by componentize-js; npm installs them into
# node_modules/ when missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/componentize-js ] || [ ! -x node_modules/.bin/tsc ] ||
    [ ! -x node_modules/.bin/rolldown ]; then
    npm install --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/tsc -p .
mkdir -p dist
APP={{source}} OUT=dist/{{name}}.js node_modules/.bin/rolldown -c wshost-guest/rolldown.config.mjs >/dev/null
# `-d http fetch-event`: without it the component imports wasi:http, which
# wshost does not provide. Written beside, then renamed: `serve --watch`
# never loads half a file.
# An exception at start-up names the bundle: locate.mjs points it back at
# {{source}} through the bundle's source map.
if ! node_modules/.bin/componentize-js --wit wit --world-name {{world}} \
    -d http fetch-event --out dist/{{name}}.wasm.tmp dist/{{name}}.js >dist/build.log 2>&1; then
    node wshost-guest/locate.mjs dist/{{name}}.js.map <dist/build.log || cat dist/build.log >&2
    exit 1
fi
mv dist/{{name}}.wasm.tmp dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
