//! The REST API.

pub mod sigv4;
