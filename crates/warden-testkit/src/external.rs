//! Finding external programs (Mosquitto, `openssl`) and the policy for tests that need one that
//! is missing: skip on a developer's machine, fail in CI where `WARDEN_REQUIRE_EXTERNAL=1`.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories searched after `PATH`: Debian installs the `mosquitto` broker in `/usr/sbin`,
/// which is not on a normal user's `PATH`.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The environment variable that turns a missing program from a skip into a test failure, so
/// that CI cannot pass by silently skipping every integration test.
const REQUIRE_VAR: &str = "WARDEN_REQUIRE_EXTERNAL";

/// Finds an executable named `program` on `PATH`, then in the sbin directories.
///
/// A `program` containing `/` is taken as a path and only checked.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let path_dirs = env::var_os("PATH").map(|p| env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// Returns the path of `program` if it is installed. If it is not, panics when
/// `WARDEN_REQUIRE_EXTERNAL=1`, and otherwise prints `skipping: <program> not installed` to
/// stderr and returns `None`, so the test can return early:
///
/// ```no_run
/// let Some(_openssl) = warden_testkit::require_external("openssl") else { return };
/// ```
pub fn require_external(program: &str) -> Option<PathBuf> {
    if let Some(path) = find_program(program) {
        return Some(path);
    }
    if env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but {program} is not installed");
    }
    eprintln!("skipping: {program} not installed");
    None
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
