//! Runs the agent binary and watches its log lines as they are written.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use warden_testkit::{ClientCert, Mosquitto, Pki};

pub const AGENT: &str = env!("CARGO_BIN_EXE_warden-agent");
pub const WAIT: Duration = Duration::from_secs(20);

/// A running agent; killed on drop.
pub struct Agent {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    pub log: Vec<String>,
}

impl Agent {
    pub fn spawn(args: &[&str]) -> Agent {
        let mut child = Command::new(AGENT)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent { child, lines, log: Vec::new() }
    }

    /// Connection flags for `thing` with `cert` against `broker`, plus a fresh state dir.
    pub fn connection_args(
        pki: &Pki,
        broker: &Mosquitto,
        thing: &str,
        cert: &ClientCert,
        state: &Path,
    ) -> Vec<String> {
        vec![
            "--thing".into(),
            thing.into(),
            "--endpoint".into(),
            "localhost".into(),
            "--port".into(),
            broker.port().to_string(),
            "--ca".into(),
            pki.ca_pem_path().display().to_string(),
            "--cert".into(),
            cert.cert_path.display().to_string(),
            "--key".into(),
            cert.key_path.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--log-level".into(),
            "debug".into(),
        ]
    }

    /// Waits for a log line containing every one of `needles`; returns it.
    pub fn wait_for(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no log line with {needles:?}; log so far:\n{}", self.log.join("\n"))
                }
            }
        }
    }

    /// Waits for the agent to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.log.push(line);
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "agent did not exit; log:\n{}", self.log.join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
