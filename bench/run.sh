#!/usr/bin/env bash
# capi-cdc vs pg_recvlogical on the same WAL; see bench/README.md.
#
#   bench/run.sh                               # defaults: 200k txns, 1M-row txn
#   BENCH_TXNS=20000 BENCH_BIG_ROWS=100000 bench/run.sh
#
# Starts its own PostgreSQL cluster, Meta sandbox and capi-cdc in a temp dir,
# and stops all of them on exit, error or Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
export PYTHONDONTWRITEBYTECODE=1 NO_COLOR=1  # no bytecode in bench/, no ANSI in logs
REPORT=(python3 "$HERE/report.py")

TXNS=${BENCH_TXNS:-200000}              # workload A: single-row transactions
CLIENTS=${BENCH_CLIENTS:-4}             # pgbench clients for workload A
LIVE_TXNS=${BENCH_LIVE_TXNS:-2000}      # workload A live phase: transactions
LIVE_RATE=${BENCH_LIVE_RATE:-200}       # ... and their rate (per second)
BIG_ROWS=${BENCH_BIG_ROWS:-1000000}     # workload B: rows in one transaction
SHOP_JOURNEYS=${BENCH_SHOP_JOURNEYS:-24000} # workload C: storefront journeys (≈ 9 txns each)
SHOP_CLIENTS=${BENCH_SHOP_CLIENTS:-2}   # ... written by this many storefronts at once
SHOP_LIVE_S=${BENCH_SHOP_LIVE_S:-30}    # workload C live phase: seconds ...
SHOP_LIVE_RATE=${BENCH_SHOP_LIVE_RATE:-125} # ... at this many journeys/s (≈ 8 events each: ≈ 1,000 events/s)
BLOB_ROWS=${BENCH_BLOB_ROWS:-10000}     # workload D: rows updated in one transaction ...
BLOB_KB=${BENCH_BLOB_KB:-1024}          # ... each carrying a value this large
WAIT=${BENCH_TIMEOUT:-600}              # ceiling of every single wait, seconds
PG_PORT=${BENCH_PG_PORT:-54329}         # Unix socket only; the port names the socket file
OUT=${BENCH_OUT:-$HERE/results-latest.md}
WORKLOADS=${BENCH_WORKLOADS:-A B C E D}   # which to run (E replays C's events, so needs C)
RECEIVE_BUFFER=${BENCH_RECEIVE_BUFFER:-}  # source.receive_buffer_mb for A, B, C (default: capi-cdc's)
want() { [[ " $WORKLOADS " == *" $1 "* ]]; }

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

for tool in initdb postgres psql pgbench pg_recvlogical cargo python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed for pg_recvlogical's peak RSS"
(( TXNS % CLIENTS == 0 )) || die "BENCH_TXNS ($TXNS) must be a multiple of $CLIENTS clients"
(( LIVE_TXNS % CLIENTS == 0 )) || die "BENCH_LIVE_TXNS ($LIVE_TXNS) must be a multiple of $CLIENTS clients"
(( BIG_ROWS >= 1000 )) || die "BENCH_BIG_ROWS must be at least 1000"

# Keep CAPI_CDC_* settings of the caller's shell out of the runs.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^CAPI_CDC_' || true)

# ------------------------------------------------------------------ build
# BENCH_BIN=path: measure that binary (an earlier commit's build, for a
# before/after pair in one session) instead of building this checkout.
if [[ -n "${BENCH_BIN:-}" ]]; then
    BIN=$BENCH_BIN
    log "using the binary $BIN (BENCH_BIN), not a build of this checkout"
else
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    BIN="$TARGET_DIR/release/capi-cdc"
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"

# ------------------------------------------------------------------ temp dir, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/capi-cdc-bench.XXXXXX")
SOCK="$WORK/sock"
mkdir -p "$SOCK"
AS_PG=()
if [[ $(id -u) -eq 0 ]]; then
    # initdb and postgres refuse to run as root.
    id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user"
    AS_PG=(runuser -u postgres --)
    chown postgres: "$WORK" "$SOCK"
    chmod 755 "$WORK"
fi
RESULTS="$WORK/results.env"
: >"$RESULTS"
PIDS=()          # processes we started (besides postgres), stopped on exit
PG_LAUNCHER=""   # runuser/postgres process we started
CAPI_PID=""
CAPI_LOG=""
SANDBOX_LOG="$WORK/sandbox.log"

