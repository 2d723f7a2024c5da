//! Listening and established TCP sockets from the kernel's `NETLINK_SOCK_DIAG` interface
//! (`sock_diag(7)`, what `ss` uses), for the running system.
//!
//! Why not `/proc/net/tcp`: every `read()` of that file, the empty one at end of file included,
//! walks the kernel's whole TCP established hash table, which the kernel sizes from the RAM (one
//! bucket per 128 KB, 262,144 buckets on a 24 GB host), however few sockets there are. Reading
//! `tcp` and `tcp6` to the end is four walks per sample, and a bigger read buffer does not help:
//! the kernel returns at most a page per `read()`. A sock_diag dump walks the table once per
//! address family (each walk about five times cheaper than a `read()`'s, measured), and the
//! kernel leaves out the states we do not report (TIME_WAIT and friends) before they are copied.
//! On the benchmark host that is about 0.9 ms of kernel time per sample instead of 10 ms.
//!
//! The messages are fixed C structs of `linux/inet_diag.h`, decoded here by hand: the netlink
//! crates (`netlink-packet-sock-diag` with `netlink-packet-core`, `netlink-sys` and `smallvec`)
//! would add four crates to the device binary for two structs. The socket comes from `socket2`, already in the build through
//! tokio. Kernels without sock_diag for TCP (`CONFIG_INET_DIAG`, an optional module on small
//! distributions such as OpenWrt) answer with an error, and the caller reads `/proc/net`
//! instead.

use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use procfs::net::TcpState;
use socket2::{Domain, Protocol, Socket, Type};

// Constants of the Linux ABI (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h).
const AF_NETLINK: i32 = 16;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IPPROTO_TCP: u8 = 6;
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
const ENOENT: i32 = 2;

