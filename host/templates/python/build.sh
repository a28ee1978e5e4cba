#!/usr/bin/env bash
# Build dist/{{name}}.wasm (a wshost component of the {{world}} world) from
# app.py with componentize-py, installed into .venv/ when missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check componentize-py==0.25.1
fi
mkdir -p dist
# Written beside, then renamed: `serve --watch` never loads half a file.
.venv/bin/componentize-py -d wit -w {{world}} componentize app -o dist/{{name}}.wasm.tmp >/dev/null
mv dist/{{name}}.wasm.tmp dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
