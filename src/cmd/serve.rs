//! The server: loads the config, listens on HTTP and HTTPS, feeds accepted events to the
//! pipeline, and shuts down gracefully on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{build_app, data_dir, db_path};
use crate::app::App;
use crate::cli::{ServeArgs, env_override};
use crate::config;
use crate::event::SystemClock;
use crate::intake::{self, Intake};
use crate::pipeline::{Limits, Pipeline, Upkeep};
use crate::store::Store;

/// How long delivered history is kept when `delete-old-data` (days) is not set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The API key: `api-key` in the config, else `POSTEE_API_KEY`, else one generated once and
/// kept in the store; a generated key is also written to `<data dir>/api-key` (mode 0600).
fn api_key(cfg: &config::Config, store: &Store, data: &std::path::Path) -> Result<String, String> {
    let configured = cfg
        .api_key
        .as_ref()
        .map(|s| s.expose().to_string())
        .filter(|k| !k.is_empty())
        .or_else(|| std::env::var("POSTEE_API_KEY").ok())
        .filter(|k| !k.is_empty());
    let key = store
        .api_key(configured.as_deref())
        .map_err(|e| e.to_string())?;
    if configured.is_none() {
        let file = data.join("api-key");
        if std::fs::read_to_string(&file).ok().as_deref() != Some(key.as_str()) {
            crate::tls::write_private(&file, key.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        }
    }
    Ok(key)
}

/// Resolves `host:port` (Postee also accepts `:port`).
async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    tokio::net::lookup_host(&full)
        .await
        .map_err(|e| format!("invalid listen address {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("listen address {addr:?} resolves to nothing"))
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(l)
}

/// Exit status when a pipeline task failed for good (EX_SOFTWARE): an orchestrator restarts
/// the process, which resumes from the journal and the outbox.
pub const EXIT_TASK_FAILED: i32 = 70;

/// Runs the server until a signal. Returns the process exit code.
pub async fn run(args: ServeArgs) -> i32 {
    match serve(args).await {
        Ok(code) => code,
        Err(Failed { message, code }) => {
            eprintln!("{message}");
            code
        }
    }
}

/// Why the service could not start: what to print, and the exit status.
struct Failed {
    message: String,
    code: i32,
}

impl From<String> for Failed {
    fn from(message: String) -> Self {
        Failed {
            message: format!("error: {message}"),
            code: 1,
        }
    }
}

async fn serve(args: ServeArgs) -> Result<i32, Failed> {
    if args.controller_mode || !args.runner_name.is_empty() {
        let message = if args.controller_mode && !args.runner_name.is_empty() {
            "error: postee cannot run as a controller when running in runner mode"
        } else {
            "error: controller/runner mode is not supported yet"
        };
        return Err(Failed {
            message: message.into(),
            code: 2,
        });
    }
    let cfg_path = PathBuf::from(env_override(
        &args.cfgfile.display().to_string(),
        "AQUAALERT_CFG",
        "POSTEE_CFG",
    ));
    let (cfg, app) = load(&cfg_path, args.strict).await?;
    let data = data_dir(args.data_dir.clone());
    let db = db_path(args.data_dir.clone());
    let store = Arc::new(Store::open(&db).map_err(|e| format!("cannot open the store: {e}"))?);
    std::fs::create_dir_all(&data)
        .map_err(|e| format!("cannot create the data directory {}: {e}", data.display()))?;
    let key = api_key(&cfg, &store, &data)?;
    let pipeline = Pipeline::start(
        app.clone(),
        store,
        upkeep(&cfg),
        Arc::new(SystemClock),
        Limits::default(),
    )
    .map_err(|e| format!("cannot start delivery: {e}"))?;
    let http_addr = env_override(&args.url, "AQUAALERT_URL", "POSTEE_HTTP");
    let tls_addr = env_override(&args.tls, "AQUAALERT_TLS", "POSTEE_HTTPS");
    let intake = Intake::new(pipeline.clone(), key, args.max_body_bytes);
    let handle = axum_server::Handle::<SocketAddr>::new();
    let (mut servers, http_local, tls_local) = listen(
        intake::router(intake),
        &handle,
        &http_addr,
        &tls_addr,
        &data,
    )
    .await?;
    tracing::info!(
        config = %cfg_path.display(),
        http = ?http_local,
        https = ?tls_local,
        routes = app.routes.len(),
        store = %db.display(),
        "postee {} started",
        env!("CARGO_PKG_VERSION")
    );

    let code = tokio::select! {
        sig = shutdown_signal() => {
            tracing::info!(signal = sig, "shutting down: no new events; finishing in-flight deliveries");
            0
        }
        why = pipeline.fatal() => {
            tracing::error!(error = %why, "a pipeline task failed for good; stopping so the process can be restarted");
            EXIT_TASK_FAILED
        }
        Some(res) = servers.join_next() => {
            tracing::error!(error = ?res, "a listener stopped unexpectedly");
            1
        }
    };
    // Keep the listeners up while draining so clients and load balancers get a clear 503
    // (with Retry-After) on new events and on /healthz, instead of refused connections.
    pipeline
        .shutdown(Duration::from_secs(args.shutdown_timeout))
        .await;
    handle.graceful_shutdown(Some(Duration::from_secs(2)));
    tracing::info!("stopped");
    Ok(code)
}

/// Loads and builds the config; warnings are logged, problems end the start.
async fn load(cfg_path: &Path, strict: bool) -> Result<(config::Config, Arc<App>), Failed> {
    let (cfg, mut problems) = crate::actions::load_config(cfg_path);
    let app = match &cfg {
        Some(cfg) => build_app(cfg, strict, &mut problems).await,
        None => None,
    };
    for p in problems.warnings() {
        tracing::warn!(path = %p.path, "config: {}", p.message);
    }
    match (cfg, app) {
        (Some(cfg), Some(app)) => Ok((cfg, Arc::new(app))),
        _ => Err(Failed {
            message: format!(
                "error: cannot start: the config {} has problems:\n{problems}",
                cfg_path.display()
            )
            .trim_end()
            .to_string(),
            code: 1,
        }),
    }
}

/// Maintenance settings from the config.
fn upkeep(cfg: &config::Config) -> Upkeep {
    Upkeep {
        retention: if cfg.delete_old_data > 0 {
            Duration::from_secs(cfg.delete_old_data as u64 * 24 * 3600)
        } else {
            DEFAULT_RETENTION
        },
        max_db_size: cfg.max_db_size,
        verify_interval: Duration::from_secs(cfg.db_verify_interval * 3600),
    }
}

type Servers = tokio::task::JoinSet<std::io::Result<()>>;

/// Starts the HTTP listener and, unless disabled, the HTTPS one (with the data directory's
/// certificate).
async fn listen(
    router: axum::Router,
    handle: &axum_server::Handle<SocketAddr>,
    http_addr: &str,
    tls_addr: &str,
    data: &Path,
) -> Result<(Servers, Option<SocketAddr>, Option<SocketAddr>), String> {
    let http_listener = bind(resolve(http_addr).await?)?;
    let tls_enabled = !matches!(tls_addr.trim(), "" | "off" | "none" | "disabled");
    let mut tls_parts = None;
    if tls_enabled {
        let files = crate::tls::cert_files(data).map_err(|e| format!("HTTPS: {e}"))?;
        if files.generated {
            tracing::info!(cert = %files.cert.display(), "generated a self-signed TLS certificate");
        }
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
            .await
            .map_err(|e| {
                format!(
                    "HTTPS: cannot load {} / {}: {e}",
                    files.cert.display(),
                    files.key.display()
                )
            })?;
        tls_parts = Some((bind(resolve(tls_addr).await?)?, config));
    }
    let http_local = http_listener.local_addr().ok();
    let http_server = axum_server::from_tcp(http_listener)
        .map_err(|e| e.to_string())?
        .handle(handle.clone());
    let mut servers = Servers::new();
    let svc = router.clone().into_make_service();
    servers.spawn(async move { http_server.serve(svc).await });
    let mut tls_local = None;
    if let Some((listener, config)) = tls_parts {
        tls_local = listener.local_addr().ok();
        let s = axum_server::from_tcp_rustls(listener, config)
            .map_err(|e| e.to_string())?
            .handle(handle.clone());
        let svc = router.into_make_service();
        servers.spawn(async move { s.serve(svc).await });
    }
    Ok((servers, http_local, tls_local))
}

#[allow(
    clippy::expect_used,
    reason = "installing signal handlers fails only without a tokio runtime with signals on"
)]
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
