//! `docker`: runs a container per message with the rendered description in `POSTEE_EVENT`
//! (spec §6.15), through the Docker Engine API (bollard, cargo feature `docker`).
//!
//! Keys: Postee's `docker-image-name` (required), `docker-cmd` (entries starting with
//! `event.input` are resolved from the description JSON, as Postee does), `docker-env`,
//! `docker-network`, `docker-volume-mounts` (host path → container path, bind mounts); ours:
//! `docker-pull` (`always`, `missing` (default), `never`), `docker-user`, `docker-memory`,
//! `docker-cpus`, `docker-host` (default `$DOCKER_HOST`, else the local socket),
//! `docker-event-quoted` (Postee's `POSTEE_EVENT="<description>"` form) and `timeout` (60s).
//!
//! One delivery: connect and negotiate the API version (Debian's engine speaks 1.41 and refuses
//! newer paths); the pull as `docker-pull` says, its stream read to the end; create
//! `postee-<action>-<random id>`; start; wait until not running (at most `timeout`); fetch the
//! logs (stdout and stderr, the last 64 KiB kept); remove it (force) whatever happened.
//! Exit status 0 is success; any other status is a permanent failure with the log tail (Postee
//! ignores the status). An engine that cannot be reached, engine 5xx and a timeout are
//! transient; a missing image with `never`, an image the registry does not have, an
//! `event.input` path that resolves to nothing and other engine 4xx are permanent.
//!
//! Nothing here contacts the engine at load (`postee check` works with no engine running).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Action, BuildContext, Check, Validated, is_sensitive_name};
use crate::config::{Fields, KeySpec, Kind};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most log output kept from a container: the last 64 KiB (the earlier part is dropped).
pub const MAX_OUTPUT: usize = super::exec::MAX_OUTPUT;
/// The local engine when neither `docker-host` nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Longest single environment string Linux passes to a process (MAX_ARG_STRLEN).
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
const MAX_ENV_ENTRY: usize = 128 * 1024 - 1;
/// Time limit of a pull (the `timeout` key bounds the container's run only).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "docker-image-name",
        Kind::Str,
        "The image to run, e.g. `registry.example.com/forensics:1.2`.",
    ),
    KeySpec::optional(
        "docker-cmd",
        Kind::StrList,
        "the image's",
        "Command and arguments; an entry starting with `event.input` is replaced by that value of the event.",
    ),
    KeySpec::optional(
        "docker-env",
        Kind::StrList,
        "`[]`",
        "Extra variables, each `NAME=value` (checked at load).",
    ),
    KeySpec::optional(
        "docker-network",
        Kind::Str,
        "the engine's",
        "The container's network mode: `none`, `host`, `bridge` or a network name.",
    ),
    KeySpec::optional(
        "docker-volume-mounts",
        Kind::StrMap,
        "none",
        "Bind mounts, host path → container path (both absolute).",
    ),
    KeySpec::optional(
        "docker-pull",
        Kind::Str,
        "`missing`",
        "When to pull the image: `always`, `missing` (only when the engine lacks it) or `never`.",
    ),
    KeySpec::optional(
        "docker-user",
        Kind::Str,
        "the image's",
        "User the command runs as, `uid[:gid]` or a name known to the image.",
    ),
    KeySpec::optional(
        "docker-memory",
        Kind::Str,
        "no limit",
        "Memory limit, bytes with an optional unit `b`, `k`, `m`, `g` (e.g. `256m`).",
    ),
    KeySpec::optional(
        "docker-cpus",
        Kind::Str,
        "no limit",
        "CPU limit in CPUs, e.g. `0.5`.",
    ),
    KeySpec::optional(
        "docker-host",
        Kind::Str,
        "`$DOCKER_HOST`",
        "The engine: `unix:///path/docker.sock` or `tcp://host:port` (plain HTTP).",
    ),
    KeySpec::optional(
        "docker-event-quoted",
        Kind::Bool,
        "`false`",
        "Wrap `POSTEE_EVENT` in double quotes, as Postee does.",
    ),
    KeySpec::optional(
        "timeout",
        Kind::Str,
        "`60s`",
        "Time limit of the container's run, a Go duration; `\"\"` or `0` means the default.",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    Always,
    Missing,
    Never,
}

