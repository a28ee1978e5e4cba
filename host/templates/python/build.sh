#!/usr/bin/env bash
# Build dist/{{name}}.wasm (a wshost component of the {{world}} world) from
# app.py and the `wshost` package beside it: type-checked with
# `mypy --strict` against the world's bindings, made a component by
# componentize-py; both installed into .venv/ when missing.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ] || [ ! -x .venv/bin/mypy ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check componentize-py==0.25.1 mypy==2.4.1
fi
# The bindings, for mypy and an editor (componentize makes its own).
rm -rf gen/{{world}}
.venv/bin/componentize-py -d wit -w {{world}} bindings gen/{{world}} >/dev/null
MYPYPATH=gen/{{world}} .venv/bin/mypy --config-file wshost/mypy.ini \
    --cache-dir gen/.mypy_cache --no-error-summary app.py
mkdir -p dist
# Written beside, then renamed: `serve --watch` never loads half a file.
.venv/bin/componentize-py -d wit -w {{world}} componentize app -o dist/{{name}}.wasm.tmp >/dev/null
mv dist/{{name}}.wasm.tmp dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
