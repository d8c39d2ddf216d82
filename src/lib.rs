//! postee: a security alert router compatible with Postee. The flow of one event:
//! `intake` → `pipeline` (journal → router: `routing` plans and decides → `store` commits →
//! lanes send through `actions`). `cmd` holds the subcommands. docs/architecture.md has the
//! map.

pub mod actions;
pub(crate) mod app;
pub mod bundle;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod intake;
pub mod message;
pub(crate) mod pipeline;
pub(crate) mod rego;
pub mod routing;
pub mod store;
pub mod templates;
pub(crate) mod tls;

/// Installs the process-wide TLS crypto provider (ring). Call once at start.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