/// A valid docker action.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub network: Option<String>,
    /// Host path → container path.
    pub mounts: BTreeMap<String, String>,
    pub pull: Pull,
    pub user: Option<String>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    /// `None`: `DOCKER_HOST` when the action is built, else [`DEFAULT_HOST`].
    pub host: Option<String>,
    pub event_quoted: bool,
    pub timeout: Duration,
}

/// Checks the keys. Never contacts the engine; reads the file system only to warn about a
/// mount source missing now.
pub fn validate(f: &Fields) -> Validated<DockerConfig> {
    let mut c = Check::default();
    let image = match f.non_empty("docker-image-name") {
        None => {
            c.error(
                "docker-image-name",
                "docker action requires docker-image-name",
            );
            None
        }
        Some(i)
            if i.chars().any(|ch| ch.is_whitespace() || ch.is_control()) || i.contains("//") =>
        {
            c.error(
                "docker-image-name",
                format!("{i:?} is not an image reference"),
            );
            None
        }
        Some(i) => Some(i.to_string()),
    };
    let cmd = f.list("docker-cmd");
    let list = f.list("docker-env");
    let mut env = Vec::new();
    for (i, item) in list.iter().enumerate() {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() && k != "POSTEE_EVENT" => {
                env.push((k.to_string(), v.to_string()))
            }
            Some(("POSTEE_EVENT", _)) => c.error(
                "docker-env",
                format!(
                    "entry {} sets POSTEE_EVENT, which postee sets to the event",
                    i + 1
                ),
            ),
            // The entry may hold a secret with a typo in place of `=`: not shown.
            _ => c.error(
                "docker-env",
                format!(
                    "entry {} of {} is not NAME=value (value hidden)",
                    i + 1,
                    list.len()
                ),
            ),
        }
    }
    let network = f.non_empty("docker-network").map(str::to_string);
    let mounts = f.map("docker-volume-mounts");
    for (host, target) in &mounts {
        if !host.starts_with('/') || !target.starts_with('/') {
            c.error(
                "docker-volume-mounts",
                format!("{host} → {target}: both paths must be absolute"),
            );
        } else if target == "/" {
            c.error(
                "docker-volume-mounts",
                format!("{host} → /: cannot mount over /"),
            );
        } else if !Path::new(host).exists() {
            c.warn(
                "docker-volume-mounts",
                format!("{host} does not exist now (on this machine); runs fail until it does on the engine's host"),
            );
        }
    }
    let pull = match f
        .non_empty("docker-pull")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("missing") => Pull::Missing,
        Some("always") => Pull::Always,
        Some("never") => Pull::Never,
        Some(other) => {
            c.error(
                "docker-pull",
                format!("{other:?} is not one of always, missing, never"),
            );
            Pull::Missing
        }
    };
    let user = f.non_empty("docker-user").map(str::to_string);
    let memory = f
        .non_empty("docker-memory")
        .and_then(|m| match parse_memory(m) {
            Ok(b) => Some(b),
            Err(e) => {
                c.error("docker-memory", e);
                None
            }
        });
    let nano_cpus = f
        .non_empty("docker-cpus")
        .and_then(|m| match parse_cpus(m) {
            Ok(n) => Some(n),
            Err(e) => {
                c.error("docker-cpus", e);
                None
            }
        });
    let host = f.non_empty("docker-host").map(str::to_string);
    if let Some(h) = &host
        && let Err(e) = check_host(h)
    {
        c.error("docker-host", e);
    }
    let event_quoted = f.bool("docker-event-quoted").unwrap_or(false);
    let timeout = c.timeout(f, DEFAULT_TIMEOUT);
    c.finish(image.map(|image| DockerConfig {
        image,
        cmd,
        env,
        network,
        mounts,
        pull,
        user,
        memory,
        nano_cpus,
        host,
        event_quoted,
        timeout,
    }))
}

/// The engine addresses bollard's default features reach: a unix socket or plain HTTP.
fn check_host(h: &str) -> Result<(), String> {
    let ok = h
        .strip_prefix("unix://")
        .map(|p| p.starts_with('/'))
        .or_else(|| {
            h.strip_prefix("tcp://")
                .or_else(|| h.strip_prefix("http://"))
                .map(|a| !a.is_empty())
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{h:?}: expected unix:///path/to/docker.sock or tcp://host:port (TLS engines are not supported: use a unix socket or an SSH tunnel)"
        ))
    }
}

