#!/usr/bin/env bash
# Builds the runtime image around a release binary built on this machine and checks
# it for real: HEALTHCHECK, delivery of a provider fixture posted from outside, the
# non-root user, and the database on the volume across a restart and a new container.
#
#   docker/check.sh            (as root, or as a user who may run docker)
#
# Works without pulling anything: the base image is Debian bookworm made with
# debootstrap from Debian's mirror and imported (once, then reused); the binary comes
# from `cargo build --release --locked` on the host (Debian bookworm, same glibc) and
# goes in through the Dockerfile's `prebuilt` target, so the Rust stage never runs.
# The containers use the host network (a daemon started with --bridge=none publishes
# no ports). Not part of `cargo test` or CI: it takes minutes.
#
# Environment:
#   BASE_IMAGE    base image to build on (default hookrelay-check/debian:bookworm,
#                 made here when missing; debian:bookworm-slim works where it can be pulled)
#   DEBIAN_MIRROR mirror for debootstrap (default http://deb.debian.org/debian)
#   IMAGE         tag for the built image (default hookrelay:check)
#   KEEP=1        leave the container, volume and sink running for a look afterwards
set -euo pipefail

cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-hookrelay-check/debian:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=${IMAGE:-hookrelay:check}
NAME=hookrelay-check-$$
VOLUME=hookrelay-check-$$
FIXTURE=tests/fixtures/cloud66/managed_backup.fail.json
FIXTURE2=tests/fixtures/cloud66/backup.verification.failed.json
C66_TOKEN=check-c66-$$-$RANDOM
ADMIN_TOKEN=check-admin-$$-$RANDOM
# Polls: up to this many one-second tries. The image's HEALTHCHECK first runs after
# its 30 s interval, so waits for "healthy" need more than that.
TRIES=${TRIES:-120}

failures=0
pass() { printf 'ok   - %s\n' "$*"; }
fail() {
    printf 'FAIL - %s\n' "$*"
    failures=$((failures + 1))
}
die() {
    printf 'FAIL - %s\n' "$*"
    exit 1
}
step() { printf '\n== %s\n' "$*"; }

