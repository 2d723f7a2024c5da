//! A real Mosquitto broker for integration tests, and an MQTT observer built on the Mosquitto
//! command-line clients. The broker runs on 127.0.0.1 with a TLS listener that requires client
//! certificates from the test [`Pki`] and takes each client's CN as its username, the way AWS IoT
//! and Warden identify things; an optional ACL file confines things to their own topics. Every
//! process started here is killed and reaped on drop, and every file lives in a temp dir.
//!
//! Checked against Mosquitto 2.0.11: `allow_anonymous false` together with
//! `use_identity_as_username true` admits any client whose certificate chains to the CA and has a
//! CN, and refuses a certificate without CN at CONNACK ("bad user name or password"). Read ACLs
//! are enforced when a message is delivered, not at SUBSCRIBE: a denied subscription is still
//! granted in the SUBACK and simply receives nothing. A denied QoS 1 publish still gets its PUBACK.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::external::{find_program, require_external};
use crate::net::free_port;
use crate::pki::{ClientCert, Pki};

/// How long the broker may take to listen. Generous because CI machines are slow and shared.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `mosquitto_pub` may take to deliver, and `mosquitto_sub` to get its SUBACK.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many ports to try: [`free_port`] can race with another process taking the port.
const BIND_ATTEMPTS: usize = 3;

/// Marks message lines in `mosquitto_sub` output, which also carries its `-d` debug lines.
/// In `-F` formats `%`, `@` and `\` are escapes, `=` is not.
const MESSAGE_PREFIX: &str = "=warden-msg= ";

/// Numbers files and client ids so that concurrent tests in one process never collide.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

fn next_id() -> usize {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Checks, with [`require_external`], every program the broker and its clients need:
/// `mosquitto`, `mosquitto_sub`, `mosquitto_pub` (Debian ships the last two in
/// `mosquitto-clients`) and `stdbuf` (coreutils), which makes `mosquitto_sub` report its SUBACK
/// without delay. Returns `false`, after printing the skip message, when a test should return.
pub fn require_mosquitto() -> bool {
    ["mosquitto", "mosquitto_sub", "mosquitto_pub", "stdbuf"]
        .iter()
        .all(|program| require_external(program).is_some())
}

/// An ACL file in the shape of the default Warden policy: every thing may use
/// `$aws/things/<its CN>/#`, and the client whose CN is `observer` (a test, or later a Warden
/// server worker) may read every thing's Defender topics and publish the replies.
pub fn thing_acl(observer: &str) -> String {
    format!(
        "# Each thing may use its own topics; its username is its certificate CN.\n\
         pattern readwrite $aws/things/%u/#\n\
         user {observer}\n\
         topic readwrite $aws/things/+/defender/#\n"
    )
}

/// How to configure the broker beyond the fixed mTLS listener.
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    /// Contents of an ACL file (see [`thing_acl`]); `None` lets every client use every topic.
    pub acl: Option<String>,
    /// Lines appended verbatim to `mosquitto.conf`, after the listener, so that listener
    /// options here apply to the TLS listener (e.g. `max_packet_size 4096`).
    pub extra_config: String,
}

/// A running Mosquitto broker on `127.0.0.1:port()`, killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    /// The broker process; killed and reaped on drop so that no test leaks a broker.
    child: Child,
    port: u16,
    /// Holds the config, the ACL, copies of the CA and server files, the log and publish
    /// payloads. Deleted on drop, after the broker is gone.
    dir: TempDir,
    ca_path: PathBuf,
    log_path: PathBuf,
}