/// Docker's memory sizes: a number with an optional unit b, k, m, g (powers of 1024; `kb`,
/// `mib` and the like accepted), at least 6 MiB (the engine's minimum).
pub fn parse_memory(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("{s:?}: expected a size like 256m or 1g")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size like 256m or 1g"))?;
    let bytes = (n * mult) as i64;
    if bytes < 6 * 1024 * 1024 {
        return Err(format!("{s:?}: the engine's minimum memory limit is 6m"));
    }
    Ok(bytes)
}

/// CPUs as Docker's `--cpus`: a positive decimal, sent as `NanoCpus`.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n <= 1024.0 => Ok((n * 1e9).round() as i64),
        _ => Err(format!(
            "{s:?}: expected a positive number of CPUs, e.g. 0.5"
        )),
    }
}

/// Resolves one `docker-cmd` entry against the rendered description. Entries not starting
/// with `event.input` are literal. `event.input` alone is the whole description;
/// `event.input.<path>` is a gjson-style dotted path (`\.` escapes a dot, numbers index arrays)
/// into the description JSON: a string gives its text, anything else its JSON. A path that
/// resolves to nothing (or a description that is not JSON) is an error (Postee passes "").
pub fn resolve_event_input(entry: &str, description: &str) -> Result<String, String> {
    let Some(rest) = entry.strip_prefix("event.input") else {
        return Ok(entry.to_string());
    };
    if rest.is_empty() {
        return Ok(description.to_string());
    }
    let Some(path) = rest.strip_prefix('.') else {
        return Ok(entry.to_string());
    };
    let doc: Value = serde_json::from_str(description).map_err(|_| {
        format!("{entry}: the description is not JSON, so the path resolves to nothing")
    })?;
    let cur = super::event_input_lookup(&doc, path)
        .ok_or_else(|| format!("{entry}: the event has no such value"))?;
    match cur {
        Value::Null => Err(format!("{entry}: the event's value is null")),
        Value::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

/// `postee-<action>-<id>`, valid as a container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`): other
/// characters of the action name become `-`.
pub fn container_name(action: &str, id: &str) -> String {
    let clean: String = action
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("postee-{clean}-{id}")
}

/// A random id in the form of a UUID v4 (as Postee's).
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
fn random_id() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

/// `fromImage` and `tag` of a pull: the tag after the last `:` of the last path segment
/// (`latest` when none); a digest reference is pulled whole.
pub fn split_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_string(), None);
    }
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => (
            image[..last + i].to_string(),
            Some(image[last + i + 1..].to_string()),
        ),
        None => (image.to_string(), Some("latest".to_string())),
    }
}

pub fn build(name: &str, cfg: DockerConfig, _: &BuildContext) -> Result<Arc<dyn Action>, String> {
    #[cfg(feature = "docker")]
    {
        let host = cfg
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        check_host(&host).map_err(|e| format!("DOCKER_HOST {e}"))?;
        Ok(Arc::new(engine::DockerAction {
            name: name.to_string(),
            host,
            cfg,
        }))
    }
    #[cfg(not(feature = "docker"))]
    {
        let _ = (name, cfg);
        Err("built without the docker feature: this postee cannot run docker actions".into())
    }
}