stop_pid() { # pid [signal]: signal, wait up to 15 s, then SIGKILL
    local pid=$1 sig=${2:-TERM} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "pid $pid ignored SIG$sig for 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_postgres() {
    local pm=""
    [[ -f "$WORK/data/postmaster.pid" ]] && pm=$(head -1 "$WORK/data/postmaster.pid")
    if [[ -n "$pm" ]] && kill -0 "$pm" 2>/dev/null; then
        stop_pid "$pm" INT # fast shutdown
    fi
    if [[ -n "$PG_LAUNCHER" ]]; then
        stop_pid "$PG_LAUNCHER" TERM
        wait "$PG_LAUNCHER" 2>/dev/null || true
    fi
}

show_tail() { # file
    [[ -s "$1" ]] || return 0
    log "---- last lines of $1"
    tail -n 40 "$1" >&2
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((rc != 0)); then
        log "failed (exit $rc)"
        [[ -n "$CAPI_LOG" ]] && show_tail "$CAPI_LOG"
        show_tail "$SANDBOX_LOG"
        show_tail "$WORK/postgres.log"
    fi
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    stop_postgres
    if [[ -n "${BENCH_KEEP:-}" ]]; then
        log "kept $WORK (BENCH_KEEP set)"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

result() { printf '%s=%s\n' "$1" "$2" >>"$RESULTS"; }

# ------------------------------------------------------------------ PostgreSQL
log "initdb in $WORK/data"
(cd "$WORK" && "${AS_PG[@]}" initdb -D "$WORK/data" -A trust -U postgres -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1) \
    || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }

log "starting postgres (Unix socket $SOCK, port $PG_PORT)"
(cd "$WORK" && exec "${AS_PG[@]}" postgres -D "$WORK/data" -k "$SOCK" -p "$PG_PORT" \
    -c listen_addresses='' \
    -c wal_level=logical \
    -c max_replication_slots=10 \
    -c max_wal_senders=10 \
    -c track_commit_timestamp=on) >"$WORK/postgres.log" 2>&1 &
PG_LAUNCHER=$!

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PG_PORT" -U postgres)
q() { "${PSQL[@]}" -At -d "$1" -c "$2"; } # db sql

deadline=$((SECONDS + 60))
until q postgres "SELECT 1" >/dev/null 2>&1; do
    kill -0 "$PG_LAUNCHER" 2>/dev/null || die "postgres exited during startup"
    ((SECONDS < deadline)) || die "postgres not ready after 60 s"
    sleep 0.2
done
PG_VERSION=$(q postgres "SHOW server_version" | awk "{print \$1}")
log "PostgreSQL $PG_VERSION is up"

result nproc "$(nproc)"
result load "$(cut -d" " -f1-3 /proc/loadavg)"
result mem "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
result kernel "Linux $(uname -r)"
result pg_version "$PG_VERSION"
result capi_version "$("$BIN" --version | awk '{print $2}')"
result date "$(date -u +%Y-%m-%dT%H:%MZ)"
result A_txns "$TXNS"
result A_clients "$CLIENTS"
result A_live_txns "$LIVE_TXNS"
result A_live_rate "$LIVE_RATE"
result B_rows "$BIG_ROWS"
result C_journeys "$SHOP_JOURNEYS"
result C_clients "$SHOP_CLIENTS"
result C_live_s "$SHOP_LIVE_S"
result C_live_rate "$SHOP_LIVE_RATE"
result D_rows "$BLOB_ROWS"
result D_kb "$BLOB_KB"
result B_events "$((BIG_ROWS / 1000))"

# ------------------------------------------------------------------ sandbox
SANDBOX_PORT=$("${REPORT[@]}" freeport)
SANDBOX="http://127.0.0.1:$SANDBOX_PORT"
PIXEL=1234567890
TOKEN=bench-token
"$BIN" sandbox --listen "127.0.0.1:$SANDBOX_PORT" --meta-pixel-id "$PIXEL" \
    --meta-access-token "$TOKEN" --seed-google-actions 2>"$SANDBOX_LOG" &
PIDS+=($!)
deadline=$((SECONDS + 30))
until python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$SANDBOX/healthz" 2>/dev/null; do
    ((SECONDS < deadline)) || die "sandbox not answering after 30 s"
    sleep 0.1
done

# ------------------------------------------------------------------ helpers
prepare_db() { # db: schema, one customer, publication, slot recv, capi-cdc setup (spool dir $2)
    local db=$1 spool=$2
    q postgres "CREATE DATABASE $db"
    "${PSQL[@]}" -d "$db" -f "$ROOT/sql/schema.sql" >/dev/null
    q "$db" "INSERT INTO customers (email, phone, first_name, last_name, country)
             VALUES ('Bench.Buyer@Example.com', '+1 (555) 010-0000', 'Bench', 'Buyer', 'US')" >/dev/null
    q "$db" "CREATE PUBLICATION capi_cdc FOR TABLE public.customers, public.orders"
    q "$db" "SELECT pg_create_logical_replication_slot('recv', 'pgoutput')" >/dev/null
    write_config "$db" "$spool"
    "$BIN" --config "$WORK/$db.toml" setup >"$WORK/$db.setup.log" 2>&1 \
        || { cat "$WORK/$db.setup.log" >&2; die "capi-cdc setup failed"; }
    sed 's/^/    setup: /' "$WORK/$db.setup.log" >&2
}

