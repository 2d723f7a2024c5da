#!/usr/bin/env bash
# The virtual fleet at scale: 10,000 simulated devices from one simulator process against a local
# release server, on this machine.
#
#  1. builds the release `warden` and the simulator (`warden-sim`'s `sim` example) unless
#     SKIP_BUILD=1;
#  2. starts `warden server` on a temp data dir, free loopback ports,
#     `[ingest] min_report_period = "0s"` (devices report faster than AWS's 300 s);
#  3. runs each phase of PHASES (DEVICES:PERIOD:TELEMETRY, e.g. 10000:60s:off): the simulator
#     registers the devices through the REST API on the first phase (later phases reuse their
#     identities from its state dir), connects them (one MQTT/TLS connection per device, two with
#     telemetry), and, once all are connected and WARMUP_SECS have passed, is measured for
#     WINDOW_SECS: CPU (utime + stime from /proc/PID/stat) and memory (VmRSS, VmHWM) of the
#     simulator and of the server, the machine's busy time (so other load shows), and the reports
#     sent and accepted (from the simulator's summary lines). Then SIGTERM: every device says
#     DISCONNECT.
#  4. prints one table: per phase, registration and connection figures, then the steady state
#     per device and per report.
#
# Environment: PHASES, WARMUP_SECS (10), WINDOW_SECS (120), SPEEDUP (5: each report covers
# PERIOD x 5 of simulated traffic; no effect on load), KEEP=1 keeps the work dir, SKIP_BUILD=1.
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
PHASES=${PHASES:-"10000:60s:off 10000:10s:off 5000:60s:5s"}
WARMUP_SECS=${WARMUP_SECS:-10}
WINDOW_SECS=${WINDOW_SECS:-120}
SPEEDUP=${SPEEDUP:-5}
WARDEN=$ROOT/target/release/warden
SIM=$ROOT/target/release/examples/sim
WORK=$(mktemp -d /tmp/warden-sim-bench.XXXXXX)
T_START=$SECONDS
BENCH_NAME=sim-bench
. "$BENCH/lib.sh"

# One socket per device connection in the simulator and in the server, plus their files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
for phase in $PHASES; do
  IFS=: read -r n _ telemetry <<<"$phase"
  links=1; [ "$telemetry" != off ] && links=2
  [ $((n * links + 500)) -le "$(ulimit -n)" ] || die "phase $phase needs $((n * links + 500)) open files; the limit is $(ulimit -n)"
done

cd "$ROOT" || die "no repo"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  # Two commands: `--example` would restrict the first package to examples too.
  log "building warden and the simulator (release, working tree)"
  cargo build --release -p warden >&2 || die "build of warden failed"
  cargo build --release -p warden-sim --example sim >&2 || die "build of the simulator failed"
fi
[ -x "$WARDEN" ] && [ -x "$SIM" ] || die "missing $WARDEN or $SIM"

DATA=$WORK/data
MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)
bench_config "$DATA" "$MQTT_PORT" "$HTTP_PORT" >"$WORK/warden.toml"
log "starting warden (mqtt $MQTT_PORT, http $HTTP_PORT)"
start_server server

# One phase: runs the simulator, samples /proc every second, prints one JSON line.
cat >"$WORK/phase.py" <<'EOF'
import json, os, queue, re, signal, subprocess, sys, threading, time

sim, endpoint, data, mqtt, state, devices, period, telemetry, speedup, warmup, window, server_pid, logpath = sys.argv[1:]
devices, warmup, window, server_pid = int(devices), float(warmup), float(window), int(server_pid)
TICK = os.sysconf("SC_CLK_TCK")

