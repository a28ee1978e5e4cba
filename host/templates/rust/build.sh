#!/usr/bin/env bash
# Build dist/{{name}}.wasm (a wshost component of the {{world}} world) with
# cargo for the wasm32-wasip2 target, which makes components directly.
set -euo pipefail
cd "$(dirname "$0")"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
mkdir -p dist
# Copied beside, then renamed: `serve --watch` never loads half a file.
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" dist/{{name}}.wasm.tmp
mv dist/{{name}}.wasm.tmp dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