ADMIN_PORT=""
write_config() { # db spool_dir [config name, default db]
    ADMIN_PORT=$("${REPORT[@]}" freeport)
    mkdir -p "$2"
    cat >"$WORK/${3:-$1}.toml" <<EOF
[source]
url = "postgresql:///$1?host=$SOCK&port=$PG_PORT&user=postgres"
${RECEIVE_BUFFER:+receive_buffer_mb = $RECEIVE_BUFFER}
slot = "capi_cdc"
publication = "capi_cdc"

[spool]
path = "$2/"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[destinations.meta]
enabled = true
base_url = "$SANDBOX"
api_version = "v25.0"
pixel_id = "$PIXEL"
access_token = "$TOKEN"
requests_per_second = 1000
${EXTRA_TOML:-}
EOF
}

drain_recvlogical() { # db end_lsn label -> sets RECV_S, RECV_RSS_KB
    local db=$1 end=$2 label=$3 t0 t1
    log "$label: pg_recvlogical drains slot recv to $end"
    t0=$(now)
    /usr/bin/time -v -o "$WORK/$label.recv.time" \
        timeout "$WAIT" pg_recvlogical -d "$db" -h "$SOCK" -p "$PG_PORT" -U postgres \
        --slot recv --start --no-loop -o proto_version=1 -o publication_names=capi_cdc \
        -f /dev/null --endpos "$end" 2>"$WORK/$label.recv.log" \
        || { cat "$WORK/$label.recv.log" >&2; die "pg_recvlogical failed or timed out"; }
    t1=$(now)
    RECV_S=$(elapsed "$t0" "$t1")
    RECV_RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$label.recv.time")
    local confirmed
    confirmed=$(q "$db" "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'recv'")
    log "$label: pg_recvlogical took $RECV_S s, peak RSS $RECV_RSS_KB kB (slot recv confirmed $confirmed)"
}

# A profile of one workload's backlog drain (BENCH_PERF=file, BENCH_PERF_WORKLOAD=A|A0|C,
# default C). It flatters nothing: the timed figures of that run carry perf's
# overhead, so take them from a run without.
PERF_PID=""
perf_start() { # label
    PERF_PID=""
    [[ -n "${BENCH_PERF:-}" && "${BENCH_PERF_WORKLOAD:-C}" == "$1" ]] || return 0
    # BENCH_PERF_ALL=1: every process on the machine (the walsender too), not only capi-cdc.
    local target=(-p "$CAPI_PID")
    [[ -n "${BENCH_PERF_ALL:-}" ]] && target=(-a)
    # BENCH_PERF_OFFCPU=1: every context switch of the machine instead of CPU samples,
    # to account where capi-cdc's threads wait (report.py offcpu).
    local what=(-F 999)
    [[ -n "${BENCH_PERF_OFFCPU:-}" ]] && { what=(-e sched:sched_switch); target=(-a); }
    # BENCH_PERF_CALLGRAPH=dwarf: stacks through Rust code built without frame pointers.
    perf record "${what[@]}" --call-graph "${BENCH_PERF_CALLGRAPH:-fp}" "${target[@]}" -o "$WORK/$1.perf.data" >"$WORK/$1.perf.log" 2>&1 &
    PERF_PID=$!
}
perf_stop() { # label
    [[ -n "$PERF_PID" ]] || return 0
    kill -INT "$PERF_PID"; wait "$PERF_PID" || true
    PERF_PID=""
    if [[ -n "${BENCH_PERF_OFFCPU:-}" ]]; then
        local t
        for t in /proc/"$CAPI_PID"/task/*; do echo "${t##*/} $(cat "$t/comm")"; done >"$WORK/$1.tids"
        cp "$WORK/$1.tids" "$BENCH_PERF.tids"
        perf script -i "$WORK/$1.perf.data" >"$WORK/$1.perf.script" 2>/dev/null || log "perf script failed"
        "${REPORT[@]}" offcpu --script "$WORK/$1.perf.script" --tids "$WORK/$1.tids" >"$BENCH_PERF" \
            || log "report.py offcpu failed"
        cp "$WORK/$1.perf.data" "$BENCH_PERF.data" 2>/dev/null || true
        log "$1: off-CPU profile of the backlog drain in $BENCH_PERF"
        return 0
    fi
    perf report -i "$WORK/$1.perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.4 \
        >"$BENCH_PERF" 2>/dev/null || log "perf report failed"
    # Samples per process and thread: who had the cores.
    perf report -i "$WORK/$1.perf.data" --stdio --no-children --sort pid --percent-limit 0.2 -g none \
        >"$BENCH_PERF.threads" 2>/dev/null || log "perf report --sort pid failed"
    # Inclusive time per function, for the per-stage split in RESULTS.md.
    perf report -i "$WORK/$1.perf.data" --stdio --children --sort symbol --percent-limit 0.5 -g none \
        >"$BENCH_PERF.children" 2>/dev/null || log "perf report --children failed"
    cp "$WORK/$1.perf.data" "$BENCH_PERF.data" 2>/dev/null || true
    log "$1: profile of the backlog drain in $BENCH_PERF (data: $BENCH_PERF.data)"
}

