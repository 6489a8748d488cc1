#!/usr/bin/env bash
# Writes the WASI preview1 *reactor* adapter that `wasm-tools component new --adapt` needs
# (wasi-libc's stdio makes the core module import wasi_snapshot_preview1) to OUT
# (default: wasi_snapshot_preview1.reactor.wasm beside this script).
#
# The bytes come from the crates.io crate wasi-preview1-component-adapter-provider, pinned
# to the broker's wasmtime version (48.0.8, see Cargo.lock) so the adapter's WASI 0.2
# imports are ones the broker links. `cargo fetch` in a throwaway project unpacks the crate
# into ~/.cargo/registry/src, and the file is copied from its artefacts/ folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/wasi_snapshot_preview1.reactor.wasm}
version=${ADAPTER_VERSION:-48.0.8}

command -v cargo >/dev/null || { echo "error: cargo is needed to fetch the adapter crate" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is needed (to read cargo metadata)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/hotline-adapter.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cat >"$tmp/Cargo.toml" <<TOML
[package]
name = "fetch-adapter"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
wasi-preview1-component-adapter-provider = "=$version"
TOML
echo 'fn main() {}' >"$tmp/src/main.rs"
(cd "$tmp" && cargo fetch --quiet)
manifest=$(cd "$tmp" && cargo metadata --format-version 1 --quiet | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "wasi-preview1-component-adapter-provider":
        print(p["manifest_path"])
')
src=$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm
[ -f "$src" ] || { echo "error: $src not found in the crate" >&2; exit 1; }
cp "$src" "$out"
echo "wrote $out ($(stat -c %s "$out") bytes, adapter $version)"