impl Mosquitto {
    /// Starts a broker with the server certificate of `pki` and waits until it accepts TCP
    /// connections.
    ///
    /// The CA and server files are copied, so `pki` may be dropped before the broker; client
    /// certificates used with [`Mosquitto::publish`] and [`Mosquitto::subscribe`] still come from
    /// it. Errors carry the broker's console output and log.
    pub fn start(pki: &Pki, options: MosquittoOptions) -> io::Result<Mosquitto> {
        let program = find_program("mosquitto").ok_or_else(|| not_installed("mosquitto"))?;
        let dir = tempfile::Builder::new().prefix("warden-mosquitto-").tempdir()?;
        let ca_path = dir.path().join("ca.pem");
        fs::copy(pki.ca_pem_path(), &ca_path)?;
        let cert_path = dir.path().join("server.crt");
        fs::copy(pki.server_cert_path(), &cert_path)?;
        let key_path = dir.path().join("server.key");
        fs::copy(pki.server_key_path(), &key_path)?;
        let acl_path = match &options.acl {
            Some(acl) => {
                let path = dir.path().join("acl");
                fs::write(&path, acl)?;
                Some(path)
            }
            None => None,
        };
        let log_path = dir.path().join("mosquitto.log");
        // The broker's stdout and stderr: it writes there only until the log file is open.
        let console_path = dir.path().join("console.log");
        let config_path = dir.path().join("mosquitto.conf");

        let mut last_error = None;
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            let config = config(ConfigPaths {
                port,
                log: &log_path,
                acl: acl_path.as_deref(),
                ca: &ca_path,
                cert: &cert_path,
                key: &key_path,
                extra: &options.extra_config,
            });
            fs::write(&config_path, config)?;
            remove_if_exists(&log_path)?;
            let console = File::create(&console_path)?;
            let mut child = Command::new(&program)
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(console.try_clone()?)
                .stderr(console)
                .spawn()?;
            let error = match wait_until_running(&mut child, port, &log_path) {
                Ok(()) => {
                    return Ok(Mosquitto { child, port, dir, ca_path, log_path });
                }
                Err(error) => error,
            };
            // Errors mean the process is already gone, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
            let diagnostics = diagnostics(&console_path, &log_path);
            let port_taken = diagnostics.contains("Address already in use");
            let error = io::Error::new(error.kind(), format!("{error}\n{diagnostics}"));
            if !port_taken {
                return Err(error);
            }
            last_error = Some(error);
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("mosquitto did not start")))
    }

    /// The port of the TLS listener on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port()`. The server certificate is also valid for `localhost`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The broker's temp dir (config, ACL, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker log so far (`log_type all`), for assertions and for failing tests to print.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Waits until the broker log contains `needle`, e.g. `"as thing-1 ("` once a client named
    /// `thing-1` has connected. Returns `false` after `timeout`.
    ///
    /// Polls the log file every 20 ms: it is the only signal Mosquitto gives of what happens to
    /// clients it does not run itself (an agent under test, a refused handshake).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Subscribes to `topic` (QoS 1) as `client` with `mosquitto_sub`, and returns once the
    /// broker has acknowledged the subscription, so that anything published afterwards is seen.
    ///
    /// Fails if the connection or the subscription is refused, or after 10 s. The client id is
    /// `<CN>/testkit-sub-<n>`, the `{thing}/{suffix}` form Warden's default policy allows.
    pub fn subscribe(&self, client: &ClientCert, topic: &str) -> io::Result<Subscription> {
        let stdbuf = find_program("stdbuf").ok_or_else(|| not_installed("stdbuf"))?;
        let program = find_program("mosquitto_sub").ok_or_else(|| not_installed("mosquitto_sub"))?;
        let n = next_id();
        let client_id = client_id(client, "sub", n);
        let stderr_path = self.dir.path().join(format!("sub-{n}.stderr"));
        // `-d` prints "Subscribed (mid: 1): <granted QoS>" when the SUBACK arrives. mosquitto_sub
        // flushes message lines but not debug lines, hence `stdbuf -oL`.
        let mut child = Command::new(stdbuf)
            .arg("-oL")
            .arg(program)
            .arg("-d")
            .args(self.client_args(client, &client_id))
            .args(["-q", "1", "-t", topic, "-F"])
            .arg(format!("{MESSAGE_PREFIX}%t %x"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path)?)
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, events) = mpsc::channel();
        let reader = thread::Builder::new()
            .name(format!("mosquitto_sub {client_id}"))
            .spawn(move || read_events(stdout, &tx));
        let reader = match reader {
            Ok(reader) => reader,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut subscription = Subscription { child, events, reader: Some(reader) };

        let context = |what: String, debug: &[String]| {
            format!(
                "mosquitto_sub as {client_id} to {topic}: {what}\n\
                 --- stdout ---\n{}\n--- stderr ---\n{}",
                debug.join("\n"),
                read_lossy(&stderr_path),
            )
        };
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let mut debug = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match subscription.events.recv_timeout(remaining) {
                Ok(Event::Subscribed(granted)) => {
                    // MQTT 3.1.1 reports a refused subscription as granted QoS 0x80.
                    if granted.iter().any(|&qos| qos >= 0x80) {
                        let what = format!("subscription refused (granted {granted:?})");
                        return Err(io::Error::new(io::ErrorKind::PermissionDenied, context(what, &debug)));
                    }
                    return Ok(subscription);
                }
                Ok(Event::Debug(line)) => debug.push(line),
                // The broker sends retained messages only after the SUBACK, so this cannot
                // happen; the line is kept for the error message rather than dropped silently.
                Ok(Event::Message(message)) => debug.push(format!("early message {message:?}")),
                Err(RecvTimeoutError::Timeout) => {
                    let what = format!("no SUBACK after {CLIENT_TIMEOUT:?}");
                    return Err(io::Error::new(io::ErrorKind::TimedOut, context(what, &debug)));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = subscription.child.wait()?;
                    let what = format!("exited ({status}) before its SUBACK");
                    return Err(io::Error::other(context(what, &debug)));
                }
            }
        }
    }

    /// Publishes `payload` to `topic` as `client` with `mosquitto_pub`, at QoS 1 so that when
    /// this returns the broker has processed the message and queued it for every subscriber.
    ///
    /// The payload goes through a file (`-f`) so that any bytes, including NUL and newlines,
    /// arrive intact. Fails if the connection is refused or after 10 s. A publish denied by the
    /// ACL still succeeds: Mosquitto acknowledges and drops it. The client id is
    /// `<CN>/testkit-pub-<n>`.
    pub fn publish(&self, client: &ClientCert, topic: &str, payload: &[u8]) -> io::Result<()> {
        let program = find_program("mosquitto_pub").ok_or_else(|| not_installed("mosquitto_pub"))?;
        let n = next_id();
        let client_id = client_id(client, "pub", n);
        let payload_path = self.dir.path().join(format!("payload-{n}"));
        fs::write(&payload_path, payload)?;
        let mut child = Command::new(program)
            .args(self.client_args(client, &client_id))
            .args(["-q", "1", "-t", topic, "-f"])
            .arg(&payload_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let result = wait_with_stderr(&mut child, CLIENT_TIMEOUT);
        let _ = fs::remove_file(&payload_path);
        match result? {
            (status, _) if status.success() => Ok(()),
            (status, stderr) => Err(io::Error::other(format!(
                "mosquitto_pub as {client_id} to {topic} failed ({status}): {}",
                stderr.trim()
            ))),
        }
    }

    /// Connection options shared by `mosquitto_pub` and `mosquitto_sub`. They connect to
    /// 127.0.0.1, so they also check the server certificate's IP SAN.
    fn client_args(&self, client: &ClientCert, client_id: &str) -> Vec<OsString> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string().into(),
            "--cafile".into(),
            self.ca_path.clone().into(),
            "--cert".into(),
            client.cert_path.clone().into(),
            "--key".into(),
            client.key_path.clone().into(),
            "-i".into(),
            client_id.into(),
        ]
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        // Errors mean the process is already gone, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the broker has logged that it runs (all listeners are bound by then) and its port
/// accepts a TCP connection, polling every 20 ms. Fails if it exits first or after
/// [`START_TIMEOUT`].
fn wait_until_running(child: &mut Child, port: u16, log_path: &Path) -> io::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("mosquitto exited ({status}) before listening on {addr}")));
        }
        let running = read_lossy(log_path).lines().any(|line| line.ends_with(" running"));
        if running && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("mosquitto does not listen on {addr} after {START_TIMEOUT:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn diagnostics(console_path: &Path, log_path: &Path) -> String {
    format!(
        "--- mosquitto console ---\n{}\n--- mosquitto log ---\n{}",
        read_lossy(console_path),
        read_lossy(log_path)
    )
}