start_capi() { # db label
    CAPI_LOG="$WORK/$2.capi.log"
    CAPI_T0=$(now)
    "$BIN" --config "$WORK/$1.toml" run 2>"$CAPI_LOG" &
    CAPI_PID=$!
    PIDS+=("$CAPI_PID")
}

wait_capi() { # end_lsn delivered -> sets CP_S DEL_S (seconds since start)
    local out
    out=$("${REPORT[@]}" wait --admin "127.0.0.1:$ADMIN_PORT" --pid "$CAPI_PID" --t0 "$CAPI_T0" \
        --lsn "$1" --delivered "$2" --timeout "$WAIT") || die "capi-cdc did not reach checkpoint $1 / $2 delivered"
    read -r CP_S DEL_S <<<"$out"
}

stop_capi() { # -> sets CAPI_RSS_KB CAPI_EXIT
    CAPI_RSS_KB=$(awk '/^VmHWM:/ {print $2}' "/proc/$CAPI_PID/status" 2>/dev/null || echo "")
    local status
    status=$(curl_status)
    log "capi-cdc /api/status: $status"
    stop_pid "$CAPI_PID" TERM
    CAPI_EXIT=0
    wait "$CAPI_PID" 2>/dev/null || CAPI_EXIT=$?
    ((CAPI_EXIT == 0)) || { log "capi-cdc exited with $CAPI_EXIT after SIGTERM"; show_tail "$CAPI_LOG"; }
}

curl_status() {
    python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode().strip())" \
        "http://127.0.0.1:$ADMIN_PORT/api/status" 2>/dev/null || echo "(unavailable)"
}

wal_mb() { # db start_lsn end_lsn
    q "$1" "SELECT round(pg_wal_lsn_diff('$3', '$2') / 1048576.0)"
}

# ================================================================== workload A
if want A; then
DB=bench_oltp
log "A: preparing database $DB"
prepare_db "$DB" "$WORK/spool_a"
A_ADMIN_PORT=$ADMIN_PORT
if want A0; then
    write_config "$DB" "$WORK/spool_a0" "${DB}_a0"
    A0_ADMIN_PORT=$ADMIN_PORT
    sed -i -e 's/^slot = "capi_cdc"/slot = "capi_cdc_a0"/' -e 's/^enabled = true/enabled = false/' \
        "$WORK/${DB}_a0.toml"
    grep -q '^enabled = false' "$WORK/${DB}_a0.toml" || die "A0 config: the destination is still enabled"
    "$BIN" --config "$WORK/${DB}_a0.toml" setup >"$WORK/${DB}_a0.setup.log" 2>&1 \
        || { cat "$WORK/${DB}_a0.setup.log" >&2; die "capi-cdc setup (A0) failed"; }
    ADMIN_PORT=$A_ADMIN_PORT
fi
START_A=$(q "$DB" "SELECT pg_current_wal_lsn()")

cat >"$WORK/paid_order.sql" <<'EOF'
\set cents random(100, 99999)
INSERT INTO orders (customer_id, status, total, currency, paid_at) VALUES (1, 'paid', :cents / 100.0, 'USD', now());
EOF
chmod 644 "$WORK/paid_order.sql"

log "A: pgbench writes $TXNS single-row transactions ($CLIENTS clients)"
timeout "$WAIT" pgbench -n -h "$SOCK" -p "$PG_PORT" -U postgres -f "$WORK/paid_order.sql" \
    -c "$CLIENTS" -j 2 -t $((TXNS / CLIENTS)) "$DB" >"$WORK/A.pgbench.log" 2>&1 \
    || { cat "$WORK/A.pgbench.log" >&2; die "pgbench failed"; }
