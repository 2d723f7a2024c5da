#!/usr/bin/env python3
"""Attributes the bytes a byte-counting relay saw (bench/relay.py) to protocol events.

    analyze.py wire RUN_DIR            -> RUN_DIR/wire.json (and prints a short summary)
    analyze.py report WORK_DIR         -> prints the benchmark table, writes WORK_DIR/results.json

Method (see bench/RESULTS.md): the relay logs every TLS record with its length and arrival time
(record headers are plaintext). The responder logs, in order, the size of every report it got
and of the reply it sent. A TLS 1.3 record carries one MQTT packet here (neither rustls, s2n nor
mosquitto coalesce the packets these clients write one at a time), and costs a fixed 22 bytes
(5 header + 1 content type + 16 AEAD tag), so the MQTT packet sizes predict the record sizes:
  * report k  = the first device->broker record after report k-1 whose length is
                PUBLISH(topic, payload_k) + overhead, plus the first broker->device record after
                it of length PUBLISH(topic/accepted, reply_k) + overhead;
  * keepalive = a device->broker record of 2 + overhead bytes (PINGREQ) answered by a
                broker->device record of the same size (PINGRESP) within 2 s;
  * close     = what follows the last reply on the last connection within 0.5 s of the close
                (DISCONNECT, close_notify alerts): a persistent device never pays it;
  * connect   = every other record of a connection up to its first reply (TCP+TLS handshake incl.
                session tickets, CONNECT/CONNACK, SUBSCRIBE/SUBACK);
  * other     = anything else (should be 0).
"""
import glob
import json
import os
import statistics
import sys

OVERHEADS = (22, 29, 21)  # TLS 1.3 AEAD; TLS 1.2 AES-GCM; TLS 1.2 ChaCha20-Poly1305
DAY = 86400


def varint_len(n):
    k = 1
    while n >= 128:
        n //= 128
        k += 1
    return k