/// The body of `POST /containers/create` (Engine API field names), also what `preview`
/// shows (with credential-looking variables hidden there).
fn create_body(
    action: &str,
    cfg: &DockerConfig,
    event_id: &str,
    cmd: Option<Vec<String>>,
    event: &str,
    hide: bool,
) -> Value {
    let mut env: Vec<String> = cfg
        .env
        .iter()
        .map(|(k, v)| {
            if hide && is_sensitive_name(k) {
                format!("{k}=<hidden>")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    env.push(if cfg.event_quoted {
        format!("POSTEE_EVENT=\"{event}\"")
    } else {
        format!("POSTEE_EVENT={event}")
    });
    let mut host = serde_json::Map::new();
    if let Some(n) = &cfg.network {
        host.insert("NetworkMode".into(), n.clone().into());
    }
    if !cfg.mounts.is_empty() {
        host.insert(
            "Mounts".into(),
            cfg.mounts
                .iter()
                .map(|(s, t)| json!({"Type": "bind", "Source": s, "Target": t}))
                .collect(),
        );
    }
    if let Some(m) = cfg.memory {
        host.insert("Memory".into(), m.into());
    }
    if let Some(n) = cfg.nano_cpus {
        host.insert("NanoCpus".into(), n.into());
    }
    let mut body = json!({
        "Image": cfg.image,
        "Env": env,
        "Labels": {"io.postee.action": action, "io.postee.event": event_id},
        "HostConfig": host,
    });
    if let Some(cmd) = cmd {
        body["Cmd"] = cmd.into();
    }
    if let Some(u) = &cfg.user {
        body["User"] = u.clone().into();
    }
    body
}

/// `docker-cmd` with its `event.input` entries resolved; `None` when empty (the image's).
fn resolve_cmd(cfg: &DockerConfig, description: &str) -> Result<Option<Vec<String>>, String> {
    if cfg.cmd.is_empty() {
        return Ok(None);
    }
    cfg.cmd
        .iter()
        .map(|e| resolve_event_input(e, description))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Keeps the last [`MAX_OUTPUT`] bytes written to it.
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    dropped: bool,
}

#[cfg_attr(not(feature = "docker"), allow(dead_code))]
impl Tail {
    fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
        if self.buf.len() > MAX_OUTPUT {
            let cut = self.buf.len() - MAX_OUTPUT;
            self.buf.drain(..cut);
            self.dropped = true;
        }
    }
    fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.buf);
        let s = s.trim_end();
        if self.dropped {
            format!("[earlier output dropped]\n{s}")
        } else {
            s.to_string()
        }
    }
}

