#!/usr/bin/env python3
"""Runs a command and records its CPU time and memory.

    measure.py OUT.json [--stdout FILE] [--stderr FILE] -- COMMAND ARGS...

CPU: utime/stime of the process from wait4() (microsecond resolution; includes children it
reaped). Memory: /proc/PID/status and /proc/PID/smaps_rollup are sampled every 20 ms while it
runs; the last sample before exit gives VmHWM (peak RSS of the final program image, so a shell
that exec()s the real program is not counted) and VmRSS (the steady figure at the end), and the
peaks of RssAnon, RssFile, Pss, Pss_Anon, Pss_File, Private_Clean, Private_Dirty and
Shared_Clean. pss_by_mapping_kb is like rss_by_mapping_kb for Pss.
wait4's ru_maxrss is recorded too but is NOT the program's peak: Linux carries the RSS of the
forked Python parent image (~14 MB) across exec() into it, and it also covers reaped children. rss_by_mapping_kb: resident kB per mapping from the last
once-a-second read of /proc/PID/smaps. cpu_series: [epoch s, ns] samples of the CPU time of the
process's threads (/proc/PID/task/*/schedstat), to cut out a time window such as "between the
first and the last report". Exits with the command's exit status.
"""
import json
import os
import subprocess
import sys
import threading
import time


def read_kb(path, keys):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def by_mapping(pid, field="Rss:"):
    """kB of `field` (Rss: or Pss:) per mapped file (or [heap], [stack], anon) from /proc/PID/smaps."""
    out, name = {}, None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
                elif first == field and name is not None:
                    out[name] = out.get(name, 0) + int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v}


def task_cpu_ns(pid):
    """CPU time of all threads of pid, in ns (sum of /proc/PID/task/*/schedstat field 1)."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return None
    return total


def main():
    argv = sys.argv[1:]
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    out_path = opts[0]
    stdout = stderr = None
    if "--stdout" in opts:
        stdout = open(opts[opts.index("--stdout") + 1], "wb")
    if "--stderr" in opts:
        stderr = open(opts[opts.index("--stderr") + 1], "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
    pid = proc.pid
    rollup = ("Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty", "Shared_Clean")
    peak = {"VmHWM": 0, "VmRSS": 0, "RssAnon": 0, "RssFile": 0, "Threads": 0, **{k: 0 for k in rollup}}
    done = threading.Event()
    series = []  # [epoch seconds, CPU ns of the live threads]
    mappings = {}
    pss_mappings = {}

    def sample():
        while not done.is_set():
            s = read_kb("/proc/%d/status" % pid, ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"))
            r = read_kb("/proc/%d/smaps_rollup" % pid, rollup)
            if len(series) % 50 == 10:  # about once a second
                m, mp = by_mapping(pid, "Rss:"), by_mapping(pid, "Pss:")
                if m and mp and not done.is_set():
                    mappings.clear()
                    mappings.update(m)
                    pss_mappings.clear()
                    pss_mappings.update(mp)
            c = task_cpu_ns(pid)
            if c is not None and not done.is_set():
                series.append([round(time.time(), 4), c])
            if s and not done.is_set():
                for k, v in list(s.items()) + list(r.items()):
                    if k in ("VmHWM", "VmRSS"):
                        peak[k] = v  # VmHWM is already a high-water mark; VmRSS: the last value
                    else:
                        peak[k] = max(peak[k], v)
            done.wait(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, ru = os.wait4(pid, 0)
    done.set()
    th.join()
    wall = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    res = {
        "cmd": cmd,
        "rc": rc,
        "wall_s": round(wall, 3),
        "utime_s": ru.ru_utime,
        "stime_s": ru.ru_stime,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "ru_maxrss_kb": ru.ru_maxrss,
        "vmhwm_kb": peak["VmHWM"],
        "rss_anon_peak_kb": peak["RssAnon"],
        "rss_file_peak_kb": peak["RssFile"],
        "pss_peak_kb": peak["Pss"],
        "pss_anon_peak_kb": peak["Pss_Anon"],
        "pss_file_peak_kb": peak["Pss_File"],
        "private_clean_peak_kb": peak["Private_Clean"],
        "private_dirty_peak_kb": peak["Private_Dirty"],
        "shared_clean_peak_kb": peak["Shared_Clean"],
        "vmrss_last_kb": peak["VmRSS"],
        "threads_peak": peak["Threads"],
        "rss_by_mapping_kb": mappings,
        "pss_by_mapping_kb": pss_mappings,
        "cpu_series": series,
    }
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)
    sys.exit(rc)


if __name__ == "__main__":
    main()
