#!/usr/bin/env bash
# Device-agent benchmark: Warden agent vs the official AWS IoT Device Defender Python agent, on
# this machine, in one run (~3-4 min plus the build). Prints a table to stdout; logs go to stderr.
#
#   bench/agent.sh
#
# Env: KEEP=1          keep the work directory (default: removed; its path is printed)
#      SKIP_BUILD=1    use the existing target/release-agent/warden-agent
#      AGENT=PATH      measure this agent binary instead (implies SKIP_BUILD=1), e.g. an older
#                      build for a before/after comparison
#      SKIP_AWS=1      do not run the official agent
#      AGENT_VENV      venv of the official agent (default as in ../shared/tools/run-aws-agent.sh)
#      AWS_TOOL        path of run-aws-agent.sh (default ../shared/tools/run-aws-agent.sh)
#      SMALL_EHASH=N   TCP hash size of the extra CPU run in its own network namespace (default
#                      4096, a 512 MB device; 0 skips it). Needs root: it sets the sysctl
#                      net.ipv4.tcp_child_ehash_entries for the moment the namespace is created and
#                      restores it right away (new namespaces only; the host's table is untouched).
#
# What it does (details and method: bench/RESULTS.md):
#  1. builds the agent (cargo build --profile release-agent -p warden-agent), records its size;
#  2. makes an ECDSA P-256 PKI (CA, server cert for localhost, device cert CN=thing-1 used by BOTH
#     agents, responder cert) and starts Mosquitto with mutual TLS on a free 127.0.0.1 port;
#  3. starts bench/responder.py, which answers every report like Device Defender (/accepted);
#  4. runs each measurement through bench/relay.py, a byte-counting TCP relay that logs every
#     TLS record, and attributes the bytes with bench/analyze.py;
#  5. measures CPU and memory (peak RSS, PSS) with bench/measure.py (wait4 + /proc sampling),
#     with the default settings and with --include-loopback true, and also inside a network
#     namespace with a device-sized TCP hash table (bench/small-ehash.sh), because the kernel's
#     TCP hash table is sized from the RAM and walking it is most of the CPU of a sample;
#  6. runs the official agent the same way (../shared/tools/run-aws-agent.sh, venv from PyPI).
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
AWS_TOOL=${AWS_TOOL:-$ROOT/../shared/tools/run-aws-agent.sh}
[ -e "$AWS_TOOL" ] || AWS_TOOL=/work/shared/tools/run-aws-agent.sh
export AGENT_VENV=${AGENT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-dd-agent-venv}
if [ -n "${AGENT:-}" ]; then SKIP_BUILD=1; else AGENT=$ROOT/target/release-agent/warden-agent; fi
WORK=$(mktemp -d /tmp/warden-bench.XXXXXX)
PIDS=()
T_START=$SECONDS
# The host's TCP sockets at the start (and, in meta.json, at the end): other programs' sockets
# change the payloads and the CPU of listing sockets, so a busy host shows here.
SOCKSTAT_START=$(grep '^TCP:' /proc/net/sockstat 2>/dev/null)

