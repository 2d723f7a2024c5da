#!/usr/bin/env bash
# Server benchmark: the Warden server (release build, its own process) with N real mTLS devices
# publishing Device Defender CBOR reports from a load generator on the same machine, and the same
# load against Mosquitto with the same certificates as the raw-broker ceiling, in one run
# (~8-10 min plus the build). Prints a table to stdout; progress goes to stderr.
#
#   bench/server.sh
#
# Env: DEVICES=10000             devices connected (identities registered: the same number)
#      MEM_AT=1000,$DEVICES      connected-device counts at which memory is sampled
#      RATES=1000,2000,3000,4000,5000,6000,8000,10000,15000,20000,30000,40000
#                                offered aggregate reports/s, one step each; a pass stops after
#                                the first step whose replies fall below 90% of the offered rate
#      STOP_WHEN_SATURATED=true  false: run every rate of RATES even past saturation, to see whether
#                                throughput holds at capacity under overload (Warden only)
#      CLOUD_CHECK_RATE=2000     extra run with cloud-side metrics every 5 s: 1000/s, then this (0: skip)
#      PASSES=unpinned,pinned    "pinned": server on CPU 0, generator on CPU 1 (taskset)
#      STEP_SECS=8 WARMUP_SECS=2 measured seconds per step, after a warm-up at that rate
#      QOS=0                     QoS of the reports (the Warden agent's default is 0)
#      SRC=head|worktree         build the committed HEAD (+ the load generator) in a snapshot
#                                under target/server-bench (default), or the working tree as is
#      OVERLAY="path ..."        with SRC=head: files copied from the working tree over the snapshot
#                                (paths relative to the repo), to measure one engineer's changes
#                                without the rest of the tree's work in progress
#      SNAPSHOT_EXCLUDE=REGEX    with SRC=snapshot: leave out the paths matching this (grep) regex,
#                                e.g. a crate someone is creating whose manifest does not parse yet
#      SKIP_BUILD=1              use the binaries already built
#      BUILD_ONLY=1              build, print the binaries' paths and stop
#      SKIP_MOSQUITTO=1          Warden only
#      KEEP=1                    keep the work directory (default: removed; its path is printed)
#      QUIET_WAIT=300            before each load phase, wait up to this many seconds for the
#                                machine to be idle (other processes under 25% of one core over 3 s)
#
# What it does (method and caveats: bench/RESULTS.md, "Server"):
#  1. builds `warden` and the load generator (crates/warden-server/examples/loadgen.rs);
#  2. starts `warden server` on a fresh data dir (config: min_report_period 0s so devices may
#     report many times a second; cloud-side metrics every 300 s as AWS), records its RSS with
#     an empty registry, stops it;
#  3. registers N things offline in that data dir (`loadgen provision`: CA-issued ECDSA
#     certificate per thing, CN = thing, WardenThingPolicy), restarts the server and times the
#     start (the authorizer loads the registry), records idle RSS, and times one registration
#     through the REST API with N things registered;
#  4. `loadgen run`: connects the devices (memory sampled at each MEM_AT), then steps the
#     offered rate, unpinned and pinned, measuring replies/s, publish->/accepted latency and CPU;
#  5. stops the server and counts the stored datapoints in its SQLite database (persisted); then
#     one step again with cloud-side metrics every 5 s (7 rows per connected thing per period);
#  6. the same generator against Mosquitto 2.0.x (mutual TLS with the server's CA and
#     certificates, persistence off), each device subscribed to its own report topic;
#  7. bench/server-report.py prints the side-by-side table.
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
DEVICES=${DEVICES:-10000}
MEM_AT=${MEM_AT:-1000,$DEVICES}
RATES=${RATES:-1000,2000,3000,4000,5000,6000,8000,10000,15000,20000,30000,40000}
PASSES=${PASSES:-unpinned,pinned}
STEP_SECS=${STEP_SECS:-8}
WARMUP_SECS=${WARMUP_SECS:-2}
QOS=${QOS:-0}
WARDEN=$ROOT/target/release/warden
LOADGEN=$ROOT/target/release/examples/loadgen
BUILT_FROM=
WORK=$(mktemp -d /tmp/warden-server-bench.XXXXXX)
T_START=$SECONDS
BENCH_NAME=server-bench
. "$BENCH/lib.sh"

# 10k devices: one socket each in the generator and in the broker, plus the broker's files.
ulimit -Hn 200000 2>/dev/null; ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((DEVICES + 1000)) ] || die "open-file limit $(ulimit -n) is too low for $DEVICES devices"