grep -E '^(tps|number of transactions actually processed)' "$WORK/A.pgbench.log" | sed 's/^/    pgbench: /' >&2
END_A=$(q "$DB" "SELECT pg_current_wal_lsn()")
COUNT_A=$(q "$DB" "SELECT count(*) FROM orders")
((COUNT_A == TXNS)) || die "expected $TXNS orders, found $COUNT_A"
result A_wal_mb "$(wal_mb "$DB" "$START_A" "$END_A")"
log "A: end LSN $END_A"

drain_recvlogical "$DB" "$END_A" A
result A_recv_s "$RECV_S"
result A_recv_rss_kb "$RECV_RSS_KB"

log "A: capi-cdc drains slot capi_cdc to $END_A and delivers $TXNS events"
start_capi "$DB" A
perf_start A
wait_capi "$END_A" "$TXNS"
perf_stop A
log "A: capi-cdc checkpoint reached $END_A after $CP_S s; $TXNS delivered after $DEL_S s"
result A_capi_cp_s "$CP_S"
result A_capi_del_s "$DEL_S"

# Live phase: capi-cdc is caught up; a steady trickle measures latency, not queueing.
sleep 2
LIVE_FROM=$(q "$DB" "SELECT max(id) FROM orders")
log "A live: $LIVE_TXNS transactions at $LIVE_RATE/s"
timeout "$WAIT" pgbench -n -h "$SOCK" -p "$PG_PORT" -U postgres -f "$WORK/paid_order.sql" \
    -c "$CLIENTS" -j 2 -R "$LIVE_RATE" -t $((LIVE_TXNS / CLIENTS)) "$DB" >"$WORK/A.live.pgbench.log" 2>&1 \
    || { cat "$WORK/A.live.pgbench.log" >&2; die "pgbench (live) failed"; }
END_LIVE=$(q "$DB" "SELECT pg_current_wal_lsn()")
wait_capi "$END_LIVE" $((TXNS + LIVE_TXNS))
q "$DB" "SELECT id, round(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000, 3)
         FROM orders WHERE id > $LIVE_FROM ORDER BY id" | tr '|' '\t' >"$WORK/A.live.commits.tsv"
MAX_ID=$(q "$DB" "SELECT max(id) FROM orders")
log "A: reading the sandbox back"
CHECK=$("${REPORT[@]}" sandbox-check --url "$SANDBOX" --expect "backlog:1:$TXNS" \
    --expect "live:$((LIVE_FROM + 1)):$MAX_ID" --commits "$WORK/A.live.commits.tsv")
log "A: sandbox: $CHECK"
result A_live_check "$CHECK"
result A_backlog_found "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["backlog_expected"]-d["backlog_missing"])' "$CHECK")"
result A_duplicates "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["duplicates"])' "$CHECK")"
stop_capi
result A_capi_rss_kb "$CAPI_RSS_KB"
result A_capi_exit "$CAPI_EXIT"
if want A0; then
    # A0 (diagnostic, not in the defaults): the same WAL from a third slot with
    # no destination, so nothing competes with the apply loop for the cores.
    log "A0: capi-cdc with no destination drains slot capi_cdc_a0 to $END_A"
    ADMIN_PORT=$A0_ADMIN_PORT
    start_capi "${DB}_a0" A0
    perf_start A0
    wait_capi "$END_A" 0
    perf_stop A0
    log "A0: checkpoint reached $END_A after $CP_S s"
    result A0_capi_cp_s "$CP_S"
    stop_capi
    result A0_capi_rss_kb "$CAPI_RSS_KB"
    result A0_capi_exit "$CAPI_EXIT"
fi
q "$DB" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DB'" >/dev/null
"${REPORT[@]}" clear "$SANDBOX"

fi

# ================================================================== workload B
if want B; then
DB=bench_big
log "B: preparing database $DB (fresh slots)"
prepare_db "$DB" "$WORK/spool_b"
START_B=$(q "$DB" "SELECT pg_current_wal_lsn()")
log "B: one transaction inserting $BIG_ROWS orders (every 1000th paid)"
q "$DB" "INSERT INTO orders (id, customer_id, status, total, currency, paid_at)
         SELECT g, 1,
                CASE WHEN g % 1000 = 0 THEN 'paid' ELSE 'pending' END,
                (g % 99900 + 100) / 100.0, 'USD',
                CASE WHEN g % 1000 = 0 THEN now() END
         FROM generate_series(1, $BIG_ROWS) AS g" >/dev/null
END_B=$(q "$DB" "SELECT pg_current_wal_lsn()")
result B_wal_mb "$(wal_mb "$DB" "$START_B" "$END_B")"
log "B: end LSN $END_B"

drain_recvlogical "$DB" "$END_B" B
result B_recv_s "$RECV_S"
result B_recv_rss_kb "$RECV_RSS_KB"