def publish_len(topic, payload_len, qos=0):
    rem = 2 + len(topic.encode()) + payload_len + (2 if qos else 0)
    return 1 + varint_len(rem) + rem


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wire(run_dir):
    events = load_jsonl(os.path.join(run_dir, "relay.log"))
    replies = load_jsonl(os.path.join(run_dir, "resp.log"))
    recs = [e for e in events if e["ev"] in ("rec", "raw")]
    for i, r in enumerate(recs):
        r["i"] = i
        r["cls"] = None
    closes = {e["conn"]: e for e in events if e["ev"] == "close"}
    opens = {e["conn"]: e for e in events if e["ev"] == "open"}
    conns = sorted(opens)
    # The TLS overhead: from the smallest application-data records (2-byte MQTT packets).
    overhead = 22
    warnings = []

    # 1. reports: publish + reply, matched in order by exact record length.
    reports = []
    pos = 0
    for k, rp in enumerate(replies):
        topic = rp["reply_topic"][: -len("/accepted")]
        pub = None
        for qos in (0, 1):
            want = {publish_len(topic, rp["report_len"], qos) + o for o in OVERHEADS}
            for r in recs[pos:]:
                if r["cls"] is None and r["dir"] == "up" and r["ev"] == "rec" and r["len"] in want:
                    pub = r
                    break
            if pub:
                break
        if pub is None:
            warnings.append("report %d (%d B) not found on the wire" % (k + 1, rp["report_len"]))
            continue
        overhead = pub["len"] - publish_len(topic, rp["report_len"], qos)
        pub["cls"] = "report"
        want_reply = publish_len(rp["reply_topic"], rp["reply_len"]) + overhead
        rep = None
        for r in recs[pub["i"] + 1:]:
            if r["cls"] is None and r["dir"] == "down" and r["conn"] == pub["conn"] and r["len"] == want_reply:
                rep = r
                break
        noreply = os.path.exists(os.path.join(run_dir, "noreply"))
        if rep is None or noreply:
            rep = None
            if not noreply:
                warnings.append("reply to report %d (%d B) not found on the wire" % (k + 1, rp["reply_len"]))
            rep_len = 0
        else:
            rep["cls"] = "report"
            rep_len = rep["len"]
        pos = pub["i"] + 1
        reports.append({"conn": pub["conn"], "t": pub["t"], "payload": rp["report_len"],
                        "reply_payload": rp["reply_len"], "up": pub["len"], "down": rep_len,
                        "total": pub["len"] + rep_len})

    # 2. close tail: after the last reply on the last connection, within 0.5 s of its close.
    tail = {"up": 0, "down": 0}
    if conns:
        last = conns[-1]
        last_reply_t = max([r["t"] for r in recs if r["conn"] == last and r["cls"] == "report"], default=None)
        ct = closes.get(last, {}).get("t")
        if ct is not None and closes[last].get("by") != "relay-cut":
            for r in recs:
                if r["conn"] == last and r["cls"] is None and r["t"] >= ct - 0.5 and (
                        last_reply_t is None or r["t"] >= last_reply_t):
                    r["cls"] = "close"
                    tail[r["dir"]] += r["len"]

    # 3. keepalive: PINGREQ answered by PINGRESP.
    pings = []
    ping_len = 2 + overhead
    for r in recs:
        if r["cls"] is None and r["dir"] == "up" and r["len"] == ping_len:
            for s in recs[r["i"] + 1:]:
                if s["t"] > r["t"] + 2:
                    break
                if s["cls"] is None and s["dir"] == "down" and s["conn"] == r["conn"] and s["len"] == ping_len:
                    r["cls"] = s["cls"] = "ping"
                    pings.append({"conn": r["conn"], "t": r["t"], "up": r["len"], "down": s["len"]})
                    break

    # 4. connect: the rest of each connection up to its first reply; then "other".
    out_conns = []
    other = {"up": 0, "down": 0}
    for c in conns:
        crecs = [r for r in recs if r["conn"] == c]
        first_reply_t = min([r["t"] for r in crecs if r["cls"] == "report" and r["dir"] == "down"],
                            default=float("inf"))
        con = {"up": 0, "down": 0}
        for r in crecs:
            if r["cls"] is None:
                if r["t"] <= first_reply_t:
                    r["cls"] = "connect"
                    con[r["dir"]] += r["len"]
                else:
                    r["cls"] = "other"
                    other[r["dir"]] += r["len"]
        ce = closes.get(c, {})
        tls13 = any(r["dir"] == "down" and r["type"] == 20 for r in crecs if r["ev"] == "rec")
        out_conns.append({
            "conn": c, "up_total": ce.get("up"), "down_total": ce.get("down"), "closed_by": ce.get("by"),
            "duration_s": round(ce.get("t", 0) - opens[c]["t"], 3) if ce else None,
            "connect_up": con["up"], "connect_down": con["down"], "connect": con["up"] + con["down"],
            "records": [[r["dir"][0], r.get("type"), r["len"], r["cls"], round(r["t"] - opens[c]["t"], 3)]
                        for r in crecs],
            "ccs_seen": tls13,
        })
    total = sum(r["len"] for r in recs)
    check = (sum(c["connect"] for c in out_conns) + sum(r["total"] for r in reports)
             + sum(p["up"] + p["down"] for p in pings) + tail["up"] + tail["down"] + other["up"] + other["down"])
    if check != total:
        warnings.append("attribution does not add up: %d != %d" % (check, total))
    # Ping period (seconds between consecutive pings on one connection).
    periods = [b["t"] - a["t"] for a, b in zip(pings, pings[1:]) if a["conn"] == b["conn"]]
    res = {
        "run": os.path.basename(run_dir.rstrip("/")),
        "total_bytes": total,
        "tls_record_overhead": overhead,
        "conns": out_conns,
        "reports": reports,
        "pings": pings,
        "ping_period_s": round(statistics.median(periods), 3) if periods else None,
        "close": tail,
        "other": other,
        "warnings": warnings,
    }
    with open(os.path.join(run_dir, "wire.json"), "w") as f:
        json.dump(res, f, indent=1)
    return res


