#!/usr/bin/env bash
# Builds out/{{slot}}.wasm, a WebAssembly component for Hotline's {{slot}} slot, from
# plugin.js with componentize-js (componentize.mjs calls its componentize() API).
# Runnable from any folder.
#
# Needs Node.js 18 or newer and npm. The first build installs the pinned
# @bytecodealliance/componentize-js into node_modules/ (~390 MB, about a minute).
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)

command -v node >/dev/null 2>&1 || {
    echo "error: node not found; install it: apt-get install -y nodejs npm (Node.js 18 or newer)" >&2
    exit 1
}
command -v npm >/dev/null 2>&1 || {
    echo "error: npm not found; install it: apt-get install -y npm" >&2
    exit 1
}
[ -f wit/plugin.wit ] || {
    echo "error: wit/plugin.wit is missing; copy it from the Hotline repo (wit/{{api_version}}/plugin.wit)" >&2
    exit 1
}
if [ ! -f node_modules/@bytecodealliance/componentize-js/package.json ]; then
    npm install --no-audit --no-fund
fi

mkdir -p out
node componentize.mjs
echo "built $here/out/{{slot}}.wasm ($(stat -c %s out/{{slot}}.wasm) bytes)"
