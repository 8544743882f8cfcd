#!/usr/bin/env bash
# Bytes written to disk per durably accepted 1 KB message on the SQLite store.
#
# Run from the project's root after `cargo build --release`:
#   examples/bench/accept_bytes.sh [RUNS=3] [SECONDS=8] [FLOWGATE=target/release/flowgate]
#
# Each run serves the bench flows (../shared/bench/flows, or $BENCH) on a fresh SQLite
# file, posts the 1 KB WorkOrder body with wrk (2 threads, 32 connections), waits 3 s
# after the load so the queue drains and the kernel writes back, then prints:
# PRE='PRAGMA page_size=2048; VACUUM;' runs those statements on the new, empty file
# before flowgate opens it (to try a layout without building).
#   bytes/msg  = delta of the server's write_bytes (/proc/<pid>/io) / rows in messages
#   req/s, p99 = wrk's figures;  cpu_us/msg = server utime+stime / rows in messages
set -euo pipefail
RUNS="${1:-3}"; SECS="${2:-8}"; FG="${3:-target/release/flowgate}"
BENCH="${BENCH:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/bench}"
[ -d "$BENCH/flows" ] || { echo "no bench kit at $BENCH (set BENCH)" >&2; exit 2; }
PORT="${PORT:-8111}"; KEY=s3cr3t-key
command -v wrk >/dev/null || { echo "wrk is needed" >&2; exit 2; }
HASH="$("$FG" key new --label bench --key "$KEY" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash"])')"
WORK="$(mktemp -d /tmp/fg-bytes.XXXXXX)"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/post.lua" <<LUA
local f = assert(io.open("$BENCH/lua/workorder.json", "r"))
wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "$KEY"
LUA
wb() { awk '/^write_bytes/ {print $2}' "/proc/$PID/io"; }
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
for run in $(seq "$RUNS"); do
  rm -rf "$WORK/flows" "$WORK"/fg.db*
  cp -r "$BENCH/flows" "$WORK/flows"
  rm -f "$WORK/flows/acme/ItemPriceDb.yaml"   # needs PostgreSQL; not measured here
  printf 'api_keys: { bench: "%s" }\n' "$HASH" > "$WORK/flows/acme/_tenant.yaml"
  [ -z "${PRE:-}" ] || sqlite3 "$WORK/fg.db" "$PRE" >/dev/null
  "$FG" serve --listen "127.0.0.1:$PORT" --flows "$WORK/flows" --store "sqlite://$WORK/fg.db" >"$WORK/fg.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/_health" && break; sleep 0.1; done
  sleep 1
  w0=$(wb); c0=$(cpu)
  out=$(wrk -t2 -c32 -d"${SECS}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT/acme/WorkOrder")
  sleep 3
  w1=$(wb); c1=$(cpu)
  rows=$(sqlite3 "$WORK/fg.db" "select count(*) from messages")
  open=$(sqlite3 "$WORK/fg.db" "select count(*) from messages where open = 1")
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  python3 - "$out" "$w0" "$w1" "$c0" "$c1" "$rows" "$open" "$run" <<'PY'
import os, re, sys
o, w0, w1, c0, c1, rows, open_, run = sys.argv[1:]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1))
m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", o)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else -1
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", o)
rows = int(rows); tick = os.sysconf("SC_CLK_TCK")
print(f"run {run}: {(int(w1) - int(w0)) / rows:,.0f} bytes/msg  {rps:,.0f} req/s  p99 {p99:.2f} ms  "
      f"cpu {(int(c1) - int(c0)) * 1e6 / tick / rows:.0f} us/msg  rows {rows}  open {open_}  "
      f"non-2xx {bad.group(1) if bad else 0}")
PY
done
