# The parts the benchmark scripts share; sourced by server.sh, sim.sh and alert-latency.sh after
# they set BENCH_NAME (the log prefix) and WORK (their scratch directory).
#
# log/die   messages on stderr, prefixed with the script's name and the time
# cleanup   on exit: kills the processes listed in PIDS, and removes WORK unless KEEP=1
# free_port a free TCP port on 127.0.0.1 (servers under test never use the defaults)
# bench_config DATA MQTT_PORT HTTP_PORT [CLOUD_PERIOD]
#           a warden.toml on stdout for a benchmark server: loopback ports, no minimum report
#           period (the generators report faster than devices would), and, if given, the
#           cloud-side metrics period
# now_ms    wall clock in ms
# start_server LOG-NAME [CONFIG]
#           starts $WARDEN on CONFIG (default $WORK/warden.toml), logs to $WORK/LOG-NAME.{out,err},
#           waits for /health on $HTTP_PORT; sets SERVER_PID and START_MS (how long it took)
# stop_server
#           SIGTERM and wait; sets STOP_MS
# wait_quiet PHASE
#           waits up to QUIET_WAIT s (300) for the machine to be under 25 % of a core busy, then
#           calls the script's record_quiet PHASE BUSY-PCT with what it saw

PIDS=()
log() { echo "[$BENCH_NAME $(date +%T)] $*" >&2; }
die() { log "FATAL: $*"; exit 1; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
bench_config() {
  cat <<CONFIG
data_dir = "$1"
[mqtt]
listen = "127.0.0.1:$2"
[http]
listen = "127.0.0.1:$3"
[ingest]
min_report_period = "0s"
CONFIG
  if [ -n "${4:-}" ]; then printf '[cloud_metrics]\nperiod = "%s"\n' "$4"; fi
}
now_ms() { date +%s%3N; }
busy_pct() { # CPU use of the whole machine over 3 s, in % of one core
  python3 - <<'EOF'
import time
def busy():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(v) - v[3] - v[4]
a = busy(); time.sleep(3); print(round((busy() - a) / 3))
EOF
}
SERVER_PID=
start_server() {
  local t0; t0=$(now_ms)
  "$WARDEN" server --config "${2:-$WORK/warden.toml}" >"$WORK/$1.out" 2>"$WORK/$1.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local end=$((SECONDS + 300))
  until curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -5 "$WORK/$1.err")"
    [ $SECONDS -le $end ] || die "server did not start in 300 s"
    sleep 0.05
  done
  START_MS=$(($(now_ms) - t0))
}
stop_server() {
  local t0; t0=$(now_ms)
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  STOP_MS=$(($(now_ms) - t0))
}
# The machine is shared (builds, tests): measure when it is quiet, or say that it was not.
wait_quiet() {
  local end=$((SECONDS + ${QUIET_WAIT:-300})) busy
  while :; do
    busy=$(busy_pct)
    [ "$busy" -lt 25 ] && break
    [ $SECONDS -ge $end ] && { log "machine still busy (${busy}% of a core); measuring $1 anyway"; break; }
    log "machine busy (${busy}% of a core used by other processes); waiting before $1"
    sleep 10
  done
  record_quiet "$1" "$busy"
}