#[cfg(feature = "docker")]
mod engine {
    use super::*;
    use crate::actions::ActionError;
    use async_trait::async_trait;
    use bollard::Docker;
    use bollard::container::LogOutput;
    use bollard::errors::Error as BError;
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
    };
    use futures_util::StreamExt;

    use crate::actions::Message;

    pub struct DockerAction {
        pub name: String,
        pub host: String,
        pub cfg: DockerConfig,
    }

    /// Whether an engine error is worth retrying, with a message that says what failed.
    pub(super) fn classify(host: &str, what: &str, e: BError) -> ActionError {
        match e {
            BError::DockerResponseServerError {
                status_code,
                message,
            } => {
                let msg = format!(
                    "docker {what} failed: engine answered {status_code}: {}",
                    crate::actions::truncate_chars(message.trim(), 1000)
                );
                if status_code >= 500 || status_code == 408 || status_code == 429 {
                    ActionError::transient(msg)
                } else {
                    ActionError::permanent(msg)
                }
            }
            BError::SocketNotFoundError(p) => ActionError::transient(format!(
                "docker {what} failed: no docker engine at {host} (socket {p} not found)"
            )),
            BError::RequestTimeoutError => ActionError::transient(format!(
                "docker {what} failed: the engine at {host} did not answer in time"
            )),
            BError::IOError { .. }
            | BError::HyperResponseError { .. }
            | BError::HyperLegacyError { .. }
            | BError::HttpClientError { .. } => ActionError::transient(format!(
                "docker {what} failed: cannot reach the docker engine at {host}: {e}"
            )),
            other => ActionError::permanent(format!("docker {what} failed: {other}")),
        }
    }

    /// A pull error carried in the progress stream (the engine already answered 200): the
    /// registry lacks the image or refuses us (permanent), or could not be reached (transient).
    fn classify_pull_message(image: &str, error: &str) -> ActionError {
        let e = error.to_ascii_lowercase();
        let msg = format!(
            "docker pull of {image} failed: {}",
            crate::actions::truncate_chars(error.trim(), 1000)
        );
        let permanent = [
            "not found",
            "manifest unknown",
            "unauthorized",
            "denied",
            "invalid reference",
        ]
        .iter()
        .any(|w| e.contains(w));
        if permanent {
            ActionError::permanent(msg)
        } else {
            ActionError::transient(msg)
        }
    }

    impl DockerAction {
        async fn connect(&self) -> Result<Docker, ActionError> {
            let docker = Docker::connect_with_host(&self.host)
                .map_err(|e| classify(&self.host, "connect", e))?
                .with_timeout(self.cfg.timeout.max(PULL_TIMEOUT) + Duration::from_secs(60));
            // Debian's engine speaks API 1.41 and refuses newer versioned paths.
            docker
                .negotiate_version()
                .await
                .map_err(|e| classify(&self.host, "version negotiation", e))
        }

        async fn pull(&self, docker: &Docker) -> Result<(), ActionError> {
            let image = &self.cfg.image;
            let need = match self.cfg.pull {
                Pull::Always => true,
                Pull::Missing | Pull::Never => match docker.inspect_image(image).await {
                    Ok(_) => false,
                    Err(BError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => {
                        if self.cfg.pull == Pull::Never {
                            return Err(ActionError::permanent(format!(
                                "docker image {image} is not present on the engine and docker-pull is never"
                            )));
                        }
                        true
                    }
                    Err(e) => return Err(classify(&self.host, "image inspect", e)),
                },
            };
            if !need {
                return Ok(());
            }
            let (from, tag) = split_reference(image);
            let mut opts = CreateImageOptionsBuilder::default().from_image(&from);
            if let Some(t) = &tag {
                opts = opts.tag(t);
            }
            let work = async {
                let mut stream = docker.create_image(Some(opts.build()), None, None);
                // Read to the end: the pull is done when the stream is (Postee closed it unread).
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(_) => {}
                        Err(BError::DockerStreamError { error }) => {
                            return Err(classify_pull_message(image, &error));
                        }
                        // 4xx: the engine refuses the reference or the registry lacks it.
                        Err(BError::DockerResponseServerError {
                            status_code,
                            message,
                        }) if status_code < 500 => {
                            return Err(ActionError::permanent(format!(
                                "docker pull of {image} failed: engine answered {status_code}: {}",
                                crate::actions::truncate_chars(message.trim(), 1000)
                            )));
                        }
                        // 5xx: the message says whether the registry lacks it or was unreachable.
                        Err(BError::DockerResponseServerError { message, .. }) => {
                            return Err(classify_pull_message(image, &message));
                        }
                        Err(e) => return Err(classify(&self.host, &format!("pull of {image}"), e)),
                    }
                }
                Ok(())
            };
            match tokio::time::timeout(PULL_TIMEOUT, work).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::transient(format!(
                    "docker pull of {image} did not finish within {PULL_TIMEOUT:?}"
                ))),
            }
        }

        async fn logs(&self, docker: &Docker, name: &str) -> String {
            let mut tail = Tail::default();
            let opts = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .follow(false)
                .build();
            let mut stream = docker.logs(name, Some(opts));
            let work = async {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(LogOutput::StdOut { message })
                        | Ok(LogOutput::StdErr { message })
                        | Ok(LogOutput::Console { message }) => tail.push(&message),
                        Ok(LogOutput::StdIn { .. }) => {}
                        Err(e) => {
                            tail.push(format!("\n[logs unavailable: {e}]").as_bytes());
                            break;
                        }
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(30), work)
                .await
                .is_err()
            {
                tail.push(b"\n[logs cut: reading them took over 30s]");
            }
            tail.text()
        }

        /// Start, wait (bounded by `timeout`), logs. The caller removes the container.
        async fn run(&self, docker: &Docker, name: &str) -> Result<(), ActionError> {
            docker
                .start_container(name, None)
                .await
                .map_err(|e| classify(&self.host, "container start", e))?;
            let wait = async {
                let opts = WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build();
                let mut stream = docker.wait_container(name, Some(opts));
                match stream.next().await {
                    Some(Ok(r)) => Ok(r.status_code),
                    Some(Err(BError::DockerContainerWaitError { code, .. })) => Ok(code),
                    Some(Err(e)) => Err(classify(&self.host, "container wait", e)),
                    None => Err(ActionError::transient(
                        "docker container wait failed: the engine closed the stream without a status",
                    )),
                }
            };
            match tokio::time::timeout(self.cfg.timeout, wait).await {
                Ok(Ok(0)) => {
                    let logs = self.logs(docker, name).await;
                    tracing::debug!(action = %self.name, container = %name, output = %logs, "container output");
                    Ok(())
                }
                Ok(Ok(code)) => {
                    let logs = self.logs(docker, name).await;
                    Err(ActionError::permanent(format!(
                        "container {name} ({}) exited with status {code}, output: {logs}",
                        self.cfg.image
                    )))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    let logs = self.logs(docker, name).await;
                    Err(ActionError::transient(format!(
                        "container {name} ({}) did not finish within {:?} and was killed and removed, output: {logs}",
                        self.cfg.image, self.cfg.timeout
                    )))
                }
            }
        }

        async fn remove(&self, docker: &Docker, name: &str) -> Result<(), ActionError> {
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(name, Some(opts)).await {
                Ok(()) => Ok(()),
                Err(BError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(()),
                Err(e) => Err(classify(
                    &self.host,
                    &format!("remove of container {name}"),
                    e,
                )),
            }
        }
    }

    #[async_trait]
    impl Action for DockerAction {
        fn name(&self) -> &str {
            &self.name
        }

        fn kind(&self) -> &'static str {
            "docker"
        }

        async fn send(&self, msg: &Message) -> Result<(), ActionError> {
            let description = &msg.content.description;
            let cmd = resolve_cmd(&self.cfg, description).map_err(|e| {
                ActionError::permanent(format!("docker-cmd cannot be resolved: {e}"))
            })?;
            if description.len() + 16 > MAX_ENV_ENTRY {
                return Err(ActionError::permanent(format!(
                    "the description ({} bytes) is too large for the POSTEE_EVENT variable (at most 128 KiB)",
                    description.len()
                )));
            }
            let body = create_body(
                &self.name,
                &self.cfg,
                &msg.event_id,
                cmd,
                description,
                false,
            );
            let body: ContainerCreateBody = serde_json::from_value(body).map_err(|e| {
                ActionError::permanent(format!("docker container body cannot be built: {e}"))
            })?;
            let docker = self.connect().await?;
            self.pull(&docker).await?;
            let name = container_name(&self.name, &random_id());
            let opts = CreateContainerOptionsBuilder::default().name(&name).build();
            match docker.create_container(Some(opts), body).await {
                Ok(_) => {}
                Err(BError::DockerResponseServerError {
                    status_code: 404,
                    message,
                }) => {
                    return Err(ActionError::permanent(format!(
                        "docker container create failed: engine answered 404: {}",
                        crate::actions::truncate_chars(message.trim(), 1000)
                    )));
                }
                Err(e) => return Err(classify(&self.host, "container create", e)),
            }
            let result = self.run(&docker, &name).await;
            // Always removed, whatever happened (a kill too, at the timeout).
            let removed = self.remove(&docker, &name).await;
            if let Err(e) = &removed {
                tracing::warn!(action = %self.name, container = %name, error = %e, "container not removed");
            }
            result.and(removed)
        }

        fn preview(&self, msg: &Message) -> Value {
            preview(&self.name, &self.host, &self.cfg, msg)
        }
    }
}

