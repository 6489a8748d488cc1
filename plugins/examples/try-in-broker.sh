#!/usr/bin/env bash
# Loads an example plugin into a real, fresh broker and checks what a client sees.
#
#   plugins/examples/try-in-broker.sh router   c-router/router.wasm
#   plugins/examples/try-in-broker.sh receipts python-receipts/receipts.wasm
#
# Starts `hotline serve` on a scratch data folder with free ports, registers two numbers,
# swaps FILE in as <data>/plugins/<slot>.wasm (temporary name, then rename), waits until it
# is the slot's current version (fails on a refusal), runs the slot's scenario, swaps the
# built-in plugin back and checks the difference, then loads FILE once more to get the
# compile-cache figure. Prints one `ok`/`FAIL` line per check, the load figures
# (compile_us, from_cache) and a closing `N passed, N failed` line; exits 1 on any failure.
#
# Binaries: $HOTLINE (default target/release/hotline) and $HOTLINE_CHAT (default
# target/release/hotline-chat, else target/debug/hotline-chat). Nothing is built here.
# Needs curl and python3 (to read the admin API's JSON).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() { echo "usage: $0 router|receipts FILE.wasm" >&2; exit 2; }
[ $# -eq 2 ] || usage
slot=$1
file=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
case $slot in router|receipts) ;; *) usage ;; esac
[ -f "$file" ] || { echo "error: $file does not exist (run its build.sh first)" >&2; exit 2; }

hotline=${HOTLINE:-$root/target/release/hotline}
chat_bin=${HOTLINE_CHAT:-}
if [ -z "$chat_bin" ]; then
    for c in "$root/target/release/hotline-chat" "$root/target/debug/hotline-chat"; do
        if [ -x "$c" ]; then chat_bin=$c; break; fi
    done
fi
[ -x "$hotline" ] || { echo "error: no broker binary at $hotline (set HOTLINE)" >&2; exit 2; }
[ -n "$chat_bin" ] && [ -x "$chat_bin" ] || { echo "error: no hotline-chat binary (set HOTLINE_CHAT)" >&2; exit 2; }
for tool in curl python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed" >&2; exit 2; }
done

work=$(mktemp -d /tmp/hotline-try.XXXXXX)
data=$work/data
broker_pid=
cleanup() {
    if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME COMMAND...: the command's success is the check
    local name=$1; shift
    if "$@"; then echo "ok   $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}
contains() { case $1 in *"$2"*) return 0 ;; *) echo "     expected to find: $2" >&2; echo "     in: $1" >&2; return 1 ;; esac; }
fails() { ! "$@"; }
lacks() { case $1 in *"$2"*) echo "     did not expect: $2" >&2; echo "     in: $1" >&2; return 1 ;; *) return 0 ;; esac; }

"$hotline" serve --data "$data" --listen 127.0.0.1:0 --admin 127.0.0.1:0 >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
for _ in $(seq 1 200); do
    [ -s "$work/broker.out" ] && break
    sleep 0.1
done
line=$(head -1 "$work/broker.out")
quic=$(echo "$line" | awk '{print $4}')
admin=$(echo "$line" | awk '{print $6}')
[ -n "$quic" ] && [ -n "$admin" ] || { echo "error: broker did not start: $(cat "$work/broker.err")" >&2; exit 1; }
echo "broker: quic $quic admin $admin data $data"

chat() { # chat PROFILE ARGS...; prints stdout and stderr together, never fails
    local p=$1; shift
    "$chat_bin" --profile "$work/$p" --server "$quic" --ca "$data/tls/cert.pem" "$@" 2>&1 || true
}
chat_rc() { # chat_rc PROFILE ARGS...: only the exit status
    local p=$1; shift
    "$chat_bin" --profile "$work/$p" --server "$quic" --ca "$data/tls/cert.pem" "$@" >"$work/last.out" 2>&1
}
is_id() { case $1 in ''|*[!0-9]*) echo "     expected a message id, got: $1" >&2; return 1 ;; *) return 0 ;; esac; }
register() { # register PROFILE PHONE
    chat "$1" register "$2" </dev/null >/dev/null
    local code
    code=$(grep "\"$2\"" "$data/sms-outbox.jsonl" | grep -o 'code is [0-9]*' | tail -1 | cut -d' ' -f3)
    chat "$1" register "$2" --code "$code" >/dev/null
}
alice=+15551230001
bob=+15551230002
register alice $alice
register bob $bob

