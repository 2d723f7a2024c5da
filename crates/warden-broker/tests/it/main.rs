//! Integration tests of the MQTT endpoint through its public API: a real broker on
//! 127.0.0.1 with real mTLS, driven by rumqttc devices speaking MQTT 3.1.1 and 5. Each rmqtt
//! trap from `notes/rust-stack.md` §1.3 has a test here, named in its doc comment.

mod connect;
mod harness;
mod idle;
mod lifecycle;
mod overflow;
mod publish;
mod subscribe;
mod tls_failures;
