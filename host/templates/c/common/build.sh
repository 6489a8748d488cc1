#!/usr/bin/env bash
# Builds out/{{slot}}.wasm, a WebAssembly component for Hotline's {{slot}} slot, from plugin.c.
#
#   1. wit-bindgen c: the world's C bindings -> build/gen/{{slot}}.{h,c} (+ a .o with the
#      component type)
#   2. clang (wasm32-wasi, reactor, wasi-libc) -> build/core.wasm, a core module
#   3. wasm-tools component new, with the WASI preview1 adapter (wasi-libc's stdio imports
#      WASI preview1; the adapter maps it to the WASI 0.2 the broker links) -> out/{{slot}}.wasm
#   4. wasm-tools validate, and a check that the component exports the {{slot}} world
#
# Tools: clang-19 + lld-19 + wasi-libc + libclang-rt-19-dev-wasm32 (Debian/Ubuntu packages),
# wit-bindgen, wasm-tools. Override with CLANG=..., WIT_BINDGEN=..., WASM_TOOLS=...,
# SYSROOT=... (default /usr), ADAPTER=... Runs from any folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
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
need "$wit_bindgen" "cargo install --locked wit-bindgen-cli --version 0.63.0 --no-default-features --features c"
need "$wasm_tools" "cargo install --locked wasm-tools --version 1.263.0 --no-default-features --features component,validate"
[ -f "$sysroot/lib/wasm32-wasi/libc.a" ] || {
    echo "error: wasi-libc not found under $sysroot/lib/wasm32-wasi; install it: apt-get install -y wasi-libc" >&2
    exit 1
}
[ -f "$("$clang" --target=wasm32-wasi -print-libgcc-file-name)" ] || {
    echo "error: compiler-rt for wasm32 not found; install it: apt-get install -y libclang-rt-19-dev-wasm32" >&2
    exit 1
}
[ -f "$adapter" ] || {
    echo "error: $adapter not found; \`hotline plugins new --lang c NAME\` writes it into a new project (copy it from there); it is artefacts/wasi_snapshot_preview1.reactor.wasm of the crates.io crate wasi-preview1-component-adapter-provider 48.0.8" >&2
    exit 1
}

rm -rf build
mkdir -p build out
# Quiet on success; on failure show what wit-bindgen said.
log=$("$wit_bindgen" c --world {{slot}} --out-dir build/gen wit 2>&1) || { echo "$log" >&2; exit 1; }

"$clang" --target=wasm32-wasi --sysroot="$sysroot" -mexec-model=reactor \
    -Os -Wall -Wextra -Werror -Ibuild/gen \
    -Wl,--strip-debug \
    -o build/core.wasm plugin.c build/gen/{{slot}}.c build/gen/{{slot}}_component_type.o

"$wasm_tools" component new build/core.wasm \
    --adapt wasi_snapshot_preview1="$adapter" -o out/{{slot}}.wasm
"$wasm_tools" validate out/{{slot}}.wasm

case {{slot}} in
    router) iface=routing ;;
    registrar) iface=registration ;;
    receipts) iface=receipting ;;
esac
world=$("$wasm_tools" component wit out/{{slot}}.wasm)
for want in "export hotline:plugin/lifecycle@{{api_version}};" "export hotline:plugin/$iface@{{api_version}};"; do
    grep -qF "$want" <<<"$world" || {
        echo "error: out/{{slot}}.wasm lacks \`$want\`; its world is:" >&2
        echo "$world" >&2
        exit 1
    }
done

echo "built $here/out/{{slot}}.wasm ($(wc -c <out/{{slot}}.wasm | tr -d " ") bytes)"