plugins_json() { curl -sf "http://$admin/api/plugins"; }
# version_field VERSION FIELD: FIELD of the slot's newest entry for VERSION
version_field() {
    plugins_json | python3 -c '
import json, sys
slot, version, field = sys.argv[1:4]
for v in json.load(sys.stdin)["versions"]:
    if v["slot"] == slot and v["version"] == version:
        print(v[field]); break
' "$slot" "$1" "$2"
}
current_version() {
    plugins_json | python3 -c '
import json, sys
for v in json.load(sys.stdin)["versions"]:
    if v["slot"] == sys.argv[1] and v["state"] in ("current", "probation"):
        print(v["version"]); break
' "$slot"
}
refusals() { # history lines `refused` for VERSION
    plugins_json | python3 -c '
import json, sys
for e in json.load(sys.stdin)["history"]:
    if e["slot"] == sys.argv[1] and e["version"] == sys.argv[2] and e["event"] != "loaded":
        print(e["event"], e.get("detail", ""))
' "$slot" "$1"
}
# install FILE: swaps FILE in and waits (up to 10 minutes) until it is current
install() {
    local f=$1 v started
    v=$(sha256sum "$f" | cut -c1-12)
    started=$(date +%s.%N)
    cp "$f" "$data/plugins/.$slot.tmp"
    mv "$data/plugins/.$slot.tmp" "$data/plugins/$slot.wasm"
    for _ in $(seq 1 6000); do
        if [ "$(current_version)" = "$v" ]; then
            echo "     $slot $v current after $(python3 -c "import time;print(round(time.time()-$started,2))") s: compile_us=$(version_field "$v" compile_us) from_cache=$(version_field "$v" from_cache) ($(stat -c %s "$f") bytes)"
            return 0
        fi
        if [ -n "$(refusals "$v")" ]; then
            echo "     refused: $(refusals "$v")" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "     $v did not become current" >&2
    return 1
}

cp "$data/plugins/$slot.wasm" "$work/default-$slot.wasm"
default_version=$(current_version)

check "load $(basename "$file") as $slot" install "$file"
check "no refusal in the history" test -z "$(refusals "$(sha256sum "$file" | cut -c1-12)")"

if [ $slot = router ]; then
    out=$(chat bob command router blocked) ; check "blocked: empty list" contains "$out" "nobody is blocked"
    out=$(chat alice send $bob "hello 1") ; check "direct message delivered" is_id "$out"
    out=$(chat bob command router block $alice) ; check "block answers" contains "$out" "blocked $alice"
    out=$(chat bob command router block nonsense) ; check "block refuses a non-number" contains "$out" "not an E.164 number"
    out=$(chat bob command router blocked) ; check "blocked lists the number" test "$out" = "$alice"
    out=$(chat alice send $bob "hello 2") ; check "blocked sender rejected with the reason" contains "$out" "not sent (Rejected): $bob does not accept your messages"
    out=$(chat bob send $alice "reply") ; check "the other way still delivered" is_id "$out"
    out=$(chat alice send '#lunch' "hello 3") ; check "non-E.164 address rejected" contains "$out" "not sent (Rejected): cannot deliver to \"#lunch\""
    out=$(chat bob command router frobnicate x) ; check "unknown command refused" contains "$out" 'unknown command "frobnicate"'
    out=$(chat bob command router unblock $alice) ; check "unblock answers" contains "$out" "unblocked $alice"
    out=$(chat bob command router unblock $alice) ; check "unblock again: was not blocked" contains "$out" "was not blocked"
    out=$(chat alice send $bob "hello 4") ; check "delivered again after unblock" is_id "$out"
    out=$(chat bob listen --count 2 --timeout 10) ; check "bob got hello 1 and hello 4" contains "$out" '"text":"hello 4"'
    check "bob did not get hello 2" lacks "$out" '"text":"hello 2"'
    out=$(chat bob command router block $alice) ; check "block again before swapping back" contains "$out" "blocked $alice"

    check "swap the built-in router back" install "$work/default-$slot.wasm"
    out=$(chat alice send $bob "hello 5") ; check "built-in router ignores the block list: delivered" is_id "$out"
    out=$(chat alice send '#lunch' "hello 6") ; check "built-in router knows groups" contains "$out" "no group #lunch"
else
    out=$(chat bob command receipts policy) ; check "policy command answers" contains "$out" "read receipts: never"
    # Bob reads everything he gets; Alice waits for receipts.
    chat bob listen --read --count 1 --timeout 20 >/dev/null &
    listener=$!
    check "delivered receipt reaches the sender" chat_rc alice send $bob "m1" --wait delivered --timeout 15
    wait $listener || true
    chat bob listen --read --count 1 --timeout 20 >/dev/null &
    listener=$!
    check "read receipt never reaches the sender (waited 8 s)" fails chat_rc alice send $bob "m2" --wait read --timeout 8
    wait $listener || true

    check "swap the built-in receipts plugin back" install "$work/default-$slot.wasm"
    chat bob listen --read --count 1 --timeout 20 >/dev/null &
    listener=$!
    check "built-in: read receipt reaches the sender" chat_rc alice send $bob "m3" --wait read --timeout 15
    wait $listener || true
fi

# Load the same file again: this time from the compile cache.
check "load $(basename "$file") again (cached)" install "$file"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
