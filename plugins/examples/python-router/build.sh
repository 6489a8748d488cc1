#!/usr/bin/env bash
# Builds a component for the router slot from app.py with componentize-py: `build.sh [OUT]`
# writes OUT (default: router.wasm beside this script).
# Install the tool once: pip install componentize-py==0.25.1 (scripts/setup plugins does).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wit=$(cd "$here/../../../wit/0.1.0" && pwd)
out=$(realpath -m "${1:-$here/router.wasm}")
componentize_py=${COMPONENTIZE_PY:-componentize-py}
command -v "$componentize_py" >/dev/null || {
    echo "error: componentize-py not found; install it: pip install componentize-py==0.25.1" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
# Run from a scratch folder: componentize-py leaves nothing in the source folder then.
scratch=$(mktemp -d /tmp/hotline-py.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
"$componentize_py" -d "$wit" -w router componentize app -p "$here" -o "$out" >/dev/null
echo "built $out ($(stat -c %s "$out") bytes)"
