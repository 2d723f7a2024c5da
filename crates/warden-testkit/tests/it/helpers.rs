//! Free ports, waiting for listeners, and finding external programs.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::panic;
use std::time::Duration;

use warden_testkit::{find_program, free_port, require_external, wait_until_listening};

#[test]
fn free_port_can_be_bound() {
    let port = free_port();
    assert_ne!(port, 0);
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
}

#[test]
fn wait_until_listening_sees_a_listener() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    wait_until_listening(addr, Duration::from_secs(5)).expect("listener is up");
}

#[test]
fn wait_until_listening_times_out_without_listener() {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let error = wait_until_listening(addr, Duration::from_millis(100)).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn find_program_searches_path() {
    let sh = find_program("sh").expect("every Unix has sh");
    assert!(sh.is_absolute(), "{}", sh.display());
    assert_eq!(find_program("warden-no-such-program"), None);
    assert_eq!(find_program(sh.to_str().unwrap()), Some(sh));
}

#[test]
fn require_external_skips_or_fails_for_a_missing_program() {
    let strict = std::env::var("WARDEN_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
    let outcome = panic::catch_unwind(|| require_external("warden-no-such-program"));
    match outcome {
        Ok(found) => {
            assert!(!strict, "must panic when WARDEN_REQUIRE_EXTERNAL=1");
            assert_eq!(found, None);
        }
        Err(payload) => {
            assert!(strict, "must not panic without WARDEN_REQUIRE_EXTERNAL=1");
            let message = payload.downcast_ref::<String>().unwrap();
            assert_eq!(message, "WARDEN_REQUIRE_EXTERNAL=1 but warden-no-such-program is not installed");
        }
    }
    assert!(require_external("sh").is_some());
}
