//! The live summary of a running simulator: devices connected, reports sent, accepted and
//! rejected, telemetry, misbehaving devices, and what the server made of them (alerts: the
//! fleet's active violations; quarantined: the fleet's things in the quarantine group).
//!
//! On a terminal, one line redrawn every second with a bar of connected devices; otherwise,
//! one plain line every few seconds, for logs. What the server says is polled through the REST
//! API, less often (it lists violations and a group's members).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::api::Api;
use crate::fleet::{DeviceEvent, Fleet, FleetTotals};
use crate::identity::ProvisionProgress;

/// Pages of a list read per poll: 25,000 items, far more than a fleet in alarm should have.
const MAX_PAGES: usize = 100;

/// What the server says about the fleet, as last polled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerView {
    /// Things of the fleet with at least one active violation, and the violations.
    pub alarmed_things: usize,
    pub violations: usize,
    /// Things of the fleet in the quarantine group.
    pub quarantined: usize,
    pub error: Option<String>,
}

/// Polls the server's view of the fleet through the API. Blocking.
pub fn poll_server(api: &Api, fleet_things: &HashSet<String>, quarantine_group: Option<&str>) -> ServerView {
    let mut view = ServerView::default();
    match api.active_violation_things(MAX_PAGES) {
        Ok(things) => {
            let ours: Vec<&String> = things.iter().filter(|t| fleet_things.contains(*t)).collect();
            view.violations = ours.len();
            view.alarmed_things = ours.into_iter().collect::<HashSet<_>>().len();
        }
        Err(e) => view.error = Some(e.to_string()),
    }
    if let Some(group) = quarantine_group {
        match api.things_in_group(group, MAX_PAGES) {
            Ok(things) => view.quarantined = things.iter().filter(|t| fleet_things.contains(*t)).count(),
            Err(e) => view.error = Some(e.to_string()),
        }
    }
    view
}

/// One summary line.
pub fn line(uptime: Duration, t: &FleetTotals, server: Option<&ServerView>) -> String {
    let mut s = format!("[{}] connected {}/{}", clock(uptime), t.agent_connected, t.devices);
    if t.app_links > 0 {
        let _ = write!(s, " (app {}/{})", t.app_connected, t.app_links);
    }
    let _ = write!(
        s,
        " | reports {} sent, {} accepted, {} rejected",
        t.reports_sent, t.reports_accepted, t.reports_rejected
    );
    if t.reports_skipped > 0 {
        let _ = write!(s, ", {} skipped", t.reports_skipped);
    }
    if t.app_links > 0 {
        let _ = write!(s, " | telemetry {}", t.telemetry_sent);
    }
    if t.publish_denied > 0 {
        let _ = write!(s, " | denied {}", t.publish_denied);
    }
    let _ = write!(s, " | misbehaving {}", t.misbehaving);
    match server {
        Some(v) => {
            let _ = write!(
                s,
                " | alerts {} ({} things) | quarantined {}",
                v.violations, v.alarmed_things, v.quarantined
            );
        }
        None => s.push_str(" | alerts ? | quarantined ?"),
    }
    if t.contained > 0 {
        let _ = write!(s, " | contained {}", t.contained);
    }
    s
}

/// A progress line for provisioning.
pub fn provision_line(p: &ProvisionProgress, elapsed: Duration) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let (total, reused, registered) =
        (p.total.load(Relaxed), p.reused.load(Relaxed), p.registered.load(Relaxed));
    let rate = registered as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "[{}] identities {}/{total}: {reused} reused, {registered} registered through the API ({rate:.0}/s)",
        clock(elapsed),
        reused + registered
    )
}

/// `1h02m03s`, `2m05s`, `7s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec:>2}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

/// A bar of `width` cells, `done` of `total` filled.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled =
        if total == 0 { width } else { ((done as f64 / total as f64) * width as f64).round() as usize };
    let filled = filled.min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// Where summary lines go: a redrawn line on a terminal, plain lines otherwise.
#[derive(Debug)]
pub struct Display {
    tty: bool,
    /// A status line is on screen and must be cleared before anything else is printed.
    drawn: Mutex<bool>,
}

impl Display {
    /// Standard output, redrawn in place if it is a terminal.
    pub fn stdout() -> Display {
        Display { tty: std::io::stdout().is_terminal(), drawn: Mutex::new(false) }
    }

