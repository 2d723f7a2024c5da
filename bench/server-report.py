#!/usr/bin/env python3
"""Helpers of bench/server.sh.

  server-report.py persisted DB          datapoints stored per metric (JSON on stdout)
  server-report.py table EXTRA W M       the side-by-side table from extra.json and the load
                                         generator's JSON lines for Warden (W) and Mosquitto (M)
"""
import json
import math
import sqlite3
import sys


def points(blob):
    """The (metric, dimension) of each datapoint in a `points` blob (warden-store's telemetry.rs:
    metric length u8, metric, dimension length u8, dimension, value length u32 LE, value JSON)."""
    i = 0
    while i < len(blob):
        n = blob[i]; metric = blob[i + 1:i + 1 + n].decode(); i += 1 + n
        n = blob[i]; dimension = blob[i + 1:i + 1 + n].decode(); i += 1 + n
        n = int.from_bytes(blob[i:i + 4], "little"); i += 4 + n
        yield metric, dimension


def persisted(db):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'points_[0-9]*'")]
    by_metric = {}
    series = set()
    rows = datapoints = 0
    for t in tables:
        for thing, blob in conn.execute(f"SELECT thing, points FROM {t}"):
            rows += 1
            for metric, dimension in points(blob):
                by_metric[metric] = by_metric.get(metric, 0) + 1
                series.add((thing, metric, dimension))
                datapoints += 1
    ingest = conn.execute("SELECT count(*) FROM ingest_state").fetchone()[0]
    print(json.dumps({"rows": datapoints, "report_rows": rows, "by_metric": by_metric,
                      "things_with_ingest_state": ingest, "series": len(series)}))


def load(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def fnum(v, digits=0):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}"


def knee(steps):
    """Highest offered rate whose replies kept up (>= 95% of offered) with p99 <= 100 ms."""
    best = None
    for s in steps:
        ok = s["accepted_per_s"] >= 0.95 * s["offered"] and (s["p99_ms"] or 1e9) <= 100
        if ok:
            best = s
    return best


