//! The Warden server (in progress).

pub mod api;
pub mod config;
pub mod pki;