def cpu_s(pid):
    try:
        text = open(f"/proc/{pid}/stat").read()
        fields = text[text.rfind(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return None

def status_kb(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None

def busy_s():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / TICK

def snap(pid):
    return {"t": time.monotonic(), "sim": cpu_s(pid), "server": cpu_s(server_pid), "busy": busy_s(),
            "sim_rss": status_kb(pid, "VmRSS"), "server_rss": status_kb(server_pid, "VmRSS")}

SUMMARY = re.compile(r"\] connected (\d+)/(\d+)(?: \(app (\d+)/(\d+)\))? \| reports (\d+) sent, (\d+) accepted, (\d+) rejected(?:, (\d+) skipped)?(?: \| telemetry (\d+))?")
IDENT = re.compile(r"identities (\d+)/(\d+): (\d+) reused, (\d+) registered")
args = [sim, "--endpoint", endpoint, "--data-dir", data, "--mqtt", mqtt, "--state-dir", state,
        "--devices", str(devices), "--period", period, "--telemetry", telemetry, "--speedup", speedup,
        "--summary-every", "1s", "--connect-concurrency", "64", "--register-concurrency", "4"]
out = {"devices": devices, "period": period, "telemetry": telemetry}
log = open(logpath, "w")
server0 = {"cpu": cpu_s(server_pid), "rss": status_kb(server_pid, "VmRSS")}
t0 = time.monotonic()
proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
lines_q = queue.Queue()
def reader():
    for line in proc.stdout:
        log.write(line); log.flush(); lines_q.put(line)
threading.Thread(target=reader, daemon=True).start()
last = None; ready = None; started = None; registered = None; window_start = None
def line_events():
    out = []
    while True:
        try:
            out.append(lines_q.get_nowait())
        except queue.Empty:
            return out
while True:
    time.sleep(0.25)
    if proc.poll() is not None:
        out["error"] = f"simulator exited with {proc.returncode}"
        break
    for line in line_events():
        m = IDENT.search(line)
        if m and int(m.group(1)) == int(m.group(2)) and registered is None:
            registered = {"t": time.monotonic() - t0, "reused": int(m.group(3)), "registered": int(m.group(4)),
                          "sim_cpu": cpu_s(proc.pid), "server_cpu": cpu_s(server_pid) - server0["cpu"]}
        if m and int(m.group(1)) == int(m.group(2)) and started is None:
            # Identities are ready: the fleet starts connecting now.
            started = snap(proc.pid)
        m = SUMMARY.search(line)
        if m:
            last = {"t": time.monotonic(), "connected": int(m.group(1)), "app": int(m.group(3) or 0),
                    "sent": int(m.group(5)), "accepted": int(m.group(6)), "rejected": int(m.group(7)),
                    "skipped": int(m.group(8) or 0), "telemetry": int(m.group(9) or 0)}
            links_up = last["connected"] == devices and (telemetry == "off" or last["app"] == devices)
            if ready is None and links_up:
                ready = snap(proc.pid); ready["summary"] = last
    if ready is not None and window_start is None and time.monotonic() - ready["t"] >= warmup and last:
        window_start = snap(proc.pid); window_start["summary"] = last
    if window_start is not None and time.monotonic() - window_start["t"] >= window:
        # The summary line is printed every second: wait for a fresh one.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.2)
            for line in line_events():
                m = SUMMARY.search(line)
                if m:
                    last = {"t": time.monotonic(), "connected": int(m.group(1)), "app": int(m.group(3) or 0),
                            "sent": int(m.group(5)), "accepted": int(m.group(6)), "rejected": int(m.group(7)),
                            "skipped": int(m.group(8) or 0), "telemetry": int(m.group(9) or 0)}
        end = snap(proc.pid); end["summary"] = last
        end["sim_hwm"] = status_kb(proc.pid, "VmHWM"); end["server_hwm"] = status_kb(server_pid, "VmHWM")
        end["sim_threads"] = status_kb(proc.pid, "Threads")
        break
    if ready is None and time.monotonic() - t0 > 1800:
        out["error"] = "devices did not all connect in 30 minutes"
        break
t_stop = time.monotonic()
proc.send_signal(signal.SIGTERM)
try:
    proc.wait(timeout=120)
except subprocess.TimeoutExpired:
    proc.kill(); proc.wait()
out["stop_s"] = time.monotonic() - t_stop
for line in line_events():
    pass
if "error" not in out:
    w = end["t"] - window_start["t"]
    s0, s1 = window_start["summary"], end["summary"]
    sim_cpu = end["sim"] - window_start["sim"]
    server_cpu = end["server"] - window_start["server"]
    busy = end["busy"] - window_start["busy"]
    sent = s1["sent"] - s0["sent"]
    out.update({
        "registration": registered,
        "connect_s": ready["t"] - started["t"],
        "connect_sim_cpu_s": ready["sim"] - started["sim"],
        "connect_server_cpu_s": ready["server"] - started["server"],
        "connections": devices * (1 if telemetry == "off" else 2),
        "window_s": w,
        "reports_per_s": sent / w,
        "accepted_per_s": (s1["accepted"] - s0["accepted"]) / w,
        "telemetry_per_s": (s1["telemetry"] - s0["telemetry"]) / w,
        "rejected_total": s1["rejected"], "skipped_total": s1["skipped"],
        "rejected_window": s1["rejected"] - s0["rejected"], "skipped_window": s1["skipped"] - s0["skipped"],
        "sim_cpu_us_per_message": 1e6 * sim_cpu / max(sent + s1["telemetry"] - s0["telemetry"], 1),
        "server_cpu_us_per_message": 1e6 * server_cpu / max(sent + s1["telemetry"] - s0["telemetry"], 1),
        "connected_end": s1["connected"], "app_end": s1["app"],
        "sim_cpu_pct": 100 * sim_cpu / w, "server_cpu_pct": 100 * server_cpu / w,
        "other_cpu_pct": 100 * (busy - sim_cpu - server_cpu) / w,
        "sim_cpu_us_per_report": 1e6 * sim_cpu / max(sent, 1),
        "server_cpu_us_per_report": 1e6 * server_cpu / max(sent, 1),
        "sim_rss_kb": end["sim_rss"], "sim_hwm_kb": end["sim_hwm"], "sim_threads": end["sim_threads"],
        "sim_rss_at_start_kb": started["sim_rss"],
        "server_rss_before_kb": server0["rss"], "server_rss_kb": end["server_rss"], "server_hwm_kb": end["server_hwm"],
    })
print(json.dumps(out), flush=True)
EOF

machine_busy() { # % of one core used by everything over 3 s
  python3 -c '
import time
def b():
    v=[int(x) for x in open("/proc/stat").readline().split()[1:9]]; return sum(v)-v[3]-v[4]
a=b(); time.sleep(3); print(round((b()-a)/3))'
}

: >"$WORK/phases.jsonl"
i=0
for phase in $PHASES; do
  i=$((i + 1))
  IFS=: read -r n period telemetry <<<"$phase"
  log "phase $i: $n devices, a report every $period, telemetry $telemetry (machine busy before: $(machine_busy)% of a core)"
  python3 "$WORK/phase.py" "$SIM" "http://127.0.0.1:$HTTP_PORT" "$DATA" "127.0.0.1:$MQTT_PORT" "$WORK/sim-state" \
    "$n" "$period" "$telemetry" "$SPEEDUP" "$WARMUP_SECS" "$WINDOW_SECS" "$SERVER_PID" "$WORK/sim-$i.log" \
    >>"$WORK/phases.jsonl" || log "phase $i failed"
  tail -1 "$WORK/phases.jsonl" >&2
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server died: $(tail -5 "$WORK/server.err")"
done
stop_server
server_warnings=$(grep -cE " WARN | ERROR |panicked" "$WORK/server.err")

python3 - "$WORK/phases.jsonl" "$server_warnings" "$((SECONDS - T_START))" <<'EOF'
import json, os, platform, subprocess, sys
phases = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
print(f"== Warden simulator benchmark: {os.cpu_count()} cores, {cpu}, kernel {platform.release()}, {mem:,} MiB RAM, {rustc} ==")
print(f"   server: release warden, min_report_period 0s; simulator: release, one process; total {sys.argv[3]} s; server log warnings/errors: {sys.argv[2]}")
for i, p in enumerate(phases, 1):
    print(f"\n-- phase {i}: {p['devices']:,} devices, a report every {p['period']}, telemetry {p['telemetry']}")
    if "error" in p:
        print(f"   FAILED: {p['error']}")
        continue
    r = p.get("registration") or {}
    if r:
        line = f"   identities: {r['reused']:,} reused, {r['registered']:,} registered through the REST API in {r['t']:.1f} s"
        if r["registered"]:
            line += f" ({r['registered'] / r['t']:.0f}/s; server CPU {r['server_cpu']:.1f} s, simulator CPU {r['sim_cpu']:.1f} s)"
        print(line)
    n, c = p["devices"], p["connections"]
    telemetry = p["telemetry"] != "off"
    print(f"   connect: {c:,} mTLS connections in {p['connect_s']:.1f} s ({c / p['connect_s']:.0f}/s); "
          f"simulator CPU {1000 * p['connect_sim_cpu_s'] / c:.2f} ms and server CPU {1000 * p['connect_server_cpu_s'] / c:.2f} ms per connection")
    line = f"   steady ({p['window_s']:.0f} s window): {p['reports_per_s']:.0f} reports/s sent, {p['accepted_per_s']:.0f}/s accepted"
    if telemetry:
        line += f", {p['telemetry_per_s']:.0f} telemetry/s"
    line += (f"; in the window {p['rejected_window']} rejected, {p['skipped_window']} skipped"
             f" (since the start: {p['rejected_total']} rejected, {p['skipped_total']} skipped, due before their device had connected)"
             f"; connected at the end {p['connected_end']:,}/{n:,}")
    if telemetry:
        line += f" (app {p['app_end']:,})"
    print(line)
    per = (f"{p['sim_cpu_us_per_message']:.0f} us per message (report or telemetry)" if telemetry
           else f"{p['sim_cpu_us_per_report']:.0f} us per report")
    print(f"   simulator: CPU {p['sim_cpu_pct']:.1f}% of a core = {10 * p['sim_cpu_pct'] / n:.4f} ms/s per device, {per}; "
          f"RSS {p['sim_rss_kb'] / 1024:.0f} MiB (peak {p['sim_hwm_kb'] / 1024:.0f} MiB) = {p['sim_hwm_kb'] / n:.1f} kB per device, "
          f"{p['sim_hwm_kb'] / c:.1f} kB per connection at peak; {p['sim_threads']} threads")
    per = (f"{p['server_cpu_us_per_message']:.0f} us per message" if telemetry
           else f"{p['server_cpu_us_per_report']:.0f} us per report")
    print(f"   server:    CPU {p['server_cpu_pct']:.1f}% of a core = {per}; RSS {p['server_rss_kb'] / 1024:.0f} MiB "
          f"(before the phase {p['server_rss_before_kb'] / 1024:.0f} MiB, peak {p['server_hwm_kb'] / 1024:.0f} MiB)")
    print(f"   other processes on the machine: {p['other_cpu_pct']:.0f}% of a core; "
          f"simulator stop (SIGTERM to exit, DISCONNECT from every device): {p['stop_s']:.1f} s")
EOF
