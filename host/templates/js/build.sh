#!/usr/bin/env bash
# Build dist/{{name}}.wasm (a wshost component of the {{world}} world) from
# app.js with componentize-js, installed into node_modules/ when missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm install --no-audit --no-fund --loglevel=error
fi
mkdir -p dist
# `-d http fetch-event`: without it the component imports wasi:http, which
# wshost does not provide. Written beside, then renamed: `serve --watch`
# never loads half a file.
node_modules/.bin/componentize-js --wit wit --world-name {{world}} \
    -d http fetch-event --out dist/{{name}}.wasm.tmp app.js >/dev/null
mv dist/{{name}}.wasm.tmp dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