work=$(mktemp -d)
sink_pid=
cleanup() {
    local rc=$?
    if [[ ${KEEP:-} == 1 ]]; then
        echo "kept: container $NAME, volume $VOLUME, sink pid ${sink_pid:-none}, files $work"
        exit "$rc"
    fi
    if [[ $rc != 0 ]] && docker inspect "$NAME" >/dev/null 2>&1; then
        echo "--- last container log lines"
        docker logs --tail 40 "$NAME" 2>&1 || true
    fi
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker volume rm "$VOLUME" >/dev/null 2>&1 || true
    [[ -n $sink_pid ]] && kill "$sink_pid" 2>/dev/null || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# --- the daemon -----------------------------------------------------------------
step "docker daemon"
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || die "no docker daemon and no dockerd (apt-get install docker.io)"
    echo "starting dockerd (log: /tmp/hookrelay-check-dockerd.log)"
    setsid nohup dockerd --storage-driver=vfs --iptables=false --bridge=none \
        >/tmp/hookrelay-check-dockerd.log 2>&1 &
    for _ in $(seq "$TRIES"); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || die "dockerd did not come up (see /tmp/hookrelay-check-dockerd.log)"
fi
pass "daemon $(docker version -f '{{.Server.Version}}') answers"
# Without the buildx plugin the CLI cannot use BuildKit; the classic builder is enough
# for `--target prebuilt` (stages after the target are not built).
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

# --- the base image -------------------------------------------------------------
step "base image $BASE_IMAGE"
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    pass "base image present, reused"
else
    command -v debootstrap >/dev/null || die "no $BASE_IMAGE and no debootstrap (apt-get install debootstrap)"
    echo "debootstrap bookworm from $DEBIAN_MIRROR (a few minutes)"
    debootstrap --variant=minbase bookworm "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
    tar -C "$work/rootfs" -c . | docker import -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$work/rootfs"
    pass "base image made with debootstrap and imported"
fi

# --- binary and image -----------------------------------------------------------
step "release binary"
cargo build --release --locked 2>&1 | tail -1
[[ -x target/release/hookrelay ]] || die "no target/release/hookrelay"
pass "target/release/hookrelay ($(du -h target/release/hookrelay | cut -f1))"

step "build context (.dockerignore)"
# The context as the builder sees it, listed from inside a throwaway image.
printf 'FROM %s\nCOPY . /ctx\n' "$BASE_IMAGE" >"$work/Dockerfile.context"
docker build -q --network none -f "$work/Dockerfile.context" -t hookrelay-check-context:$$ . \
    >"$work/context-build.log" 2>&1 || { cat "$work/context-build.log"; die "context listing build failed"; }
docker run --rm --network none hookrelay-check-context:$$ \
    sh -c 'cd /ctx && find . -mindepth 1 | sort && du -sk . | cut -f1 >&2' \
    >"$work/context.txt" 2>"$work/context.kb"
docker rmi hookrelay-check-context:$$ >/dev/null
echo "context: $(wc -l <"$work/context.txt") entries, $(cat "$work/context.kb") KiB"
leaked=$(grep -E '^\./(\.git|data)(/|$)|^\./target/(.*/)?[^/]*$|\.db(-wal|-shm|-journal)?$' "$work/context.txt" |
    grep -vxE '\./target|\./target/release|\./target/release/hookrelay' || true)
if [[ -z $leaked ]]; then
    pass "no .git, data/, *.db or build output in the context (only target/release/hookrelay)"
else
    fail "the context holds: $(echo "$leaked" | head -5 | tr '\n' ' ')"
fi
for want in ./Cargo.toml ./Cargo.lock ./src/main.rs ./relay.yaml ./templates; do
    grep -qx "$want" "$work/context.txt" || fail "the context lacks $want"
done

step "image $IMAGE (--target prebuilt, FROM $BASE_IMAGE)"
# --network host: the runtime stage runs apt-get; the daemon has no bridge network.
docker build --network host --target prebuilt --build-arg DEBIAN_IMAGE="$BASE_IMAGE" \
    -t "$IMAGE" . >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; die "docker build failed"; }
pass "image built: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
cfg_user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
[[ $cfg_user == 10001:10001 ]] && pass "image USER is $cfg_user" || fail "image USER is '$cfg_user', want 10001:10001"
cfg_health=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE")
[[ $cfg_health == *readyz* ]] && pass "image HEALTHCHECK asks /readyz" || fail "image HEALTHCHECK is $cfg_health"

# --- a webhook sink on the host (answers like a Slack incoming webhook) ----------
cat >"$work/sink.py" <<'EOF'
import http.server, json, sys
log, portfile = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "body": body.decode("utf-8", "replace")}) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
import os; os.rename(portfile + ".tmp", portfile)
s.serve_forever()
EOF
: >"$work/sink.log"
python3 "$work/sink.py" "$work/sink.log" "$work/sink.port" &
sink_pid=$!
for _ in $(seq "$TRIES"); do [[ -s $work/sink.port ]] && break; sleep 0.2; done
[[ -s $work/sink.port ]] || die "the sink did not start"
SINK_PORT=$(cat "$work/sink.port")
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE_URL=http://127.0.0.1:$PORT

