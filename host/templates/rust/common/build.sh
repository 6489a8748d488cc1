#!/usr/bin/env bash
# Builds out/{{slot}}.wasm, a WebAssembly component for Hotline's {{slot}} slot.
#
#   1. rustup target add wasm32-wasip2 (if rustup is there and the target is missing)
#   2. cargo build --release --target wasm32-wasip2: that target makes a component directly
#   3. copy it to out/{{slot}}.wasm
#   4. if wasm-tools is on PATH: check the component exports the {{slot}} world
#
# Tools: cargo (override with CARGO=...), wasm-tools optional (WASM_TOOLS=...).
# CARGO_TARGET_DIR is respected. Runs from any folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

cargo=${CARGO:-cargo}
wasm_tools=${WASM_TOOLS:-wasm-tools}

command -v "$cargo" >/dev/null || {
    echo "error: $cargo not found; install it: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2
    exit 1
}

# The wasm32-wasip2 standard library. Without rustup, the toolchain must already have it.
if command -v rustup >/dev/null; then
    installed=$(rustup target list --installed 2>/dev/null || true)
    if ! grep -qx wasm32-wasip2 <<<"$installed"; then
        rustup target add wasm32-wasip2 >/dev/null 2>&1 || {
            echo "error: could not add the wasm32-wasip2 target; run: rustup target add wasm32-wasip2" >&2
            exit 1
        }
    fi
fi

"$cargo" build --release --target wasm32-wasip2
artifact=${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{ident}}.wasm
[ -f "$artifact" ] || { echo "error: cargo built no $artifact" >&2; exit 1; }
mkdir -p out
cp "$artifact" out/{{slot}}.wasm

# A lint, not a build step: skipped quietly when wasm-tools is not installed.
case {{slot}} in
    router) iface=routing ;;
    registrar) iface=registration ;;
    receipts) iface=receipting ;;
    notifier) iface=notifying ;;
esac
if command -v "$wasm_tools" >/dev/null; then
    world=$("$wasm_tools" component wit out/{{slot}}.wasm)
    for want in "export hotline:plugin/lifecycle@{{api_version}};" "export hotline:plugin/$iface@{{api_version}};"; do
        grep -qF "$want" <<<"$world" || {
            echo "error: out/{{slot}}.wasm lacks \`$want\`; its world is:" >&2
            echo "$world" >&2
            exit 1
        }
    done
fi

echo "built $here/out/{{slot}}.wasm ($(wc -c <out/{{slot}}.wasm | tr -d " ") bytes)"
