//! Device identities and the simulator's state directory.
//!
//! ```text
//! STATE_DIR/identities/ca.pem            the server CA the identities below were issued by
//! STATE_DIR/identities/{thing}.crt, .key  one device's certificate and key (mode 0600)
//! STATE_DIR/sim.addr, sim.token           the running simulator's control endpoint (control.rs)
//! ```
//!
//! A device whose files are there is reused without asking the server; one without is
//! registered through the REST API ([`provision`]), and its files are written only once all its
//! registration calls succeeded, so a file present means a usable identity. Identities issued
//! by another server (another CA) are moved aside rather than used.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::api::{Api, ApiError};
use crate::class::DeviceClass;

/// A device's certificate and key.
#[derive(Clone)]
pub struct Identity {
    pub thing: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Identity").field("thing", &self.thing).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registering {thing} failed: {source}")]
    Register {
        thing: String,
        #[source]
        source: ApiError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io { path: path.to_owned(), source }
}

/// The simulator's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a running simulator writes its control endpoint's address.
    pub fn control_addr(&self) -> PathBuf {
        self.root.join("sim.addr")
    }

    /// Where a running simulator writes its control endpoint's token.
    pub fn control_token(&self) -> PathBuf {
        self.root.join("sim.token")
    }

    /// The identities issued by the server whose CA is `ca_pem`. Identities of another CA are
    /// moved to `identities.old-{n}`: their certificates would be refused by this server.
    pub fn identities(&self, ca_pem: &str) -> Result<Identities, IdentityError> {
        let dir = self.root.join("identities");
        let ca_path = dir.join("ca.pem");
        match std::fs::read_to_string(&ca_path) {
            Ok(existing) if existing.trim() == ca_pem.trim() => {
                return Ok(Identities { dir });
            }
            Ok(_) => {
                let aside =
                    (1..).map(|n| self.root.join(format!("identities.old-{n}"))).find(|p| !p.exists());
                let aside = aside.expect("an unused name");
                std::fs::rename(&dir, &aside).map_err(io(&dir))?;
                tracing::warn!(moved_to = %aside.display(), "identities were issued by another server's CA; moved aside");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&ca_path)(e)),
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        std::fs::write(&ca_path, ca_pem).map_err(io(&ca_path))?;
        Ok(Identities { dir })
    }
}

/// One server's device identities on disk.
#[derive(Debug, Clone)]
pub struct Identities {
    dir: PathBuf,
}

impl Identities {
    fn paths(&self, thing: &str) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("{thing}.crt")), self.dir.join(format!("{thing}.key")))
    }

    /// The identity of `thing`, if both its files are there.
    pub fn load(&self, thing: &str) -> Result<Option<Identity>, IdentityError> {
        let (cert, key) = self.paths(thing);
        let read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        };
        match (read(&cert)?, read(&key)?) {
            (Some(cert_pem), Some(key_pem)) => {
                Ok(Some(Identity { thing: thing.to_owned(), cert_pem, key_pem }))
            }
            _ => Ok(None),
        }
    }

    /// Writes an identity: each file under a temporary name first, then renamed, the key
    /// created with mode 0600, and the certificate last, so that a certificate file on disk
    /// always has its key next to it.
    pub fn save(&self, identity: &Identity) -> Result<(), IdentityError> {
        let (cert, key) = self.paths(&identity.thing);
        for (path, text, mode) in [(&key, &identity.key_pem, 0o600), (&cert, &identity.cert_pem, 0o644)] {
            let tmp = path.with_extension("tmp");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)
                .map_err(io(&tmp))?;
            file.write_all(text.as_bytes()).map_err(io(&tmp))?;
            std::fs::rename(&tmp, path).map_err(io(path))?;
        }
        Ok(())
    }
}

/// How far provisioning got, shared with the progress display.
#[derive(Debug, Default)]
pub struct ProvisionProgress {
    pub total: AtomicUsize,
    pub reused: AtomicUsize,
    pub registered: AtomicUsize,
}

impl ProvisionProgress {
    pub fn done(&self) -> usize {
        self.reused.load(Ordering::Relaxed) + self.registered.load(Ordering::Relaxed)
    }
}

