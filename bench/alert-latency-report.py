#!/usr/bin/env python3
"""Helpers of bench/alert-latency.sh.

  alert-latency-report.py split DEVICES ALERTS SERVER_LOG
        joins the load generator's alerts (--alerts-out: send, ingest and arrival instants) with
        the server's `violation event` log lines (logged when detection hands the event to the
        alert queue) and prints one JSON line per step: percentiles of ingest -> detected and
        detected -> webhook arrival (the alert delivery path alone), in ms
  alert-latency-report.py table LATENCY_JSONL BUILT_FROM BUSY SECS
        the table
"""
import datetime
import json
import os
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EVENT = re.compile(r"^(\S+)\s+INFO .*violation event .*thing=(\S+) .*event=(\S+) violation=(\S+)")


def percentiles(values):
    v = sorted(values)
    if not v:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    def pct(p):
        i = min(max(int(-(-len(v) * p // 1)), 1), len(v)) - 1
        return round(v[i] / 1000, 2)
    return {"n": len(v), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)}


def split(devices, alerts_path, log_path):
    logged = {}
    for line in open(log_path, errors="replace"):
        m = EVENT.match(ANSI.sub("", line))
        if not m:
            continue
        ts, thing, kind, violation = m.groups()
        t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        logged[(thing, kind, violation)] = int(t.timestamp() * 1_000_000)
    by_step = {}
    for line in open(alerts_path):
        a = json.loads(line)
        at = logged.get((a["thing"], a["type"], a["violation"]))
        s = by_step.setdefault(a["step"], {"detect": [], "deliver": [], "unjoined": 0})
        if at is None:
            s["unjoined"] += 1
            continue
        s["detect"].append(at - (a["event_ms"] * 1000 + 500))
        s["deliver"].append(a["arrived_us"] - at)
    for step, s in sorted(by_step.items()):
        print(json.dumps({"kind": "split", "devices": int(devices), "step": step, "unjoined": s["unjoined"],
                          "detect_ms": percentiles(s["detect"]), "deliver_ms": percentiles(s["deliver"])}))


def ms(d, k):
    v = d.get(k) if d else None
    return "-" if v is None else f"{v:,.1f}"


def table(path, built, busy, secs):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    splits = {(r["devices"], r["step"]): r for r in rows if r.get("kind") == "split"}
    print(f"Report-to-alert latency: built from {built}; {os.cpu_count()} CPUs; {secs} s in all")
    print(f"machine busy before each fleet (% of one core, other processes): {busy}")
    print()
    print("                            |   reports   reply ms    |        alert ms (publish -> webhook)       |"
          " publish->ingest | ingest->detected | detected->webhook |      CPU")
    print("  devices phase     offered |  sent/s  acc/s  p50   p99 |  alerts lost   p50    p90    p99      max |"
          "    p50     p99  |    p50     p99   |    p50     p99    | srv  gen other")
    for r in rows:
        if r.get("kind") != "step":
            continue
        a, ti, rp = r["alert_ms"], r["to_ingest_ms"], r["reply_ms"]
        sp = splits.get((r["devices"], r["step"]), {})
        de, dl = sp.get("detect_ms"), sp.get("deliver_ms")
        phase = "first" if r["phase"].startswith("first") else "steady"
        print(f"  {r['devices']:>7,} {phase:<6} {r['offered']:>8,} | {r['sent_per_s']:>6,.0f} {r['accepted_per_s']:>6,.0f}"
              f" {ms(rp, 'p50'):>5} {ms(rp, 'p99'):>5}"
              f" | {a['n']:>6,} {r['alerts_lost']:>4} {ms(a, 'p50'):>5} {ms(a, 'p90'):>6} {ms(a, 'p99'):>6} {ms(a, 'max'):>8}"
              f" | {ms(ti, 'p50'):>6} {ms(ti, 'p99'):>7}  | {ms(de, 'p50'):>6} {ms(de, 'p99'):>7}   |"
              f" {ms(dl, 'p50'):>6} {ms(dl, 'p99'):>7}    |"
              f" {r['server_cpu_pct']:>3.0f}% {r['gen_cpu_pct']:>3.0f}% {r['other_cpu_pct']:>4.0f}%")
    print()
    for r in rows:
        if r.get("kind") == "step":
            s = r["server"]
            t = r["server_threads_pct"]
            top = ", ".join(f"{k} {v:.0f}" for k, v in sorted(t.items(), key=lambda kv: -kv[1])[:3])
            print(f"  {r['devices']:>6,} {r['offered']:>6,}/s: alerts queued {s['alerts_queued']:.0f}, delivered {s['delivered']:.0f},"
                  f" dropped {s['alerts_dropped']:.0f}, failed {s['failed_attempts']:.0f}; reports dropped {s['dropped_reports']:.0f},"
                  f" rejected {r['rejected_per_s']:.0f}/s; drain {r['drain_secs']:.1f} s; server threads % {top}")
        elif r.get("kind") == "totals":
            print(f"  {r['devices']:>6,} totals: sent {r['sent']:,}, accepted {r['accepted']:,}, rejected {r['rejected']:,};"
                  f" alerts received {r['alerts_received']:,}, unexpected {r['alerts_unexpected']},"
                  f" wrong type {r['alerts_wrong_type']}, malformed {r['alerts_malformed']}; connection errors {r['connection_errors']}")
    print()
    print("  Percentiles in ms over every alert raised by a report sent in the step's measured window.")
    print("  alert: publish -> arrival at the webhook (the generator's monotonic clock). The split, on the machine's")
    print("  wall clock shared by both processes: publish -> ingest (the alert's violationEventTime, ms, +0.5:")
    print("  broker and event-channel queueing, decode); ingest -> detected (the server's `violation event` log")
    print("  line: detection queue and engine); detected -> webhook (alert queue, subscription lookup, HTTP POST).")


if __name__ == "__main__":
    if sys.argv[1] == "split":
        split(*sys.argv[2:5])
    elif sys.argv[1] == "table":
        table(*sys.argv[2:6])
    else:
        sys.exit(__doc__)
