//! The integration tests, as one test binary (the harness in `common` compiles once): the real
//! `postee` binary on free loopback ports, real local servers (HTTP sinks, SMTP), fixtures and
//! goldens.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The tests signal the processes they start (libc::kill: no pointers, no memory effects).
#![allow(unsafe_code)]

mod common;

mod actions_awssecurityhub;
mod actions_docker;
mod actions_jira;
mod actions_kubernetes;
mod actions_messaging;
mod actions_ticketing;
mod cli;
mod concurrency;
mod deploy;
mod durability;
mod e2e;
mod fuzz_corpora;
mod image;
mod secrets;
