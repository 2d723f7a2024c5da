//! Integration tests of `warden-detect`, through its public API only (one test binary per crate).

mod alarms;
mod check;
mod cidr;
mod compile;
mod props;
mod rule;
mod state_size;
mod support;
mod windows;