log() { echo "[bench $(date +%T)] $*" >&2; }
die() { log "FATAL: $*"; exit 1; }
cleanup() {
  [ -n "${OLD_CHILD_EHASH:-}" ] && echo "$OLD_CHILD_EHASH" >/proc/sys/net/ipv4/tcp_child_ehash_entries 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # file pattern seconds
  local end=$((SECONDS + $3))
  while [ $SECONDS -le $end ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

# ---------------------------------------------------------------------------------------- build
cd "$ROOT" || die "no repo"
BUILD_NOTE=""
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building: cargo build --profile release-agent -p warden-agent"
  t0=$SECONDS
  if ! cargo build --profile release-agent -p warden-agent >"$WORK/build.log" 2>&1; then
    tail -20 "$WORK/build.log" >&2
    [ -x "$AGENT" ] || die "build failed and no binary to measure"
    BUILD_NOTE="BUILD FAILED, measured the previously built binary ($(date -r "$AGENT" -u +%FT%TZ))"
    log "$BUILD_NOTE"
  fi
  log "build took $((SECONDS - t0)) s"
fi
[ -x "$AGENT" ] || die "$AGENT missing"
BIN_SIZE=$(stat -c %s "$AGENT")

# ------------------------------------------------------------------------------------------ PKI
log "work directory $WORK"
PKI=$WORK/pki; mkdir -p "$PKI" "$WORK/runs" "$WORK/state" "$WORK/dry"
(
  cd "$PKI" || exit 1
  EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${EC[@]}" -keyout ca.key -out ca.pem -days 7 -subj "/CN=Warden Bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  mk() { # name CN extensions
    openssl req "${EC[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
    printf "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.crt" -days 7 -extfile "$1.ext"
  }
  mk server localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
  mk thing-1 thing-1 'extendedKeyUsage=clientAuth\n'
  mk responder dd-responder 'extendedKeyUsage=clientAuth\n'
) >"$WORK/pki.log" 2>&1 || die "PKI: $(tail -5 "$WORK/pki.log")"

# ------------------------------------------------------------------------------------- broker
BPORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root" )
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
listener $BPORT 127.0.0.1
cafile $PKI/ca.pem
certfile $PKI/server.crt
keyfile $PKI/server.key
require_certificate true
use_identity_as_username true
EOF
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && break; sleep 0.05; done
log "mosquitto on 127.0.0.1:$BPORT (mTLS, ECDSA P-256)"

: >"$WORK/resp.log"
python3 "$BENCH/responder.py" --port "$BPORT" --ca "$PKI/ca.pem" --cert "$PKI/responder.crt" \
  --key "$PKI/responder.key" --log "$WORK/resp.log" --ready "$WORK/resp.ready" 2>"$WORK/resp.err" & PIDS+=($!)
for _ in $(seq 200); do [ -e "$WORK/resp.ready" ] && break; sleep 0.05; done
[ -e "$WORK/resp.ready" ] || die "responder did not start: $(cat "$WORK/resp.err")"

# ------------------------------------------------------------------------------------ helpers
RELAY_PID=""
start_relay() { # run_dir [cut_after]
  RELAY_PORT=$(free_port)
  python3 "$BENCH/relay.py" --listen "$RELAY_PORT" --upstream "127.0.0.1:$BPORT" --log "$1/relay.log" \
    ${2:+--cut-after "$2"} 2>"$1/relay.err" & RELAY_PID=$!
  wait_for "$1/relay.err" "relay listening" 10 || die "relay did not start: $(cat "$1/relay.err")"
  RESP_BEFORE=$(wc -l <"$WORK/resp.log")
}
stop_relay() { # run_dir
  sleep 0.4
  kill "$RELAY_PID" 2>/dev/null; wait "$RELAY_PID" 2>/dev/null
  tail -n "+$((RESP_BEFORE + 1))" "$WORK/resp.log" >"$1/resp.log"
}
# Our agent's connection settings. Most runs add LOOPBACK, so that both agents report the same
# sockets (the official agent counts loopback); runs named *-default keep the agent's defaults,
# which leave loopback traffic and connections out, as a device in production runs.
OURS=(--thing thing-1 --endpoint localhost --ca "$PKI/ca.pem" --cert "$PKI/thing-1.crt" --key "$PKI/thing-1.key"
      --state-dir "$WORK/state" --jitter 0s)
LOOPBACK=(--include-loopback true)
run_ours() { # name cut_after agent-args...
  local name=$1 cut=$2; shift 2
  local d=$WORK/runs/$name; mkdir -p "$d"
  local lo=("${LOOPBACK[@]}"); [[ $name == *-default ]] && lo=()
  start_relay "$d" "$cut"
  log "ours: $name: ${lo[*]} $*"
  timeout 120 "$AGENT" "${OURS[@]}" "${lo[@]}" --log-level debug --port "$RELAY_PORT" "$@" 2>"$d/agent.err" \
    || log "WARNING: $name: agent exited with $? ($(tail -2 "$d/agent.err"))"
  stop_relay "$d"
}
run_aws() { # name cut_after measure_json FORMAT INTERVAL COUNT
  local name=$1 cut=$2 mj=$3; local d=$WORK/runs/$name; mkdir -p "$d" "$d/published"
  start_relay "$d" "$cut"
  log "AWS agent: $name: FORMAT=$4 INTERVAL=$5 COUNT=$6"
  HOST=localhost PORT=$RELAY_PORT CA=$PKI/ca.pem CERT=$PKI/thing-1.crt KEY=$PKI/thing-1.key THING=thing-1 \
    FORMAT=$4 INTERVAL=$5 COUNT=$6 REQUIRE_REPLY=1 PUBLISH_LOG=$d/published \
    timeout 120 python3 "$BENCH/measure.py" "$WORK/$mj" --stdout "$d/aws.out" --stderr "$d/aws.err" -- \
    bash "$AWS_TOOL" || log "WARNING: $name: run-aws-agent.sh exited with $? ($(tail -2 "$d/aws.err"))"
  stop_relay "$d"
}

# ----------------------------------------------------------------------------- payload sizes
log "payload sizes (--dry-run --interval 1s, four encodings, with and without loopback)"
DRY=()
for f in json cbor; do for n in long short; do
  "$AGENT" --dry-run --interval 1s --format $f --names $n --state-dir "$WORK/state" >"$WORK/dry/$f-$n" 2>/dev/null &
  DRY+=($!)
  "$AGENT" --dry-run --interval 1s --format $f --names $n --state-dir "$WORK/state" --include-loopback true \
    >"$WORK/dry/$f-$n-lo" 2>/dev/null &
  DRY+=($!)
done; done
for p in "${DRY[@]}"; do wait "$p" || log "WARNING: a dry run failed"; done

# ------------------------------------------------------------------------ our agent, wire cost
run_ours ours-cbor-short "" --format cbor --names short --interval 2s --max-reports 5
run_ours ours-cbor-short-default "" --interval 2s --max-reports 5
run_ours ours-cbor-long "" --format cbor --names long --interval 2s --max-reports 5
run_ours ours-json-short "" --format json --names short --interval 2s --max-reports 5
run_ours ours-json-long "" --format json --names long --interval 2s --max-reports 5
mkdir -p "$WORK/runs/ours-cbor-short-noreply" && : >"$WORK/runs/ours-cbor-short-noreply/noreply"
run_ours ours-cbor-short-noreply "" --format cbor --names short --interval 2s --max-reports 5 --replies false
# reconnect: the relay cuts the first connection 4.5 s after it opened (between reports 2 and 3)
run_ours ours-reconnect 4.5 --format cbor --names short --interval 3s --max-reports 4
# keepalive cost: pings at 5, 10, 15 s between two reports 16 s apart
run_ours ours-keepalive "" --format cbor --names short --interval 16s --keepalive 5s --max-reports 2
# no pings while reports flow: keepalive 5 s > interval 4 s, 6 reports (20 s: 4 keepalive periods)
run_ours ours-noping "" --format cbor --names short --interval 4s --keepalive 5s --max-reports 6

# --------------------------------------------------------------------- our agent, resources
# res-ours-*: with --include-loopback true, like most wire runs; res-def-*: the default settings.
for set in ours def; do
  lo=("${LOOPBACK[@]}"); [ $set = def ] && lo=()
  log "ours ($set): CPU/RSS: 3 x 1 report, 1 x 21 reports at --interval 1s (direct to the broker) ${lo[*]}"
  for i in 1 2 3; do
    python3 "$BENCH/measure.py" "$WORK/res-$set-1-$i.json" --stderr "$WORK/res-$set-1-$i.err" -- \
      "$AGENT" "${OURS[@]}" "${lo[@]}" --port "$BPORT" --interval 1s --max-reports 1 --log-level info \
      || log "WARNING: $set 1-report run $i failed"
  done
  python3 "$BENCH/measure.py" "$WORK/res-$set-21.json" --stderr "$WORK/res-$set-21.err" -- \
    "$AGENT" "${OURS[@]}" "${lo[@]}" --port "$BPORT" --interval 1s --max-reports 21 --log-level info \
    || log "WARNING: $set 21-report run failed"
done

# The same on a device-sized TCP hash table: a fresh network namespace created while
# net.ipv4.tcp_child_ehash_entries=4096 (what the kernel allocates on a 512 MB device: one bucket per
# 128 KB of RAM) gets its own 4,096-bucket table. The sysctl is restored as soon as the namespace exists.
SMALL_EHASH=${SMALL_EHASH:-4096}
CHILD_EHASH=/proc/sys/net/ipv4/tcp_child_ehash_entries
if [ "$SMALL_EHASH" != 0 ] && [ -w "$CHILD_EHASH" ] && command -v unshare >/dev/null && command -v ip >/dev/null; then
  log "ours: CPU/RSS again in a network namespace with a ${SMALL_EHASH}-bucket TCP hash table"
  OLD_CHILD_EHASH=$(cat "$CHILD_EHASH")
  echo "$SMALL_EHASH" >"$CHILD_EHASH"
  unshare -n bash "$BENCH/small-ehash.sh" "$WORK" "$AGENT" "$BENCH" "$WORK/res-small" & UPID=$!
  for _ in $(seq 100); do [ -e "$WORK/res-small.netns-ready" ] && break; sleep 0.05; done
  echo "$OLD_CHILD_EHASH" >"$CHILD_EHASH"
  wait "$UPID" || log "WARNING: small-hash run failed"
else
  log "skipping the small TCP hash table run (needs root, unshare, ip and kernel >= 6.1)"
fi

# Context for the CPU figure: the kernel CPU of one sample's TCP socket listing, done the two ways
# the agent can: reading /proc/net/tcp and tcp6 to EOF with 8 KB reads (its fallback; every read()
# walks the whole TCP established hash table, the empty one at EOF too), or one NETLINK_SOCK_DIAG
# dump of LISTEN + ESTABLISHED sockets per family (what it uses when the kernel offers it; one
# walk per family). Also a single 1 MB read() per file: not a way to read a file whole (the
# kernel returns at most a page per read()), but it shows what one walk costs.
python3 - "$WORK/proc-cost.json" <<'PYEOF'
import json, socket, struct, sys, time
def passes(eof):
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(f, "rb", buffering=0) as h:
            if eof:
                while h.read(8192):
                    pass
            else:
                h.read(1 << 20)
def sock_diag():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
    for family in (socket.AF_INET, socket.AF_INET6):
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, (1 << 10) | (1 << 1)) + bytes(48)
        s.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)  # SOCK_DIAG_BY_FAMILY, dump
        done = False
        while not done:
            data, off = s.recv(8192), 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                done |= kind in (2, 3)  # NLMSG_ERROR, NLMSG_DONE
                off += (length + 3) & ~3
    s.close()
