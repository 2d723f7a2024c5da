//! The server's certificate authority: created on first start, then loaded from the data dir.
//!
//! ECDSA P-256 throughout: a full TLS handshake with P-256 certificates is about 3 KB against
//! 5-7 KB with RSA, which devices on metered links pay at every connect. The CA signs the
//! server certificate (for `localhost`, `127.0.0.1` and the configured names) and, on request,
//! a certificate and key for a thing (CN = thing name, which is the thing's identity on MQTT).

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// AWS's `certificateId`: the SHA-256 of the DER encoding, 64 hex characters.
    pub certificate_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The CA, loaded or created in `DATA_DIR/pki`.
pub struct Pki {
    dir: PathBuf,
    ca_cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the CA from `dir`, creating it (and `dir`) on first start. Keys are written with
    /// mode 0600.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        let (ca_cert_pem, key) = if cert_path.exists() {
            let cert = read(&cert_path)?;
            let key = KeyPair::from_pem(&read(&key_path)?)?;
            (cert, key)
        } else {
            fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.to_owned(), source })?;
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = name("Warden CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_after = rcgen::date_time_ymd(2099, 12, 31);
            let cert = params.self_signed(&key)?;
            write_secret(&key_path, &key.serialize_pem())?;
            write(&cert_path, &cert.pem())?;
            (cert.pem(), key)
        };
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, key)?;
        Ok(Pki { dir: dir.to_owned(), ca_cert_pem, issuer })
    }

    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server certificate for `names` (plus `localhost` and `127.0.0.1`), reused while its
    /// names are unchanged so that devices pinning nothing but the CA see no churn.
    pub fn server_cert(&self, names: &[String]) -> Result<IssuedCert, PkiError> {
        let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
        for n in names {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        let names_path = self.dir.join("server.names");
        let (cert_path, key_path) = (self.dir.join("server.crt"), self.dir.join("server.key"));
        if read(&names_path).ok().as_deref() == Some(all.join("\n").as_str()) && cert_path.exists() {
            let cert_pem = read(&cert_path)?;
            return Ok(IssuedCert {
                certificate_id: certificate_id_of_pem(&cert_pem)?,
                cert_pem,
                key_pem: read(&key_path)?,
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&all[0]);
        params.subject_alt_names = all
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let issued = self.sign(params)?;
        write(&cert_path, &issued.cert_pem)?;
        write_secret(&key_path, &issued.key_pem)?;
        write(&names_path, &all.join("\n"))?;
        Ok(issued)
    }

    /// A new key and certificate for `thing` (CN = thing name, client authentication only).
    pub fn issue_thing_cert(&self, thing: &str) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(thing);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<IssuedCert, PkiError> {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            certificate_id: certificate_id(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// AWS's certificate id: SHA-256 of the DER, lower-case hex.
pub fn certificate_id(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// The id of the first certificate in a PEM text.
pub fn certificate_id_of_pem(pem: &str) -> Result<String, PkiError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Invalid(format!("not a PEM certificate: {e}")))?;
    Ok(certificate_id(&der))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.to_owned(), source })
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    fs::write(path, text).map_err(|source| PkiError::Io { path: path.to_owned(), source })
}

/// Writes a private key readable by its owner only.
fn write_secret(path: &Path, text: &str) -> Result<(), PkiError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| PkiError::Io { path: path.to_owned(), source };
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn ca_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let again = Pki::load_or_create(dir.path()).unwrap();
        assert_eq!(pki.ca_cert_pem(), again.ca_cert_pem());
        let mode = fs::metadata(dir.path().join("ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn server_cert_is_reused_until_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let a = pki.server_cert(&[]).unwrap();
        let b = Pki::load_or_create(dir.path()).unwrap().server_cert(&[]).unwrap();
        assert_eq!(a.certificate_id, b.certificate_id);
        let c = pki.server_cert(&["warden.example.net".into()]).unwrap();
        assert_ne!(a.certificate_id, c.certificate_id);
        assert_eq!(c.certificate_id.len(), 64);
        assert_eq!(certificate_id_of_pem(&c.cert_pem).unwrap(), c.certificate_id);
    }

    #[test]
    fn thing_certs_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let a = pki.issue_thing_cert("dev-1").unwrap();
        let b = pki.issue_thing_cert("dev-1").unwrap();
        assert_ne!(a.certificate_id, b.certificate_id);
        assert!(a.key_pem.contains("PRIVATE KEY"));
    }
}