/// A device to provision: its thing name and class (a thing attribute).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub thing: String,
    pub class: DeviceClass,
}

/// Attempts per device before provisioning gives up: a busy server may time out a call.
const ATTEMPTS: u32 = 3;

/// The identity of every wanted device, in order: reused from `identities`, or registered
/// through `api` with `policy` by `workers` threads at once. Blocking.
pub fn provision(
    api: &Api,
    identities: &Identities,
    wanted: &[Wanted],
    policy: &str,
    workers: usize,
    progress: &ProvisionProgress,
) -> Result<Vec<Identity>, IdentityError> {
    progress.total.store(wanted.len(), Ordering::Relaxed);
    let mut out: Vec<Option<Identity>> = vec![None; wanted.len()];
    let mut missing = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        match identities.load(&w.thing)? {
            Some(identity) => {
                out[i] = Some(identity);
                progress.reused.fetch_add(1, Ordering::Relaxed);
            }
            None => missing.push(i),
        }
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, Identity)>, IdentityError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, 64))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = missing.get(k) else { return Ok(mine) };
                        let identity = register_one(api, &wanted[i], policy)?;
                        identities.save(&identity)?;
                        progress.registered.fetch_add(1, Ordering::Relaxed);
                        mine.push((i, identity));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a registration worker panicked")).collect()
    });
    for result in results {
        for (i, identity) in result? {
            out[i] = Some(identity);
        }
    }
    // Every index was either loaded or registered above.
    Ok(out.into_iter().map(|i| i.expect("every device has an identity")).collect())
}

fn register_one(api: &Api, wanted: &Wanted, policy: &str) -> Result<Identity, IdentityError> {
    let attributes = [("simulated", "true"), ("deviceClass", wanted.class.as_str())];
    let mut attempt = 1;
    loop {
        match api.register(&wanted.thing, &attributes, policy) {
            Ok(issued) => {
                return Ok(Identity {
                    thing: wanted.thing.clone(),
                    cert_pem: issued.certificate_pem,
                    key_pem: issued.private_key_pem,
                });
            }
            // Only transport failures and server errors are worth another try.
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::warn!(thing = %wanted.thing, error = %e, attempt, "registration failed; retrying");
                std::thread::sleep(Duration::from_secs(u64::from(attempt)));
                attempt += 1;
            }
            Err(source) => return Err(IdentityError::Register { thing: wanted.thing.clone(), source }),
        }
    }
}

fn retryable(e: &ApiError) -> bool {
    match e {
        ApiError::Transport { .. } => true,
        ApiError::Status { status, .. } => *status >= 500 || *status == 429,
        ApiError::BadReply { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(thing: &str) -> Identity {
        Identity {
            thing: thing.into(),
            cert_pem: format!("cert of {thing}"),
            key_pem: format!("key of {thing}"),
        }
    }

    #[test]
    fn identities_are_saved_with_a_private_key_and_loaded_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let ids = state.identities("CA-1").unwrap();
        assert!(ids.load("dev-1").unwrap().is_none());
        ids.save(&identity("dev-1")).unwrap();
        let back = ids.load("dev-1").unwrap().unwrap();
        assert_eq!((back.cert_pem.as_str(), back.key_pem.as_str()), ("cert of dev-1", "key of dev-1"));
        let mode = std::fs::metadata(dir.path().join("identities/dev-1.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same CA again: still there.
        assert!(state.identities("CA-1\n").unwrap().load("dev-1").unwrap().is_some());
    }

    #[test]
    fn identities_of_another_ca_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.identities("CA-1").unwrap().save(&identity("dev-1")).unwrap();
        let ids = state.identities("CA-2").unwrap();
        assert!(ids.load("dev-1").unwrap().is_none());
        assert!(dir.path().join("identities.old-1/dev-1.crt").exists());
        state.identities("CA-3").unwrap();
        assert!(dir.path().join("identities.old-2/ca.pem").exists());
    }

    #[test]
    fn a_certificate_without_its_key_is_not_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ids = StateDir::new(dir.path()).identities("CA").unwrap();
        std::fs::write(dir.path().join("identities/dev-1.crt"), "cert").unwrap();
        assert!(ids.load("dev-1").unwrap().is_none());
    }
}
