//! The simulator against a real Warden server started in-process: its MQTT/TLS endpoint, REST
//! API, SQLite store and detection, with devices registered through the API and run as real
//! MQTT 5 clients.

mod control;
mod detect;
mod fleet;
mod harness;
mod misbehave;
