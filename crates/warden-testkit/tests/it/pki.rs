//! The PKI as another TLS stack sees it: OpenSSL must accept what rcgen wrote, for the roles
//! and names the certificates are meant for, and reject the deliberately wrong ones.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

use warden_testkit::{ClientCert, KeyKind, Pki, require_external};

/// Runs `openssl` and returns whether it succeeded, with its stdout and stderr.
fn openssl<I: AsRef<OsStr>>(openssl: &Path, args: impl IntoIterator<Item = I>) -> (bool, String) {
    let output = Command::new(openssl).args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn verify(openssl_path: &Path, ca: &Path, purpose: &str, cert: &Path, extra: &[&str]) -> (bool, String) {
    let mut args: Vec<&OsStr> =
        vec!["verify".as_ref(), "-CAfile".as_ref(), ca.as_os_str(), "-purpose".as_ref(), purpose.as_ref()];
    args.extend(extra.iter().map(|a| OsStr::new(*a)));
    args.push(cert.as_os_str());
    openssl(openssl_path, args)
}

fn subject(openssl_path: &Path, cert: &ClientCert) -> String {
    let (ok, text) = openssl(
        openssl_path,
        [
            "x509".as_ref(),
            "-noout".as_ref(),
            "-subject".as_ref(),
            "-nameopt".as_ref(),
            "RFC2253".as_ref(),
            "-in".as_ref(),
            cert.cert_path.as_os_str(),
        ],
    );
    assert!(ok, "{text}");
    text.trim().to_owned()
}

#[test]
fn keys_are_pkcs8_pem_and_files_match_memory() {
    let pki = Pki::new();
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let client = pki.client("thing-1", kind);
        assert!(client.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{kind:?}");
        assert!(client.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{kind:?}");
        assert_eq!(fs::read_to_string(&client.key_path).unwrap(), client.key_pem);
        assert_eq!(fs::read_to_string(&client.cert_path).unwrap(), client.cert_pem);
        assert_eq!(client.common_name.as_deref(), Some("thing-1"));
    }
    let server_key = fs::read_to_string(pki.server_key_path()).unwrap();
    assert!(server_key.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(fs::read_to_string(pki.ca_pem_path()).unwrap(), pki.ca_pem());
}

#[test]
fn certificates_for_one_name_do_not_overwrite_each_other() {
    let pki = Pki::new();
    let first = pki.client("thing-1", KeyKind::EcdsaP256);
    let second = pki.client("thing-1", KeyKind::EcdsaP256);
    assert_ne!(first.cert_path, second.cert_path);
    assert_ne!(first.key_pem, second.key_pem);
    assert_eq!(fs::read_to_string(&first.key_path).unwrap(), first.key_pem);
}

#[test]
fn key_kinds_are_what_they_say() {
    let Some(openssl_path) = require_external("openssl") else { return };
    let pki = Pki::new();
    for (kind, expected) in [(KeyKind::EcdsaP256, "prime256v1"), (KeyKind::Rsa2048, "Private-Key: (2048 bit")]
    {
        let client = pki.client("thing-1", kind);
        let (ok, text) = openssl(
            &openssl_path,
            [
                "pkey".as_ref(),
                "-noout".as_ref(),
                "-text".as_ref(),
                "-in".as_ref(),
                client.key_path.as_os_str(),
            ],
        );
        assert!(ok && text.contains(expected), "{kind:?}: {text}");
    }
}

#[test]
fn openssl_verifies_the_server_certificate_for_localhost_and_127_0_0_1() {
    let Some(openssl_path) = require_external("openssl") else { return };
    let pki = Pki::new();
    for name in [["-verify_hostname", "localhost"], ["-verify_ip", "127.0.0.1"]] {
        let (ok, text) = verify(&openssl_path, pki.ca_pem_path(), "sslserver", pki.server_cert_path(), &name);
        assert!(ok, "{name:?}: {text}");
    }
    let (ok, _) = verify(
        &openssl_path,
        pki.ca_pem_path(),
        "sslserver",
        pki.server_cert_path(),
        &["-verify_hostname", "example.com"],
    );
    assert!(!ok, "the server certificate must not be valid for other names");
}

#[test]
fn openssl_verifies_client_certificates_of_both_key_kinds() {
    let Some(openssl_path) = require_external("openssl") else { return };
    let pki = Pki::new();
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let client = pki.client("thing-1", kind);
        let (ok, text) = verify(&openssl_path, pki.ca_pem_path(), "sslclient", &client.cert_path, &[]);
        assert!(ok, "{kind:?}: {text}");
        assert_eq!(subject(&openssl_path, &client), "subject=CN=thing-1");
        // EKU clientAuth only: a device certificate must not serve as a server certificate.
        let (ok, _) = verify(&openssl_path, pki.ca_pem_path(), "sslserver", &client.cert_path, &[]);
        assert!(!ok, "{kind:?} client certificate accepted as a server certificate");
    }
}

#[test]
fn foreign_client_is_signed_by_the_unrelated_ca_only() {
    let Some(openssl_path) = require_external("openssl") else { return };
    let pki = Pki::new();
    let foreign = pki.foreign_client("thing-1");
    let (ok, text) = verify(&openssl_path, pki.ca_pem_path(), "sslclient", &foreign.cert_path, &[]);
    assert!(!ok, "{text}");
    let (ok, text) = verify(&openssl_path, pki.foreign_ca_pem_path(), "sslclient", &foreign.cert_path, &[]);
    assert!(ok, "{text}");
    assert_eq!(subject(&openssl_path, &foreign), "subject=CN=thing-1");
}

#[test]
fn client_without_cn_is_valid_but_has_no_common_name() {
    let Some(openssl_path) = require_external("openssl") else { return };
    let pki = Pki::new();
    let client = pki.client_without_cn();
    assert_eq!(client.common_name, None);
    let (ok, text) = verify(&openssl_path, pki.ca_pem_path(), "sslclient", &client.cert_path, &[]);
    assert!(ok, "{text}");
    assert_eq!(subject(&openssl_path, &client), "subject=O=Warden Test");
}