/// The engine calls one delivery makes, in order, with the create body (credential-looking
/// variables hidden). Paths are unversioned: the client prefixes the negotiated version.
pub fn preview(action: &str, host: &str, cfg: &DockerConfig, msg: &super::Message) -> Value {
    let description = &msg.content.description;
    let name = container_name(action, "<id>");
    let mut calls =
        vec![json!({"method": "GET", "path": "/version", "why": "negotiate the API version"})];
    let (from, tag) = split_reference(&cfg.image);
    let pull_path = match &tag {
        Some(t) => format!("/images/create?fromImage={from}&tag={t}"),
        None => format!("/images/create?fromImage={from}"),
    };
    match cfg.pull {
        Pull::Always => calls.push(json!({"method": "POST", "path": pull_path, "why": "pull (docker-pull: always), read to the end"})),
        Pull::Missing => {
            calls.push(json!({"method": "GET", "path": format!("/images/{}/json", cfg.image), "why": "is the image present?"}));
            calls.push(json!({"method": "POST", "path": pull_path, "why": "only if it is not (docker-pull: missing), read to the end"}));
        }
        Pull::Never => calls.push(json!({"method": "GET", "path": format!("/images/{}/json", cfg.image), "why": "absent is a failure (docker-pull: never)"})),
    }
    match resolve_cmd(cfg, description) {
        Ok(cmd) => {
            calls.push(json!({
                "method": "POST",
                "path": format!("/containers/create?name={name}"),
                "body": create_body(action, cfg, &msg.event_id, cmd, description, true),
            }));
        }
        Err(e) => {
            return json!({"engine": host, "calls": calls, "error": format!("docker-cmd cannot be resolved: {e}")});
        }
    }
    calls.push(json!({"method": "POST", "path": format!("/containers/{name}/start")}));
    calls.push(json!({"method": "POST", "path": format!("/containers/{name}/wait?condition=not-running"), "timeout": format!("{:?}", cfg.timeout)}));
    calls.push(json!({"method": "GET", "path": format!("/containers/{name}/logs?stdout=true&stderr=true")}));
    calls
        .push(json!({"method": "DELETE", "path": format!("/containers/{name}?force=true&v=true")}));
    json!({"engine": host, "calls": calls})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;

    fn fields(pairs: &[(&str, FieldValue)]) -> Fields {
        let mut f = Fields::new(KEYS);
        for (k, v) in pairs {
            f.set(k, v.clone());
        }
        f
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::Str(v.into())
    }

    #[test]
    fn validate_reads_every_key_and_reports_every_problem() {
        let mut mounts = BTreeMap::new();
        mounts.insert("/tmp".to_string(), "/out".to_string());
        let cfg = validate(&fields(&[
            ("docker-image-name", s("127.0.0.1:5000/busybox:1")),
            (
                "docker-cmd",
                FieldValue::List(vec!["sh".into(), "-c".into(), "x".into()]),
            ),
            ("docker-env", FieldValue::List(vec!["A=1=2".into()])),
            ("docker-network", s("none")),
            ("docker-volume-mounts", FieldValue::Map(mounts.clone())),
            ("docker-pull", s("Never")),
            ("docker-user", s("1000:1000")),
            ("docker-memory", s("256m")),
            ("docker-cpus", s("0.5")),
            ("docker-host", s("unix:///run/d.sock")),
            ("timeout", s("5s")),
        ]))
        .config
        .unwrap();
        assert_eq!(cfg.env, [("A".to_string(), "1=2".to_string())]);
        assert_eq!(cfg.pull, Pull::Never);
        assert_eq!(cfg.memory, Some(256 * 1024 * 1024));
        assert_eq!(cfg.nano_cpus, Some(500_000_000));
        assert_eq!(cfg.mounts, mounts);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert!(!cfg.event_quoted);

        let mut bad_mounts = BTreeMap::new();
        bad_mounts.insert("rel".to_string(), "/x".to_string());
        let errs = validate(&fields(&[
            ("docker-env", FieldValue::List(vec!["TOKEN s3cr3t".into()])),
            ("docker-volume-mounts", FieldValue::Map(bad_mounts)),
            ("docker-pull", s("sometimes")),
            ("docker-memory", s("lots")),
            ("docker-cpus", s("-1")),
            ("docker-host", s("https://engine:2376")),
            ("timeout", s("soon")),
        ]))
        .config
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "docker-image-name",
                "docker-env",
                "docker-volume-mounts",
                "docker-pull",
                "docker-memory",
                "docker-cpus",
                "docker-host",
                "timeout"
            ]
        );
        assert!(!format!("{errs:?}").contains("s3cr3t"));
        let v = validate(&fields(&[
            ("docker-image-name", s("i:1")),
            (
                "docker-env",
                FieldValue::List(vec!["POSTEE_EVENT=x".into()]),
            ),
        ]));
        assert!(v.config.unwrap_err()[0].message.contains("POSTEE_EVENT"));
    }

    /// A slim build (`--no-default-features`) still knows the type; enabling it is an error.
    #[test]
    fn build_needs_the_docker_feature() {
        let cfg = validate(&fields(&[("docker-image-name", s("i:1"))]))
            .config
            .unwrap();
        crate::install_crypto_provider();
        let ctx = BuildContext {
            http: reqwest::Client::new(),
            aqua_server: String::new(),
        };
        let built = build("d", cfg, &ctx);
        if cfg!(feature = "docker") {
            assert!(built.is_ok());
        } else {
            assert_eq!(
                built.err().unwrap(),
                "built without the docker feature: this postee cannot run docker actions"
            );
        }
    }

    #[test]
    fn memory_and_cpus_parse_as_docker_does() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_memory("8388608").unwrap(), 8 << 20);
        assert!(parse_memory("1m").is_err());
        assert!(parse_memory("12x").is_err());
        assert_eq!(parse_cpus("2").unwrap(), 2_000_000_000);
        assert!(parse_cpus("0").is_err());
    }

    #[test]
    fn event_input_entries_resolve_from_the_description() {
        let d = r#"{"a":{"b.c":"x","n":3,"arr":["p","q"],"o":{"k":1},"z":null}}"#;
        assert_eq!(resolve_event_input("literal", d).unwrap(), "literal");
        assert_eq!(
            resolve_event_input("event.inputs", d).unwrap(),
            "event.inputs"
        );
        assert_eq!(resolve_event_input("event.input", d).unwrap(), d);
        assert_eq!(resolve_event_input(r"event.input.a.b\.c", d).unwrap(), "x");
        assert_eq!(resolve_event_input("event.input.a.n", d).unwrap(), "3");
        assert_eq!(resolve_event_input("event.input.a.arr.1", d).unwrap(), "q");
        assert_eq!(
            resolve_event_input("event.input.a.o", d).unwrap(),
            r#"{"k":1}"#
        );
        for missing in [
            "event.input.a.nope",
            "event.input.a.z",
            "event.input.a.arr.7",
        ] {
            assert!(resolve_event_input(missing, d).is_err(), "{missing}");
        }
        assert!(resolve_event_input("event.input.a", "plain text").is_err());
        assert_eq!(
            resolve_event_input("event.input", "plain text").unwrap(),
            "plain text"
        );
    }

    #[test]
    fn names_and_references() {
        assert_eq!(
            container_name("Tracee forensics/1", "id"),
            "postee-Tracee-forensics-1-id"
        );
        let id = random_id();
        assert_eq!(id.len(), 36);
        assert_ne!(id, random_id());
        let re = regex::Regex::new("^[a-zA-Z0-9][a-zA-Z0-9_.-]+$").unwrap();
        assert!(re.is_match(&container_name("a b:c", &id)));
        assert_eq!(
            split_reference("127.0.0.1:5000/busybox:1"),
            ("127.0.0.1:5000/busybox".into(), Some("1".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/busybox"),
            ("127.0.0.1:5000/busybox".into(), Some("latest".into()))
        );
        assert_eq!(
            split_reference("r/x@sha256:ab"),
            ("r/x@sha256:ab".into(), None)
        );
    }

    #[test]
    fn the_log_tail_keeps_the_end() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; MAX_OUTPUT]);
        t.push(b"the end\n");
        let s = t.text();
        assert!(s.starts_with("[earlier output dropped]\n"));
        assert!(s.ends_with("the end"));
    }

    #[test]
    fn preview_lists_the_calls_with_credentials_hidden() {
        let cfg = validate(&fields(&[
            ("docker-image-name", s("127.0.0.1:5000/busybox:1")),
            (
                "docker-cmd",
                FieldValue::List(vec!["echo".into(), "event.input.id".into()]),
            ),
            (
                "docker-env",
                FieldValue::List(vec!["API_TOKEN=tok-1".into(), "OUT=/o".into()]),
            ),
            ("docker-event-quoted", FieldValue::Bool(true)),
        ]))
        .config
        .unwrap();
        let msg = super::super::Message {
            event_id: "e1".into(),
            route: "r".into(),
            content: crate::message::Rendered {
                description: r#"{"id":"F-1"}"#.into(),
                ..Default::default()
            },
        };
        let p = preview("act", "unix:///d.sock", &cfg, &msg);
        let text = p.to_string();
        assert!(!text.contains("tok-1"), "{text}");
        let calls = p["calls"].as_array().unwrap();
        let paths: Vec<&str> = calls.iter().map(|c| c["path"].as_str().unwrap()).collect();
        assert_eq!(paths[0], "/version");
        assert_eq!(paths[1], "/images/127.0.0.1:5000/busybox:1/json");
        assert_eq!(
            paths[2],
            "/images/create?fromImage=127.0.0.1:5000/busybox&tag=1"
        );
        assert_eq!(paths[3], "/containers/create?name=postee-act-<id>");
        assert_eq!(
            paths.last().unwrap(),
            &"/containers/postee-act-<id>?force=true&v=true"
        );
        let body = &calls[3]["body"];
        assert_eq!(body["Cmd"], json!(["echo", "F-1"]));
        assert_eq!(
            body["Env"],
            json!([
                "API_TOKEN=<hidden>",
                "OUT=/o",
                r#"POSTEE_EVENT="{"id":"F-1"}""#
            ])
        );
        assert_eq!(body["Labels"]["io.postee.event"], "e1");
    }
}
