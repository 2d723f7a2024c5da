//! Integration tests of the `warden` binary's client subcommands: each test starts a real server
//! in-process on `127.0.0.1:0` with a temp data dir, then runs the real binary against it and
//! checks what a user sees: stdout, stderr, the exit code and the files written.

mod actions;
mod certs;
mod dashboard;
mod demo;
mod errors;
mod groups;
mod lab;
mod policies;
mod profiles;
mod server;
mod things;
mod topics;
mod violations;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use warden_server::config::ServerConfig;
use warden_server::server::RunningServer;
use warden_server::state::SystemClock;

/// A server for one test. The runtime serves it while the test thread runs the binary; both are
/// dropped together, the server first.
#[derive(Debug)]
pub struct TestServer {
    /// `None` only while dropping.
    server: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
    pub endpoint: String,
    pub token: String,
    pub data_dir: PathBuf,
    /// Owns the data dir and a scratch dir for files the CLI writes.
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// A server whose configuration `configure` changes first.
    pub fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        // Named as `warden server`'s default, so that a run in `dir` finds the token by default.
        let data_dir = dir.path().join("warden-data");
        let mut config = ServerConfig { data_dir: data_dir.clone(), ..ServerConfig::default() };
        config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        configure(&mut config);
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(warden_server::server::start(config, Arc::new(SystemClock))).unwrap();
        TestServer {
            endpoint: format!("http://{}", server.http_addr),
            token: server.api_token.clone(),
            server: Some(server),
            runtime,
            data_dir,
            dir,
        }
    }

    /// The server's store, to write what the detection engine would (violations).
    pub fn store(&self) -> &Arc<dyn warden_store::Store> {
        &self.server.as_ref().expect("the server runs until the test ends").state.store
    }

    /// Runs a future on the server's runtime, e.g. a call of [`TestServer::store`].
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Calls the REST API directly, for what no CLI command does (custom metrics, dimensions),
    /// and checks that it succeeded.
    pub fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.to_string())
            .unwrap();
        let mut response = ureq::Agent::new_with_config(config).run(request).unwrap();
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() { json!({}) } else { serde_json::from_str(&text).unwrap() }
    }

    /// A path in the test's scratch dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `warden GROUP ARGS... --endpoint E --token T`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--endpoint", &self.endpoint, "--token", &self.token]);
        warden(&full, None)
    }

    /// Like [`TestServer::run`], in directory `cwd` (so that relative paths in the output are
    /// stable).
    pub fn run_in(&self, cwd: &Path, args: &[&str]) -> Run {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--endpoint", &self.endpoint, "--token", &self.token]);
        warden_with(&full, None, Some(cwd), &[])
    }

    /// Like [`TestServer::run`], with `--output json`, and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--output", "json"]);
        let run = self.run(&full).success();
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}):\n{}", run.stdout))
    }

    /// Runs the command, checks it succeeded, and compares its stdout with `expect` (whose first
    /// line break, after the opening quote, is ignored).
    pub fn check(&self, args: &[&str], expect: &str) {
        let run = self.run(args).success();
        assert_eq!(run.stdout, expect.strip_prefix('\n').unwrap_or(expect), "warden {}", args.join(" "));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "the command failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Checks the exit code and that stdout is empty (errors go to stderr only).
    pub fn failure(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert_eq!(self.stdout, "", "a failing command printed to stdout");
        self
    }
}

/// Runs the `warden` binary with exactly these arguments (and `stdin` as its standard input),
/// in a clean environment: no `WARDEN_*` variable of the caller leaks in.
pub fn warden(args: &[&str], stdin: Option<&str>) -> Run {
    warden_with(args, stdin, None, &[])
}

/// [`warden`], in directory `cwd` if given, with environment variables `env` set.
pub fn warden_with(args: &[&str], stdin: Option<&str>, cwd: Option<&Path>, env: &[(&str, &str)]) -> Run {
    use std::io::Write as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for var in ["WARDEN_ENDPOINT", "WARDEN_TOKEN", "WARDEN_DATA_DIR", "WARDEN_CONFIG"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let mut child = command.spawn().expect("run the warden binary");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}