B_EVENTS=$((BIG_ROWS / 1000))
log "B: capi-cdc drains slot capi_cdc to $END_B and delivers $B_EVENTS events"
start_capi "$DB" B
wait_capi "$END_B" "$B_EVENTS"
log "B: capi-cdc checkpoint reached $END_B after $CP_S s; $B_EVENTS delivered after $DEL_S s"
result B_capi_cp_s "$CP_S"
result B_capi_del_s "$DEL_S"
CHECK=$("${REPORT[@]}" sandbox-check --url "$SANDBOX" --expect "big:1:$BIG_ROWS" --modulus 1000)
log "B: sandbox: $CHECK"
result B_found "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["big_expected"]-d["big_missing"])' "$CHECK")"
result B_duplicates "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["duplicates"])' "$CHECK")"
stop_capi
result B_capi_rss_kb "$CAPI_RSS_KB"
result B_capi_exit "$CAPI_EXIT"
q "$DB" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DB'" >/dev/null
"${REPORT[@]}" clear "$SANDBOX"

fi

# ================================================================== workload C
if want C; then
# The demo's storefront (`capi-cdc storefront`: the same journeys) with every
# default rule and lookup on, delivered to Meta and Google in the sandbox.
DB=bench_shop
SHOP_URL="postgresql:///$DB?host=$SOCK&port=$PG_PORT&user=postgres"
log "C: preparing database $DB (every default rule; capi-cdc setup makes the publication)"
q postgres "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -f "$ROOT/sql/schema.sql" >/dev/null
EXTRA_TOML=$(cat <<TOML
batch_max_age_s = 5

[destinations.google]
oauth_token_url = "$SANDBOX/token"
data_manager_url = "$SANDBOX"
ads_api_url = "$SANDBOX"
client_id = "sandbox-client-id.apps.googleusercontent.com"
client_secret = "sandbox-client-secret"
refresh_token = "sandbox-refresh-token"
developer_token = "bench-developer-token"
operating_account_id = "1234567890"
requests_per_second = 1000
batch_max_age_s = 5
TOML
)
write_config "$DB" "$WORK/spool_c"
EXTRA_TOML=""
C_ADMIN_PORT=$ADMIN_PORT
"$BIN" --config "$WORK/$DB.toml" setup >"$WORK/$DB.setup.log" 2>&1 \
    || { cat "$WORK/$DB.setup.log" >&2; die "capi-cdc setup failed"; }
q "$DB" "SELECT pg_create_logical_replication_slot('recv', 'pgoutput')" >/dev/null
"$BIN" --config "$WORK/$DB.toml" provision >"$WORK/$DB.provision.log" 2>&1 \
    || { cat "$WORK/$DB.provision.log" >&2; die "capi-cdc provision failed"; }
