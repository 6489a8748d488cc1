#!/usr/bin/env bash
# Builds out/{{slot}}.wasm, a WebAssembly component for Hotline's {{slot}} slot, from
# app.py with componentize-py. Runnable from any folder.
#
# Needs componentize-py 0.25.1:  pip install componentize-py==0.25.1
# Set COMPONENTIZE_PY to use another binary (e.g. one in a virtualenv).
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)

tool=${COMPONENTIZE_PY:-componentize-py}
command -v "$tool" >/dev/null 2>&1 || {
    echo "error: $tool not found; install it: pip install componentize-py==0.25.1" >&2
    exit 1
}
[ -f wit/plugin.wit ] || {
    echo "error: wit/plugin.wit is missing; copy it from the Hotline repo (wit/{{api_version}}/plugin.wit)" >&2
    exit 1
}

mkdir -p out
# -d: the WIT folder, -w: the world (the slot), `componentize app`: the module app.py,
# -p: where Python looks for it.
"$tool" -d wit -w {{slot}} componentize app -p . -o out/{{slot}}.wasm
echo "built $here/out/{{slot}}.wasm ($(stat -c %s out/{{slot}}.wasm) bytes)"
