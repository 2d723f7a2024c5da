//! The Warden server: the embedded MQTT endpoint with certificate identities and AWS IoT
//! policies (`authz`), report ingest (`ingest`), cloud-side metrics (`cloud`), the CA (`pki`),
//! the REST API (`api`) and `/metrics`, composed by `server` around the shared `state`.

pub mod alerts;
pub mod api;
pub mod authz;
pub mod cloud;
pub mod config;
pub mod dashboard;
pub mod detect;
pub mod ingest;
pub mod metrics;
pub mod mitigation;
pub mod pki;
pub mod server;
pub mod state;