cd "$ROOT" || die "no repo"
# SRC=head (default) builds the committed HEAD, plus this benchmark's own files from the working
# tree (the load generator), in a snapshot under target/server-bench with its own target dir, so
# that work in progress elsewhere in the tree neither breaks nor changes what is measured.
# SRC=snapshot does the same with a copy of the whole working tree (tracked and untracked files)
# taken when the script starts, so edits made during the long build do not change the binaries.
# SRC=worktree builds the working tree as it is, into target/release.
SRC=${SRC:-head}
if [ "$SRC" = head ] || [ "$SRC" = snapshot ]; then
  SNAP=$ROOT/target/server-bench/src
  export CARGO_TARGET_DIR=$ROOT/target/server-bench/target
  WARDEN=$CARGO_TARGET_DIR/release/warden
  LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    if [ ! -d "$CARGO_TARGET_DIR/release" ] && [ -d "$ROOT/target/release" ]; then
      log "seeding $CARGO_TARGET_DIR from target/release (dependencies only get reused)"
      mkdir -p "$CARGO_TARGET_DIR" && cp -r "$ROOT/target/release" "$CARGO_TARGET_DIR/"
    fi
    TMP_SRC=$(mktemp -d /tmp/warden-server-src.XXXXXX)
    if [ "$SRC" = snapshot ]; then
      git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
        | { if [ -n "${SNAPSHOT_EXCLUDE:-}" ]; then grep -zv -- "$SNAPSHOT_EXCLUDE"; else cat; fi; } \
        | (cd "$ROOT" && xargs -0 cp --parents -t "$TMP_SRC" 2>/dev/null)
      [ -f "$TMP_SRC/Cargo.toml" ] || die "snapshot of the working tree failed"
    else
      git -C "$ROOT" archive HEAD | tar -x -C "$TMP_SRC" || die "git archive failed"
    fi
    mkdir -p "$TMP_SRC/crates/warden-server/examples"
    cp "$ROOT"/crates/warden-server/examples/*.rs "$TMP_SRC/crates/warden-server/examples/"
    for f in ${OVERLAY:-}; do
      mkdir -p "$(dirname "$TMP_SRC/$f")" && cp "$ROOT/$f" "$TMP_SRC/$f" || die "overlay: cannot copy $f"
    done
    # Copy only files whose content changed, so cargo rebuilds only what changed.
    python3 - "$TMP_SRC" "$SNAP" <<'EOF'
import filecmp, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    os.makedirs(os.path.join(dst, rel), exist_ok=True)
    for f in files:
        a, b = os.path.join(root, f), os.path.join(dst, rel, f)
        if not os.path.exists(b) or not filecmp.cmp(a, b, shallow=False):
            shutil.copy2(a, b)
            os.utime(b)
for root, dirs, files in os.walk(dst, topdown=False):
    rel = os.path.relpath(root, dst)
    for f in files:
        if not os.path.exists(os.path.join(src, rel, f)):
            os.remove(os.path.join(root, f))
    if not os.path.exists(os.path.join(src, rel)):
        shutil.rmtree(root, ignore_errors=True)
EOF
    rm -rf "$TMP_SRC"
    log "building $SRC at $(git -C "$ROOT" rev-parse --short HEAD) + the load generator (release, $CARGO_TARGET_DIR)"
    (cd "$SNAP" && cargo build --release -p warden >&2 && cargo build --release -p warden-server --example loadgen >&2) \
      || die "build failed"
  fi
  BUILT_FROM="HEAD $(git -C "$ROOT" rev-parse --short HEAD) (git archive), load generator from the working tree"
  [ "$SRC" = snapshot ] && BUILT_FROM="snapshot of the working tree at $(git -C "$ROOT" rev-parse --short HEAD) with $(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l) modified files"
  [ -n "${OVERLAY:-}" ] && BUILT_FROM="$BUILT_FROM, plus from the working tree: $(echo $OVERLAY)"
else
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building warden and the load generator (release, working tree)"
    cargo build --release -p warden >&2 || die "build failed"
    cargo build --release -p warden-server --example loadgen >&2 || die "build failed"
  fi
  BUILT_FROM="working tree at $(git -C "$ROOT" rev-parse --short HEAD) with $(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l) modified files"
fi
[ -x "$WARDEN" ] && [ -x "$LOADGEN" ] || die "missing $WARDEN or $LOADGEN"
if [ "${BUILD_ONLY:-0}" = 1 ]; then echo "$WARDEN $LOADGEN"; exit 0; fi

DATA=$WORK/data
MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)
bench_config "$DATA" "$MQTT_PORT" "$HTTP_PORT" 300s >"$WORK/warden.toml"
# The same with cloud-side metrics every 5 s, for the check of their cost (step 5).
sed 's/^period = "300s"/period = "5s"/' "$WORK/warden.toml" >"$WORK/warden-cloud5s.toml"
EXTRA=$WORK/extra.json
echo "{}" >"$EXTRA"
extra() { # key json-value
  python3 - "$EXTRA" "$1" "$2" <<'EOF'
import json, sys
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
d = json.load(open(path)); d[key] = value; json.dump(d, open(path, "w"))
EOF
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# What wait_quiet saw goes into the results.
record_quiet() { extra "busy_before_$1_pct" "$2"; }
extra built_from "\"$BUILT_FROM\""

wait_quiet start

# ------------------------------------------------------------------------- empty registry
log "starting warden on a fresh data dir (mqtt $MQTT_PORT, http $HTTP_PORT)"
start_server warden-0
sleep 2
extra start_empty_ms "$START_MS"
extra rss_empty_kb "$(rss_kb "$SERVER_PID")"
extra threads_empty "$(awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status")"
stop_server

# ------------------------------------------------------------------------- N registered
log "registering $DEVICES things offline"
t0=$(now_ms)
"$LOADGEN" provision --data-dir "$DATA" --count "$DEVICES" --out "$WORK/devices.jsonl" >&2 || die "provision failed"
extra provision_ms "$(($(now_ms) - t0))"
log "restarting warden with $DEVICES things registered"
start_server warden-1
extra start_registered_ms "$START_MS"
sleep 2
extra rss_registered_kb "$(rss_kb "$SERVER_PID")"

TOKEN=$(cat "$DATA/api-token")
api() { # method path [curl args...] -> prints "seconds" on stderr-free stdout, body in $WORK/api.out
  local method=$1 path=$2; shift 2
  curl -s -o "$WORK/api.out" -w '%{http_code} %{time_total}' -X "$method" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$HTTP_PORT$path" "$@"
}
rest_registration() { # thing -> json object of call -> "code seconds"
  local thing=$1 r1 r2 r3 r4 arn
  r1=$(api POST "/things/$thing" -H 'content-type: application/json' -d '{}')
  r2=$(api POST "/keys-and-certificate?setAsActive=true&thingName=$thing")
  arn=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificateArn"])' "$WORK/api.out" 2>/dev/null)
  r3=$(api PUT "/things/$thing/principals" -H "x-amzn-principal: $arn")
  r4=$(api PUT "/target-policies/WardenThingPolicy" -H 'content-type: application/json' -d "{\"target\": \"$arn\"}")
  printf '{"CreateThing": "%s", "CreateKeysAndCertificate": "%s", "AttachThingPrincipal": "%s", "AttachPolicy": "%s"}' \
    "$r1" "$r2" "$r3" "$r4"
}
log "one registration through the REST API with $DEVICES things registered"
extra rest_registration_idle "$(rest_registration bench-probe-1)"

# ------------------------------------------------------------------------- load: warden
wait_quiet warden
log "load generator against warden (pid $SERVER_PID)"
"$LOADGEN" run --target warden --port "$MQTT_PORT" --devices "$WORK/devices.jsonl" --ca "$DATA/pki/ca.crt" \
  --server-pid "$SERVER_PID" --metrics "127.0.0.1:$HTTP_PORT" --mem-at "$MEM_AT" --rates "$RATES" \
  --passes "$PASSES" --step-secs "$STEP_SECS" --warmup-secs "$WARMUP_SECS" --qos "$QOS" \
  --stop-when-saturated "${STOP_WHEN_SATURATED:-true}" \
  >"$WORK/warden.jsonl" 2> >(tee "$WORK/loadgen-warden.err" >&2) || log "load generator (warden) failed"
log "one registration through the REST API with $DEVICES things registered, devices disconnected"
extra rest_registration_after "$(rest_registration bench-probe-2)"
extra rss_final_kb "$(rss_kb "$SERVER_PID")"
stop_server
extra stop_ms "$STOP_MS"
grep -c "report rejected\|dropped\|ERROR\|panicked" "$WORK/warden-1.err" >/dev/null && \
  extra server_log_lines "$(grep -E 'WARN|ERROR|panicked' "$WORK/warden-1.err" | sed -E 's/^[^ ]+ +//' | cut -c1-160 | sort | uniq -c | sort -rn | head -8 | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')"
python3 "$BENCH/server-report.py" persisted "$DATA/warden.db" >"$WORK/persisted.json" || log "could not count datapoints"
extra persisted "$(cat "$WORK/persisted.json" 2>/dev/null || echo null)"
extra db_bytes "$(du -cb "$DATA"/warden.db* | tail -1 | cut -f1)"

# ------------------------------------------------------------------------- cloud metrics every 5 s
# Every period the server writes 7 cloud-side datapoints per connected thing, from the task that
# also feeds ingest. The main run uses AWS's 300 s; this step shows what a short period costs.
if [ -n "${CLOUD_CHECK_RATE:-2000}" ] && [ "${CLOUD_CHECK_RATE:-2000}" != 0 ]; then
  log "cloud-side metrics every 5 s: $DEVICES devices at ${CLOUD_CHECK_RATE:-2000} reports/s"
  start_server warden-2 "$WORK/warden-cloud5s.toml"
  wait_quiet cloud5s
  "$LOADGEN" run --target warden --label warden-cloud5s --port "$MQTT_PORT" --devices "$WORK/devices.jsonl" \
    --ca "$DATA/pki/ca.crt" --server-pid "$SERVER_PID" --metrics "127.0.0.1:$HTTP_PORT" --mem-at "$DEVICES" \
    --rates "1000,${CLOUD_CHECK_RATE:-2000}" --passes unpinned --step-secs 10 --warmup-secs 2 --qos "$QOS" \
    >"$WORK/warden-cloud5s.jsonl" 2> >(tee "$WORK/loadgen-cloud5s.err" >&2) || log "load generator (cloud 5 s) failed"
  stop_server
fi

# ------------------------------------------------------------------------- load: mosquitto
if [ "${SKIP_MOSQUITTO:-0}" != 1 ] && command -v mosquitto >/dev/null; then
  MQ_PORT=$(free_port)
  cat >"$WORK/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous false
persistence false
user root
max_connections -1
log_dest file $WORK/mosquitto.log
log_type error
log_type warning
listener $MQ_PORT 127.0.0.1
cafile $DATA/pki/ca.crt
certfile $DATA/pki/server.crt
keyfile $DATA/pki/server.key
require_certificate true
use_identity_as_username true
EOF
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.out" 2>&1 &
  MQ_PID=$!
  PIDS+=("$MQ_PID")
  end=$((SECONDS + 10))
  until (exec 3<>"/dev/tcp/127.0.0.1/$MQ_PORT") 2>/dev/null; do
    [ $SECONDS -le $end ] || die "mosquitto did not start: $(cat "$WORK/mosquitto.out" "$WORK/mosquitto.log" 2>/dev/null)"
    sleep 0.05
  done
  extra mosquitto_version "\"$(mosquitto -h 2>/dev/null | head -1)\""
  wait_quiet mosquitto
  log "load generator against mosquitto (pid $MQ_PID)"
  "$LOADGEN" run --target mosquitto --port "$MQ_PORT" --devices "$WORK/devices.jsonl" --ca "$DATA/pki/ca.crt" \
    --server-pid "$MQ_PID" --mem-at "$MEM_AT" --rates "$RATES" --passes "$PASSES" \
    --step-secs "$STEP_SECS" --warmup-secs "$WARMUP_SECS" --qos "$QOS" \
    >"$WORK/mosquitto.jsonl" 2> >(tee "$WORK/loadgen-mosquitto.err" >&2) || log "load generator (mosquitto) failed"
  kill "$MQ_PID" 2>/dev/null
  wait "$MQ_PID" 2>/dev/null
else
  log "mosquitto skipped"
  : >"$WORK/mosquitto.jsonl"
fi

# ------------------------------------------------------------------------- report
extra machine "$(python3 - <<EOF
import json, os, platform, subprocess
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "-C", "$ROOT", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = len(subprocess.run(["git", "-C", "$ROOT", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.splitlines())
print(json.dumps({"nproc": os.cpu_count(), "cpu": cpu, "mem_mib": mem, "kernel": platform.release(),
                  "rustc": rustc, "commit": commit, "modified_files": dirty,
                  "port_range": open("/proc/sys/net/ipv4/ip_local_port_range").read().split()}))
EOF
)"
extra total_secs "$((SECONDS - T_START))"
python3 "$BENCH/server-report.py" table "$EXTRA" "$WORK/warden.jsonl" "$WORK/mosquitto.jsonl" "$WORK/warden-cloud5s.jsonl"