    pub fn plain() -> Display {
        Display { tty: false, drawn: Mutex::new(false) }
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// How often to draw: every second on a terminal, else every `plain_every`.
    pub fn interval(&self, plain_every: Duration) -> Duration {
        if self.tty { Duration::from_secs(1) } else { plain_every }
    }

    /// The status line: redrawn on a terminal (cut to `$COLUMNS` when the shell exports it: a
    /// wrapped line could not be redrawn in place), printed as a line otherwise.
    pub fn status(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let mut drawn = self.drawn.lock().unwrap_or_else(PoisonError::into_inner);
        if self.tty {
            let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse::<usize>().ok());
            let text: String = match columns {
                Some(c) if c > 1 => text.chars().take(c - 1).collect(),
                _ => text.to_owned(),
            };
            let _ = write!(out, "\r\x1b[2K{text}");
            *drawn = true;
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }

    /// A line of its own (an event), above the status line.
    pub fn message(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let mut drawn = self.drawn.lock().unwrap_or_else(PoisonError::into_inner);
        if *drawn {
            let _ = write!(out, "\r\x1b[2K");
            *drawn = false;
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Ends the status line, so that what follows starts on a line of its own.
    pub fn finish(&self) {
        let mut drawn = self.drawn.lock().unwrap_or_else(PoisonError::into_inner);
        if *drawn {
            println!();
            *drawn = false;
        }
    }
}

/// The text of an event worth a line of its own in the summary, if it is one: misbehaviours
/// starting and stopping (the rest is counted in the status line).
pub fn event_line(uptime: Duration, event: &DeviceEvent) -> Option<String> {
    match event {
        DeviceEvent::MisbehaviourStarted { thing, kind } => {
            Some(format!("[{}] {thing}: {kind} started", clock(uptime)))
        }
        DeviceEvent::MisbehaviourStopped { thing, kind } => {
            Some(format!("[{}] {thing}: {kind} stopped", clock(uptime)))
        }
        _ => None,
    }
}

/// Runs the summary until `stop`: the status line on `display`, events above it (with
/// `event_lines`; `warden demo` tells them itself), and the server's view from `api` every
/// `poll_every`.
pub async fn run(
    fleet: Arc<Fleet>,
    display: Arc<Display>,
    api: Option<(Api, Option<String>)>,
    plain_every: Duration,
    poll_every: Duration,
    event_lines: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let things: Arc<HashSet<String>> = Arc::new(fleet.things().map(str::to_owned).collect());
    let server: Arc<Mutex<Option<ServerView>>> = Arc::new(Mutex::new(None));
    let mut events = fleet.events();
    let mut draw = tokio::time::interval(display.interval(plain_every));
    let mut poll = tokio::time::interval(poll_every);
    // One poll at a time: a slow API must not pile them up.
    let mut polling: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = draw.tick() => {
                let view = server.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let totals = fleet.totals();
                let mut text = line(fleet.uptime(), &totals, view.as_ref());
                // On a terminal, a progress bar while devices are still connecting.
                if display.is_tty() && totals.agent_connected < totals.devices {
                    text = format!("{} {text}", bar(totals.agent_connected, totals.devices, 20));
                }
                display.status(&text);
            }
            _ = poll.tick(), if api.is_some() => {
                if polling.as_ref().is_none_or(|p| p.is_finished()) {
                    let (api, group) = api.clone().expect("polled only with an API");
                    let (things, server) = (things.clone(), server.clone());
                    polling = Some(tokio::task::spawn_blocking(move || {
                        let view = poll_server(&api, &things, group.as_deref());
                        if let Some(e) = &view.error {
                            tracing::warn!(error = %e, "cannot read violations or the quarantine group");
                        }
                        *server.lock().unwrap_or_else(PoisonError::into_inner) = Some(view);
                    }));
                }
            }
            event = events.recv() => match event {
                Ok(event) => {
                    if let Some(text) = event_line(fleet.uptime(), &event).filter(|_| event_lines) {
                        display.message(&text);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    if let Some(p) = polling {
        let _ = p.await;
    }
    let view = server.lock().unwrap_or_else(PoisonError::into_inner).clone();
    display.status(&line(fleet.uptime(), &fleet.totals(), view.as_ref()));
    display.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_bars() {
        assert_eq!(clock(Duration::from_secs(7)), " 7s");
        assert_eq!(clock(Duration::from_secs(125)), "2m05s");
        assert_eq!(clock(Duration::from_secs(3723)), "1h02m03s");
        assert_eq!(bar(5, 10, 10), "[#####-----]");
        assert_eq!(bar(0, 0, 4), "[####]");
        assert_eq!(bar(20, 10, 4), "[####]");
    }

    #[test]
    fn a_summary_line_says_what_matters() {
        let t = FleetTotals {
            devices: 10,
            agent_connected: 9,
            app_links: 10,
            app_connected: 8,
            reports_sent: 100,
            reports_accepted: 98,
            reports_rejected: 1,
            reports_skipped: 2,
            telemetry_sent: 500,
            publish_denied: 3,
            misbehaving: 1,
            contained: 1,
            ..FleetTotals::default()
        };
        let view = ServerView { alarmed_things: 1, violations: 2, quarantined: 1, error: None };
        assert_eq!(
            line(Duration::from_secs(65), &t, Some(&view)),
            "[1m05s] connected 9/10 (app 8/10) | reports 100 sent, 98 accepted, 1 rejected, 2 skipped | telemetry 500 \
             | denied 3 | misbehaving 1 | alerts 2 (1 things) | quarantined 1 | contained 1"
        );
        let quiet = FleetTotals {
            devices: 2,
            agent_connected: 2,
            reports_sent: 4,
            reports_accepted: 4,
            ..FleetTotals::default()
        };
        assert_eq!(
            line(Duration::from_secs(3), &quiet, None),
            "[ 3s] connected 2/2 | reports 4 sent, 4 accepted, 0 rejected | misbehaving 0 | alerts ? | quarantined ?"
        );
    }
}
