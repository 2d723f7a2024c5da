//! The throwaway PKI: one test CA, a server certificate for `localhost`/`127.0.0.1`, client
//! certificates whose CN is the thing name, and the deliberately wrong certificates negative tests
//! need (no CN, signed by an unrelated CA). Every certificate and key is written as PEM into a temp
//! dir that lives as long as the [`Pki`], because brokers, agents and `openssl` take file paths.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// The key algorithm of a client certificate.
///
/// ECDSA P-256 is the default because Warden issues it (full handshakes are half the size of
/// RSA ones); RSA-2048 is what many existing fleets and the AWS console hand out, so the agent
/// and server must accept both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256.
    #[default]
    EcdsaP256,
    /// RSA with a 2048-bit modulus, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
}

/// A client certificate and its private key, both in memory and on disk.
///
/// The files live in the [`Pki`]'s temp dir, so the `Pki` must outlive every use of the paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject CN, which brokers use as the thing name; `None` for a certificate without CN.
    pub common_name: Option<String>,
    /// The certificate, PEM.
    pub cert_path: PathBuf,
    /// The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub key_path: PathBuf,
    /// Contents of `cert_path`.
    pub cert_pem: String,
    /// Contents of `key_path`.
    pub key_pem: String,
}

/// A throwaway PKI in a temp dir, deleted when the `Pki` is dropped.
///
/// Validity runs from 1975 to 4096 (rcgen's defaults) so tests never depend on the clock.
/// Serial numbers are derived from the public key, so every certificate has its own.
pub struct Pki {
    /// Owns the directory holding every file below; dropping it deletes them.
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_pem_path: PathBuf,
    server_cert_path: PathBuf,
    server_key_path: PathBuf,
    /// A second CA nobody trusts; signs [`Pki::foreign_client`] certificates.
    foreign_ca: CertifiedIssuer<'static, KeyPair>,
    foreign_ca_pem_path: PathBuf,
    /// Numbers client files so that two certificates for one name never overwrite each other.
    next_file: AtomicUsize,
}

impl Pki {
    /// Creates the CA, the server certificate and the foreign CA, and writes them to a new temp
    /// dir.
    ///
    /// Panics on failure: this runs in tests, where a panic with the cause is the useful outcome.
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new().prefix("warden-pki-").tempdir().expect("create the PKI temp dir");

        let ca = new_ca("Warden Test CA");
        let ca_pem_path = write(dir.path(), "ca.pem", &ca.pem());
        let foreign_ca = new_ca("Unrelated Test CA");
        let foreign_ca_pem_path = write(dir.path(), "foreign-ca.pem", &foreign_ca.pem());

        let server_key = KeyPair::generate().expect("generate the server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server SANs are valid");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        leaf(&mut params, ExtendedKeyUsagePurpose::ServerAuth);
        let server_cert = params.signed_by(&server_key, &ca).expect("sign the server certificate");
        let server_cert_path = write(dir.path(), "server.crt", &server_cert.pem());
        let server_key_path = write(dir.path(), "server.key", &server_key.serialize_pem());

        Pki {
            dir,
            ca,
            ca_pem_path,
            server_cert_path,
            server_key_path,
            foreign_ca,
            foreign_ca_pem_path,
            next_file: AtomicUsize::new(1),
        }
    }

    /// The temp dir holding every file of this PKI.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate that clients and the server trust.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The CA certificate as PEM, for TLS stacks configured from memory.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The server certificate: SANs `DNS:localhost` and `IP:127.0.0.1`, EKU serverAuth.
    pub fn server_cert_path(&self) -> &Path {
        &self.server_cert_path
    }

    /// The server's ECDSA P-256 key, PKCS#8 PEM.
    pub fn server_key_path(&self) -> &Path {
        &self.server_key_path
    }

    /// The certificate of the unrelated CA that signs [`Pki::foreign_client`] certificates.
    pub fn foreign_ca_pem_path(&self) -> &Path {
        &self.foreign_ca_pem_path
    }

    /// Issues a client certificate with CN = `name` (the thing name) and EKU clientAuth.
    pub fn client(&self, name: &str, kind: KeyKind) -> ClientCert {
        self.issue(&self.ca, Some(name), kind)
    }

    /// Issues a client certificate, signed by the trusted CA, whose subject has no CN (only an
    /// `O`), for tests that a broker refuses a certificate it cannot take a thing name from.
    pub fn client_without_cn(&self) -> ClientCert {
        self.issue(&self.ca, None, KeyKind::EcdsaP256)
    }

    /// Issues a client certificate with CN = `name` signed by an unrelated CA, for tests that
    /// the TLS handshake refuses certificates the server's CA did not issue.
    pub fn foreign_client(&self, name: &str) -> ClientCert {
        self.issue(&self.foreign_ca, Some(name), KeyKind::EcdsaP256)
    }

    fn issue(&self, issuer: &Issuer<'_, KeyPair>, cn: Option<&str>, kind: KeyKind) -> ClientCert {
        let key = match kind {
            KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            // aws-lc-rs generates 2048-bit moduli for this algorithm.
            KeyKind::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
        }
        .expect("generate a client key");

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        match cn {
            Some(cn) => params.distinguished_name.push(DnType::CommonName, cn),
            None => params.distinguished_name.push(DnType::OrganizationName, "Warden Test"),
        }
        leaf(&mut params, ExtendedKeyUsagePurpose::ClientAuth);
        let cert = params.signed_by(&key, issuer).expect("sign a client certificate");

        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let stem = format!("client-{n}-{}", file_safe(cn.unwrap_or("no-cn")));
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        ClientCert {
            common_name: cn.map(str::to_owned),
            cert_path: write(self.dir.path(), &format!("{stem}.crt"), &cert_pem),
            key_path: write(self.dir.path(), &format!("{stem}.key"), &key_pem),
            cert_pem,
            key_pem,
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The issuers hold private keys; the directory is what helps when a test fails.
        f.debug_struct("Pki").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

/// A self-signed ECDSA P-256 CA that may sign leaves only (path length 0).
fn new_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let key = KeyPair::generate().expect("generate a CA key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, key).expect("self-sign a CA")
}

/// Marks `params` as an end-entity certificate for one TLS role.
fn leaf(params: &mut CertificateParams, role: ExtendedKeyUsagePurpose) {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![role];
    // Lets OpenSSL and webpki match the leaf to its CA by key id, not only by name.
    params.use_authority_key_identifier_extension = true;
}

/// Makes a CN usable in a file name; negative tests may use CNs with `/`, `+` or `#`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
