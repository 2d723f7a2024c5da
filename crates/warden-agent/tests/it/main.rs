//! Integration tests of the `warden-agent` binary: its command line, and its reports going
//! through a real Mosquitto broker over mTLS with certificates made for the test.

mod cli;
mod harness;
mod mqtt;
