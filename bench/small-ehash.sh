#!/usr/bin/env bash
# Helper of bench/agent.sh, run inside `unshare -n` (a fresh network namespace) that was created
# while net.ipv4.tcp_child_ehash_entries was set, so this namespace has its own, small TCP
# established hash table (like a small device: the kernel sizes it at one bucket per 128 KB of RAM).
# Repeats the agent's CPU/RSS measurement (3 x 1 report, 1 x 21 reports at 1 s) against a
# private Mosquitto + responder on this namespace's loopback.
#
#   small-ehash.sh WORK AGENT BENCH OUT_PREFIX
set -uo pipefail
WORK=$1 AGENT=$2 BENCH=$3 OUT=$4
PKI=$WORK/pki
touch "$OUT.netns-ready"
ip link set lo up || exit 1
echo "tcp_ehash_entries=$(cat /proc/sys/net/ipv4/tcp_ehash_entries)" >"$OUT.info"
PORT=18883
sed -e "s/^listener .*/listener $PORT 127.0.0.1/" "$WORK/mosquitto.conf" >"$OUT.mosquitto.conf"
mosquitto -c "$OUT.mosquitto.conf" >"$OUT.mosquitto.log" 2>&1 & MPID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
python3 "$BENCH/responder.py" --port $PORT --ca "$PKI/ca.pem" --cert "$PKI/responder.crt" \
  --key "$PKI/responder.key" --log "$OUT.resp.log" --ready "$OUT.resp.ready" 2>"$OUT.resp.err" & RPID=$!
for _ in $(seq 200); do [ -e "$OUT.resp.ready" ] && break; sleep 0.05; done
ARGS=(--thing thing-1 --endpoint localhost --port $PORT --ca "$PKI/ca.pem" --cert "$PKI/thing-1.crt"
      --key "$PKI/thing-1.key" --state-dir "$WORK/state" --jitter 0s --include-loopback true
      --interval 1s --log-level info)
for i in 1 2 3; do
  python3 "$BENCH/measure.py" "$OUT-1-$i.json" --stderr "$OUT-1-$i.err" -- "$AGENT" "${ARGS[@]}" --max-reports 1
done
python3 "$BENCH/measure.py" "$OUT-21.json" --stderr "$OUT-21.err" -- "$AGENT" "${ARGS[@]}" --max-reports 21
kill $RPID $MPID 2>/dev/null
wait 2>/dev/null
exit 0