def cost(f, n=20):
    f()
    t = time.process_time()
    for _ in range(n):
        f()
    return (time.process_time() - t) / n * 1000
try:
    ehash = int(open("/proc/sys/net/ipv4/tcp_ehash_entries").read())
except Exception:
    ehash = None
json.dump({"read_to_eof_ms": cost(lambda: passes(True)), "single_read_ms": cost(lambda: passes(False)),
           "sock_diag_ms": cost(sock_diag), "tcp_ehash_entries": ehash}, open(sys.argv[1], "w"))
PYEOF

# ------------------------------------------------------------------------- official AWS agent
AWS_NOTE=""
if [ "${SKIP_AWS:-0}" = 1 ]; then
  AWS_NOTE="skipped (SKIP_AWS=1)"
elif [ ! -e "$AWS_TOOL" ]; then
  AWS_NOTE="skipped: $AWS_TOOL not found"
else
  if ! "$AGENT_VENV/bin/python" -c 'import AWSIoTDeviceDefenderAgentSDK.agent' 2>/dev/null; then
    # Same install as run-aws-agent.sh, done here so it is not part of a measured run.
    log "installing the official agent into $AGENT_VENV (PyPI, once)"
    python3 -m venv "$AGENT_VENV" && "$AGENT_VENV/bin/pip" install -q 'awsiotdevicedefenderagentsdk==2.0.0' \
      >"$WORK/aws-install.log" 2>&1 || AWS_NOTE="skipped: venv install failed ($(tail -1 "$WORK/aws-install.log"))"
  fi
  if [ -z "$AWS_NOTE" ]; then
    # 6 reports: the connection lives ~15 s, long enough for 2 pings of its 6 s keepalive
    run_aws aws-json "" res-aws-json-6.json json 2 6
    run_aws aws-json-1 "" res-aws-json-1.json json 2 1
    run_aws aws-cbor "" res-aws-cbor-5.json cbor 2 5
    # reconnect: cut 11 s after connecting (just after report 1; its reconnect waits >= 5 s, so
    # INTERVAL=8 leaves it time to reconnect before report 2, else the agent dies on publish)
    run_aws aws-reconnect 11 res-aws-reconnect.json json 8 2
    AWS_VERSIONS=$("$AGENT_VENV/bin/pip" list 2>/dev/null | grep -iE '^(awsiotdevicedefenderagentsdk|awsiotsdk|awscrt|psutil|cbor) ' | tr -s ' ' | tr '\n' ';')
  fi
