#!/usr/bin/env bash
# Load benchmark, side by side in one run (all on 127.0.0.1):
#   upstream   nginx returning a 200-byte body            :18081
#   nginx      plain pass-through to the upstream          :18082
#   haproxy    jwt_verify RS256 (algorithm fixed) + proxy   :18083
#   gw-memory  session-gateway, memory store               :18084
#   gw-redis   session-gateway, Redis store                :18085 (redis-server :18379)
# wrk runs on core 0 (-t1), every server on core 1. Each round runs every
# target once (after a warm-up that opens the sessions); medians of ROUNDS
# rounds are reported with ratios to nginx and to HAProxy.
#
#   bash bench/load/run.sh                      # 1000 tokens (below the cache size)
#   TOKENS=150000 bash bench/load/run.sh        # above tokens.cache_size (100000)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
TOKENS=${TOKENS:-1000}

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

cargo build --release -q -p session-gateway -p session-gateway-bench
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

./target/release/mint-tokens "$TOKENS" "$work/tokens" >/dev/null
ISSUER=$(cat "$work/tokens/issuer.txt")
BODY=$(printf 'x%.0s' $(seq 1 200))

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream upstream { server 127.0.0.1:18081; keepalive 128; }
    server { listen 127.0.0.1:18081; location / { default_type text/plain; return 200 "$BODY"; } }
    server {
        listen 127.0.0.1:18082;
        location / { proxy_pass http://upstream; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
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
gateway_config() { # port admin store
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
store = "$3"

[redis]
url = "redis://127.0.0.1:18379"

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

[logging]
level = "warn"
format = "json"
CONF
}
gateway_config 18084 18094 memory > "$work/gw-memory.toml"
gateway_config 18085 18095 redis > "$work/gw-redis.toml"

taskset -c 1 "$NGINX" -c "$work/nginx.conf" & pids+=($!)
taskset -c 1 "$HAPROXY" -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
taskset -c 1 redis-server --port 18379 --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
sleep 0.5 # redis and nginx bind within milliseconds; the gateways below wait on /readyz
taskset -c 1 ./target/release/session-gateway run --config "$work/gw-memory.toml" 2>"$work/gw-memory.log" & pids+=($!)
taskset -c 1 ./target/release/session-gateway run --config "$work/gw-redis.toml" 2>"$work/gw-redis.log" & pids+=($!)
for admin in 18094 18095; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
done

declare -A url=(
    [nginx]=http://127.0.0.1:18082
    [haproxy-rs256]=http://127.0.0.1:18083
    [gw-memory]=http://127.0.0.1:18084
    [gw-redis]=http://127.0.0.1:18085
)
order=(nginx haproxy-rs256 gw-memory gw-redis)
results="$work/results.txt"
: > "$results"
for target in gw-memory gw-redis; do # open every session once (admissions), then measure steady state
    taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d3s -s bench/load/tokens.lua "${url[$target]}" -- "$work/tokens/tokens.txt" >/dev/null
done
redis-cli -p 18379 CONFIG RESETSTAT >/dev/null # count steady-state commands only
for round in $(seq 1 "$ROUNDS"); do
    for target in "${order[@]}"; do
        out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/load/tokens.lua \
            "${url[$target]}" -- "$work/tokens/tokens.txt")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p50=$(awk '$1=="50%" {print $2}' <<<"$out")
        p99=$(awk '$1=="99%" {print $2}' <<<"$out")
        non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
        total=$(awk '/requests in/ {print $1}' <<<"$out")
        echo "$target $round $rps $p50 $p99 ${non2xx:-0} $total" >> "$results"
        echo "round $round $target: $rps req/s p50 $p50 p99 $p99 non-2xx ${non2xx:-0}"
    done
done
redis_cmds=$(redis-cli -p 18379 INFO commandstats | awk -F'calls=' '/calls=/ {split($2,a,","); s+=a[1]} END {print s}')
echo
python3 - "$results" "$TOKENS" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$redis_cmds" <<'PY'
import statistics, sys
path, tokens, conns, duration, rounds, redis_cmds = sys.argv[1:]
def ms(v):
    v = v.strip()
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
rows = {}
for line in open(path):
    t, _, rps, p50, p99, bad, total = line.split()
    rows.setdefault(t, []).append((float(rps), ms(p50), ms(p99), int(bad), int(total)))
med = {t: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v),
           statistics.median(r[2] for r in v), sum(r[3] for r in v)) for t, v in rows.items()}
print(f"{tokens} tokens, {conns} connections, {duration} x {rounds} rounds (medians)")
print(f"{'target':15} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx':>9} {'vs haproxy':>11} {'non-2xx':>8}")
for t in ("nginx", "haproxy-rs256", "gw-memory", "gw-redis"):
    if t not in med:
        continue
    r, p50, p99, bad = med[t]
    print(f"{t:15} {r:9.0f} {p50:8.2f} {p99:8.2f} {r/med['nginx'][0]:9.2f} {r/med['haproxy-rs256'][0]:11.2f} {bad:8d}")
redis_requests = sum(r[4] for r in rows.get("gw-redis", []))
print(f"gw-redis steady state: {redis_cmds} Redis commands for {redis_requests} requests "
      f"= {int(redis_cmds) / max(redis_requests, 1):.4f} commands/request (the other targets' rounds add time, not commands)")
PY