struct ConfigPaths<'a> {
    port: u16,
    log: &'a Path,
    acl: Option<&'a Path>,
    ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
    extra: &'a str,
}

fn config(p: ConfigPaths<'_>) -> String {
    let acl = match p.acl {
        Some(path) => format!("acl_file {}\n", path.display()),
        None => String::new(),
    };
    format!(
        "# Written by warden-testkit for one test.\n\
         # Run as root, Mosquitto drops privileges to the `mosquitto` user, which cannot read this\n\
         # root-owned temp dir; `user root` keeps it as is (and does nothing for other users).\n\
         user root\n\
         persistence false\n\
         log_dest file {log}\n\
         log_type all\n\
         # Security settings below apply to every listener.\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         {acl}\
         listener {port} 127.0.0.1\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         {extra}\n",
        log = p.log.display(),
        port = p.port,
        ca = p.ca.display(),
        cert = p.cert.display(),
        key = p.key.display(),
        extra = p.extra,
    )
}

/// A message seen by a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A live `mosquitto_sub` subscription; the process is killed when this is dropped.
#[derive(Debug)]
pub struct Subscription {
    /// The `mosquitto_sub` process; killed and reaped on drop.
    child: Child,
    /// Lines of `mosquitto_sub` output, parsed by `reader`. Disconnected once it exits.
    events: Receiver<Event>,
    /// Reads `mosquitto_sub`'s stdout until EOF, which killing the process causes; joined on
    /// drop.
    reader: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Returns the next message, or `None` if none arrives within `timeout` (or the
    /// subscriber has died).
    ///
    /// To check that something is *not* delivered without sleeping, publish a marker message
    /// afterwards on a topic this subscription sees, from the same client: the broker keeps
    /// their order, so receiving the marker first proves the other message was dropped.
    pub fn recv(&self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(remaining) {
                Ok(Event::Message(message)) => return Some(message),
                Ok(Event::Debug(_) | Event::Subscribed(_)) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Errors mean the process is already gone, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// One line of `mosquitto_sub -d` output.
#[derive(Debug)]
enum Event {
    /// The SUBACK arrived with these granted QoS values.
    Subscribed(Vec<u8>),
    Message(Message),
    /// Any other line: protocol debug output, kept for error messages.
    Debug(String),
}

fn read_events(stdout: ChildStdout, tx: &Sender<Event>) {
    let mut stdout = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdout.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let event = parse_line(&String::from_utf8_lossy(&line));
        if tx.send(event).is_err() {
            return;
        }
    }
}

fn parse_line(line: &str) -> Event {
    if let Some(rest) = line.strip_prefix(MESSAGE_PREFIX) {
        // The hex payload has no spaces, the topic may have some.
        if let Some((topic, hex)) = rest.rsplit_once(' ')
            && let Some(payload) = decode_hex(hex)
        {
            return Event::Message(Message { topic: topic.to_owned(), payload });
        }
    } else if let Some(rest) = line.strip_prefix("Subscribed (mid: ")
        && let Some((_, granted)) = rest.split_once("): ")
        && let Ok(granted) = granted.split(", ").map(str::parse).collect()
    {
        return Event::Subscribed(granted);
    }
    Event::Debug(line.to_owned())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

fn client_id(client: &ClientCert, role: &str, n: usize) -> String {
    let cn = client.common_name.as_deref().unwrap_or("no-cn");
    format!("{cn}/testkit-{role}-{n}")
}

/// Waits for `child` to exit and returns its status and stderr; kills it after `timeout`.
///
/// Waits on stderr reaching EOF, which happens when the process exits, so there is no polling.
fn wait_with_stderr(child: &mut Child, timeout: Duration) -> io::Result<(ExitStatus, String)> {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    match rx.recv_timeout(timeout) {
        Ok(text) => Ok((child.wait()?, text)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("still running after {timeout:?}, killed")))
        }
    }
}

fn not_installed(program: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{program} is not installed"))
}

fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mosquitto_sub_lines() {
        let line = format!("{MESSAGE_PREFIX}a b/c 00ff0a");
        match parse_line(&line) {
            Event::Message(m) => {
                assert_eq!(m.topic, "a b/c");
                assert_eq!(m.payload, [0x00, 0xff, 0x0a]);
            }
            other => panic!("{other:?}"),
        }
        match parse_line(&format!("{MESSAGE_PREFIX}t ")) {
            Event::Message(m) => assert!(m.payload.is_empty()),
            other => panic!("{other:?}"),
        }
        match parse_line("Subscribed (mid: 1): 1, 128") {
            Event::Subscribed(granted) => assert_eq!(granted, [1, 128]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_line("Client x received SUBACK"), Event::Debug(_)));
    }
}
