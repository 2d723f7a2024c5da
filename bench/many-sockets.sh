#!/usr/bin/env bash
# The agent's CPU and memory when the host holds many TCP connections, isolated from the rest of
# the machine in a private network namespace (so other programs' sockets do not count). For each
# N, it opens N loopback connection pairs (2N established sockets) plus the broker, and runs each
# given agent binary for 11 reports at 1 s (--replies false, default settings, which list the
# loopback sockets and then leave them out of the report).
#
#   bench/many-sockets.sh "0 1000 5000" AGENT [AGENT...]     (needs root for unshare -n)
#
# 2N + a few file descriptors must fit the hard limit of open files (ulimit -Hn).
#
# Prints, per N and binary: CPU per report ((11-report run - 1-report run) / 10), peak RSS
# (VmHWM) and peak PSS. The namespace shares the host's TCP hash table (tcp_child_ehash_entries
# is left at 0), so every listing still walks the host-sized table.
set -uo pipefail
if [ -z "${IN_NETNS:-}" ]; then exec env IN_NETNS=1 unshare -n bash "$0" "$@"; fi
COUNTS=$1; shift
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/warden-many.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
ulimit -Sn "$(ulimit -Hn)"
ip link set lo up
(
  cd "$WORK" || exit 1
  EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${EC[@]}" -keyout ca.key -out ca.pem -days 1 -subj "/CN=many CA"
  openssl req "${EC[@]}" -keyout s.key -out s.csr -subj "/CN=localhost"
  printf 'subjectAltName=DNS:localhost\n' >s.ext
  openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out s.crt -days 1 -extfile s.ext
  openssl req "${EC[@]}" -keyout d.key -out d.csr -subj "/CN=thing-1"
  printf 'extendedKeyUsage=clientAuth\n' >d.ext
  openssl x509 -req -in d.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out d.crt -days 1 -extfile d.ext
) >/dev/null 2>&1
cat >"$WORK/m.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root" )
allow_anonymous true
persistence false
listener 18883 127.0.0.1
cafile $WORK/ca.pem
certfile $WORK/s.crt
keyfile $WORK/s.key
require_certificate true
use_identity_as_username true
CONF
mosquitto -c "$WORK/m.conf" >"$WORK/m.log" 2>&1 &
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18883) 2>/dev/null && break; sleep 0.05; done
ARGS=(--thing thing-1 --endpoint localhost --port 18883 --ca "$WORK/ca.pem" --cert "$WORK/d.crt" --key "$WORK/d.key"
      --state-dir "$WORK/state" --jitter 0s --interval 1s --replies false --log-level warn)
printf '%-8s %-40s %10s %12s %10s\n' N agent "CPU/report" "VmHWM kB" "PSS kB"
for n in $COUNTS; do
  rm -f "$WORK/ready"
  python3 - "$n" "$WORK/ready" <<'PY' &
import socket, sys, time
n, ready = int(sys.argv[1]), sys.argv[2]
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4096)
keep = []
for _ in range(n):
    c = socket.create_connection(ls.getsockname()); keep += [c, ls.accept()[0]]
open(ready, "w").close()
time.sleep(3600)
PY
  HOLDER=$!
  for _ in $(seq 600); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
  for agent in "$@"; do
    python3 "$BENCH/measure.py" "$WORK/r1.json" --stderr "$WORK/agent.err" -- "$agent" "${ARGS[@]}" --max-reports 1 || tail -3 "$WORK/agent.err"
    python3 "$BENCH/measure.py" "$WORK/r11.json" --stderr "$WORK/agent.err" -- "$agent" "${ARGS[@]}" --max-reports 11 || tail -3 "$WORK/agent.err"
    python3 - "$n" "$agent" "$WORK/r1.json" "$WORK/r11.json" <<'PY'
import json, sys
n, agent, a, b = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
print("%-8s %-40s %7.2f ms %12s %10s" % (n, agent[-40:], (b["cpu_s"] - a["cpu_s"]) / 10 * 1000,
      format(b["vmhwm_kb"], ","), format(b["pss_peak_kb"], ",")))
PY
  done
  kill "$HOLDER"; wait "$HOLDER" 2>/dev/null
done