def steady(reports):
    """Mean bytes per report, without the first one (ours has no network_stats)."""
    rs = reports[1:] if len(reports) > 1 else reports
    if not rs:
        return None
    return {k: statistics.mean(r[k] for r in rs) for k in ("payload", "reply_payload", "up", "down", "total")}


def agent_report_times(path):
    """Epoch times of our agent's "report published" log lines (RFC 3339 UTC timestamps)."""
    import datetime
    out = []
    if os.path.exists(path):
        for line in open(path, errors="replace"):
            if "report published" in line:
                stamp = line.split()[0].rstrip("Z")
                try:
                    d = datetime.datetime.fromisoformat(stamp[:26]).replace(tzinfo=datetime.timezone.utc)
                    out.append(d.timestamp())
                except ValueError:
                    pass
    return out


def cpu_window(series, t0, t1):
    """CPU seconds spent between t0 and t1, from [epoch, ns] samples (last sample before each)."""
    before = lambda t: max((x for x in series if x[0] <= t), default=None, key=lambda x: x[0])
    a, b = before(t0), before(t1)
    if a is None or b is None or b[0] <= a[0]:
        return None
    return (b[1] - a[1]) / 1e9


def fmt_b(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def resources(work, prefix, label, p):
    """Prints and returns the CPU and memory figures of the runs res-PREFIX-1-*.json (1 report)
    and res-PREFIX-21.json (21 reports)."""
    def j(path):
        path = os.path.join(work, path)
        return json.load(open(path)) if os.path.exists(path) else None
    r1s = [j(f) for f in sorted(os.listdir(work)) if f.startswith("res-%s-1-" % prefix) and f.endswith(".json")]
    r1s = [r for r in r1s if r and r["rc"] == 0]
    r21 = j("res-%s-21.json" % prefix)
    if not (r21 and r1s and r21["rc"] == 0):
        p("  %s: RSS/CPU runs failed or missing" % label)
        return None
    p("  %s:" % label)
    c1 = statistics.median(r["cpu_s"] for r in r1s)
    per = (r21["cpu_s"] - c1) / 20
    out = {"cpu_1_report_s": c1, "cpu_21_reports_s": r21["cpu_s"], "cpu_per_report_ms": per * 1000,
           "rss": {k: v for k, v in r21.items() if k != "cpu_series"}}
    p("    memory, 21 reports @1s       : peak RSS %s kB VmHWM (VmRSS at the end %s kB; threads %s)   target <= 3 MB"
      % (fmt_b(r21["vmhwm_kb"]), fmt_b(r21.get("vmrss_last_kb")), r21["threads_peak"]))
    if r21.get("pss_anon_peak_kb") is not None:
        p("      peak PSS %s kB (anon %s + file %s); private %s kB (dirty %s, clean %s); shared clean %s kB;"
          " RssAnon %s kB, RssFile %s kB"
          % (fmt_b(r21["pss_peak_kb"]), fmt_b(r21["pss_anon_peak_kb"]), fmt_b(r21["pss_file_peak_kb"]),
             fmt_b(r21["private_dirty_peak_kb"] + r21["private_clean_peak_kb"]),
             fmt_b(r21["private_dirty_peak_kb"]), fmt_b(r21["private_clean_peak_kb"]),
             fmt_b(r21["shared_clean_peak_kb"]), fmt_b(r21["rss_anon_peak_kb"]), fmt_b(r21["rss_file_peak_kb"])))
    else:
        p("      peak anon %s kB, peak file-backed %s kB; peak PSS %s kB"
          % (fmt_b(r21["rss_anon_peak_kb"]), fmt_b(r21["rss_file_peak_kb"]), fmt_b(r21["pss_peak_kb"])))
    if r21.get("rss_by_mapping_kb"):
        pss = r21.get("pss_by_mapping_kb") or {}
        p("      RSS (PSS) by mapping, kB: " + ", ".join(
            "%s %s%s" % (k, fmt_b(v), " (%s)" % fmt_b(pss[k]) if k in pss else "")
            for k, v in list(r21["rss_by_mapping_kb"].items())[:7]))
    p("    CPU, run with 1 report       : %.2f ms (median of %d; start + TLS connect + 1 report + exit)"
      % (c1 * 1000, len(r1s)))
    p("    CPU, run with 21 reports     : %.2f ms (user %.2f + sys %.2f)"
      % (r21["cpu_s"] * 1000, r21["utime_s"] * 1000, r21["stime_s"] * 1000))
    p("    CPU per report ((21-1) / 20) : %.3f ms   target <= 2 ms" % (per * 1000))
    ts = agent_report_times(os.path.join(work, "res-%s-21.err" % prefix))
    if len(ts) >= 3 and r21.get("cpu_series"):
        win = cpu_window(r21["cpu_series"], ts[1] - 0.2, ts[-1] - 0.2)
        if win is not None:
            out["cpu_per_report_window_ms"] = win / (len(ts) - 2) * 1000
            p("    CPU per report, cross-check  : %.3f ms (CPU of all threads from report 2 to report %d, / %d)"
              % (out["cpu_per_report_window_ms"], len(ts), len(ts) - 2))
    return out


def report(work):
    def j(path):
        p = os.path.join(work, path)
        return json.load(open(p)) if os.path.exists(p) else None

    meta = j("meta.json") or {}
    runs = {}
    for d in sorted(glob.glob(os.path.join(work, "runs", "*"))):
        if os.path.exists(os.path.join(d, "relay.log")):
            runs[os.path.basename(d)] = wire(d)
    res = {"meta": meta, "runs": runs}
    L = []
    p = L.append
    p("")
    p("== Warden agent benchmark: %s, %s, %s RAM ==" % (meta.get("date", "?"), meta.get("machine", "?"), meta.get("mem", "?")))
    if meta.get("sockstat_start") or meta.get("sockstat_end"):
        p("   host TCP sockets (/proc/net/sockstat) at start: %s; at end: %s"
          % (meta.get("sockstat_start") or "?", meta.get("sockstat_end") or "?"))
    p("")
    # --- resources
    size = meta.get("binary_size")
    p("-- Resources (our agent: %s)" % meta.get("binary", "?"))
    p("  stripped binary size           : %s bytes (%.2f MB, %.2f MiB)   target <= 2.5 MB"
      % (fmt_b(size), (size or 0) / 1e6, (size or 0) / 2**20))
    res["resources_ours"] = {"binary_size": size}
    for prefix, label in (("def", "default settings"), ("ours", "--include-loopback true")):
        r = resources(work, prefix, label, p)
        if r:
            res["resources_ours"]["loopback" if prefix == "ours" else "default"] = r
    pc = j("proc-cost.json")
    if pc:
        res["resources_ours"]["kernel_cost"] = pc
        p("  kernel CPU of listing TCP sockets once (both families; TCP ehash has %s buckets here):"
          % fmt_b(pc["tcp_ehash_entries"]))
        if pc.get("sock_diag_ms") is not None:
            p("    sock_diag dump, LISTEN + ESTABLISHED, one per family (the agent): %.2f ms" % pc["sock_diag_ms"])
        p("    /proc/net/tcp + tcp6 read to EOF with 8 KB reads (the agent's fallback): %.2f ms"
          " (one walk of the table per read(), EOF read included; a single read() of each file: %.2f ms)"
          % (pc["read_to_eof_ms"], pc["single_read_ms"]))
    s1s = [j(f) for f in sorted(os.listdir(work)) if f.startswith("res-small-1-") and f.endswith(".json")]
    s1s = [r for r in s1s if r and r["rc"] == 0]
    s21 = j("res-small-21.json")
    if s21 and s1s and s21["rc"] == 0:
        info = open(os.path.join(work, "res-small.info")).read().strip() if os.path.exists(
            os.path.join(work, "res-small.info")) else "?"
        c1 = statistics.median(r["cpu_s"] for r in s1s)
        per = (s21["cpu_s"] - c1) / 20
        ts = agent_report_times(os.path.join(work, "res-small-21.err"))
        win = cpu_window(s21["cpu_series"], ts[1] - 0.2, ts[-1] - 0.2) if len(ts) >= 3 else None
        p("  with a device-sized TCP hash table (own network namespace, %s):" % info)
        p("    CPU per report ((21 - 1) / 20) : %.3f ms%s; 1-report run %.2f ms; peak RSS %s kB VmHWM, peak PSS %s kB"
          "   target <= 2 ms"
          % (per * 1000, (" (cross-check %.3f ms)" % (win / (len(ts) - 2) * 1000)) if win else "",
             c1 * 1000, fmt_b(s21["vmhwm_kb"]), fmt_b(s21["pss_peak_kb"])))
        res["resources_ours"]["small_ehash"] = {"info": info, "cpu_per_report_ms": per * 1000, "cpu_1_report_s": c1,
                              "cpu_per_report_window_ms": (win / (len(ts) - 2) * 1000) if win else None,
                              "vmhwm_kb": s21["vmhwm_kb"]}
    a1, a5 = j("res-aws-json-1.json"), j("res-aws-json-6.json")
    if a5:
        p("  AWS agent (python, JSON, 6 reports @2s): peak RSS %s kB VmHWM (anon %s kB, file-backed %s kB, PSS %s kB; threads %s), CPU %.0f ms"
          % (fmt_b(a5["vmhwm_kb"]), fmt_b(a5["rss_anon_peak_kb"]), fmt_b(a5["rss_file_peak_kb"]),
             fmt_b(a5["pss_peak_kb"]), a5["threads_peak"], a5["cpu_s"] * 1000))
        if a1 and a1["rc"] == 0 and a5["rc"] == 0:
            per = (a5["cpu_s"] - a1["cpu_s"]) / 5
            p("  AWS agent CPU per report ((6 - 1) / 5) : %.1f ms (1-report run: %.0f ms)" % (per * 1000, a1["cpu_s"] * 1000))
            res["resources_aws"] = {"rss": {k: v for k, v in a5.items() if k != "cpu_series"},
                                    "cpu_per_report_ms": per * 1000, "cpu_1_report_s": a1["cpu_s"]}
        w = runs.get("aws-json")
        if w and len(w["reports"]) >= 2 and a5.get("cpu_series"):
            win = cpu_window(a5["cpu_series"], w["reports"][0]["t"] - 0.2, w["reports"][-1]["t"] - 0.2)
            if win is not None:
                per_w = win / (len(w["reports"]) - 1) * 1000
                p("  AWS agent CPU per report (CPU of all its threads from report 1 to report %d, / %d): %.1f ms"
                  % (len(w["reports"]), len(w["reports"]) - 1, per_w))
                res.setdefault("resources_aws", {})["cpu_per_report_window_ms"] = per_w
        inst = meta.get("aws_install_kb")
    p("")
    # --- payloads
    p("-- Report payload bytes (our agent --dry-run, one report incl. network_stats)")
    dry = meta.get("dry", {})
    p("  %-14s %10s %22s" % ("encoding", "default", "--include-loopback true"))
    for enc in ("json-long", "json-short", "cbor-long", "cbor-short"):
        p("  %-14s %10s %22s" % (enc, dry.get(enc, "n/a"), dry.get(enc + "-lo", "n/a")))
    for name, fmt in (("aws-json", "JSON"), ("aws-cbor", "CBOR")):
        if name in runs and runs[name]["reports"]:
            ps = [r["payload"] for r in runs[name]["reports"]]
            p("  AWS agent %s long: %s (min-max over %d reports on the wire)" % (fmt, f"{min(ps)}-{max(ps)}", len(ps)))
    p("")
    # --- wire
    p("-- Wire bytes (TCP payload, both directions, through the relay)")
    hdr = "  %-28s %8s %8s %8s %8s %8s %6s %10s %12s %14s"
    p(hdr % ("setup", "connect", "reconn.", "payload", "report", "framing", "ping", "pings/day", "B/day(1 cx)",
             "B/day(24 rcx)"))
    rows = []
    rc = runs.get("ours-reconnect")
    reconnect_ours = None
    if rc and len(rc["conns"]) >= 2:
        reconnect_ours = rc["conns"][1]["connect"]
    ka = runs.get("ours-keepalive")
    ping_ours = None
    if ka and ka["pings"]:
        ping_ours = statistics.mean(x["up"] + x["down"] for x in ka["pings"])
    noping = runs.get("ours-noping")
    setups = [("ours defaults (CBOR short)", "ours-cbor-short-default"),
              ("ours CBOR short, +loopback", "ours-cbor-short"),
              ("ours CBOR short, no replies", "ours-cbor-short-noreply"), ("ours CBOR long", "ours-cbor-long"),
              ("ours JSON short", "ours-json-short"), ("ours JSON long", "ours-json-long"),
              ("AWS agent JSON", "aws-json"), ("AWS agent CBOR", "aws-cbor")]
    res["projection"] = {}
    for label, key in setups:
        w = runs.get(key)
        if not w or not w["reports"]:
            p(hdr % (label, "n/a", "", "", "", "", "", "", "", ""))
            continue
        st = steady(w["reports"])
        connect = w["conns"][0]["connect"]
        if key.startswith("ours"):
            pings_day = 0
            ping_b = ping_ours
            reconn = reconnect_ours if key in ("ours-cbor-short", "ours-cbor-short-default") else None
            reconn_est = reconnect_ours  # same TLS/MQTT handshake for every encoding, bar topic lengths
        else:
            ping_b = statistics.mean(x["up"] + x["down"] for x in w["pings"]) if w["pings"] else 48
            period = 6.0  # the agent's fixed keepalive (README-aws-agent.md); see the observed period
            pings_day = DAY / period
            awsr = runs.get("aws-reconnect")
            reconn = awsr["conns"][1]["connect"] if awsr and len(awsr["conns"]) >= 2 and key == "aws-json" else None
            reconn_est = awsr["conns"][1]["connect"] if awsr and len(awsr["conns"]) >= 2 else connect
        day1 = connect + 288 * st["total"] + pings_day * (ping_b or 0)
        day24 = day1 + 24 * (reconn_est or connect)
        res["projection"][key] = {"connect": connect, "reconnect": reconn_est, "report": st["total"],
                                  "payload": st["payload"], "ping": ping_b, "pings_per_day": pings_day,
                                  "bytes_per_day_1_connect": day1, "bytes_per_day_24_reconnects": day24}
        p(hdr % (label, fmt_b(connect), fmt_b(reconn) if reconn else "-", fmt_b(st["payload"]),
                 fmt_b(st["total"]), fmt_b(st["total"] - st["payload"]), fmt_b(ping_b) if ping_b else "-",
                 fmt_b(pings_day), fmt_b(day1), fmt_b(day24)))
    p("  (payload = report body; report = its PUBLISH + the /accepted reply on the wire, framing = report - payload,")
    p("   means of reports 2..N; connect = TCP/TLS handshake incl. session")
    p("   tickets + CONNECT/CONNACK + SUBSCRIBE/SUBACK; B/day at a 300 s interval = connect + 288 x report")
    p("   + pings/day x ping [+ 24 x reconnect]; ours: keepalive >= interval, so 0 pings/day;")
    p("   AWS agent: 6 s keepalive -> 14,400 pings/day; its reconnect = measured second connection;")
    p("   defaults = no --include-loopback: this host's own sockets and traffic only, as on a device in production;")
    p("   +loopback = the loopback sockets too, so both agents report the same sockets)")
    pr = res["projection"]
    for key, label in (("ours-cbor-short-default", "defaults"), ("ours-cbor-short", "CBOR short +loopback")):
        if key in pr:
            o = pr[key]["bytes_per_day_1_connect"]
            o24 = pr[key]["bytes_per_day_24_reconnects"]
            p("  target <= 150 KB/device-day in CBOR: ours %s (payload %.0f B) %.1f KB (%.1f KiB) -> %s;"
              " with 24 reconnects/day %.1f KB -> %s"
              % (label, pr[key]["payload"], o / 1e3, o / 1024, "PASS" if o <= 150e3 else "MISS", o24 / 1e3,
                 "PASS" if o24 <= 150e3 else "MISS"))
    if "ours-cbor-short" in pr:
        o = pr["ours-cbor-short"]["bytes_per_day_1_connect"]
        osr = pr["ours-cbor-short"]
        w = runs["ours-cbor-short"]
        reply_rec = steady(w["reports"])["down"]
        # SUBSCRIBE (two filters, .../accepted and .../rejected, same length) and SUBACK records
        tl = len(load_jsonl(os.path.join(work, "runs", "ours-cbor-short", "resp.log"))[0]["reply_topic"])
        rem = 2 + 2 * (2 + tl + 1)
        sub = (1 + varint_len(rem) + rem + 22) + (4 + 2 + 22)
        n = o - 288 * reply_rec - sub
        p("    without the /accepted replies (--replies false removes the %s B reply record per report and %s B of"
          " SUBSCRIBE/SUBACK per connect), same payload: %.1f KB -> %s"
          % (fmt_b(reply_rec), fmt_b(sub), n / 1e3, "PASS" if n <= 150e3 else "MISS"))
        fr = osr["report"] - osr["payload"]
        be = (150e3 - osr["connect"]) / 288 - fr
        be_n = (150e3 - osr["connect"] + sub) / 288 - (fr - reply_rec)
        p("    150 KB/day is reached at a mean CBOR-short payload of %.0f B with replies, %.0f B without"
          " (measured here: %.0f B; a realistic device in performance-anchors.md: 301 B)"
          % (be, be_n, osr["payload"]))
        res["break_even_payload"] = {"with_replies": be, "without_replies": be_n}
        for key in ("aws-json", "aws-cbor"):
            if key in pr:
                a = pr[key]["bytes_per_day_1_connect"]
                p("  official agent %s: %.1f KB/day = %.1fx ours (CBOR short)" % (key[4:].upper(), a / 1e3, a / o))
    p("")
    # --- details
    p("-- Details")
    for key in ("ours-cbor-short-default", "ours-cbor-short", "aws-json", "aws-cbor"):
        w = runs.get(key)
        if w:
            c = w["conns"][0]
            p("  %-23s first connect: up %s + down %s B; reports: %s" % (
                key, fmt_b(c["connect_up"]), fmt_b(c["connect_down"]),
                ", ".join("%d+%d" % (r["up"], r["down"]) for r in w["reports"])))
    if rc:
        cs = rc["conns"]
        p("  reconnect (relay cut after report 2): connection 1 connect %s B (up %s, down %s); connection 2 connect %s B (up %s, down %s); %s"
          % (fmt_b(cs[0]["connect"]), fmt_b(cs[0]["connect_up"]), fmt_b(cs[0]["connect_down"]),
             fmt_b(cs[1]["connect"]) if len(cs) > 1 else "n/a",
             fmt_b(cs[1]["connect_up"]) if len(cs) > 1 else "n/a",
             fmt_b(cs[1]["connect_down"]) if len(cs) > 1 else "n/a",
             meta.get("reconnect_note", "")))
        if len(cs) > 1:
            hs = [r for r in cs[1]["records"] if r[3] == "connect"]
            p("    connection 2 records (dir, type, len): %s" % " ".join("%s%s:%d" % (r[0], r[1], r[2]) for r in hs))
            hs = [r for r in cs[0]["records"] if r[3] == "connect"]
            p("    connection 1 records (dir, type, len): %s" % " ".join("%s%s:%d" % (r[0], r[1], r[2]) for r in hs))
    awsr = runs.get("aws-reconnect")
    if awsr:
        cs = awsr["conns"]
        p("  AWS agent reconnect: connection 1 connect %s B; connection 2 connect %s B"
          % (fmt_b(cs[0]["connect"]), fmt_b(cs[1]["connect"]) if len(cs) > 1 else "n/a (no second connection)"))
    if ka:
        ps = ka["pings"]
        p("  keepalive run (ours, --keepalive 5s --interval 16s): %d PINGREQ/PINGRESP pairs between reports, %s B each, period %s s"
          % (len(ps), fmt_b(ping_ours), ka["ping_period_s"]))
    if noping:
        dur = noping["conns"][0]["duration_s"] if noping["conns"] else None
        p("  no-ping check (ours, --keepalive 5s --interval 4s, %d reports, %s s): %d PINGREQ seen (expected 0)"
          % (len(noping["reports"]), dur, len(noping["pings"])))
        res["noping_pings"] = len(noping["pings"])
    for key in ("aws-json", "aws-cbor"):
        w = runs.get(key)
        if w:
            dur = w["conns"][0]["duration_s"]
            t0 = json_open_t(work, key)
            ts = ["%.1f" % (x["t"] - t0) for x in w["pings"]]
            p("  %s: %d pings in a %s s connection (at t=%s s), observed period %s s"
              % (key, len(w["pings"]), dur, ", ".join(ts) or "-", w["ping_period_s"]))
    ka_seen = connect_keepalives(work, runs)
    if ka_seen:
        p("  MQTT keepalive announced in CONNECT (mosquitto log): " + "; ".join(
            "%s %s" % (k, "/".join(sorted(set(v)))) for k, v in ka_seen.items()))
        res["connect_keepalives"] = ka_seen
    for key, w in runs.items():
        for wmsg in w["warnings"]:
            p("  WARNING %s: %s" % (key, wmsg))
        if w["other"]["up"] or w["other"]["down"]:
            p("  note %s: %d+%d bytes not attributed (other)" % (key, w["other"]["up"], w["other"]["down"]))
    p("")
    print("\n".join(L))
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(work, "table.txt"), "w") as f:
        f.write("\n".join(L) + "\n")