xacts() { q "$DB" "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }
START_C=$(q "$DB" "SELECT pg_current_wal_lsn()")
X0=$(xacts)
log "C: $SHOP_CLIENTS storefronts write $SHOP_JOURNEYS journeys"
per=$((SHOP_JOURNEYS / SHOP_CLIENTS))
shop_pids=()
for ((i = 0; i < SHOP_CLIENTS; i++)); do
    timeout "$WAIT" "$BIN" storefront --url "$SHOP_URL" --rate 0 --journeys "$per" \
        --first $((1 + i * per)) >"$WORK/C.storefront.$i.log" 2>&1 &
    shop_pids+=($!)
done
for pid in "${shop_pids[@]}"; do wait "$pid" || die "storefront failed (see $WORK/C.storefront.*.log)"; done
END_C=$(q "$DB" "SELECT pg_current_wal_lsn()")
X1=$(xacts)
# The q calls above are transactions too (pg_stat_database counts them).
C_TXNS=$((X1 - X0 - 2))
result C_txns "$C_TXNS"
result C_wal_mb "$(wal_mb "$DB" "$START_C" "$END_C")"
log "C: $C_TXNS transactions, end LSN $END_C"

drain_recvlogical "$DB" "$END_C" C
result C_recv_s "$RECV_S"
result C_recv_rss_kb "$RECV_RSS_KB"

log "C: capi-cdc drains slot capi_cdc to $END_C and delivers everything to Meta and Google"
start_capi "$DB" C
perf_start C
out=$("${REPORT[@]}" wait-idle --admin "127.0.0.1:$C_ADMIN_PORT" --pid "$CAPI_PID" --t0 "$CAPI_T0" \
    --lsn "$END_C" --timeout "$WAIT") || die "capi-cdc did not reach $END_C with nothing pending"
read -r CP_S IDLE_S <<<"$out"
perf_stop C
result C_capi_cp_s "$CP_S"
result C_capi_rss_kb "$(awk '/^VmHWM:/ {print $2}' "/proc/$CAPI_PID/status")"
log "C: checkpoint after $CP_S s; nothing pending after $IDLE_S s"

# Live phase: the storefront at a steady rate; the batched lane (views,
# carts, checkouts) sends every 5 s beside the real-time one.
sleep 2
LIVE_T0_MS=$(python3 -c 'import time; print(int(time.time() * 1000))')
live_journeys=$((SHOP_LIVE_S * SHOP_LIVE_RATE))
log "C live: $live_journeys journeys at $SHOP_LIVE_RATE/s for ${SHOP_LIVE_S} s"
# RSS once a second through the live phase: one reading at its end lands
# anywhere in a batched lane's 5 s cycle (it varied by 30 MiB run to run).
(while kill -0 "$CAPI_PID" 2>/dev/null; do
    awk '/^VmRSS:|^RssAnon:|^RssFile:/ {printf "%s ", $2} END {print ""}' "/proc/$CAPI_PID/status"
    sleep 1
done) >"$WORK/C.live.rss" 2>/dev/null &
RSS_SAMPLER=$!
timeout "$WAIT" "$BIN" storefront --url "$SHOP_URL" --rate "$SHOP_LIVE_RATE" --journeys "$live_journeys" \
    --first $((SHOP_JOURNEYS + 1)) >"$WORK/C.live.storefront.log" 2>&1 || die "live storefront failed"
kill "$RSS_SAMPLER" 2>/dev/null; wait "$RSS_SAMPLER" 2>/dev/null || true
result C_steady_rss_kb "$(awk '/^VmRSS:/ {print $2}' "/proc/$CAPI_PID/status")"
# Median and maximum over the samples (VmRSS), and the median's anonymous
# and file-backed (the binary's code) parts.
read -r med max anon file <<<"$(sort -n "$WORK/C.live.rss" | awk 'NF == 3 {v[n] = $1; a[n] = $2; f[n] = $3; n++}
    END {m = int(n / 2); print v[m], v[n - 1], a[m], f[m]}')"
result C_live_rss_median_kb "$med"
result C_live_rss_max_kb "$max"
result C_live_rss_anon_kb "$anon"
result C_live_rss_file_kb "$file"
log "C live: RSS median $med kB (anonymous $anon, file $file), max $max kB over $(wc -l <"$WORK/C.live.rss") samples"
END_CL=$(q "$DB" "SELECT pg_current_wal_lsn()")
"${REPORT[@]}" wait-idle --admin "127.0.0.1:$C_ADMIN_PORT" --pid "$CAPI_PID" --t0 "$CAPI_T0" \
    --lsn "$END_CL" --timeout "$WAIT" >/dev/null || die "capi-cdc did not deliver the live phase"
ADMIN_PORT=$C_ADMIN_PORT
stop_capi
result C_capi_exit "$CAPI_EXIT"
log "C: reading the spool and the sandbox back"
CHECK=$("${REPORT[@]}" shop-check --url "$SANDBOX" --spool "$WORK/spool_c/spool.sqlite3" \
    --t0 "$CAPI_T0" --live-from-ms "$LIVE_T0_MS")
log "C: $CHECK"
result C_check "$CHECK"
q "$DB" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DB'" >/dev/null
"${REPORT[@]}" clear "$SANDBOX"

fi

# ================================================================== workload E
if want E; then
# Catch-up after an outage, replayed rather than waited for: every event of
# workload C is sent again (`capi-cdc replay`, same IDs, the platforms
# deduplicate) with each destination limited to its documented rate:
# Google's Data Manager 300 requests/min (5/s, 2,000 events each), Meta
# (no CAPI-specific limit; spec/meta-capi.md §1.7) at the example config's
# 10 requests/s of up to 1,000 events.
DB=bench_shop
sed -e '0,/^requests_per_second = 1000/s//requests_per_second = 10/' \
    -e '0,/^requests_per_second = 1000/s//requests_per_second = 5/' \
    "$WORK/$DB.toml" >"$WORK/$DB.replay.toml"
grep -c '^requests_per_second = \(10\|5\)$' "$WORK/$DB.replay.toml" | grep -qx 2 || die "replay config: rate limits not set"
E_EVENTS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events"])' "$CHECK")
log "E: replaying $E_EVENTS events from $START_C to Meta (10 req/s) and Google (5 req/s)"
t0=$(now)
timeout "$WAIT" "$BIN" --config "$WORK/$DB.replay.toml" replay --from-lsn "$START_C" >"$WORK/E.replay.log" 2>&1 \
    || { tail -20 "$WORK/E.replay.log" >&2; die "replay failed"; }
t1=$(now)
result E_events "$E_EVENTS"
result E_replay_s "$(elapsed "$t0" "$t1")"
result E_check "$("${REPORT[@]}" shop-check --url "$SANDBOX" --spool "$WORK/spool_c/spool.sqlite3" --t0 "$t0" --live-from-ms 0)"
log "E: replay settled after $(elapsed "$t0" "$t1") s"

fi

# ================================================================== workload D
if want D; then
RECEIVE_BUFFER=""   # D compares the default with 4096 itself
# Bounded memory with large rows: one UPDATE of $BLOB_ROWS rows, each setting
# a $BLOB_KB kB value (pgoutput sends it whole, de-TOASTed), in a table the
# publication carries. Two capi-cdc runs over the same WAL from two slots:
# the default receive budget (64 MiB), and the largest one (4,096 MiB).
DB=bench_blob
log "D: preparing database $DB"
q postgres "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -f "$ROOT/sql/schema.sql" >/dev/null
q "$DB" "ALTER TABLE orders ADD COLUMN bench_blob text"
q "$DB" "INSERT INTO customers (email, country) VALUES ('blob@example.com', 'US')" >/dev/null
q "$DB" "INSERT INTO orders (id, customer_id, status, total, currency)
         SELECT g, 1, 'pending', 1.00, 'USD' FROM generate_series(1, $BLOB_ROWS) g" >/dev/null
q "$DB" "CREATE PUBLICATION capi_cdc FOR TABLE public.customers, public.orders"
q "$DB" "SELECT pg_create_logical_replication_slot('recv', 'pgoutput')" >/dev/null
write_config "$DB" "$WORK/spool_d"
D_NEW_PORT=$ADMIN_PORT
EXTRA_TOML=""
write_config "${DB}" "$WORK/spool_d_old"
D_OLD_PORT=$ADMIN_PORT
mv "$WORK/$DB.toml" "$WORK/${DB}_old.toml"
write_config "$DB" "$WORK/spool_d"
sed -i "s|^listen = .*|listen = \"127.0.0.1:$D_NEW_PORT\"|" "$WORK/$DB.toml"
sed -i "s|^slot = \"capi_cdc\"|slot = \"capi_cdc_old\"\nreceive_buffer_mb = 4096|" "$WORK/${DB}_old.toml"
for cfg in "$WORK/$DB.toml" "$WORK/${DB}_old.toml"; do
    "$BIN" --config "$cfg" setup >"$cfg.setup.log" 2>&1 || { cat "$cfg.setup.log" >&2; die "setup (D) failed"; }
done
START_D=$(q "$DB" "SELECT pg_current_wal_lsn()")
log "D: one UPDATE of $BLOB_ROWS rows setting ${BLOB_KB} kB each"
q "$DB" "UPDATE orders SET bench_blob = repeat(md5(id::text), $BLOB_KB * 32) WHERE id <= $BLOB_ROWS" >/dev/null
END_D=$(q "$DB" "SELECT pg_current_wal_lsn()")
result D_wal_mb "$(wal_mb "$DB" "$START_D" "$END_D")"
result D_decoded_mb "$((BLOB_ROWS * BLOB_KB / 1024))"
drain_recvlogical "$DB" "$END_D" D
result D_recv_s "$RECV_S"
result D_recv_rss_kb "$RECV_RSS_KB"
for variant in new old; do
    cfg="$WORK/$DB.toml"
    ADMIN_PORT=$D_NEW_PORT
    if [[ $variant == old ]]; then cfg="$WORK/${DB}_old.toml"; ADMIN_PORT=$D_OLD_PORT; fi
    CAPI_LOG="$WORK/D.$variant.capi.log"
    CAPI_T0=$(now)
    "$BIN" --config "$cfg" run 2>"$CAPI_LOG" &
    CAPI_PID=$!
    PIDS+=("$CAPI_PID")
    wait_capi "$END_D" 0
    log "D ($variant buffer): checkpoint reached $END_D after $CP_S s"
    result "D_${variant}_capi_cp_s" "$CP_S"
    stop_capi
    result "D_${variant}_capi_rss_kb" "$CAPI_RSS_KB"
    result "D_${variant}_capi_exit" "$CAPI_EXIT"
done

fi

# ================================================================== the sandbox alone
# What the sandbox accepts with no capi-cdc in the way, for "delivery no
# slower than the sandbox can accept". Last, so its events touch no check.
log "sandbox alone: full-size requests from 2 client threads"
ALONE=$("${REPORT[@]}" sandbox-alone --url "$SANDBOX" --pixel "$PIXEL" --meta-token "$TOKEN") || die "sandbox-alone failed"
log "sandbox alone: $ALONE"
result sandbox_alone "$ALONE"

# ================================================================== report
"${REPORT[@]}" render "$RESULTS" --out "$OUT"
log "wrote $OUT"
