#!/usr/bin/env bash
# The container path, run for real: builds stand-ins for the public base
# images from Debian's packages, builds the project's image, brings the
# compose stack up on the host network and checks what a user relies on:
#
#   1. every container becomes healthy;
#   2. a paid order reaches the sandbox, at Meta and at Google, exactly once;
#   3. the spool survives `docker compose restart capi-cdc`: the checkpoint
#      does not go back and the order is not sent again;
#   4. the process (PID 1 of its container) runs as the non-root user;
#   5. SIGTERM (`docker compose stop`) stops it cleanly: exit code 0, well
#      before the kill timeout, with the shutdown logged.
#
# Exit 0: passed. Exit 77: no Docker engine could be reached (nothing was
# tested; .ci/run says so loudly). Anything else: failed.
#
# Public images cannot be pulled here, so:
#   debian:bookworm-slim  is a `debootstrap --variant=minbase bookworm`
#                         tree imported with `docker import`;
#   postgres:15           is deploy/docker/postgres (Debian's PostgreSQL 15
#                         with the official image's entrypoint contract);
#   rust:1-bookworm       is not stood in for: the Dockerfile's `build` stage
#                         is kept honest by running its very RUN line (read
#                         out of the Dockerfile below) on the host's toolchain,
#                         then packaging that binary with BINARY=prebuilt.
# An image already present under those names is used as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."

project=capi-cdc-docker-test
# docker-compose.yml plus the host-network override, merged by compose
# itself; published ports mean nothing on the host network (and compose v1
# refuses them there), so they are taken out of the merged file.
merged=$(mktemp --suffix=.yml)
compose_files=(-f "$merged")
log() { printf '[docker-test] %s\n' "$*"; }
fail() {
    printf '[docker-test] FAILED: %s\n' "$*" >&2
    compose ps >&2 || true
    compose logs --no-color --tail=60 >&2 || true
    exit 1
}

if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers on this machine (docker info failed)"
    exit 77
fi

# Compose v2 (`docker compose`) where it exists, else Debian's docker-compose v1.
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
else
    log "neither 'docker compose' nor 'docker-compose' is installed"
    exit 1
fi
compose() { "${compose_cmd[@]}" -p "$project" --project-directory "$PWD" "${compose_files[@]}" "$@"; }
"${compose_cmd[@]}" -f docker-compose.yml -f deploy/docker/compose.host.yml config \
    | /usr/bin/python3 -c '
import sys, yaml
doc = yaml.safe_load(sys.stdin)
for service in doc["services"].values():
    if service.get("network_mode") == "host":
        service.pop("ports", None)
        service.pop("networks", None)
doc.pop("networks", None)
yaml.safe_dump(doc, sys.stdout, sort_keys=False)
' > "$merged"

# BuildKit skips the stages the target does not need (the `build` stage's
# rust:1-bookworm); the classic builder would try to pull it. Docker 20.10's
# own client drives the engine's built-in BuildKit without the buildx plugin.
build() {
    if docker buildx version >/dev/null 2>&1; then
        docker buildx build --load "$@"
    elif [ -x /usr/bin/docker ] && [[ "$(/usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null)" == 20.* ]]; then
        DOCKER_BUILDKIT=1 /usr/bin/docker build "$@"
    else
        DOCKER_BUILDKIT=1 docker build "$@"
    fi
}

for port in 9187 9188 55432; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "port $port on 127.0.0.1 is taken; the host-network stack needs it"
        exit 1
    fi
done

build_log=$(mktemp)
# --- base images --------------------------------------------------------
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { log "debootstrap is needed (apt-get install debootstrap)"; exit 1; }
    rootfs=$(mktemp -d)
    log "debootstrap --variant=minbase bookworm -> debian:bookworm-slim (stand-in)"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$rootfs" -c . | docker import \
        -c 'CMD ["bash"]' -c 'LABEL org.opencontainers.image.description=debootstrap-stand-in' \
        - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
