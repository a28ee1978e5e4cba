#!/usr/bin/env bash
# Install the WebSocket client libraries the tests drive wshost with (libraries
# no one here wrote): Python `websockets` into .venv/, Node `ws` into
# node_modules/. Idempotent; one at a time (test binaries run in parallel).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
exec 9>"$here/.setup.lock"
flock 9
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import websockets' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check 'websockets==15.0.1'
fi
if [ ! -d node_modules/ws ]; then
    npm install --silent --no-audit --no-fund --prefix "$here" ws@8.23.0 >/dev/null
fi
