//! The server: loads the config, listens on HTTP and HTTPS, feeds accepted events to the
//! pipeline, and shuts down gracefully on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{self, Paths};
use crate::cli::{ServeArgs, env_override};
use crate::config;
use crate::dispatch::{Dispatcher, Upkeep};
use crate::intake::{self, Intake};
use crate::store::Store;

/// How long delivered history is kept when `delete-old-data` (days) is not set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The data directory: `--data-dir`/`POSTEE_DATA_DIR`, else the directory of `PATH_TO_DB`,
/// else `$XDG_DATA_HOME/postee`, `~/.local/share/postee`, or `./postee-data`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    if let Ok(db) = std::env::var("PATH_TO_DB")
        && !db.is_empty()
        && let Some(parent) = PathBuf::from(db).parent()
        && !parent.as_os_str().is_empty()
    {
        return parent.to_path_buf();
    }
    if let Ok(x) = std::env::var("XDG_DATA_HOME")
        && !x.is_empty()
    {
        return PathBuf::from(x).join("postee");
    }
    if let Ok(h) = std::env::var("HOME")
        && !h.is_empty()
    {
        return PathBuf::from(h).join(".local/share/postee");
    }
    PathBuf::from("postee-data")
}

/// The store file: `PATH_TO_DB` (Postee's variable), else `webhooks.db` in the data directory.
pub fn db_path(data_dir_flag: Option<PathBuf>) -> PathBuf {
    match std::env::var("PATH_TO_DB") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => data_dir(data_dir_flag).join("webhooks.db"),
    }
}

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

/// Runs the server until a signal. Returns the process exit code.
pub async fn run(args: ServeArgs) -> i32 {
    if args.controller_mode || !args.runner_name.is_empty() {
        if args.controller_mode && !args.runner_name.is_empty() {
            eprintln!("error: postee cannot run as a controller when running in runner mode");
        } else {
            eprintln!("error: controller/runner mode is not supported yet");
        }
        return 2;
    }
    let cfg_path = PathBuf::from(env_override(
        &args.cfgfile.display().to_string(),
        "AQUAALERT_CFG",
        "POSTEE_CFG",
    ));
    let http_addr = env_override(&args.url, "AQUAALERT_URL", "POSTEE_HTTP");
    let tls_addr = env_override(&args.tls, "AQUAALERT_TLS", "POSTEE_HTTPS");

    let (cfg, mut problems) = crate::actions::load_config(&cfg_path);
    let paths = Paths::from_env();
    let app = match &cfg {
        Some(cfg) => app::build(cfg, &paths, args.strict, &mut problems).await,
        None => None,
    };
    for p in problems.warnings() {
        tracing::warn!(path = %p.path, "config: {}", p.message);
    }
    let (Some(cfg), Some(app)) = (cfg, app) else {
        eprintln!(
            "error: cannot start: the config {} has problems:",
            cfg_path.display()
        );
        eprint!("{problems}");
        return 1;
    };
    let app = Arc::new(app);

    let data = data_dir(args.data_dir.clone());
    let db = db_path(args.data_dir.clone());
    let store = match Store::open(&db) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: cannot open the store: {e}");
            return 1;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&data) {
        eprintln!(
            "error: cannot create the data directory {}: {e}",
            data.display()
        );
        return 1;
    }
    let key = match api_key(&cfg, &store, &data) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let upkeep = Upkeep {
        retention: if cfg.delete_old_data > 0 {
            Duration::from_secs(cfg.delete_old_data as u64 * 24 * 3600)
        } else {
            DEFAULT_RETENTION
        },
        max_db_size: cfg.max_db_size,
        verify_interval: Duration::from_secs(cfg.db_verify_interval * 3600),
    };
    let dispatcher = match Dispatcher::start(app.clone(), store.clone(), upkeep) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot start delivery: {e}");
            return 1;
        }
    };

    let http_listener = match resolve(&http_addr).await.and_then(bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let tls_enabled = !matches!(tls_addr.trim(), "" | "off" | "none" | "disabled");
    let mut tls_parts = None;
    if tls_enabled {
        let files = match crate::tls::cert_files(&data) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: HTTPS: {e}");
                return 1;
            }
        };
        if files.generated {
            tracing::info!(cert = %files.cert.display(), "generated a self-signed TLS certificate");
        }
        let config =
            match axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!(
                        "error: HTTPS: cannot load {} / {}: {e}",
                        files.cert.display(),
                        files.key.display()
                    );
                    return 1;
                }
            };
        let listener = match resolve(&tls_addr).await.and_then(bind) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        tls_parts = Some((listener, config));
    }

    let intake = Intake::new(dispatcher.clone(), key, args.max_body_bytes);
    let router = intake::router(intake.clone());
    let handle = axum_server::Handle::<SocketAddr>::new();

    let http_local = http_listener.local_addr().ok();
    let http_server = match axum_server::from_tcp(http_listener) {
        Ok(s) => s.handle(handle.clone()),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let mut servers = tokio::task::JoinSet::new();
    let svc = router.clone().into_make_service();
    servers.spawn(async move { http_server.serve(svc).await });
    let mut tls_local = None;
    if let Some((listener, config)) = tls_parts {
        tls_local = listener.local_addr().ok();
        match axum_server::from_tcp_rustls(listener, config) {
            Ok(s) => {
                let s = s.handle(handle.clone());
                let svc = router.into_make_service();
                servers.spawn(async move { s.serve(svc).await });
            }
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    }
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
        Some(res) = servers.join_next() => {
            tracing::error!(error = ?res, "a listener stopped unexpectedly");
            1
        }
    };
    // Keep the listeners up while draining so clients and load balancers get a clear 503
    // (with Retry-After) on new events and on /healthz, instead of refused connections.
    dispatcher
        .shutdown(Duration::from_secs(args.shutdown_timeout))
        .await;
    handle.graceful_shutdown(Some(Duration::from_secs(2)));
    tracing::info!("stopped");
    code
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
