#!/usr/bin/env bash
# Report-to-alert latency benchmark (issue 4, "Performance"): the Warden server (release build, its
# own process) with N real mTLS devices publishing Device Defender CBOR reports, a few of which
# violate a security profile on every other report, and the alerts delivered to a webhook served
# by the load generator itself, which times each alert against the publish of the report that
# raised it (one process, one clock). ~3 min per fleet plus the build. Prints a table to stdout;
# progress goes to stderr.
#
#   bench/alert-latency.sh
#
# Env: FLEETS=1000,10000          connected devices, one fresh server per fleet (same registry)
#      RATES=1000,5000,10000       offered aggregate reports/s, one step each, per fleet
#      VIOLATORS_PCT=2             share of devices alternating violating / conforming reports
#      STEP_SECS=20 WARMUP_SECS=5  measured seconds per step, after a warm-up at that rate
#      PRIME_RATE=2000             rate of the first round (N/PRIME_RATE + 1 s: at least one report
#                                  per device, the first since the server started; measured apart)
#      QOS=0                       QoS of the reports (the agent's default is 0)
#      SRC, OVERLAY, SNAPSHOT_EXCLUDE, SKIP_BUILD
#                                  how the binaries are built: as in bench/server.sh (default
#                                  SRC=head: the committed HEAD plus the load generator from the
#                                  working tree, in target/server-bench)
#      WARDEN_BIN=path             run this `warden` binary instead of the one built (to compare
#                                  two builds with the same load generator)
#      KEEP=1                      keep the work directory (default: removed; its path is printed)
#      QUIET_WAIT=300              before each fleet, wait up to this many seconds for the machine
#                                  to be idle (other processes under 25% of one core over 3 s)
#
# What it does (method and caveats: bench/RESULTS.md, "Report-to-alert latency"):
#  1. builds `warden` and the load generator (crates/warden-server/examples/loadgen.rs) through
#     `BUILD_ONLY=1 bench/server.sh`;
#  2. starts `warden server` on a fresh data dir (min_report_period 0s), registers max(FLEETS)
#     things offline (`loadgen provision`), and sets detection up through the REST API: alert
#     topic `LatencyAlerts` whose one subscriber is the webhook http://127.0.0.1:W/alerts, and
#     security profile `LatencyProfile` on all things with one behavior,
#     aws:all-bytes-out <= 35000 (durationSeconds 300, alarm and clear after 1 datapoint),
#     alerting to that topic; stops the server and keeps that data dir as the starting point;
#  3. per fleet: a fresh copy of that data dir, the server started on it, and `loadgen latency`:
#     connects the devices, sends one round of first reports (PRIME_RATE), then each rate of
#     RATES (warm-up, measured window, drain), timing replies and alerts; the server is stopped;
#  4. prints the table (bench/alert-latency-report.py): per step the achieved reports/s and reply
#     latency, the alert latency (publish -> webhook), alerts lost, the split of that latency at
#     the server's ingest time (the alert's violationEventTime) and at detection (the server's
#     `violation event` log line, joined by thing, event type and violation id), and the CPU of
#     the server, the generator and everything else.
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
FLEETS=${FLEETS:-1000,10000}
RATES=${RATES:-1000,5000,10000}
VIOLATORS_PCT=${VIOLATORS_PCT:-2}
STEP_SECS=${STEP_SECS:-20}
WARMUP_SECS=${WARMUP_SECS:-5}
PRIME_RATE=${PRIME_RATE:-2000}
QOS=${QOS:-0}
WORK=$(mktemp -d /tmp/warden-alert-latency.XXXXXX)
T_START=$SECONDS
BENCH_NAME=alert-latency
. "$BENCH/lib.sh"
MAX_FLEET=$(echo "$FLEETS" | tr ',' '\n' | sort -n | tail -1)

ulimit -Hn 200000 2>/dev/null; ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((MAX_FLEET + 1000)) ] || die "open-file limit $(ulimit -n) is too low for $MAX_FLEET devices"

cd "$ROOT" || die "no repo"
# ------------------------------------------------------------------------- build
BINS=$(DEVICES=$MAX_FLEET BUILD_ONLY=1 KEEP=0 "$BENCH/server.sh") || die "build failed"
read -r WARDEN LOADGEN <<<"$BINS"
[ -n "${WARDEN_BIN:-}" ] && WARDEN=$WARDEN_BIN
[ -x "$WARDEN" ] && [ -x "$LOADGEN" ] || die "missing binaries: $BINS"
case "${SRC:-head}" in
  head) BUILT_FROM="HEAD $(git rev-parse --short HEAD) (git archive), load generator from the working tree${OVERLAY:+, plus $OVERLAY}" ;;
  snapshot) BUILT_FROM="snapshot of the working tree at $(git rev-parse --short HEAD)" ;;
  *) BUILT_FROM="working tree at $(git rev-parse --short HEAD) with $(git status --porcelain --untracked-files=no | wc -l) modified files" ;;
