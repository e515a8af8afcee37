#!/usr/bin/env bash
# Load benchmark, side by side in one run (all on 127.0.0.1):
#   upstream   nginx returning a 200-byte body            :18081
#   nginx      plain pass-through to the upstream          :18082 (own process)
#   haproxy    jwt_verify RS256 (algorithm fixed) + proxy   :18083
#   bare-pingora  a bare Pingora pass-through (bench/src/bin/bare-pingora.rs:
#              upstream_peer only, one thread, no work stealing): the floor
#              any Pingora gateway starts from                   :18086
#   gw-public  session-gateway, a `public` route (no token work: Pingora and
#              the gateway's routing/headers only)          :18084 /pub/
#   gw-memory  session-gateway, memory store               :18084 /api/
#   gw-redis   session-gateway, Redis store                :18085 (redis-server :18379)
#   gw-redis-ws   the same with [server] work_stealing = true
#                                                          :18087 (redis-server :18380)
#   gw-redis-lto  gw-redis built with the `production` profile (fat LTO, one
#              codegen unit), only with LTO=1             :18088 (redis-server :18381)
# wrk runs on core 0 (-t1), every server on core 1. First each gateway gets
# a first-call phase (every request a new user: admissions per second), then
# a warm-up that runs until every token's session is open, then ROUNDS rounds
# run every target once; medians are reported with ratios to nginx, HAProxy
# and bare Pingora, the servers' CPU time per request and the gateways' memory.
# Last, each Redis-store gateway gets a steady-state phase of its own
# (STEADY_WARM unmeasured, then STEADY measured, one continuous load): the
# Redis commands per request are counted there, over two touch cycles.
#
#   bash bench/load/run.sh                      # 1000 tokens (dense: below the cache size)
#   TOKENS=50000 bash bench/load/run.sh         # sparse: 50,000 users, each calling only
#                                               # every ~1-2 s at the achieved rate, tokens
#                                               # still verified from the cache (100,000)
#   TOKENS=150000 bash bench/load/run.sh        # above tokens.cache_size (100000)
#   TOUCH_INTERVAL=10s bash bench/load/run.sh   # gw-redis with another sessions.touch_interval
#   LTO=1 bash bench/load/run.sh                # also gw-redis-lto (builds the production profile)
#
# Leases (Redis store) live until the session's idle/absolute end, a close on
# the channel or sessions.lease_revalidate (30 s) after Redis last confirmed
# them; a touch falls due after min(touch_interval, 3/4 lease_revalidate)
# (22.5 s at the defaults) and re-confirms the lease. Two consequences:
# * Between a Redis gateway's rounds the other targets run for longer than
#   30 s, so its leases go stale; its unmeasured pre-round traffic
#   (WARM_REDIS, default TOKENS/2500 s, at least 1 s) therefore makes a full
#   pass over every token (one re-confirming `admit` each) before the measured
#   window, and the script calls it sent during measured rounds are reported
#   as a check (they should be ~0).
# * A 10 s round holds no touch; the steady-state phase does (45 s measured
#   after 15 s: both touch bursts after the pass fall inside), so its
#   commands/request is the steady-state figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
TOKENS=${TOKENS:-1000}
ADMIT_DURATION=${ADMIT_DURATION:-5s}
WARM_REDIS=${WARM_REDIS:-$((TOKENS / 2500 > 1 ? TOKENS / 2500 : 1))s}
STEADY_WARM=${STEADY_WARM:-15s}
STEADY=${STEADY:-45s}
BIN=${CARGO_TARGET_DIR:-target}/release

