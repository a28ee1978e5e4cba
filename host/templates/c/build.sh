#!/usr/bin/env bash
# Build dist/{{name}}.wasm (a wshost component of the {{world}} world) from
# app.c. Needs clang with wasi-libc (Debian: clang lld wasi-libc
# libclang-rt-14-dev-wasm32). Generates the bindings with `wit-bindgen c`
# (installed into .tools/ when missing) and links with wasm-component-ld
# (Rust's wasm32-wasip2 target ships it), which makes the component.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
WIT_BINDGEN_VERSION=0.61.0
export PATH="$here/.tools/bin:$PATH"

if ! command -v clang >/dev/null || [ ! -d /usr/include/wasm32-wasi ]; then
    echo "needs clang and wasi-libc: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2
    exit 1
fi
if ! wit-bindgen --version 2>/dev/null | grep -q " $WIT_BINDGEN_VERSION"; then
    cargo install --quiet --locked --root .tools "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi
linker=""
if command -v rustc >/dev/null; then
    linker="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
fi
if [ ! -x "$linker" ]; then
    linker="$(command -v wasm-component-ld || true)"
fi
if [ -z "$linker" ]; then
    cargo install --quiet --locked --root .tools wasm-component-ld
    linker="$here/.tools/bin/wasm-component-ld"
fi
wit-bindgen c wit --world {{world}} --out-dir gen >/dev/null
mkdir -p dist
# Written beside, then renamed: `serve --watch` never loads half a file.
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
    -Igen -fuse-ld="$linker" \
    app.c gen/{{world}}.c gen/{{world}}_component_type.o -o dist/{{name}}.wasm.tmp
mv dist/{{name}}.wasm.tmp dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