/// `struct nlmsghdr`.
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a zeroed socket id.
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg` up to the end of the socket id, which is all that is read of it:
/// family, state, timer, retrans, then `inet_diag_sockid` (sport, dport, src[16], dst[16], if,
/// cookie).
const MSG_MIN_LEN: usize = 4 + 48;
/// The kernel fills each datagram of a dump up to the larger of `NLMSG_GOODSIZE` (a page, at
/// most 8 KiB, less overhead) and the largest buffer the reader has offered, so 8 KiB is never
/// truncated; one datagram holds about 60 sockets (124-132 bytes each).
const RECV_BUFFER: usize = 8 * 1024;
/// The kernel answers a dump at once; this only bounds a wait that should never happen.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);

/// One socket of the dump, as the kernel reports it.
#[derive(Debug)]
pub(crate) struct TcpSocket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The TCP sockets in state LISTEN or ESTABLISHED, IPv4 then IPv6.
///
/// An error means that this kernel (or a sandbox around the agent) does not offer sock_diag for
/// TCP. A kernel without IPv6 support for it is not an error, just no IPv6 sockets, like a
/// missing `/proc/net/tcp6`.
pub(crate) fn tcp_sockets() -> io::Result<Vec<TcpSocket>> {
    let socket = Socket::new(Domain::from(AF_NETLINK), Type::DGRAM, Some(Protocol::from(NETLINK_SOCK_DIAG)))?;
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut sockets = Vec::new();
    dump(&socket, AF_INET, 1, &mut buf, &mut sockets)?;
    match dump(&socket, AF_INET6, 2, &mut buf, &mut sockets) {
        Err(e) if e.raw_os_error() == Some(ENOENT) => {}
        other => other?,
    }
    Ok(sockets)
}

/// Asks for one family's listening and established TCP sockets and collects the answer.
fn dump(socket: &Socket, family: u8, seq: u32, buf: &mut [u8], out: &mut Vec<TcpSocket>) -> io::Result<()> {
    socket.send(&request(family, seq))?;
    loop {
        let len = (&*socket).read(buf)?;
        if len == 0 {
            return Err(invalid("sock_diag: empty read before the end of the dump"));
        }
        if parse(&buf[..len], seq, out)? == Parsed::Done {
            return Ok(());
        }
    }
}

/// A dump request: `nlmsghdr` then `inet_diag_req_v2` for all TCP sockets of `family` in state
/// LISTEN or ESTABLISHED (the socket id, all zeros, matches every socket).
fn request(family: u8, seq: u32) -> [u8; NLMSG_HDR_LEN + REQUEST_LEN] {
    let mut req = [0u8; NLMSG_HDR_LEN + REQUEST_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDR_LEN + REQUEST_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the message is for the kernel.
    req[16] = family;
    req[17] = IPPROTO_TCP;
    let states = (1u32 << TCP_LISTEN) | (1u32 << TCP_ESTABLISHED);
    req[20..24].copy_from_slice(&states.to_ne_bytes());
    req
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
}

/// Decodes one datagram of a dump: socket messages, then possibly `NLMSG_DONE` or an error.
///
/// Messages of another sequence number (none are expected) are skipped. A dump the kernel flags
/// as interrupted (`NLM_F_DUMP_INTR`: the table changed while it was walked) is used as it is,
/// like a `/proc` file read while sockets come and go: a socket may be missing or seen twice,
/// and the report deduplicates.
fn parse(mut data: &[u8], seq: u32, out: &mut Vec<TcpSocket>) -> io::Result<Parsed> {
    while data.len() >= NLMSG_HDR_LEN {
        let len = ne_u32(&data[0..4]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let msg_seq = ne_u32(&data[8..12]);
        if len < NLMSG_HDR_LEN || len > data.len() {
            return Err(invalid("sock_diag: truncated netlink message"));
        }
        let body = &data[NLMSG_HDR_LEN..len];
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => return Ok(Parsed::Done),
                NLMSG_ERROR => {
                    // `struct nlmsgerr`: a negative errno, then the request.
                    let errno =
                        body.get(0..4).ok_or_else(|| invalid("sock_diag: truncated error message"))?;
                    return Err(io::Error::from_raw_os_error((ne_u32(errno) as i32).wrapping_neg()));
                }
                SOCK_DIAG_BY_FAMILY => out.extend(socket_of(body)?),
                _ => {}
            }
        }
        // Messages are aligned to 4 bytes.
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(Parsed::More)
}

/// The socket an `inet_diag_msg` describes; `None` for a family or state that was not asked for.
fn socket_of(msg: &[u8]) -> io::Result<Option<TcpSocket>> {
    if msg.len() < MSG_MIN_LEN {
        return Err(invalid("sock_diag: truncated inet_diag_msg"));
    }
    let (family, state) = (msg[0], msg[1]);
    let state = match state {
        TCP_LISTEN => TcpState::Listen,
        TCP_ESTABLISHED => TcpState::Established,
        _ => return Ok(None),
    };
    // Ports and addresses are in network byte order.
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let ip = |at: usize| -> Option<IpAddr> {
        match family {
            AF_INET => Some(Ipv4Addr::new(msg[at], msg[at + 1], msg[at + 2], msg[at + 3]).into()),
            AF_INET6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&msg[at..at + 16]);
                Some(Ipv6Addr::from(octets).into())
            }
            _ => None,
        }
    };
    let (Some(local), Some(remote)) = (ip(8), ip(24)) else {
        return Ok(None);
    };
    Ok(Some(TcpSocket {
        state,
        local: SocketAddr::new(local, port(4)),
        remote: SocketAddr::new(remote, port(6)),
    }))
}

/// The native-endian `u32` in the four bytes of `b`.
fn ne_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message of `kind` and `seq` around `body`, padded to 4 bytes.
    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR_LEN + body.len();
        let mut m = Vec::new();
        m.extend((len as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(body);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    /// An `inet_diag_msg` (72 bytes) for a socket of `family` in `state`.
    fn diag_msg(family: u8, state: u8, local: (&[u8], u16), remote: (&[u8], u16)) -> Vec<u8> {
        let mut m = vec![0u8; 72];
        m[0] = family;
        m[1] = state;
        m[4..6].copy_from_slice(&local.1.to_be_bytes());
        m[6..8].copy_from_slice(&remote.1.to_be_bytes());
        m[8..8 + local.0.len()].copy_from_slice(local.0);
        m[24..24 + remote.0.len()].copy_from_slice(remote.0);
        m
    }

    fn check(datagram: &[u8], expect: io::Result<(Parsed, Vec<&str>)>) {
        let mut out = Vec::new();
        let got = parse(datagram, 7, &mut out).map(|parsed| {
            let sockets: Vec<String> =
                out.iter().map(|s| format!("{:?} {} {}", s.state, s.local, s.remote)).collect();
            (parsed, sockets)
        });
        match (got, expect) {
            (Ok(got), Ok((parsed, sockets))) => {
                assert_eq!(got, (parsed, sockets.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
            }
            (Err(got), Err(expect)) => {
                assert_eq!((got.kind(), got.raw_os_error()), (expect.kind(), expect.raw_os_error()))
            }
            (got, expect) => panic!("got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn sockets_of_both_families_then_done() {
        let v6_local = "2001:db8:1::23".parse::<Ipv6Addr>().unwrap().octets();
        let v6_remote = "::ffff:203.0.113.9".parse::<Ipv6Addr>().unwrap().octets();
        let mut datagram = message(
            SOCK_DIAG_BY_FAMILY,
            7,
            &diag_msg(AF_INET, TCP_LISTEN, (&[0, 0, 0, 0], 22), (&[0, 0, 0, 0], 0)),
        );
        datagram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            7,
            &diag_msg(AF_INET, TCP_ESTABLISHED, (&[192, 168, 1, 23], 51234), (&[198, 51, 100, 7], 8883)),
        ));
        datagram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            7,
            &diag_msg(AF_INET6, TCP_ESTABLISHED, (&v6_local, 8080), (&v6_remote, 40123)),
        ));
        let sockets = vec![
            "Listen 0.0.0.0:22 0.0.0.0:0",
            "Established 192.168.1.23:51234 198.51.100.7:8883",
            "Established [2001:db8:1::23]:8080 [::ffff:203.0.113.9]:40123",
        ];
        check(&datagram, Ok((Parsed::More, sockets.clone())));
        datagram.extend(message(NLMSG_DONE, 7, &0i32.to_ne_bytes()));
        check(&datagram, Ok((Parsed::Done, sockets)));
    }

    #[test]
    fn states_and_families_not_asked_for_and_other_sequences_are_skipped() {
        let mut datagram = message(
            SOCK_DIAG_BY_FAMILY,
            7,
            &diag_msg(AF_INET, 6, (&[10, 0, 0, 5], 41000), (&[203, 0, 113, 1], 443)),
        );
        datagram.extend(message(SOCK_DIAG_BY_FAMILY, 7, &diag_msg(1, TCP_LISTEN, (&[], 0), (&[], 0))));
        datagram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            8,
            &diag_msg(AF_INET, TCP_LISTEN, (&[0, 0, 0, 0], 22), (&[0, 0, 0, 0], 0)),
        ));
        datagram.extend(message(NLMSG_DONE, 8, &0i32.to_ne_bytes()));
        check(&datagram, Ok((Parsed::More, vec![])));
    }

    #[test]
    fn kernel_errors_and_truncation_are_errors() {
        check(&message(NLMSG_ERROR, 7, &(-ENOENT).to_ne_bytes()), Err(io::Error::from_raw_os_error(ENOENT)));
        check(&message(NLMSG_ERROR, 7, &[]), Err(invalid("")));
        check(&message(SOCK_DIAG_BY_FAMILY, 7, &[AF_INET, TCP_LISTEN, 0, 0]), Err(invalid("")));
        let mut cut = message(SOCK_DIAG_BY_FAMILY, 7, &diag_msg(AF_INET, TCP_LISTEN, (&[], 0), (&[], 0)));
        cut.truncate(40);
        check(&cut, Err(invalid("")));
        // A header claiming less than itself.
        let mut short = message(NLMSG_DONE, 7, &[]);
        short[0..4].copy_from_slice(&4u32.to_ne_bytes());
        check(&short, Err(invalid("")));
        // Fewer bytes than a header: nothing to read.
        check(&[0u8; 8], Ok((Parsed::More, vec![])));
    }

    #[test]
    fn request_asks_for_listening_and_established_tcp() {
        let req = request(AF_INET6, 2);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(req[4..6].try_into().unwrap()), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes(req[6..8].try_into().unwrap()), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 2);
        assert_eq!((req[16], req[17]), (AF_INET6, IPPROTO_TCP));
        assert_eq!(u32::from_ne_bytes(req[20..24].try_into().unwrap()), (1 << 10) | (1 << 1));
        assert!(req[24..].iter().all(|&b| b == 0), "the socket id matches every socket");
    }
}
