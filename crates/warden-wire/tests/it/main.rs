//! Integration tests of `warden-wire`, through its public API only (one test binary per crate).

mod accepted;
mod captures;
mod malformed;
mod replies;
mod roundtrip;
mod support;
mod topics;
