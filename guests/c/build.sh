#!/usr/bin/env bash
# Build the C guests (echo.wasm and broadcast.wasm of the handler world,
# chat.wasm of the event world) from ../../wit into OUT_DIR
# (default: dist/). Needs clang with wasi-libc (Debian: clang lld wasi-libc
# libclang-rt-14-dev-wasm32). Installs wit-bindgen into .tools/ when missing;
# links with wasm-component-ld (Rust's wasm32-wasip2 target ships it), which
# turns the wasm32-wasi module into a component. Rebuilds only what changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
cd "$here"
# Test binaries may build at the same time: one at a time.
exec 9>"$here/.build.lock"
flock 9

WIT_BINDGEN_VERSION=0.61.0
export PATH="$here/.tools/bin:$PATH"

if ! command -v clang >/dev/null || [ ! -d /usr/include/wasm32-wasi ]; then
    echo "needs clang and wasi-libc: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2
    exit 1
fi
if ! wit-bindgen --version 2>/dev/null | grep -q " $WIT_BINDGEN_VERSION"; then
    cargo install --quiet --locked --root .tools "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi
linker="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
if [ ! -x "$linker" ]; then
    linker="$(command -v wasm-component-ld || true)"
fi
if [ -z "$linker" ]; then
    cargo install --quiet --locked --root .tools wasm-component-ld
    linker="$here/.tools/bin/wasm-component-ld"
fi

for app in echo broadcast chat; do
    world=handler
    [ "$app" = chat ] && world=events
    target="$out/$app.wasm"
    if [ -f "$target" ] && [ -z "$(find "$app.c" common.h errors.h ../../wit -newer "$target" -print -quit)" ]; then
        continue
    fi
    # Bindings for the world: gen/$world.{h,c} and the component type (an
    # object file that tells the linker what the component imports and
    # exports).
    if ! log="$(wit-bindgen c ../../wit --world "$world" --out-dir gen 2>&1)"; then
        echo "$log" >&2
        exit 1
    fi
    clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
        -Igen -fuse-ld="$linker" \
        "$app.c" "gen/$world.c" "gen/${world}_component_type.o" -o "$target.tmp"
    mv "$target.tmp" "$target"
done
