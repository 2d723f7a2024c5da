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