need=()
for tool in wrk nginx haproxy redis-server; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if ((${#need[@]})); then
    pkgs=("${need[@]/nginx/nginx-light}")
    echo "bench: installing ${pkgs[*]}"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

busy=$(ss -Htln 2>/dev/null | awk '{print $4}' | grep -E ':(1808[1-8]|1809[4-8]|1837[9]|1838[01])$' || true)
if [ -n "$busy" ]; then
    echo "bench: ports in use, stop what listens there first: $(echo $busy)" >&2
    exit 1
fi
cargo build --release -q -p session-gateway -p session-gateway-bench
LTO=${LTO:-0}
[ "$LTO" = 1 ] && cargo build --profile production -q -p session-gateway
work=$(mktemp -d)
pids=()
fast_stop=() # Pingora stops gracefully on SIGTERM (5 minutes by default), at once on SIGINT
cleanup() {
    for pid in "${fast_stop[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$BIN/mint-tokens" "$TOKENS" "$work/tokens" >/dev/null
ISSUER=$(cat "$work/tokens/issuer.txt")
BODY=$(printf 'x%.0s' $(seq 1 200))

nginx_conf() { # name server-block
    cat <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $work/$1.pid;
error_log $work/$1.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream upstream { server 127.0.0.1:18081; keepalive 128; }
    $2
}
CONF
}
nginx_conf upstream "server { listen 127.0.0.1:18081; location / { default_type text/plain; return 200 \"$BODY\"; } }" > "$work/upstream.conf"
nginx_conf nginx "server { listen 127.0.0.1:18082; location / { proxy_pass http://upstream; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" > "$work/nginx.conf"
cat > "$work/haproxy.cfg" <<CONF
global
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend jwt
    bind 127.0.0.1:18083
    http-request deny deny_status 401 unless { http_auth_bearer -m found }
    http-request set-var(txn.bearer) http_auth_bearer
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify("RS256","$work/tokens/public.pem") -m int 1 }
    default_backend upstream
backend upstream
    http-reuse always
    server up 127.0.0.1:18081
CONF
gateway_config() { # port admin store redis-port [sessions-lines] [server-lines]
    cat <<CONF
[server]
listen = ["127.0.0.1:$1"]
admin_listen = "127.0.0.1:$2"
threads = 1
${6:-}
grace_period = "0s"
shutdown_timeout = "1s"

[[issuers]]
issuer = "$ISSUER"
audiences = ["erp-api"]
algorithms = ["RS256"]
jwks_file = "$work/tokens/jwks.json"

[sessions]
store = "$3"
${5:-}

[redis]
url = "redis://127.0.0.1:$4"

[[pools]]
name = "default"
limit = 1000000

[[upstreams]]
name = "erp"
servers = ["127.0.0.1:18081"]

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "erp"
policy = "session"

[[routes]]
name = "pub"
path_prefix = "/pub/"
upstream = "erp"
policy = "public"

[logging]
level = "warn"
format = "json"
CONF
}
touch="${TOUCH_INTERVAL:+touch_interval = \"$TOUCH_INTERVAL\"}"
gateway_config 18084 18094 memory 18379 > "$work/gw-memory.toml"
gateway_config 18085 18095 redis 18379 "$touch" > "$work/gw-redis.toml"
gateway_config 18087 18097 redis 18380 "$touch" "work_stealing = true" > "$work/gw-redis-ws.toml"
gateway_config 18088 18098 redis 18381 "$touch" > "$work/gw-redis-lto.toml"

declare -A pid
taskset -c 1 "$NGINX" -c "$work/upstream.conf" & pids+=($!)
taskset -c 1 "$NGINX" -c "$work/nginx.conf" & pids+=($!); pid[nginx]=$!
taskset -c 1 "$HAPROXY" -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!); pid[haproxy-rs256]=$!
taskset -c 1 "$BIN/bare-pingora" 127.0.0.1:18086 127.0.0.1:18081 2>"$work/bare-pingora.log" &
pid[bare-pingora]=$!; fast_stop+=($!)
for port in 18379 18380 18381; do
    taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
done
sleep 0.5 # redis and nginx bind within milliseconds; the gateways below wait on /readyz
taskset -c 1 "$BIN/session-gateway" run --config "$work/gw-memory.toml" 2>"$work/gw-memory.log" & pids+=($!)
pid[gw-memory]=$!; pid[gw-public]=$!
for gw in gw-redis gw-redis-ws; do
    taskset -c 1 "$BIN/session-gateway" run --config "$work/$gw.toml" 2>"$work/$gw.log" & pids+=($!)
    pid[$gw]=$!
done
admins=(18094 18095 18097)
if [ "$LTO" = 1 ]; then
    taskset -c 1 "${CARGO_TARGET_DIR:-target}/production/session-gateway" run --config "$work/gw-redis-lto.toml" \
        2>"$work/gw-redis-lto.log" & pids+=($!)
    pid[gw-redis-lto]=$!
    admins+=(18098)
fi
for admin in "${admins[@]}"; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18086/ && break; sleep 0.1; done

declare -A url=(
    [nginx]=http://127.0.0.1:18082
    [haproxy-rs256]=http://127.0.0.1:18083
    [gw-public]=http://127.0.0.1:18084
    [gw-memory]=http://127.0.0.1:18084
    [bare-pingora]=http://127.0.0.1:18086
    [gw-redis]=http://127.0.0.1:18085
    [gw-redis-ws]=http://127.0.0.1:18087
    [gw-redis-lto]=http://127.0.0.1:18088
)
declare -A path=([gw-public]=/pub/x)
declare -A admin=([gw-memory]=18094 [gw-redis]=18095 [gw-redis-ws]=18097 [gw-redis-lto]=18098)
declare -A redis_port=([gw-redis]=18379 [gw-redis-ws]=18380 [gw-redis-lto]=18381)
declare -A warm=([gw-redis]=$WARM_REDIS [gw-redis-ws]=$WARM_REDIS [gw-redis-lto]=$WARM_REDIS)
gateways=(gw-memory gw-redis gw-redis-ws)
order=(nginx haproxy-rs256 bare-pingora gw-public gw-memory gw-redis gw-redis-ws)
redis_gateways=(gw-redis gw-redis-ws)
if [ "$LTO" = 1 ]; then
    gateways+=(gw-redis-lto); order+=(gw-redis-lto); redis_gateways+=(gw-redis-lto)
fi
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { # admin-port name: the sum of a metric's samples
    curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%d", s}'
}
results="$work/results.txt"
: > "$results"
# First calls: every request presents a token not seen before (wrk walks the
# file in order), so each one is a signature check and an admission.
admissions="$work/admissions.txt"
: > "$admissions"
for target in "${gateways[@]}"; do
    out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$ADMIT_DURATION" -s bench/load/tokens.lua "${url[$target]}" -- "$work/tokens/tokens.txt")
    opened=$(metric "${admin[$target]}" session_gateway_sessions_opened_total)
    seconds=$(awk '/requests in/ {gsub("s,", "", $4); print $4}' <<<"$out")
    echo "$target $opened $seconds" >> "$admissions"
    echo "first calls $target: $opened sessions opened in ${seconds}s"
done
# Open every session before anything is measured: the first-call phase opens
# what it reached; walk the tokens until every one has its session.
for target in "${gateways[@]}"; do
    for _ in $(seq 1 40); do
        taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d3s -s bench/load/tokens.lua "${url[$target]}" -- "$work/tokens/tokens.txt" >/dev/null
        opened=$(metric "${admin[$target]}" session_gateway_sessions_opened_total)
        [ "$opened" -ge "$TOKENS" ] && break
    done
    echo "warm-up $target: $opened sessions opened"
done
redis_calls() { # port: all commands Redis ran (script-internal ones too), and the calls clients sent
    redis-cli -p "$1" INFO commandstats | awk -F'[:=,]' '
        /^cmdstat_/ {all += $3} /^cmdstat_(evalsha|eval|script)/ {sent += $3} END {print all + 0, sent + 0}'
}
measure() { # target duration label: one measured wrk run, a line in $results
    local target=$1 all0 sent0 all1 sent1 all=0 sent=0
    [ -n "${redis_port[$target]:-}" ] && read -r all0 sent0 < <(redis_calls "${redis_port[$target]}")
    before=$(cpu_ticks "${pid[$target]}")
    out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$2" --latency -s bench/load/tokens.lua \
        "${url[$target]}" -- "$work/tokens/tokens.txt" "${path[$target]:-/api/x}")
    after=$(cpu_ticks "${pid[$target]}")
    if [ -n "${redis_port[$target]:-}" ]; then
        read -r all1 sent1 < <(redis_calls "${redis_port[$target]}")
        all=$((all1 - all0 - 1)); sent=$((sent1 - sent0)) # - the INFO itself
    fi
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    us=$(( (after - before) * 1000000 / ticks / (total > 0 ? total : 1) ))
    echo "$target $3 $rps $p50 $p99 ${non2xx:-0} $total $us $all $sent" >> "$results"
    echo "$3 $target: $rps req/s p50 $p50 p99 $p99 cpu ${us}us/req non-2xx ${non2xx:-0} redis $all ($sent sent)"
}
for round in $(seq 1 "$ROUNDS"); do
    for target in "${order[@]}"; do
        # Unmeasured traffic first; for the Redis gateways a full pass over
        # the tokens, re-confirming the leases that went stale meanwhile.
        taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${warm[$target]:-1s}" -s bench/load/tokens.lua \
            "${url[$target]}" -- "$work/tokens/tokens.txt" "${path[$target]:-/api/x}" >/dev/null
        measure "$target" "$DURATION" "$round"
    done
done
for target in "${redis_gateways[@]}"; do # steady state: one continuous load, two touch cycles measured
    taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$STEADY_WARM" -s bench/load/tokens.lua \
        "${url[$target]}" -- "$work/tokens/tokens.txt" >/dev/null
    measure "$target" "$STEADY" steady
done
rss=""
for target in "${gateways[@]}"; do
    kb=$(awk '/VmRSS/ {print $2}' "/proc/${pid[$target]}/status")
    rss="$rss $target=$kb:$(metric "${admin[$target]}" session_gateway_seats_in_use)"
done
echo
python3 - "$results" "$TOKENS" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$STEADY" "$admissions" "$rss" <<'PY'
import statistics, sys
path, tokens, conns, duration, rounds, steady_for, admissions, rss = sys.argv[1:]
def ms(v):
    v = v.strip()
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
rows, steady = {}, {}
for line in open(path):
    t, label, rps, p50, p99, bad, total, us, cmds, sent = line.split()
    row = (float(rps), ms(p50), ms(p99), int(bad), int(total), int(us), int(cmds), int(sent))
    if label == "steady":
        steady[t] = row
    else:
        rows.setdefault(t, []).append(row)
med = {t: [statistics.median(r[i] for r in v) for i in range(3)] + [sum(r[3] for r in v), statistics.median(r[5] for r in v)]
       for t, v in rows.items()}
print(f"{tokens} tokens, {conns} connections, {duration} x {rounds} rounds (medians)")
print(f"{'target':15} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx':>9} {'vs haproxy':>11} {'vs pingora':>11} "
      f"{'vs public':>10} {'p99/nginx':>10} {'cpu us/req':>11} {'non-2xx':>8}")
for t in ("nginx", "haproxy-rs256", "bare-pingora", "gw-public", "gw-memory", "gw-redis", "gw-redis-ws", "gw-redis-lto"):
    if t not in med:
        continue
    r, p50, p99, bad, us = med[t]
    print(f"{t:15} {r:9.0f} {p50:8.2f} {p99:8.2f} {r/med['nginx'][0]:9.2f} {r/med['haproxy-rs256'][0]:11.2f} "
          f"{r/med['bare-pingora'][0]:11.2f} {r/med['gw-public'][0]:10.2f} {p99/med['nginx'][2]:10.2f} {us:11.0f} {bad:8d}")
for t in ("gw-redis", "gw-redis-ws", "gw-redis-lto"):
    if t not in rows:
        continue
    calls = sum(r[7] for r in rows.get(t, []))
    requests = sum(r[4] for r in rows.get(t, []))
    print(f"{t} during the rounds: {calls} script calls sent for {requests} requests "
          f"= {calls / max(requests, 1):.5f}/request (leases re-confirmed before each round: ~0 expected)")
for t, (r, p50, p99, bad, total, us, cmds, sent) in steady.items():
    print(f"{t} steady state ({steady_for}, one continuous load): {r:.0f} req/s, p99 {p99:.2f} ms "
          f"({p99 / med['nginx'][2]:.2f}x nginx), {r / med['gw-public'][0]:.2f}x gw-public, {us} cpu us/req; "
          f"{cmds} Redis commands ({sent} script calls sent) for {total} requests = "
          f"{cmds / max(total, 1):.4f} commands/request, {sent / max(total, 1):.5f} calls sent/request; "
          f"each session called every {int(tokens) / max(r, 1):.2f} s")
for line in open(admissions):
    t, opened, seconds = line.split()
    secs = float(seconds.rstrip("ms")) / (1000 if seconds.endswith("ms") else 1)
    note = "  (every token used: run with more TOKENS)" if int(opened) >= int(tokens) else ""
    print(f"first calls {t}: {int(opened) / secs:.0f} admissions/s{note}")
for item in rss.split():
    t, v = item.split("=")
    kb, seats = v.split(":")
    print(f"memory {t}: {int(kb) / 1024:.0f} MiB RSS with {seats} open sessions")
PY
