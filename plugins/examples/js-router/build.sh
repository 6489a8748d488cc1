#!/usr/bin/env bash
# Builds a component for the router slot from router.js with componentize-js (its
# componentize() API, called by componentize.mjs): `build.sh [OUT]` writes OUT (default:
# router.wasm beside this script). Needs Node.js (>= 18) and npm; installs the pinned
# @bytecodealliance/componentize-js into node_modules/ when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-$here/router.wasm}")
cd "$here"
command -v node >/dev/null || { echo "error: node not found; install Node.js 18 or newer (apt-get install -y nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "error: npm not found; install it (apt-get install -y npm)" >&2; exit 1; }
if [ ! -f node_modules/@bytecodealliance/componentize-js/package.json ]; then
    npm ci --no-audit --no-fund
fi
mkdir -p "$(dirname "$out")"
node componentize.mjs "$out" >/dev/null
echo "built $out ($(stat -c %s "$out") bytes)"
