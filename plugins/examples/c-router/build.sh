#!/usr/bin/env bash
# Builds a component for the router slot from router.c: `build.sh [OUT]` writes OUT
# (default: router.wasm beside this script); intermediate files go to a temporary folder.
#
#   1. wit-bindgen c       -> gen/router.{h,c} + gen/router_component_type.o (the world)
#   2. clang (wasm32-wasi, reactor, wasi-libc) -> router.core.wasm (a core module)
#   3. wasm-tools component new --adapt (WASI preview1 reactor adapter) -> router.wasm
#   4. wasm-tools component wit: check it exports lifecycle and routing
#
# Tools (see ../README.md for installing them): clang-19 + lld-19 + wasi-libc +
# libclang-rt-19-dev-wasm32 (Debian), wit-bindgen (wit-bindgen-cli), wasm-tools, and the
# adapter from ./get-adapter.sh (run automatically when missing; needs cargo).
# Override with CLANG=..., WIT_BINDGEN=..., WASM_TOOLS=..., ADAPTER=..., SYSROOT=...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wit=$(cd "$here/../../../wit/0.1.0" && pwd)
out=$(realpath -m "${1:-$here/router.wasm}")
cd "$here"

clang=${CLANG:-clang-19}
wit_bindgen=${WIT_BINDGEN:-wit-bindgen}
wasm_tools=${WASM_TOOLS:-wasm-tools}
sysroot=${SYSROOT:-/usr}
adapter=${ADAPTER:-$here/wasi_snapshot_preview1.reactor.wasm}

need() {
    command -v "$1" >/dev/null || { echo "error: $1 not found; install it: $2" >&2; exit 1; }
}
need "$clang" "apt-get install -y clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32"
need "$wit_bindgen" "cargo install --locked wit-bindgen-cli --version 0.63.0 --no-default-features --features c (scripts/setup plugins does)"
need "$wasm_tools" "cargo install --locked wasm-tools --version 1.263.0 --no-default-features --features component,validate (scripts/setup plugins does)"
[ -f "$sysroot/lib/wasm32-wasi/libc.a" ] || {
    echo "error: no wasi-libc under $sysroot/lib/wasm32-wasi; install it: apt-get install -y wasi-libc" >&2; exit 1; }
[ -n "$(find /usr/lib/llvm-19/lib/clang -path '*wasm32*' -name 'libclang_rt.builtins*.a' 2>/dev/null | head -1)" ] || [ -n "${CLANG:-}" ] || {
    echo "error: no compiler-rt builtins for wasm32; install them: apt-get install -y libclang-rt-19-dev-wasm32" >&2; exit 1; }
if [ ! -f "$adapter" ]; then
    "$here/get-adapter.sh" "$adapter"
fi

build=$(mktemp -d /tmp/hotline-c-router.XXXXXX)
trap 'rm -rf "$build"' EXIT
"$wit_bindgen" c --world router --out-dir "$build/gen" "$wit" >/dev/null

"$clang" --target=wasm32-wasi --sysroot="$sysroot" -mexec-model=reactor \
    -Os -Wall -Wextra -Werror -I"$build/gen" \
    -Wl,--strip-debug \
    -o "$build/router.core.wasm" router.c "$build/gen/router.c" "$build/gen/router_component_type.o"

"$wasm_tools" component new "$build/router.core.wasm" \
    --adapt wasi_snapshot_preview1="$adapter" -o "$build/router.wasm"
"$wasm_tools" validate "$build/router.wasm"

world=$("$wasm_tools" component wit "$build/router.wasm")
for iface in 'export hotline:plugin/lifecycle@0.1.0;' 'export hotline:plugin/routing@0.1.0;'; do
    grep -qF "$iface" <<<"$world" || { echo "error: the component lacks \`$iface\`:" >&2; echo "$world" >&2; exit 1; }
done
mkdir -p "$(dirname "$out")"
cp "$build/router.wasm" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
