//! The `postee` binary: parse the command line, set up logging, run.

use std::io::IsTerminal;

use clap::Parser;
use postee::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc: less CPU per allocation than glibc's malloc on the many small, short-lived
/// allocations of parsing, routing and HTTP, and memory goes back to the system sooner.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(format: LogFormat) {
    let debug = ["POSTEE_DEBUG", "AQUAALERT_DEBUG"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{default},hyper=warn,reqwest=warn,rustls=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[allow(
    clippy::expect_used,
    reason = "without a runtime there is nothing to run"
)]
fn main() {
    postee::install_crypto_provider();
    let cli = Cli::parse();
    init_tracing(cli.serve.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let code = rt.block_on(async move {
        match cli.command {
            Some(Command::Check(a)) => postee::cmd::check::check(a).await,
            Some(Command::Render(a)) => postee::cmd::render::render(a).await,
            Some(Command::Test(a)) => postee::cmd::test::run(a).await,
            Some(Command::Dlq(a)) => postee::cmd::dlq::dlq(a),
            Some(Command::Healthcheck(a)) => postee::cmd::healthcheck::run(a).await,
            None => postee::cmd::serve::run(cli.serve).await,
        }
    });
    // Do not wait for blocking threads (e.g. a stuck template) beyond the shutdown deadline.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