def table(extra_path, warden_path, mosq_path, cloud_path=None):
    extra = json.load(open(extra_path))
    w, m = load(warden_path), load(mosq_path)
    c = load(cloud_path) if cloud_path else []
    mach = extra.get("machine", {})
    print(f"== Warden server benchmark: {mach.get('nproc')} cores, {mach.get('cpu')}, kernel {mach.get('kernel')}, "
          f"{fnum(mach.get('mem_mib'))} MiB RAM, {mach.get('rustc')} "
          f"==\n   built from: {extra.get('built_from')}")
    wsteps = [s for s in w if s["kind"] == "step"]
    msteps = [s for s in m if s["kind"] == "step"]
    wmem = [s for s in w if s["kind"] == "mem"]
    mmem = [s for s in m if s["kind"] == "mem"]
    devices = max([s["devices"] for s in wmem] or [0])

    print("\n-- Registry and start-up (Warden)")
    print(f"  server start, empty registry       : {fnum(extra.get('start_empty_ms'))} ms to /health; "
          f"RSS {fnum(extra.get('rss_empty_kb'))} kB, {extra.get('threads_empty')} threads")
    print(f"  register {devices:,} things offline    : {fnum(extra.get('provision_ms', 0) / 1000, 1)} s "
          f"(loadgen provision: certificates + store, not the API)")
    print(f"  server start, {devices:,} registered   : {fnum(extra.get('start_registered_ms'))} ms to /health "
          f"(authorizer loads the registry); idle RSS {fnum(extra.get('rss_registered_kb'))} kB")
    for key, when in (("rest_registration_idle", "no device connected"),
                      ("rest_registration_after", "after the load run")):
        r = extra.get(key)
        if r:
            parts = ", ".join(f"{k} {v.split()[1]} s (HTTP {v.split()[0]})" for k, v in r.items())
            print(f"  one REST registration, {devices:,} registered, {when}: {parts}")

    print("\n-- Memory with idle connected devices (VmRSS of the broker process; each device subscribed to its replies)")
    print(f"  {'phase':<28} {'devices':>8} | {'Warden RSS kB':>13} {'per device':>11} | {'Mosquitto RSS kB':>16} {'per device':>11} | {'sockstat TCP mem kB (W/M)':>26}")
    def per_dev(mem, s):
        base = next((x for x in mem if x["devices"] == 0), None)
        if not base or not s["devices"]:
            return "-"
        return f"{(s['server_rss_kb'] - base['server_rss_kb']) / s['devices']:.1f} kB"
    for s in wmem:
        ms = next((x for x in mmem if x["phase"] == s["phase"] and x["devices"] == s["devices"]), None)
        m_rss = f"{ms['server_rss_kb']:,}" if ms else "-"
        m_per = per_dev(mmem, ms) if ms else "-"
        m_tcp = f"{ms['tcp_mem_pages'] * 4:,}" if ms else "-"
        print(f"  {s['phase']:<28} {s['devices']:>8,} | {s['server_rss_kb']:>13,} {per_dev(wmem, s):>11} | "
              f"{m_rss:>16} {m_per:>11} | {s['tcp_mem_pages'] * 4:>12,} / {m_tcp:<11}")
    top = [s for s in wmem if s["phase"] == "connected, idle" and s["devices"] == devices]
    low = [s for s in wmem if s["phase"] == "connected, idle" and 0 < s["devices"] < devices]
    if top:
        t = top[0]
        base = next(x for x in wmem if x["devices"] == 0)
        per = (t["server_rss_kb"] - base["server_rss_kb"]) / t["devices"]
        if low:
            lo = low[0]
            marginal = (t["server_rss_kb"] - lo["server_rss_kb"]) / (t["devices"] - lo["devices"])
            print(f"  marginal RSS per device between {lo['devices']:,} and {t['devices']:,}: {marginal:.1f} kB")
        else:
            marginal = per
        after = next((x for x in wmem if x["phase"].startswith("connected, idle after")), None)
        if after:
            grown = (after["server_rss_kb"] - base["server_rss_kb"]) / after["devices"]
            print(f"  after the load steps (same devices idle again): {grown:.1f} kB per device "
                  f"(RSS {after['server_rss_kb']:,} kB; allocator keeps freed buffers)")
        kernel = (t["tcp_mem_pages"] - base["tcp_mem_pages"]) * 4 / t["devices"]
        slab = (t["slab_kb"] - base["slab_kb"]) / t["devices"]
        print(f"  kernel, per device (both ends of each loopback connection, whole machine): TCP buffers "
              f"(sockstat mem) {kernel:.1f} kB, Slab {slab:.1f} kB (noisy: other processes allocate too)")
        for n in (100_000,):
            est = base["server_rss_kb"] + marginal * n
            est_after = est if not after else base["server_rss_kb"] + max(marginal, grown) * n
            print(f"  extrapolated to {n:,} idle devices: RSS ~{est / 1024 / 1024:.2f} GiB "
                  f"(~{est_after / 1024 / 1024:.2f} GiB with the post-load per-device figure) "
                  f"-> target 100,000 in 24 GB: {'PASS (by extrapolation)' if est_after < 24 * 1024 * 1024 else 'MISS'}")

    print("\n-- Throughput (offered = aggregate reports/s over all devices; replies = /accepted for Warden, "
          "own message echoed for Mosquitto)")
    hdr = (f"  {'pass':<9} {'offered':>8} | {'W sent/s':>9} {'W acc/s':>9} {'p50 ms':>7} {'p99 ms':>8} "
           f"{'srv CPU':>8} {'gen CPU':>8} {'other':>6} | {'M sent/s':>9} {'M echo/s':>9} {'p50 ms':>7} "
           f"{'p99 ms':>8} {'mosq CPU':>8} {'gen CPU':>8} {'other':>6}")
    print(hdr)
    flag = lambda x: "!" if x["other_cpu_pct"] > 25 else " "
    keys = list(dict.fromkeys([(x["pass"], x["offered"]) for x in wsteps + msteps]))
    keys.sort(key=lambda k: ([x["pass"] for x in wsteps + msteps].index(k[0]), k[1]))
    for pass_, offered in keys:
        s = next((x for x in wsteps if x["pass"] == pass_ and x["offered"] == offered), None)
        ms = next((x for x in msteps if x["pass"] == pass_ and x["offered"] == offered), None)
        wpart = (f"{fnum(s['sent_per_s']):>9} {fnum(s['accepted_per_s']):>9} "
                 f"{fnum(s['p50_ms'], 1):>7} {fnum(s['p99_ms'], 1):>8} {fnum(s['server_cpu_pct']):>7}% "
                 f"{fnum(s['gen_cpu_pct']):>7}% {fnum(s['other_cpu_pct']):>5}%{flag(s)}"
                 if s else f"{'(stopped: saturated)':>62} ")
        mpart = (f"{fnum(ms['sent_per_s']):>9} {fnum(ms['accepted_per_s']):>9} {fnum(ms['p50_ms'], 1):>7} "
                 f"{fnum(ms['p99_ms'], 1):>8} {fnum(ms['server_cpu_pct']):>7}% {fnum(ms['gen_cpu_pct']):>7}% "
                 f"{fnum(ms['other_cpu_pct']):>5}%{flag(ms)}"
                 if ms else "-")
        print(f"  {pass_:<9} {offered:>8,} | {wpart}| {mpart}")
    print("  ! = other processes on the machine used more than 25% of a core during the step (shared machine):")
    print("      that step's figures are pessimistic. CPU in % of one core; 'other' is accurate to about +-10%.")
    print("  Warden server threads at each step (% of one core, by thread name):")
    for s in wsteps:
        th = ", ".join(f"{k} {v:.0f}" for k, v in sorted(s["server_threads_pct"].items(), key=lambda kv: -kv[1]))
        print(f"    {s['pass']:<9} {s['offered']:>7,}/s: {th}")
    print("  Warden counters per step (from /metrics; dropped = broker events dropped because the server fell behind):")
    for s in wsteps:
        print(f"    {s['pass']:<9} {s['offered']:>7,}/s: server accepted {fnum(s.get('server_accepted_per_s'))}/s, "
              f"rejected {fnum(s['rejected_per_s'])}/s, store errors {fnum(s.get('store_errors'))}, "
              f"dropped reports {fnum(s.get('dropped_reports'))}, dropped other events {fnum(s.get('dropped_other_events'))}, "
              f"generator queue full {s['send_full']:,}, generator behind {s['skipped']:,}, unmatched {s['unmatched']:,}, "
              f"p99.9 {fnum(s['p999_ms'], 1)} ms, max {fnum(s['max_ms'], 1)} ms")
    for pass_ in dict.fromkeys(s["pass"] for s in wsteps):
        kw = knee([s for s in wsteps if s["pass"] == pass_])
        km = knee([s for s in msteps if s["pass"] == pass_])
        best_w = max((s["accepted_per_s"] for s in wsteps if s["pass"] == pass_), default=0)
        best_m = max((s["accepted_per_s"] for s in msteps if s["pass"] == pass_), default=0)
        print(f"  knee ({pass_}; highest step with replies >= 95% of offered and p99 <= 100 ms): "
              f"Warden {fnum(kw['offered']) if kw else 'none'} reports/s (best {fnum(best_w)} replies/s), "
              f"Mosquitto {fnum(km['offered']) if km else 'none'} (best {fnum(best_m)} echoes/s)")
    kw = knee([s for s in wsteps if s["pass"] == "unpinned"])
    print(f"  target >= 20,000 reports/s on 2 cores (unpinned, generator on the same 2 cores): "
          f"{'PASS' if kw and kw['offered'] >= 20000 else 'MISS'}")

    csteps = [s for s in c if s["kind"] == "step"]
    if csteps:
        print(f"\n-- Cloud-side metrics every 5 s instead of 300 s ({devices:,} devices connected: "
              f"7 datapoints per connected thing per period, written from the task that feeds ingest)")
        for cs in csteps:
            ref = next((s for s in wsteps if s["pass"] == "unpinned" and s["offered"] == cs["offered"]), None)
            for name, s in (("period 300 s (main run)", ref), ("period 5 s", cs)):
                if s:
                    print(f"  {name:<24} offered {s['offered']:>6,}/s: replies {fnum(s['accepted_per_s'])}/s, "
                          f"p50 {fnum(s['p50_ms'], 1)} ms, p99 {fnum(s['p99_ms'], 1)} ms, max {fnum(s['max_ms'], 1)} ms, "
                          f"server CPU {fnum(s['server_cpu_pct'])}% (store writer "
                          f"{fnum(s['server_threads_pct'].get('warden-store-wr'))}%), other {fnum(s['other_cpu_pct'])}%, "
                          f"dropped reports {fnum(s.get('dropped_reports'))}, other events {fnum(s.get('dropped_other_events'))}"
                          f"{' !' if s['other_cpu_pct'] > 25 else ''}")

    print("\n-- Persistence and totals")
    for rec in [s for s in w if s["kind"] in ("drain", "totals")]:
        print(f"  Warden {rec['kind']}{' ' + rec.get('pass', '') if rec['kind'] == 'drain' else ''}: "
              + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.1f}" for k, v in rec.items()
                          if k not in ("kind", "label", "pass")))
    met = next((s for s in w if s["kind"] == "metrics"), None)
    if met:
        keep = {k: v for k, v in met["server"].items() if "reports" in k or "store" in k or "dropped" in k or "sessions" in k}
        print("  Warden /metrics at the end: " + ", ".join(f"{k} {v:,.0f}" for k, v in keep.items()))
    p = extra.get("persisted")
    if p:
        bo = p["by_metric"].get("aws:all-bytes-out", 0)
        print(f"  stored in SQLite after shutdown: {p['rows']:,} datapoints in {p.get('report_rows', 0):,} rows; "
              f"{bo:,} reports (one aws:all-bytes-out datapoint per accepted report); {p['series']:,} series; "
              f"database {fnum(extra.get('db_bytes', 0) / 1e6, 1)} MB; shutdown took {fnum(extra.get('stop_ms'))} ms")
    for rec in [s for s in m if s["kind"] in ("drain", "totals")]:
        print(f"  Mosquitto {rec['kind']}{' ' + rec.get('pass', '') if rec['kind'] == 'drain' else ''}: "
              + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.1f}" for k, v in rec.items()
                          if k not in ("kind", "label", "pass")))
    wc = [s for s in w if s["kind"] == "connect"]
    mc = [s for s in m if s["kind"] == "connect"]
    for name, cs in (("Warden", wc), ("Mosquitto", mc)):
        prev = 0
        for c in cs:
            n = c["devices"] - prev
            print(f"  {name} connect+subscribe to {c['devices']:,}: {n:,} in {c['secs']:.1f} s "
                  f"({n / c['secs']:,.0f}/s), broker CPU {c['server_cpu_s']:.1f} s "
                  f"({c['server_cpu_s'] * 1000 / max(n, 1):.2f} ms per connection), generator CPU {c['gen_cpu_s']:.1f} s")
            prev = c["devices"]
    if extra.get("server_log_lines"):
        print("  Warden server log, WARN/ERROR lines (count, message):")
        for l in extra["server_log_lines"]:
            print(f"    {l}")
    print(f"  Warden RSS at the end (devices disconnected): {fnum(extra.get('rss_final_kb'))} kB")
    busy = ", ".join(f"{k[len('busy_before_'):-len('_pct')]} {v}%" for k, v in extra.items() if k.startswith("busy_before_"))
    print(f"\n  other processes' CPU just before each phase (% of one core, over 3 s): {busy}")
    print(f"  total run time {extra.get('total_secs')} s; {extra.get('mosquitto_version', 'mosquitto not run')}")


if __name__ == "__main__":
    if sys.argv[1] == "persisted":
        persisted(sys.argv[2])
    elif sys.argv[1] == "table":
        table(*sys.argv[2:6])
