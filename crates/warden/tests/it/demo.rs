//! `warden demo` as a process: the whole story unattended (a server, a fleet, a device
//! quarantined), a story that cannot finish in time, a data dir kept across runs, Ctrl-C in the
//! interactive mode, and bad flags.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Run, warden};

/// A small, quick lab: 4 devices reporting every second (dev-04 misbehaves), 2 reports of
/// baseline, and a generous timeout for a loaded CI machine.
const QUICK: [&str; 8] = ["--devices", "4", "--period", "1s", "--baseline", "2", "--timeout", "90s"];

fn demo(extra: &[&str]) -> Run {
    let mut args = vec!["demo", "--headless", "--exit-after-quarantine"];
    args.extend_from_slice(&QUICK);
    args.extend_from_slice(extra);
    warden(&args, None)
}

/// The index of the first line after `from` that contains every one of `parts`.
fn find(lines: &[&str], from: usize, parts: &[&str]) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, l)| parts.iter().all(|p| l.contains(p)))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no line with {parts:?} after line {from}:\n{}", lines.join("\n")))
}

/// Checks the story in its order; the data dir the demo ran with.
fn check_story(run: &Run, thing: &str) -> PathBuf {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let mut at = find(&lines, 0, &["Warden is running: MQTT/TLS on 127.0.0.1:", "data in "]);
    let data_dir = lines[at].split("data in ").nth(1).unwrap().split(" (").next().unwrap().to_owned();
    let dashboard = find(&lines, 0, &["Dashboard  http://127.0.0.1:", "/#token=wdn_"]);
    assert!(lines[dashboard + 2].contains("export WARDEN_ENDPOINT=http://127.0.0.1:"), "{}", run.stdout);
    at = find(&lines, at, &["lab set up through the API", "Quarantine", "OutboundBytesSecProfile"]);
    at = find(&lines, at, &["4 devices started", "dev-01 to dev-04"]);
    at = find(&lines, at, &["baseline normal", "no violation"]);
    at = find(&lines, at, &[thing, "starts sending large payloads"]);
    at = find(&lines, at, &["report from", thing, "aws:all-bytes-out", "over the limit of 35,000"]);
    at = find(&lines, at, &["violation:", thing, "in alarm", "OutboundBytesBehavior"]);
    at = find(&lines, at, &["alert received on the webhook: in-alarm", thing, "less-than-equals 35,000"]);
    at = find(&lines, at, &["mitigation:", thing, "moved to thing group Quarantine", "SUCCESSFUL"]);
    at = find(&lines, at, &[thing, "telemetry refused", "PUBACK 0x87"]);
    at = find(&lines, at, &[thing, "metrics reports still accepted"]);
    at = find(&lines, at, &[thing, "is quarantined"]);
    find(&lines, at, &["stopped"]);
    // Each line is stamped with the time since the start, which never goes back.
    let stamps: Vec<f64> =
        lines.iter().filter_map(|l| l.strip_prefix('[')?.split_once("s]")?.0.trim().parse().ok()).collect();
    assert!(stamps.len() >= 12 && stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    PathBuf::from(data_dir)
}

#[test]
fn the_story_ends_in_quarantine_and_exits_0() {
    let run = demo(&[]).success();
    let data_dir = check_story(&run, "dev-04");
    assert!(run.stdout.contains("(removed at exit)"), "{}", run.stdout);
    assert!(!data_dir.exists(), "the temporary data dir {} is removed", data_dir.display());
}

#[test]
fn a_story_that_does_not_finish_in_time_exits_1_naming_the_step() {
    let run = warden(&["demo", "--headless", "--exit-after-quarantine", "--timeout", "1s"], None);
    assert_eq!(run.code, Some(1), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("warden: the demo did not come to the quarantine within 1s: still waiting for "),
        "{}",
        run.stderr
    );
    // Stopped cleanly all the same.
    assert!(run.stdout.trim_end().ends_with("stopped"), "{}", run.stdout);
}

#[test]
fn a_kept_data_dir_is_reused_and_the_quarantine_of_the_last_run_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let data = data.to_str().unwrap();
    let first = demo(&["--data-dir", data, "--thing", "dev-02"]).success();
    check_story(&first, "dev-02");
    assert!(first.stdout.contains("4 registered, 0 reused"), "{}", first.stdout);
    assert!(Path::new(data).join("warden.db").exists(), "the data dir is kept");

    let second = demo(&["--data-dir", data, "--thing", "dev-02"]).success();
    assert!(second.stdout.contains("0 registered, 4 reused"), "{}", second.stdout);
    assert!(
        second.stdout.contains("released from Quarantine (left there by an earlier run): dev-02"),
        "{}",
        second.stdout
    );
    check_story(&second, "dev-02");
}

#[test]
fn the_interactive_demo_runs_until_sigterm_and_stops_cleanly() {
    let mut args = vec!["demo"];
    args.extend_from_slice(&QUICK);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.contains("Press Ctrl-C to stop.") {
            break;
        }
    }
    assert!(out.contains("is quarantined") && out.contains("the demo keeps running"), "{out}");
    let data_dir = out.split("data in ").nth(1).unwrap().split(" (").next().unwrap().to_owned();
    assert!(Path::new(&data_dir).exists());
    assert!(Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(status.success(), "{status:?}\n{out}{}", rest.join("\n"));
    assert_eq!(rest.last().map(|l| l.ends_with("] stopped")), Some(true), "{rest:?}");
    assert!(!Path::new(&data_dir).exists(), "the temporary data dir is removed");
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    let run = warden(&["demo", "--devices", "0", "--misbehave", "beacon", "--thing", "dev-99"], None);
    run.failure(1);
    let run = warden(&["demo", "--devices", "0", "--misbehave", "beacon"], None);
    assert_eq!(
        run.stderr,
        "warden: --devices: between 1 and 1000\n--misbehave: beacon does not raise aws:all-bytes-out, which the \
         lab's profile watches; use one of large-payload, scan, flood, flood-syn, exfil\n"
    );
    let run = warden(&["demo", "--thing", "dev-21"], None).failure(1);
    assert_eq!(run.stderr, "warden: --thing: \"dev-21\" is not a device of the fleet (dev-01 to dev-20)\n");
    let run = warden(&["demo", "--period", "fast"], None).failure(2);
    assert!(
        run.stderr.contains("--period") && run.stderr.contains("\"fast\" is not a duration"),
        "{}",
        run.stderr
    );
}
