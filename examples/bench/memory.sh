#!/usr/bin/env bash
# Peak resident memory of `flowgate serve` accepting 1 KB messages at full rate while
# no execution can run: the trigger's one ordered lane is blocked by its first message
# (a flow that fails, no retries, `on_exhausted: block`), so the backlog grows to
# `max_backlog` and every later caller gets 429. Samples VmRSS every 0.2 s.
#
#   examples/bench/memory.sh [SECONDS=60] [MAX_BACKLOG=10000] [STORE]
#
# Run from the project's root after `cargo build --release`. STORE defaults to a fresh
# SQLite file; pass postgres://... for PostgreSQL (a database of its own, it is written).
set -euo pipefail
SECS="${1:-60}"; BACKLOG="${2:-10000}"; STORE="${3:-}"
ROOT="$(pwd)"; FG="$ROOT/target/release/flowgate"
[ -x "$FG" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
WORK="$(mktemp -d /tmp/flowgate-memory.XXXXXX)"
PORT="${PORT:-8131}"
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/flows/acme"
HASH="$("$FG" key new --label bench --key s3cr3t-key --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash"])')"
printf 'api_keys:\n  bench: "%s"\n' "$HASH" > "$WORK/flows/acme/_tenant.yaml"
cat > "$WORK/flows/acme/Blocked.yaml" <<'YAML'
# Ordered; the first message fails with no retries and blocks the lane.
methods: [POST]
auth: { api_keys: [bench] }
delivery: { ordered: true, retry: [], on_exhausted: block }
response: { mode: async }
steps:
  - fail: { status: 500, message: '"held"' }
YAML
"$FG" check "$WORK/flows" >/dev/null
FLOWGATE_MAX_BACKLOG="$BACKLOG" "$FG" serve --listen "127.0.0.1:$PORT" --flows "$WORK/flows" \
  --store "${STORE:-sqlite://$WORK/fg.db}" >"$WORK/fg.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/_health" && break; sleep 0.1; done
BODY="$(python3 -c 'import json; print(json.dumps({"order": "WO-1", "lines": [{"sku": "X-%03d" % i, "qty": i, "note": "n" * 40} for i in range(14)]}))')"
cat > "$WORK/post.lua" <<LUA
wrk.body = [[$BODY]]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "s3cr3t-key"
local counts = {}
response = function(status) counts[status] = (counts[status] or 0) + 1 end
done = function() for s, n in pairs(counts) do io.write(string.format("status %d: %d\n", s, n)) end end
LUA
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
echo "body $(printf %s "$BODY" | wc -c) bytes, max_backlog $BACKLOG, ${SECS}s, RSS at start $(rss) KiB"
PEAK=0
( while kill -0 "$PID" 2>/dev/null; do r="$(rss)"; echo "$r"; sleep 0.2; done ) > "$WORK/rss" &
SAMPLER=$!
wrk -t2 -c32 -d"${SECS}s" -s "$WORK/post.lua" "http://127.0.0.1:$PORT/acme/Blocked" | grep -E "Requests/sec|Latency|status|Non-2xx"
sleep 1; kill "$SAMPLER" 2>/dev/null || true
PEAK="$(sort -n "$WORK/rss" | tail -1)"
echo "RSS peak $((PEAK / 1024)) MiB ($PEAK KiB), at end $(( $(rss) / 1024 )) MiB"
