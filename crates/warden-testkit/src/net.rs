//! Loopback ports for tests: finding a free one and waiting until a process listens on one.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// For programs that cannot listen on port 0 and report the port they got (Mosquitto, the AWS
/// agent's broker). Another process may take the port before the caller binds it, so callers
/// that start a server on it should retry with a new port when the bind fails.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// Waits until `addr` accepts TCP connections, or fails with `TimedOut` after `timeout`.
///
/// Polls with a connect attempt every 20 ms: the listener is in another process, so there is no
/// event to wait on, and a refused connect on loopback costs microseconds.
pub fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing listens on {addr} after {timeout:?}: {e}"),
                ));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}