# --- helpers --------------------------------------------------------------------
start_container() {
    docker run -d --name "$NAME" --network host \
        -v "$VOLUME:/app/data" \
        -e HOOKRELAY__SERVER__LISTEN="127.0.0.1:$PORT" \
        -e HOOKRELAY_ADMIN_TOKEN="$ADMIN_TOKEN" \
        -e C66_TOKEN="$C66_TOKEN" \
        -e SLACK_PROD_WEBHOOK_URL="http://127.0.0.1:$SINK_PORT/services/T0CHECK/B0CHECK/check" \
        "$IMAGE" >/dev/null
}
# Waits for the image's own HEALTHCHECK to report, then checks what it reported.
wait_healthy() {
    local s=
    for _ in $(seq "$TRIES"); do
        s=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}/{{.State.Status}}' "$NAME")
        [[ $s == starting/running ]] || break
        sleep 1
    done
    local probe
    probe=$(docker inspect -f '{{with .State.Health}}{{range .Log}}exit {{.ExitCode}} {{.Output}}{{println}}{{end}}{{end}}' "$NAME" | grep . | tail -1)
    if [[ $s == healthy/running ]]; then
        pass "HEALTHCHECK reports healthy ($1; last probe: ${probe:-none})"
    else
        die "health is '$s' ($1; last probe: ${probe:-none})"
    fi
}
admin() { curl -sS -H "Authorization: Bearer $ADMIN_TOKEN" "$BASE_URL$1"; }
# Posts a fixture from the host; prints the event id from the 202 answer.
post_fixture() {
    local code
    code=$(curl -sS -o "$work/answer.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$1" "$BASE_URL/hooks/cloud66?token=$C66_TOKEN")
    [[ $code == 202 ]] || die "POST $1 answered $code: $(cat "$work/answer.json")"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["event_id"])' "$work/answer.json"
}
# The states of an event's deliveries, as "destination=state" words, sorted.
delivery_states() {
    admin "/api/events/$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join(sorted(x["destination"] + "=" + x["state"] for x in d["deliveries"])))'
}
wait_delivered() {
    local want="prod-slack=delivered stdout=delivered" got=
    for _ in $(seq "$TRIES"); do
        got=$(delivery_states "$1" 2>/dev/null || true)
        [[ $got == "$want" ]] && break
        sleep 1
    done
    [[ $got == "$want" ]] && pass "admin API: event $1 deliveries $got" ||
        fail "admin API: event $1 deliveries '$got', want '$want'"
}
# Requests the sink received whose body names the given stack.
sink_count() { grep -c "$1" "$work/sink.log" || true; }
wait_sink() {
    local n=0
    for _ in $(seq "$TRIES"); do
        n=$(wc -l <"$work/sink.log")
        ((n >= $1)) && break
        sleep 1
    done
    ((n >= $1)) || fail "the host sink got $n requests, want $1"
}

# --- first container ------------------------------------------------------------
step "container $NAME on 127.0.0.1:$PORT (host network), volume $VOLUME"
docker volume create "$VOLUME" >/dev/null
start_container
wait_healthy "first start"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$BASE_URL/readyz")
[[ $code == 200 ]] && pass "GET /readyz from the host: 200" || fail "GET /readyz from the host: $code"

step "process user"
status_uid=$(docker exec "$NAME" sh -c 'cat /proc/1/comm; grep -E "^(Uid|Gid):" /proc/1/status' | tr -s '\t\n' '  ')
echo "pid 1 in the container: $status_uid"
[[ $status_uid =~ ^hookrelay\ Uid:\ 10001\ 10001\ 10001\ 10001\ Gid:\ 10001\ 10001\ 10001\ 10001 ]] &&
    pass "hookrelay runs as uid/gid 10001 (real, effective, saved, fs)" || fail "pid 1 is not hookrelay as 10001: $status_uid"
host_view=$(docker top "$NAME" -o pid,uid,comm | awk 'NR > 1 { print $2, $3 }')
[[ $host_view == "10001 hookrelay" ]] && pass "docker top (host view): $host_view" || fail "docker top: $host_view"
touch_out=$(docker exec "$NAME" sh -c 'touch /app/relay.yaml 2>&1; touch /app/data/.w && rm /app/data/.w && echo data-writable')
[[ $touch_out == *"Permission denied"*data-writable ]] &&
    pass "config is read-only to the service, /app/data is writable" || fail "write test: $touch_out"

