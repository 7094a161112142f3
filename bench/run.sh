#!/usr/bin/env bash
# The benchmark of issue 2 (on demand, not part of the test suite): edge throughput against a plain
# nginx, push → serve latency, reload time with 1,000 static routes. See bench/README.md.
#
#   bash bench/run.sh [--quick] [--json FILE]
#   bash bench/run.sh auth|static|auth static [--quick] [--json FILE]
#
# --quick: 1 run of 3 s per target, fewer tries, no profile (a smoke run, not for figures).
# auth, static: instead of the issue-2 benchmark, bench/auth-bench.ts with those sections:
# the authenticated path with 1 and 10,000 tokens vs plain nginx and configurable-http-proxy
# (issue 3), a static route on 4 backends vs a round-robin plain nginx, session spread (issue 5).
# Pinning: wrk on CPU 0, every server (backend, plain nginx, gateway nginx, router) on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."

script=bench/core-bench.ts
auth_sections=''
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) export BENCH_SECONDS=3 BENCH_RUNS=1 BENCH_PUSH_TRIES=10 BENCH_RELOAD_TRIES=3 BENCH_SECTIONS=throughput,floor,push,reload BENCH_LIGHT_SECONDS=2 ;;
    --json) export BENCH_OUT="$(realpath -m "$2")"; shift ;;
    auth|static) script=bench/auth-bench.ts; auth_sections="${auth_sections:+$auth_sections,}$1" ;;
    *) echo "usage: bash bench/run.sh [auth] [static] [--quick] [--json FILE]" >&2; exit 64 ;;
  esac
  shift
done
if [ -n "$auth_sections" ]; then
  export BENCH_AUTH_SECTIONS="$auth_sections"
  # auth-bench.ts stops itself after 360 s per section (its own default too) unless BENCH_DEADLINE_S says otherwise
  : "${BENCH_DEADLINE_S:=$(( 360 * $(tr ',' '\n' <<<"$auth_sections" | wc -l) ))}"
  export BENCH_DEADLINE_S
fi

for bin in nginx wrk taskset node; do
  command -v "$bin" >/dev/null || { echo "bench: $bin is not installed" >&2; exit 1; }
done

cpus=$(nproc)
if [ "$cpus" -ge 2 ]; then
  export BENCH_LOAD_CPU=0 BENCH_SERVER_CPU=1
  pin=(taskset -c 1)
else
  echo "bench: only $cpus CPU: no pinning, figures are not comparable with the README" >&2
  export BENCH_LOAD_CPU='' BENCH_SERVER_CPU=''
  pin=()
fi

# Everything the benchmark creates lives under this dir (the gateways' temp dirs too, via TMPDIR).
# A second dir on tmpfs (/dev/shm) lets the reload benchmark tell the file system's cost apart.
BENCH_DIR=$(mktemp -d /tmp/appgw-bench.XXXXXX)
BENCH_SHM_DIR=''
if [ -d /dev/shm ] && [ -w /dev/shm ]; then BENCH_SHM_DIR=$(mktemp -d /dev/shm/appgw-bench.XXXXXX); fi
export BENCH_DIR BENCH_SHM_DIR
cleanup() {
  # Normally the benchmark has stopped everything; this sweeps nginx masters (and the
  # configurable-http-proxy of auth-bench.ts) left in our dirs (say after a SIGKILL), matched by
  # their own prefix in the command line, never by name alone.
  for dir in "$BENCH_DIR" $BENCH_SHM_DIR; do
    for pidfile in $(find "$dir" -name nginx.pid -o -name chp.pid 2>/dev/null); do
      pid=$(cat "$pidfile" 2>/dev/null || true)
      if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$dir"
  done
}
trap cleanup EXIT

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(nginx -v 2>&1), node $(node -v), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
# core-bench.ts stops itself after BENCH_DEADLINE_S (default 360 s); timeout is the backstop.
# It runs in the background so that Ctrl-C / TERM reach it (timeout has a process group of its
# own and passes the signal on to node, which stops what it started).
TMPDIR="$BENCH_DIR" timeout --signal=TERM --kill-after=20 $(( ${BENCH_DEADLINE_S:-360} + 10 )) \
  "${pin[@]}" node --import tsx "$script" &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true' INT TERM
set +e
wait "$bench_pid"
rc=$?
while kill -0 "$bench_pid" 2>/dev/null; do
  wait "$bench_pid"
  rc=$?
done
exit "$rc"
