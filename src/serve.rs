//! The server: loads the config, listens on HTTP and HTTPS, feeds accepted events to the
//! pipeline, and shuts down gracefully on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};

use crate::app::{self, App, Paths};
use crate::cli::{ServeArgs, env_override};
use crate::config;
use crate::intake::{self, Intake, Job};

/// Events waiting to be processed before intake answers 503.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Events processed at the same time.
pub const CONCURRENCY: usize = 64;

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

    let (cfg, mut problems) = config::load_file(&cfg_path);
    let paths = Paths::from_env();
    let app = match cfg {
        Some(cfg) => app::build(&cfg, &paths, args.strict, &mut problems).await,
        None => None,
    };
    for p in problems.warnings() {
        tracing::warn!(path = %p.path, "config: {}", p.message);
    }
    let Some(app) = app else {
        eprintln!(
            "error: cannot start: the config {} has problems:",
            cfg_path.display()
        );
        eprint!("{problems}");
        return 1;
    };
    let app = Arc::new(app);

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
        let data = data_dir(args.data_dir.clone());
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

    let (tx, rx) = mpsc::channel::<Job>(QUEUE_CAPACITY);
    let route_names = app.routes.iter().map(|r| r.name.clone()).collect();
    let intake = Intake::new(tx, route_names, args.max_body_bytes);
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
        "postee {} started",
        env!("CARGO_PKG_VERSION")
    );

    let stop = Arc::new(Notify::new());
    let dispatcher = tokio::spawn(dispatch(app.clone(), rx, stop.clone()));

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
    intake.stop_accepting();
    stop.notify_one();
    let deadline = Duration::from_secs(args.shutdown_timeout);
    if tokio::time::timeout(deadline, dispatcher).await.is_err() {
        tracing::warn!(
            timeout_s = args.shutdown_timeout,
            "shutdown deadline reached with deliveries still in flight"
        );
    }
    handle.graceful_shutdown(Some(Duration::from_secs(2)));
    tracing::info!("stopped");
    code
}

/// Pulls accepted events and processes up to `CONCURRENCY` at a time. On `stop` it refuses
/// new events, drains those already queued, and waits for everything in flight.
async fn dispatch(app: Arc<App>, mut rx: mpsc::Receiver<Job>, stop: Arc<Notify>) {
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    let mut stopping = false;
    loop {
        let job = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                j = rx.recv() => j,
                _ = stop.notified() => {
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some((event, route)) = job else { break };
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let app = app.clone();
        tokio::spawn(async move {
            app.process(event, route).await;
            drop(permit);
        });
    }
    let _ = sem.acquire_many(CONCURRENCY as u32).await;
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