step "delivery of $FIXTURE posted from the host"
event1=$(post_fixture "$FIXTURE")
pass "POST /hooks/cloud66: 202, event $event1"
wait_delivered "$event1"
wait_sink 1
n=$(sink_count my-production-app)
[[ $n == 1 ]] && pass "the host sink got the Slack message for my-production-app once ($(head -1 "$work/sink.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])'))" ||
    fail "the host sink got $n messages for my-production-app, want 1"
docker logs "$NAME" >"$work/logs1.txt" 2>&1
grep -q "my-production-app" "$work/logs1.txt" && grep -q "accepted event $event1" "$work/logs1.txt" &&
    pass "docker logs show the accept line and the console destination's message" ||
    fail "docker logs lack the console message or the accept line for $event1"
grep -qF "$ADMIN_TOKEN" "$work/logs1.txt" || grep -qF "$C66_TOKEN" "$work/logs1.txt" &&
    fail "a token appears in docker logs" || pass "no token in docker logs"

step "database on the volume"
mountpoint=$(docker volume inspect -f '{{.Mountpoint}}' "$VOLUME")
if [[ -f $mountpoint/hookrelay.db ]]; then
    pass "$(stat -c '%n, owner %u:%g, %s bytes' "$mountpoint/hookrelay.db")"
else
    fail "no hookrelay.db on the volume ($mountpoint: $(ls -A "$mountpoint" | tr '\n' ' '))"
fi
outside=$(docker diff "$NAME" | grep -E '\.db(-wal|-shm)?$' || true)
[[ -z $outside ]] && pass "docker diff: no database file in the container's own layer" ||
    fail "database files outside the volume: $outside"

step "restart (docker stop, then start the same container)"
docker stop "$NAME" >/dev/null
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
[[ $exit_code == 0 ]] && pass "stopped on SIGTERM with exit code 0" || fail "exit code $exit_code after docker stop"
# Read the stopped database from a copy (the volume stays untouched).
cp "$mountpoint"/hookrelay.db* "$work/"
rows=$(sqlite3 "$work/hookrelay.db" \
    "SELECT (SELECT count(*) FROM events WHERE id = '$event1') || ' ' ||
            (SELECT group_concat(destination || '=' || state, ' ')
               FROM (SELECT destination, state FROM deliveries WHERE event_id = '$event1' ORDER BY destination))")
[[ $rows == "1 prod-slack=delivered stdout=delivered" ]] &&
    pass "rows on the volume while stopped: event $event1, $rows" || fail "rows on the volume: '$rows'"
docker start "$NAME" >/dev/null
wait_healthy "after restart"
listed=$(admin "/api/events?limit=50" | python3 -c 'import json,sys; print(" ".join(i["id"] for i in json.load(sys.stdin)["items"]))')
[[ " $listed " == *" $event1 "* ]] && pass "GET /api/events lists $event1 after the restart" ||
    fail "GET /api/events after the restart: '$listed'"
wait_delivered "$event1"

step "new container on the same volume (an upgrade)"
docker rm -f "$NAME" >/dev/null
start_container
wait_healthy "new container"
listed=$(admin "/api/events?limit=50" | python3 -c 'import json,sys; print(" ".join(i["id"] for i in json.load(sys.stdin)["items"]))')
[[ " $listed " == *" $event1 "* ]] && pass "GET /api/events lists $event1 in the new container" ||
    fail "GET /api/events in the new container: '$listed'"
event2=$(post_fixture "$FIXTURE2")
pass "POST $FIXTURE2: 202, event $event2"
wait_delivered "$event2"
wait_sink 2
# The first event was delivered before the restarts; it must not have been sent again.
n1=$(sink_count my-production-app)
total=$(wc -l <"$work/sink.log")
[[ $total == 2 ]] && pass "the host sink got 2 messages in all: the first event was not sent again" ||
    fail "the host sink got $total messages ($n1 for my-production-app), want 2"

echo
if ((failures > 0)); then
    echo "docker/check.sh: $failures check(s) FAILED"
    exit 1
fi
echo "docker/check.sh: all checks passed"
