//! Integration tests of the test kit itself, through the same doors other crates' tests use:
//! the PKI as OpenSSL sees it, a real Mosquitto with mTLS and ACLs, and the small helpers.
//! Tests that need an external program return early when it is missing, unless
//! `WARDEN_REQUIRE_EXTERNAL=1`.

mod helpers;
mod mosquitto;
mod pki;
