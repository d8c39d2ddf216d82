//! Test harness: runs the real `postee` binary on free loopback ports, and a local HTTP sink
//! that records every request it gets.
#![allow(dead_code)]

pub mod docker;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

pub const BIN: &str = env!("CARGO_BIN_EXE_postee");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running postee process with its own temp directory (config, data dir, logs).
pub struct Postee {
    pub child: Option<Child>,
    pub http: u16,
    pub https: u16,
    pub dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct PosteeOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub https: bool,
}

impl Postee {
    /// Writes `config` to a temp dir and starts postee on it; waits for `/ping`.
    pub fn start(config: &str) -> Postee {
        Self::start_with(config, PosteeOptions::default())
    }

    pub fn start_with(config: &str, opts: PosteeOptions) -> Postee {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config, opts)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str, opts: PosteeOptions) -> Postee {
        let cfg = dir.path().join("cfg.yaml");
        std::fs::write(&cfg, config).unwrap();
        let http = free_port();
        let https = free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("--cfgfile")
            .arg(&cfg)
            .arg("--url")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--tls")
            .arg(if opts.https {
                format!("127.0.0.1:{https}")
            } else {
                "off".into()
            })
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(&opts.args)
            .env_remove("POSTEE_CFG")
            .env_remove("AQUAALERT_CFG")
            .env_remove("POSTEE_HTTP")
            .env_remove("AQUAALERT_URL")
            .env_remove("PATH_TO_DB")
            .env_remove("POSTEE_API_KEY")
            .env("REGO_FILTERS_PATH", dir.path().join("rego-filters"))
            .env("REGO_TEMPLATES_PATH", dir.path().join("rego-templates"))
            .env("RUST_LOG", "info,postee::pipeline::lanes=debug")
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("postee starts");
        let mut p = Postee {
            child: Some(child),
            http,
            https,
            dir,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ureq_get(&format!("http://127.0.0.1:{}/ping", self.http)).is_ok_and(|r| r.0 == 200) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "postee exited with {status} before it was ready:\n{}",
                    self.stderr()
                );
            }
            if Instant::now() > deadline {
                panic!("postee did not become ready:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http, path)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// The generated API key (written to the data directory at start).
    pub fn api_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/api-key")).expect("api-key file")
    }

    /// GET a management endpoint with the API key; returns (status, JSON).
    pub fn api_get(&self, path: &str) -> (u16, serde_json::Value) {
        let (s, body) = get_with_key(&self.url(path), &self.api_key());
        (
            s,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    pub fn api_post(&self, path: &str) -> (u16, serde_json::Value) {
        let key = self.api_key();
        let url = self.url(path);
        block_on(async {
            let r = client()
                .post(&url)
                .header("X-Api-Key", key)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(serde_json::Value::Null))
        })
    }

    /// Kills the process hard (SIGKILL) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts postee again on the same directory and config (new ports).
    pub fn restart(&mut self, opts: PosteeOptions) {
        self.kill9();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let cfg = std::fs::read_to_string(dir.path().join("cfg.yaml")).unwrap();
        // Keep the old log.
        let _ = std::fs::rename(
            dir.path().join("stderr.log"),
            dir.path().join("stderr.1.log"),
        );
        *self = Postee::start_in(dir, &cfg, opts);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// POSTs a body, returns (status, body).
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        post(&self.url(path), body)
    }

    pub fn post_fixture(&self, path: &str, fixture_name: &str) -> (u16, String) {
        let body = std::fs::read(fixture(fixture_name)).unwrap();
        self.post(path, &body)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("postee did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log has `n` delivery outcome lines.
    pub fn wait_deliveries(&self, n: usize) {
        wait_until(
            Duration::from_secs(30),
            || self.stderr().matches("outcome").count() >= n,
            || format!("waiting for {n} deliveries; log:\n{}", self.stderr()),
        );
    }
}

impl Drop for Postee {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool, msg: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out: {}", msg());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs the binary with args and returns its output.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("postee runs")
}

/// Minimal blocking HTTP client on top of reqwest's blocking-free API: a one-off runtime.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn ureq_get(url: &str) -> Result<(u16, String), String> {
    block_on(async {
        let r = client().get(url).send().await.map_err(|e| e.to_string())?;
        let s = r.status().as_u16();
        Ok((s, r.text().await.unwrap_or_default()))
    })
}

pub fn get_with_key(url: &str, key: &str) -> (u16, String) {
    let (url, key) = (url.to_string(), key.to_string());
    block_on(async {
        let r = client()
            .get(&url)
            .header("X-Api-Key", key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let s = r.status().as_u16();
        (s, r.text().await.unwrap_or_default())
    })
}

pub fn get(url: &str) -> (u16, String) {
    ureq_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub fn post(url: &str, body: &[u8]) -> (u16, String) {
    let body = body.to_vec();
    block_on(async {
        let r = client()
            .post(url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let s = r.status().as_u16();
        (s, r.text().await.unwrap_or_default())
    })
}

/// One request a sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// The status the sink answered with.
    pub status: u16,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
    /// The client's address: one per connection, so reused connections show as repeats.
    pub peer: std::net::SocketAddr,
}

impl Received {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// A canned response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct SinkState {
    received: Arc<Mutex<Vec<Received>>>,
    /// Responses to give, in order; when empty, `default` (or 200).
    responses: Arc<Mutex<Vec<Reply>>>,
    default: Arc<Mutex<Option<Reply>>>,
    /// Per-path delay before answering.
    delays: Arc<Mutex<BTreeMap<String, Duration>>>,
}

/// A local HTTP server on a thread of its own that records requests.
pub struct Sink {
    pub port: u16,
    state: SinkState,
    _thread: std::thread::JoinHandle<()>,
}

impl Sink {
    pub fn start() -> Sink {
        let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let state = SinkState::default();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let app = axum::Router::new().fallback(record).with_state(st);
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .await
                .unwrap();
            })
        });
        Sink {
            port,
            state,
            _thread: thread,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Queues a response (status, body) for the next request.
    pub fn respond(&self, status: u16, body: &str) {
        self.respond_with(status, body, &[]);
    }

    pub fn respond_with(&self, status: u16, body: &str, headers: &[(&str, &str)]) {
        self.state.responses.lock().unwrap().push(Reply {
            status,
            body: body.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }

    /// The response once queued ones run out (`None`: 200).
    pub fn set_default(&self, status: Option<u16>) {
        *self.state.default.lock().unwrap() = status.map(|s| Reply {
            status: s,
            body: "default".into(),
            headers: vec![],
        });
    }

    /// The response (status, body) once queued ones run out.
    pub fn set_default_reply(&self, status: u16, body: &str) {
        *self.state.default.lock().unwrap() = Some(Reply {
            status,
            body: body.to_string(),
            headers: vec![],
        });
    }

    /// Answers requests to `path` only after `d`.
    pub fn delay(&self, path: &str, d: Duration) {
        self.state
            .delays
            .lock()
            .unwrap()
            .insert(path.to_string(), d);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        wait_until(
            Duration::from_secs(30),
            || self.received_at(path).len() >= n,
            || {
                format!(
                    "sink waiting for {n} requests at {path}; got {:?}",
                    self.received()
                )
            },
        );
        self.received_at(path)
    }
}

async fn record(
    State(st): State<SinkState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut h: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &headers {
        h.entry(k.as_str().to_string())
            .or_default()
            .push(v.to_str().unwrap_or("").to_string());
    }
    let delay = st.delays.lock().unwrap().get(uri.path()).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let reply = {
        let mut r = st.responses.lock().unwrap();
        if r.is_empty() {
            st.default.lock().unwrap().clone()
        } else {
            Some(r.remove(0))
        }
    }
    .unwrap_or(Reply {
        status: 200,
        body: "ok".into(),
        headers: vec![],
    });
    st.received.lock().unwrap().push(Received {
        at: Instant::now(),
        status: reply.status,
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: h,
        body: body.to_vec(),
        peer,
    });
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}
