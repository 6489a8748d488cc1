#!/usr/bin/env bash
# Builds receipts.wasm (a component for the receipts slot) from app.py with componentize-py.
# Install the tool once: pip install componentize-py==0.25.1  (see ../README.md)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wit=$(cd "$here/../../../wit/0.1.0" && pwd)
cd "$here"
command -v componentize-py >/dev/null || {
    echo "error: componentize-py not found; install it: pip install componentize-py==0.25.1" >&2; exit 1; }
componentize-py -d "$wit" -w receipts componentize app -p "$here" -o receipts.wasm
echo "built $here/receipts.wasm ($(stat -c %s receipts.wasm) bytes)"