fi
if ! docker image inspect postgres:15 >/dev/null 2>&1; then
    log "building postgres:15 (stand-in) from deploy/docker/postgres"
    build --network host -t postgres:15 deploy/docker/postgres >"$build_log" 2>&1 \
        || { cat "$build_log"; fail "building the postgres:15 stand-in"; }
fi

# --- the project's image ------------------------------------------------
cargo_line=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
[ -n "$cargo_line" ] || fail "Dockerfile has no 'RUN cargo build' line in its build stage"
log "host build, the Dockerfile's own command: $cargo_line"
$cargo_line
log "docker build --build-arg BINARY=prebuilt -t capi-cdc:local ."
build --network host --build-arg BINARY=prebuilt -t capi-cdc:local . >"$build_log" 2>&1 \
    || { cat "$build_log"; fail "building capi-cdc:local"; }

# --- the stack ----------------------------------------------------------
cleanup() { compose down -v --remove-orphans >/dev/null 2>&1 || true; }
# KEEP_STACK=1 leaves the stack up after the test, for a look at it.
trap '[ -n "${KEEP_STACK:-}" ] || cleanup; rm -f "$merged" "$build_log"' EXIT
cleanup
log "compose up"
compose up -d --no-build || fail "compose up"

container() { compose ps -q "$1"; }

wait_healthy() { # services...
    local deadline=$((SECONDS + 180)) service state
    for service in "$@"; do
        while :; do
            state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "$(container "$service")" 2>/dev/null || echo missing)
            [ "$state" = healthy ] && break
            [ "$state" = no-healthcheck ] && fail "$service has no health check"
            if [ "$(docker inspect -f '{{.State.Status}}' "$(container "$service")" 2>/dev/null)" = exited ]; then
                fail "$service exited before it was healthy"
            fi
            [ $SECONDS -lt $deadline ] || fail "$service is '$state', not healthy, after 180 s"
            sleep 1
        done
        log "$service: healthy"
    done
}
wait_healthy postgres sandbox capi-cdc storefront

psql_shop() {
    compose exec -T postgres psql -v ON_ERROR_STOP=1 -qtA -p 55432 -U capi_cdc -d shop -c "$1"
}
sandbox_count() { # event_id -> "meta google" copies received
    python3 - "$1" <<'PY'
import json, sys, urllib.request
want = sys.argv[1]
def get(path):
    with urllib.request.urlopen("http://127.0.0.1:9188" + path, timeout=5) as r:
        return json.load(r)
def count(node):
    if isinstance(node, dict):
        return sum(1 for k, v in node.items() if k in ("event_id", "transactionId") and v == want) + sum(count(v) for v in node.values())
    if isinstance(node, list):
        return sum(count(v) for v in node)
    return 0
meta = get("/_sandbox/meta/events")["received"]
google = get("/_sandbox/google/report")["accepted"]
print(count(meta), count(google))
PY
}

# --- 2. a paid order reaches the sandbox --------------------------------
order=990000001
log "placing and paying order $order"
psql_shop "INSERT INTO sessions (id, client_ip, user_agent, landing_url, gclid) VALUES ('docker-s1', '192.0.2.7', 'Mozilla/5.0 (docker test)', 'https://shop.example/checkout', 'Cj0KCQ-docker-1');
INSERT INTO consents (session_id, ad_storage, analytics_storage, ad_user_data, ad_personalization) VALUES ('docker-s1', 'granted', 'granted', 'granted', 'granted');
INSERT INTO customers (id, email, country, session_id) VALUES ($order, 'docker-test@example.com', 'US', 'docker-s1');
BEGIN;
INSERT INTO orders (id, customer_id, status, total, session_id) VALUES ($order, $order, 'pending', 42.00, 'docker-s1');
INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES ($order, 'SKU-DOCKER', 1, 42.00);
COMMIT;
UPDATE orders SET status = 'paid', paid_at = now() WHERE id = $order;" >/dev/null
deadline=$((SECONDS + 60))
while :; do
    read -r meta google < <(sandbox_count "purchase-$order")
    [ "$meta" -ge 1 ] && [ "$google" -ge 1 ] && break
    [ $SECONDS -lt $deadline ] || fail "purchase-$order not at the sandbox after 60 s (meta $meta, google $google)"
    sleep 1
