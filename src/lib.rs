//! postee: a security alert router compatible with Postee. The flow of one event:
//! `intake` → `app` (route `routing` conditions, `templates`) → `actions`.

pub mod actions;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dispatch;
#[doc(hidden)]
pub mod fuzzing;
pub mod intake;
pub mod rego;
pub mod routing;
pub mod serve;
pub mod store;
pub mod templates;
pub mod testcases;
pub mod tls;

/// Installs the process-wide TLS crypto provider (ring). Call once at start.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