def connect_keepalives(work, runs):
    """Keepalive (seconds) of the device's CONNECTs per run, from mosquitto's notice log:
    "New client connected from 127.0.0.1:P as thing-1 (p2, c1, k32, u'thing-1')"."""
    import re
    path = os.path.join(work, "mosquitto.log")
    if not os.path.exists(path):
        return {}
    by_port = {}
    for line in open(path, errors="replace"):
        m = re.match(r"\d+: New client connected from [\d.]+:(\d+) as \S+ \(p\d, c\d, k(\d+)", line)
        if m:
            by_port[int(m.group(1))] = "k%s" % m.group(2)
    out = {}
    for key in runs:
        ev = load_jsonl(os.path.join(work, "runs", key, "relay.log"))
        ks = [by_port[e["port"]] for e in ev if e["ev"] == "upstream" and e.get("port") in by_port]
        if ks:
            out[key] = ks
    return out


def json_open_t(work, key):
    for e in load_jsonl(os.path.join(work, "runs", key, "relay.log")):
        if e["ev"] == "open":
            return e["t"]
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "wire":
        r = wire(sys.argv[2])
        print(json.dumps({k: v for k, v in r.items() if k != "conns"}, indent=1))
        for c in r["conns"]:
            print({k: v for k, v in c.items() if k != "records"})
    elif sys.argv[1] == "report":
        report(sys.argv[2])