fi

# ------------------------------------------------------------------------------------ report
python3 - "$WORK" <<PYEOF
import json, os, platform, subprocess, sys, time
work = sys.argv[1]
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return "?"
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip()
dry = {}
for f in os.listdir(os.path.join(work, "dry")):
    dry[f] = os.path.getsize(os.path.join(work, "dry", f))
meta = {
  "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
  "machine": "%s cores, %s, kernel %s" % (os.cpu_count(), cpu, platform.release()),
  "mem": sh("free -m | awk '/Mem:/{print \$2\" MiB\"}'"),
  "sockstat_start": "$SOCKSTAT_START", "sockstat_end": sh("grep '^TCP:' /proc/net/sockstat"),
  "rustc": sh("rustc --version"), "commit": sh("cd $ROOT && git rev-parse --short HEAD"),
  "dirty": sh("cd $ROOT && git status --porcelain -- crates Cargo.toml Cargo.lock | wc -l"),
  "mosquitto": sh("mosquitto -h | head -1"), "openssl": sh("openssl version"),
  "python": platform.python_version(), "aws_versions": "${AWS_VERSIONS:-}", "aws_note": "$AWS_NOTE",
  "binary": "$AGENT", "binary_size": $BIN_SIZE, "build_note": "$BUILD_NOTE", "dry": dry,
}
json.dump(meta, open(os.path.join(work, "meta.json"), "w"), indent=1)
PYEOF
python3 "$BENCH/analyze.py" report "$WORK" || die "analysis failed"
{
  echo "  build: $BUILD_NOTE"; echo "  AWS agent: ${AWS_NOTE:-ran} ${AWS_VERSIONS:-}"
  echo "  commit $(git rev-parse --short HEAD) ($(git status --porcelain -- crates Cargo.toml Cargo.lock | wc -l) files modified in crates/ and Cargo.*)"
  echo "  total benchmark time: $((SECONDS - T_START)) s"
} | grep -v 'build: $'
if [ -n "${RESULTS_COPY:-}" ]; then mkdir -p "$RESULTS_COPY" && cp -r "$WORK"/. "$RESULTS_COPY"/; fi
exit 0
