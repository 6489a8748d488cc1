#!/usr/bin/env bash
# Builds a component for the router slot from router.wat (WebAssembly text written against
# the canonical ABI, no bindings generator): `build.sh [OUT]` writes OUT (default:
# router.wasm beside this script); the intermediate core module goes to a temporary folder.
#
#   1. wasm-tools component embed --world router wit/0.2.0 router.wat -> router.core.wasm
#      (parses the text and adds the world as a `component-type` custom section)
#   2. wasm-tools component new router.core.wasm -> router.wasm (no --adapt: the module
#      imports no wasi_snapshot_preview1), then wasm-tools validate
#   3. wasm-tools component wit: check it exports lifecycle and routing
#
# Tool: wasm-tools 1.263.0 with features component,validate (scripts/setup plugins
# installs it). Override with WASM_TOOLS=...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wit=$(cd "$here/../../../wit/0.2.0" && pwd)
out=$(realpath -m "${1:-$here/router.wasm}")
wasm_tools=${WASM_TOOLS:-wasm-tools}
command -v "$wasm_tools" >/dev/null || {
    echo "error: wasm-tools not found; install it: cargo install --locked wasm-tools --version 1.263.0 --no-default-features --features component,validate (scripts/setup plugins does)" >&2
    exit 1
}

build=$(mktemp -d /tmp/hotline-wat-router.XXXXXX)
trap 'rm -rf "$build"' EXIT
"$wasm_tools" component embed --world router "$wit" "$here/router.wat" -o "$build/router.core.wasm"
"$wasm_tools" component new "$build/router.core.wasm" -o "$build/router.wasm"
"$wasm_tools" validate "$build/router.wasm"

world=$("$wasm_tools" component wit "$build/router.wasm")
for iface in 'export hotline:plugin/lifecycle@0.2.0;' 'export hotline:plugin/routing@0.2.0;'; do
    grep -qF "$iface" <<<"$world" || { echo "error: the component lacks \`$iface\`:" >&2; echo "$world" >&2; exit 1; }
done
if grep -q 'import wasi:' <<<"$world"; then
    echo "error: the component imports WASI, which this router should not need:" >&2; echo "$world" >&2; exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$build/router.wasm" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
