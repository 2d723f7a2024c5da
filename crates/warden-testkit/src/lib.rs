//! Dev-only test kit shared by Warden's integration tests: a throwaway PKI, a real Mosquitto
//! broker with mTLS and ACLs, free ports and the check that an external program is installed.
//! Everything here creates real files, sockets and processes in temp dirs and cleans them up on
//! drop, so tests exercise the same TLS and MQTT paths a device does. It is a dev-dependency only
//! and must never be linked into a shipped binary.

mod external;
mod mosquitto;
mod net;
mod pki;

pub use external::{find_program, require_external};
pub use mosquitto::{Message, Mosquitto, MosquittoOptions, Subscription, require_mosquitto, thing_acl};
pub use net::{free_port, wait_until_listening};
pub use pki::{ClientCert, KeyKind, Pki};