done
[ "$meta" = 1 ] && [ "$google" = 1 ] || fail "purchase-$order arrived meta $meta, google $google times"
log "purchase-$order reached the sandbox: Meta once, Google once"

# --- 4. non-root --------------------------------------------------------
uid=$(docker exec "$(container capi-cdc)" sh -c 'awk "/^Uid:/ {print \$2}" /proc/1/status')
comm=$(docker exec "$(container capi-cdc)" cat /proc/1/comm)
[ "$comm" = capi-cdc ] || fail "PID 1 of the capi-cdc container is '$comm', not capi-cdc"
[ "$uid" != 0 ] || fail "capi-cdc runs as root"
[ "$uid" = 10001 ] || fail "capi-cdc runs as uid $uid, not the image's user capi (10001)"
log "capi-cdc runs as uid $uid (capi), PID 1"

# --- 3. the spool survives a restart ------------------------------------
status_json() { docker exec "$(container capi-cdc)" capi-cdc status --json; }
checkpoint() { python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["replication"]["checkpoint_lsn"])'; }
lsn_num() { python3 -c 'import sys; a,b=sys.argv[1].split("/"); print(int(a,16)<<32|int(b,16))' "$1"; }
before=$(status_json | checkpoint)
log "checkpoint before restart: $before"
compose restart capi-cdc >/dev/null
wait_healthy capi-cdc
after=$(status_json | checkpoint)
log "checkpoint after restart: $after"
[ "$(lsn_num "$after")" -ge "$(lsn_num "$before")" ] || fail "checkpoint went back from $before to $after"
# The event's story (rule, commit LSN, the attempts before the restart) is
# still in the spool: a lost spool would have no such event.
story=$(docker exec "$(container capi-cdc)" capi-cdc status --event "purchase-$order") \
    || fail "after the restart the spool has no purchase-$order: $story"
grep -q "delivered" <<<"$story" || fail "purchase-$order's story lost its deliveries: $story"
sleep 3
read -r meta google < <(sandbox_count "purchase-$order")
[ "$meta" = 1 ] && [ "$google" = 1 ] || fail "after the restart purchase-$order was received meta $meta, google $google times"
# And the stream goes on: a second order after the restart arrives.
order2=990000002
psql_shop "INSERT INTO orders (id, customer_id, status, total, session_id, paid_at) VALUES ($order2, $order, 'paid', 7.00, 'docker-s1', now());" >/dev/null
deadline=$((SECONDS + 60))
until read -r meta google < <(sandbox_count "purchase-$order2") && [ "$meta" = 1 ] && [ "$google" = 1 ]; do
    [ $SECONDS -lt $deadline ] || fail "purchase-$order2 (after the restart) not delivered once to both: meta $meta, google $google"
    sleep 1
done
log "after the restart: checkpoint kept, purchase-$order not resent, purchase-$order2 delivered"

# --- 5. SIGTERM stops it cleanly ----------------------------------------
id=$(container capi-cdc)
start=$SECONDS
compose stop -t 30 capi-cdc >/dev/null
took=$((SECONDS - start))
code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
[ "$code" = 0 ] || fail "capi-cdc exited $code on SIGTERM (137 means it had to be killed)"
[ "$took" -lt 25 ] || fail "capi-cdc took $took s to stop on SIGTERM"
# (grep reads a variable: `docker logs | grep -q` would fail under pipefail
# when grep stops reading early.)
stop_log=$(docker logs "$id" 2>&1)
grep -q "shutting down" <<<"$stop_log" || fail "no 'shutting down' in capi-cdc's log"
log "SIGTERM: exit 0 after ${took} s, shutdown logged"

log "PASSED"
