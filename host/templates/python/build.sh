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
.venv/bin/componentize-py -d wit -w {{world}} componentize app -o dist/{{name}}.wasm >/dev/null
echo "built dist/{{name}}.wasm"