esac
[ "${SKIP_BUILD:-0}" = 1 ] && BUILT_FROM="binaries built earlier (SKIP_BUILD=1; HEAD is now $(git rev-parse --short HEAD))"
[ -n "${WARDEN_BIN:-}" ] && BUILT_FROM="$BUILT_FROM; server binary $WARDEN_BIN"
log "binaries: $WARDEN $LOADGEN ($BUILT_FROM)"

# What wait_quiet saw goes into the table's header.
BUSY_BEFORE=()
record_quiet() { BUSY_BEFORE+=("$1=$2%"); }

# ------------------------------------------------------------------------- server set-up
DATA=$WORK/data
PRISTINE=$WORK/data-registered
MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)
WEBHOOK_PORT=$(free_port)
bench_config "$DATA" "$MQTT_PORT" "$HTTP_PORT" 300s >"$WORK/warden.toml"

api() { # method path [body] -> dies unless 2xx
  local code
  code=$(curl -s -o "$WORK/api.out" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $(cat "$DATA/api-token")" \
    -H 'content-type: application/json' "http://127.0.0.1:$HTTP_PORT$2" ${3:+-d "$3"})
  [ "${code:0:1}" = 2 ] || die "$1 $2: HTTP $code $(cat "$WORK/api.out")"
}

log "starting warden on a fresh data dir (mqtt $MQTT_PORT, http $HTTP_PORT, webhook $WEBHOOK_PORT)"
start_server warden-0
stop_server
log "registering $MAX_FLEET things offline"
"$LOADGEN" provision --data-dir "$DATA" --count "$MAX_FLEET" --out "$WORK/devices.jsonl" >&2 || die "provision failed"
start_server warden-setup
api POST /warden/alert-topics/LatencyAlerts
api POST /warden/alert-topics/LatencyAlerts/subscriptions \
  "{\"protocol\": \"http\", \"endpoint\": \"http://127.0.0.1:$WEBHOOK_PORT/alerts\"}"
api POST /security-profiles/LatencyProfile '{
  "behaviors": [{
    "name": "OutboundBytesBehavior",
    "metric": "aws:all-bytes-out",
    "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 35000}, "durationSeconds": 300,
                 "consecutiveDatapointsToAlarm": 1, "consecutiveDatapointsToClear": 1}
  }],
  "alertTargets": {"SNS": {"alertTargetArn": "arn:aws:sns:local:000000000000:LatencyAlerts",
                           "roleArn": "arn:aws:iam::000000000000:role/unused"}}
}'
api PUT "/security-profiles/LatencyProfile/targets?securityProfileTargetArn=arn:aws:iot:local:000000000000:all/things"
stop_server
cp -a "$DATA" "$PRISTINE"

# ------------------------------------------------------------------------- fleets
: >"$WORK/latency.jsonl"
for fleet in ${FLEETS//,/ }; do
  rm -rf "$DATA" && cp -a "$PRISTINE" "$DATA"
  start_server "warden-$fleet"
  sleep 2
  wait_quiet "fleet-$fleet"
  log "fleet of $fleet devices (${VIOLATORS_PCT}% violators), rates $RATES"
  "$LOADGEN" latency --port "$MQTT_PORT" --devices "$WORK/devices.jsonl" --ca "$DATA/pki/ca.crt" \
    --count "$fleet" --webhook-port "$WEBHOOK_PORT" --server-pid "$SERVER_PID" \
    --metrics "127.0.0.1:$HTTP_PORT" --rates "$RATES" --violators-pct "$VIOLATORS_PCT" \
    --prime-rate "$PRIME_RATE" --step-secs "$STEP_SECS" --warmup-secs "$WARMUP_SECS" --qos "$QOS" \
    --alerts-out "$WORK/alerts-$fleet.jsonl" \
    >>"$WORK/latency.jsonl" 2> >(tee "$WORK/loadgen-$fleet.err" >&2) || log "load generator ($fleet devices) failed"
  stop_server
  python3 "$BENCH/alert-latency-report.py" split "$fleet" "$WORK/alerts-$fleet.jsonl" "$WORK/warden-$fleet.err" \
    >>"$WORK/latency.jsonl" || log "could not split the latency at detection"
  sed -E 's/\x1b\[[0-9;]*m//g' "$WORK/warden-$fleet.err" | grep -E ' (WARN|ERROR) |panicked' | sed -E 's/^[^ ]+ +//' | cut -c1-140 \
    | sort | uniq -c | sort -rn | head -5 | sed "s/^/  server log ($fleet devices): /" >>"$WORK/server-log.txt"
done

# ------------------------------------------------------------------------- report
python3 "$BENCH/alert-latency-report.py" table "$WORK/latency.jsonl" "$BUILT_FROM" "${BUSY_BEFORE[*]}" "$((SECONDS - T_START))"
[ -s "$WORK/server-log.txt" ] && cat "$WORK/server-log.txt"
exit 0
