#!/usr/bin/env bash
# Waiting for a seat costs Redis no polling per waiter ([[pools]] queue):
# two gateways on one redis-server share a pool of one seat, held by one
# session; then WAITERS callers (spread over both) wait for it while Redis's
# commands are counted over WINDOW seconds, for each count in WAITERS.
# Reported per count: Redis commands per second while they wait (all
# commands, and the scripts: EVALSHA), beside the same with nobody waiting.
# Waiters are woken by the close channel (none closes here), by the earliest
# seat's expiry (20 min away here) and by the 2 s backstop of each instance's
# earliest waiter: so the rate should not grow with the waiters.
#
#   bash bench/queue/run.sh                     # WAITERS="0 10 100 1000" WINDOW=20
set -euo pipefail
cd "$(dirname "$0")/../.."
WAITERS=${WAITERS:-0 10 100 1000}
WINDOW=${WINDOW:-20}
BIN=${CARGO_TARGET_DIR:-target}/release
command -v redis-server >/dev/null || { echo "bench: needs redis-server" >&2; exit 1; }
busy=$(ss -Htln 2>/dev/null | awk '{print $4}' | grep -E ':(1818[1-3]|1819[23]|18479)$' || true)
if [ -n "$busy" ]; then
    echo "bench: ports in use, stop what listens there first: $(echo $busy)" >&2
    exit 1
fi
max=0; for n in $WAITERS; do [ "$n" -gt "$max" ] && max=$n; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p session-gateway -p session-gateway-bench
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$BIN/mint-tokens" "$((max + 1))" "$work/tokens" >/dev/null
ISSUER=$(cat "$work/tokens/issuer.txt")
# The upstream: a devkit-free one-line HTTP server is not needed: nothing is
# forwarded but the first call, which may fail upstream (502) after it opened
# the session.
gateway_config() { # port admin
    cat <<CONF
[server]
listen = ["127.0.0.1:$1"]
admin_listen = "127.0.0.1:$2"
threads = 1
grace_period = "0s"
shutdown_timeout = "1s"

[[issuers]]
issuer = "$ISSUER"
audiences = ["erp-api"]
algorithms = ["RS256"]
jwks_file = "$work/tokens/jwks.json"

[sessions]
store = "redis"

[redis]
url = "redis://127.0.0.1:18479"

[[pools]]
name = "default"
limit = 1
queue = { max_wait = "5m", max_length = 100000 }

[[upstreams]]
name = "erp"
servers = ["127.0.0.1:18183"]

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "erp"
policy = "session"

[logging]
level = "warn"
format = "json"
CONF
}
gateway_config 18181 18191 > "$work/gw-a.toml"
gateway_config 18182 18192 > "$work/gw-b.toml"
redis-server --port 18479 --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
sleep 0.5
for gw in a b; do
    "$BIN/session-gateway" run --config "$work/gw-$gw.toml" 2>"$work/gw-$gw.log" & pids+=($!)
done
for admin in 18191 18192; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
done
metric() { # admin-port name
    curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($1, m "{") == 1 {s += $2} END {printf "%d", s}'
}
# The one seat: the first token's session (the upstream is absent: 502 after the session opened).
curl -s -o /dev/null -H "Authorization: Bearer $(head -1 "$work/tokens/tokens.txt")" http://127.0.0.1:18181/api/x
redis() { redis-cli -p 18479 "$@"; }
stat() { # INFO commandstats field total
    redis INFO commandstats | tr -d '\r' | awk -F'[=,:]' -v c="$1" '$1 == "cmdstat_" c {print $3; f=1} END {if (!f) print 0}'
}
printf '%8s %14s %14s %10s\n' waiters "commands/s" "EVALSHA/s" answered
for n in $WAITERS; do
    waiter=""
    if [ "$n" -gt 0 ]; then
        python3 bench/queue/waiters.py "$work/tokens/tokens.txt" 1 "$n" 127.0.0.1:18181 127.0.0.1:18182 >"$work/waiters.out" &
        waiter=$!
        for _ in $(seq 1 600); do
            [ "$(metric 18191 session_gateway_queue_waiting)" -ge "$n" ] && break; sleep 0.1
        done
    fi
    redis CONFIG RESETSTAT >/dev/null
    before=$(redis INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" {print $2}')
    sleep "$WINDOW"
    after=$(redis INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" {print $2}')
    evalsha=$(stat evalsha)
    answered=0
    if [ -n "$waiter" ]; then
        kill -TERM "$waiter"; wait "$waiter" || true
        answered=$(awk '$1 == "answered" {print $2}' "$work/waiters.out")
        for _ in $(seq 1 600); do
            [ "$(metric 18191 session_gateway_queue_waiting)" -eq 0 ] && break; sleep 0.1
        done
    fi
    # The count itself (INFO, CONFIG) adds 2-3 commands per window.
    awk -v n="$n" -v c="$((after - before))" -v e="$evalsha" -v w="$WINDOW" -v a="$answered" \
        'BEGIN {printf "%8d %14.1f %14.1f %10d\n", n, c / w, e / w, a}'
done
