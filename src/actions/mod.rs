//! Actions: where rendered messages go. One file per type, each declaring its keys, its typed
//! config, `validate` and `build`; this file holds the trait, the registry of every type, the
//! shared validation helpers, and the error classification the dispatcher relies on.

pub mod awssecurityhub;
pub mod dependencytrack;
pub mod docker;
pub mod email;
pub mod exec;
pub mod http;
pub mod jira;
pub mod kubernetes;
pub mod nexusiq;
pub mod opsgenie;
pub mod pagerduty;
pub mod servicenow;
pub mod slack;
pub mod splunk;
pub mod stdout;
pub mod teams;
pub mod webhook;

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::config::duration::parse_go_duration;
use crate::config::{
    self, ActionConfig, Config, Fields, KeySpec, Problems, Schema, Secret, SecretUrl,
};

pub use crate::message::Message;

/// Why a send failed, classified for the dispatcher's retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// Worth retrying: connect errors, timeouts, 408, 429, 5xx.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying would not help: other 4xx, a script that failed, bad content.
    #[error("{message}")]
    Permanent { message: String },
}

impl ActionError {
    pub fn transient(message: impl Into<String>) -> Self {
        ActionError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        ActionError::Permanent {
            message: message.into(),
        }
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, ActionError::Transient { .. })
    }
}

#[async_trait]
pub trait Action: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> &'static str;
    /// Sends one message. No retries here: the dispatcher owns them.
    async fn send(&self, msg: &Message) -> Result<(), ActionError>;
    /// Exactly what `send` would do with this message, without doing it (`postee render`).
    fn preview(&self, msg: &Message) -> serde_json::Value;
    /// Event paths whose values make this action's upsert key (`Rendered::keys`), when it
    /// needs one; empty: the route's `unique-message-props`.
    fn key_props(&self) -> Option<&[String]> {
        None
    }
}

/// Default time limit of one send for the messaging actions (slack, teams, email, opsgenie,
/// pagerduty, splunk); each has a `timeout` key to change it.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The `timeout` key of the HTTP messaging actions whose default is [`DEFAULT_SEND_TIMEOUT`].
pub(crate) const SEND_TIMEOUT_KEY: KeySpec = KeySpec::optional(
    "timeout",
    crate::config::Kind::Str,
    "`30s`",
    "Time limit of one request, a Go duration.",
);

/// Shared resources actions are built with.
#[derive(Clone)]
pub struct BuildContext {
    pub http: reqwest::Client,
    /// `aqua-server` in Postee's `…/#/images/` form ("" when unset), for short messages.
    pub aqua_server: String,
}

impl BuildContext {
    /// The shared HTTP client, or with `skip_verify` (a `tls-verify: false` the user asked
    /// for) a client of the action's own that accepts any certificate.
    pub fn client(&self, skip_verify: bool) -> Result<reqwest::Client, String> {
        if !skip_verify {
            return Ok(self.http.clone());
        }
        reqwest::Client::builder()
            .user_agent(concat!("postee/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }
}

// ---------------------------------------------------------------------------------------
// The registry: every action type Postee knows, with its keys and how it is built.

/// Validates an action's keys and builds it (the row's glue around the type's own
/// `validate` and `build`).
pub type BuildFn =
    fn(name: &str, fields: &Fields, ctx: &BuildContext) -> Validated<Arc<dyn Action>>;

/// One row of the registry.
pub struct ActionType {
    /// The `type:` value, lower case (Postee matches it in any case).
    pub name: &'static str,
    /// The keys the type reads, besides the common ones; declared in the type's own file.
    pub keys: &'static [KeySpec],
    /// `None`: not supported yet (its configs load; an enabled one is an error).
    pub build: Option<BuildFn>,
    /// `concurrency` when the config leaves it out: the ceiling of the action's adaptive
    /// limit (`routing::concurrency`), which starts at 1 and grows only while the target
    /// keeps up.
    pub concurrency: usize,
}

/// Default ceiling of an action that sends HTTP requests to a remote service. Vector uses 200;
/// 128 keeps a few busy HTTP actions (one socket per request in flight, kept idle for a while
/// by the client's pool) well inside the common 1,024 open-files limit, and at a 50 ms RTT
/// still allows about 2,500 deliveries a second per action.
pub const HTTP_CONCURRENCY: usize = 128;
/// Default ceiling of an action that works on this machine (`exec`: a process each; `stdout`:
/// one shared stream): the old fixed default, so an upgrade never runs more at once.
pub const LOCAL_CONCURRENCY: usize = 8;
/// Default ceiling of `email`: an SMTP connection each. Mail servers cap connections per
/// client (often at a handful) and lettre's pool holds 10; the old fixed default.
pub const SMTP_CONCURRENCY: usize = 8;

/// Every type Postee knows. Adding an action: its file (keys, config, validate, build,
/// `Action`), one row here, its section in docs/actions.md, an example and tests.
pub static REGISTRY: &[ActionType] = &[
    ActionType {
        name: "stdout",
        keys: stdout::KEYS,
        build: Some(|n, f, c| glue(n, f, c, stdout::validate, stdout::build)),
        concurrency: LOCAL_CONCURRENCY,
    },
    ActionType {
        name: "webhook",
        keys: webhook::KEYS,
        build: Some(|n, f, c| glue(n, f, c, webhook::validate, webhook::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "http",
        keys: http::KEYS,
        build: Some(|n, f, c| glue(n, f, c, http::validate, http::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "exec",
        keys: exec::KEYS,
        build: Some(|n, f, c| glue(n, f, c, exec::validate, exec::build)),
        concurrency: LOCAL_CONCURRENCY,
    },
    ActionType {
        name: "slack",
        keys: slack::KEYS,
        build: Some(|n, f, c| glue(n, f, c, slack::validate, slack::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "teams",
        keys: teams::KEYS,
        build: Some(|n, f, c| glue(n, f, c, teams::validate, teams::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "email",
        keys: email::KEYS,
        build: Some(|n, f, c| glue(n, f, c, email::validate, email::build)),
        concurrency: SMTP_CONCURRENCY,
    },
    ActionType {
        name: "opsgenie",
        keys: opsgenie::KEYS,
        build: Some(|n, f, c| glue(n, f, c, opsgenie::validate, opsgenie::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "pagerduty",
        keys: pagerduty::KEYS,
        build: Some(|n, f, c| glue(n, f, c, pagerduty::validate, pagerduty::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "splunk",
        keys: splunk::KEYS,
        build: Some(|n, f, c| glue(n, f, c, splunk::validate, splunk::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "servicenow",
        keys: servicenow::KEYS,
        build: Some(|n, f, c| glue(n, f, c, servicenow::validate, servicenow::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "dependencytrack",
        keys: dependencytrack::KEYS,
        build: Some(|n, f, c| glue(n, f, c, dependencytrack::validate, dependencytrack::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "nexusiq",
        keys: nexusiq::KEYS,
        build: Some(|n, f, c| glue(n, f, c, nexusiq::validate, nexusiq::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "jira",
        keys: jira::KEYS,
        build: Some(|n, f, c| glue(n, f, c, jira::validate, jira::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "awssecurityhub",
        keys: awssecurityhub::KEYS,
        build: Some(|n, f, c| glue(n, f, c, awssecurityhub::validate, awssecurityhub::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "kubernetes",
        keys: kubernetes::KEYS,
        build: Some(|n, f, c| glue(n, f, c, kubernetes::validate, kubernetes::build)),
        concurrency: HTTP_CONCURRENCY,
    },
    ActionType {
        name: "docker",
        keys: docker::KEYS,
        // Without the `docker` cargo feature, `build` is the load error "built without the
        // docker feature".
        build: Some(|n, f, c| glue(n, f, c, docker::validate, docker::build)),
        // A container each on one engine: as local work, not as an HTTP target.
        concurrency: LOCAL_CONCURRENCY,
    },
];

/// A type's own `build(name, XConfig, ctx)`: an error only for what the keys could not tell
/// (a client that cannot be set up).
pub type TypedBuildFn<C> = fn(&str, C, &BuildContext) -> Result<Arc<dyn Action>, String>;

/// Runs a type's `validate` and, when its keys are valid, its `build`.
fn glue<C>(
    name: &str,
    fields: &Fields,
    ctx: &BuildContext,
    validate: fn(&Fields) -> Validated<C>,
    build: TypedBuildFn<C>,
) -> Validated<Arc<dyn Action>> {
    let Validated { config, warnings } = validate(fields);
    let config = config.and_then(|c| {
        build(name, c, ctx).map_err(|message| {
            vec![Issue {
                key: String::new(),
                message,
            }]
        })
    });
    Validated { config, warnings }
}

/// The registry row of a type (lower-cased, as in [`ActionConfig::kind`]).
pub fn action_type(kind: &str) -> Option<&'static ActionType> {
    REGISTRY.iter().find(|t| t.name == kind)
}

/// The default `concurrency` (ceiling) of actions of this type.
pub fn default_concurrency(kind: &str) -> usize {
    action_type(kind).map_or(HTTP_CONCURRENCY, |t| t.concurrency)
}

/// Whether actions of this type can be enabled.
pub fn is_implemented(kind: &str) -> bool {
    action_type(kind).is_some_and(|t| t.build.is_some())
}

/// The registry as the config reader sees it: each type's name and keys.
pub fn schema() -> &'static Schema {
    static SCHEMA: LazyLock<Schema> =
        LazyLock::new(|| Schema::new(REGISTRY.iter().map(|t| (t.name, t.keys))));
    &SCHEMA
}

/// Reads and parses a config file, actions checked against the registry.
pub fn load_config(path: &Path) -> (Option<Config>, Problems) {
    config::load_file(path, schema())
}

/// Parses config text, actions checked against the registry.
pub fn parse_config(text: &str, problems: &mut Problems) -> Option<Config> {
    config::parse(text, schema(), problems)
}

/// Builds an enabled action. Problems go to `problems` with the action's path: its
/// warnings first, then its errors (the order `postee check` has always shown).
pub fn build(
    cfg: &ActionConfig,
    ctx: &BuildContext,
    problems: &mut Problems,
) -> Option<Arc<dyn Action>> {
    let path = format!("actions[{}]", cfg.name);
    let Some(build) = action_type(&cfg.kind).and_then(|t| t.build) else {
        problems.error(
            format!("{path}.type"),
            format!("action type {} is not supported yet", cfg.kind),
        );
        return None;
    };
    let Validated { config, warnings } = build(&cfg.name, &cfg.fields, ctx);
    let at = |key: &str| {
        if key.is_empty() {
            path.clone()
        } else {
            format!("{path}.{key}")
        }
    };
    for w in warnings {
        problems.warn(at(&w.key), w.message);
    }
    match config {
        Ok(action) => Some(action),
        Err(errors) => {
            for e in errors {
                problems.error(at(&e.key), e.message);
            }
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation: each type's `validate(&Fields) -> Validated<XConfig>` collects every problem.

/// A problem with one key of an action (`key` "" for the action as a whole). Messages
/// about a secret key never contain its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub key: String,
    pub message: String,
}

/// What `validate` made of an action's keys: its typed config, or every error found; and
/// the warnings either way.
#[derive(Debug)]
pub struct Validated<T> {
    pub config: Result<T, Vec<Issue>>,
    pub warnings: Vec<Issue>,
}

/// Collects the problems of one validation.
#[derive(Debug, Default)]
pub struct Check {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

impl Check {
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(Issue {
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(Issue {
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The config when no error was found. `config` is `None` only when an error was
    /// recorded (a key that could not be read).
    pub fn finish<T>(self, config: Option<T>) -> Validated<T> {
        let config = match config {
            Some(c) if self.errors.is_empty() => Ok(c),
            _ => {
                debug_assert!(!self.errors.is_empty(), "validate gave no config, no error");
                Err(self.errors)
            }
        };
        Validated {
            config,
            warnings: self.warnings,
        }
    }

    /// An action's `timeout` (Postee: "" or `0` means the default).
    pub fn timeout(&mut self, f: &Fields, default: Duration) -> Duration {
        match f.non_empty("timeout") {
            None => default,
            Some(s) => match parse_go_duration(s) {
                Ok(d) if d.is_zero() => default,
                Ok(d) => d,
                Err(e) => {
                    self.error("timeout", e);
                    default
                }
            },
        }
    }

    /// A required http(s) `url` that is not a secret.
    pub fn url(&mut self, f: &Fields) -> Option<reqwest::Url> {
        let Some(raw) = f.non_empty("url") else {
            self.error("url", "missing: the URL to send to is required");
            return None;
        };
        self.http_url("url", raw)
    }

    /// A required http(s) `url` whose text is a secret (the Slack and Teams webhook URLs):
    /// an error says what is wrong, never what the value is.
    pub fn secret_url(&mut self, f: &Fields) -> Option<SecretUrl> {
        let Some(raw) = f.secret("url").filter(|s| !s.is_blank()) else {
            self.error("url", "missing: the URL to send to is required");
            return None;
        };
        SecretUrl::parse(raw)
            .map_err(|e| self.error("url", e.to_string()))
            .ok()
    }

    /// An optional http(s) base URL key (`api-url`), defaulting to `default`.
    pub fn base_url(&mut self, f: &Fields, key: &str, default: &str) -> Option<reqwest::Url> {
        self.http_url(key, f.non_empty(key).unwrap_or(default))
    }

    /// A required secret key (an API key or token), with the message saying what it is.
    pub fn required_secret(&mut self, f: &Fields, key: &str, missing: &str) -> Option<Secret> {
        let s = f.secret(key).filter(|s| !s.is_blank()).cloned();
        if s.is_none() {
            self.error(key, format!("missing: {missing}"));
        }
        s
    }

    fn http_url(&mut self, key: &str, raw: &str) -> Option<reqwest::Url> {
        match reqwest::Url::parse(raw.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            Ok(u) => {
                self.error(
                    key,
                    format!("unsupported scheme `{}` (use http or https)", u.scheme()),
                );
                None
            }
            Err(e) => {
                self.error(key, format!("invalid URL {raw:?}: {e}"));
                None
            }
        }
    }
}

/// A URL as it may be shown (previews, errors): a password in it is replaced by `***`.
pub fn shown_url(url: &reqwest::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_password(Some("***"));
    u.to_string()
}

/// Whether a header or variable name says its value is a credential (`Authorization`,
/// `X-Api-Key`, `GITHUB_TOKEN`...): previews show `<hidden>` for it.
pub fn is_sensitive_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "secret",
        "passw",
        "key",
        "cookie",
        "credential",
        "session",
        "signature",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `base` joined with an absolute API path, keeping any path prefix of `base`
/// (`https://proxy/opsgenie` + `/v2/alerts` → `https://proxy/opsgenie/v2/alerts`).
pub fn join_path(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut u = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    u.set_path(&joined);
    u
}

/// The value at `path` in a rendered description's JSON, for Postee's `event.input.<path>`
/// placeholders (the part after `event.input.`): a gjson-style dotted path where `\.` escapes
/// a dot and a number indexes an array. `None` when the path leads nowhere.
pub fn event_input_lookup<'a>(
    doc: &'a serde_json::Value,
    path: &str,
) -> Option<&'a serde_json::Value> {
    let mut cur = doc;
    let mut part = String::new();
    let mut chars = path.chars();
    loop {
        let ch = chars.next();
        match ch {
            Some('\\') => part.extend(chars.next()),
            Some('.') | None => {
                cur = match cur {
                    serde_json::Value::Object(m) => m.get(&part)?,
                    serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                    _ => return None,
                };
                if ch.is_none() {
                    return Some(cur);
                }
                part.clear();
            }
            Some(c) => part.push(c),
        }
    }
}

/// FNV-1a, 64 bits, of `s`: a short hash that is stable across versions and platforms, for
/// ids derived from delivery ids (not a security measure).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// At most `max` characters of `s` (not bytes), for targets with field limits.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The current time in RFC 3339, UTC, second precision (`2026-11-22T10:41:56Z`).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `Retry-After` (seconds or an HTTP date).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(v)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// RFC 7231 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate_parse(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Classifies a non-success HTTP response: 408, 429 and 5xx are transient.
pub fn classify_status(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    message: String,
) -> ActionError {
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        ActionError::Transient {
            message,
            retry_after: retry_after(headers),
        }
    } else {
        ActionError::Permanent { message }
    }
}

/// Classifies a transport error: every connect error and timeout is transient.
pub fn classify_transport(e: &reqwest::Error) -> ActionError {
    if e.is_builder() {
        return ActionError::permanent(e.to_string());
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ActionError::transient(msg)
}

/// Sends a request and expects a 2xx. Otherwise the error is classified for retries and its
/// message is built by `describe(status, start of the response body)`.
pub async fn send_expecting_2xx(
    req: reqwest::RequestBuilder,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<reqwest::Response, ActionError> {
    send_2xx(req, false, describe).await
}

/// Sends, expects a 2xx answer and reads its body to the end (up to [`DRAIN_LIMIT`]), for
/// actions that do not use the answer: a connection whose answer was not read to the end
/// cannot go back to the pool, so each delivery would open a new one (and a TLS handshake).
pub async fn deliver_expecting_2xx(
    req: reqwest::RequestBuilder,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<(), ActionError> {
    let resp = send_2xx(req, false, describe).await?;
    drain(resp).await;
    Ok(())
}

/// [`deliver_expecting_2xx`] for targets whose URL is a secret.
pub async fn deliver_expecting_2xx_secret_url(
    req: reqwest::RequestBuilder,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<(), ActionError> {
    let resp = send_2xx(req, true, describe).await?;
    drain(resp).await;
    Ok(())
}

/// Most bytes of an unused answer read so its connection can be reused; a longer answer is
/// dropped (its connection closed) rather than read at length.
pub const DRAIN_LIMIT: usize = 64 * 1024;

/// Reads an answer's body to its end, or stops after [`DRAIN_LIMIT`] bytes. The delivery
/// already succeeded: a failure here only costs the connection.
pub async fn drain(mut resp: reqwest::Response) {
    let mut read = 0;
    while read <= DRAIN_LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => read += c.len(),
            _ => return,
        }
    }
}

/// Like [`send_expecting_2xx`], for targets whose URL is a secret (Slack and Teams webhook
/// URLs carry their key): transport errors do not repeat the URL.
pub async fn send_expecting_2xx_secret_url(
    req: reqwest::RequestBuilder,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<reqwest::Response, ActionError> {
    send_2xx(req, true, describe).await
}

async fn send_2xx(
    req: reqwest::RequestBuilder,
    hide_url: bool,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<reqwest::Response, ActionError> {
    let resp = req.send().await.map_err(|e| {
        if hide_url {
            return classify_transport(&e.without_url());
        }
        // A password in the URL (`https://user:pass@host/`) is not shown either.
        match e.url().filter(|u| u.password().is_some()).cloned() {
            Some(mut u) => {
                let _ = u.set_password(Some("***"));
                classify_transport(&e.with_url(u))
            }
            None => classify_transport(&e),
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    let body = body_snippet(resp, 1024).await;
    Err(classify_status(status, &headers, describe(status, &body)))
}

/// Reads at most `limit` bytes of a response body as text (with `…` when there was more), for
/// error messages and small answers. Reading stops at the limit: a target answering with an
/// endless body costs at most `limit` bytes of memory (and its connection).
pub async fn body_snippet(mut resp: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    let mut more = false;
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            more = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    let s = String::from_utf8_lossy(&bytes).into_owned();
    if more { format!("{s}…") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FieldValue, Kind};

    /// The rows of the first `| Key |` table of each `## <type>` section of docs/actions.md,
    /// as (key, default, meaning); and the `| Type | Keys |` table of the types not supported
    /// yet, as (type, keys).
    type KeyRows = Vec<(String, String, String)>;
    type Sections = Vec<(String, KeyRows)>;
    type TypeKeys = Vec<(String, Vec<String>)>;

    fn docs_tables() -> (Sections, TypeKeys) {
        let text = include_str!("../../docs/actions.md");
        let cells = |line: &str| -> Vec<String> {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        };
        let code = |cell: &str| -> String { cell.split('`').nth(1).unwrap_or("").to_string() };
        let mut sections: Sections = Vec::new();
        let mut pending = Vec::new();
        let mut in_keys = false;
        let mut in_types = false;
        let mut seen_table = false;
        for line in text.lines() {
            if let Some(title) = line.strip_prefix("## ") {
                sections.push((title.trim().to_string(), Vec::new()));
                (in_keys, in_types, seen_table) = (false, false, false);
                continue;
            }
            if !line.starts_with('|') {
                in_keys = false;
                in_types = false;
                continue;
            }
            let c = cells(line);
            if c[0] == "Key" && !seen_table {
                (in_keys, seen_table) = (true, true);
            } else if c[0] == "Type" && c.get(1).is_some_and(|k| k == "Keys") {
                in_types = true;
            } else if c[0].starts_with("---") {
            } else if in_keys {
                let row = (code(&c[0]), c[1].clone(), c[2].clone());
                sections.last_mut().expect("a section").1.push(row);
            } else if in_types {
                let keys = c[1]
                    .split(',')
                    .map(code)
                    .filter(|k| !k.is_empty())
                    .collect();
                pending.push((code(&c[0]), keys));
            }
        }
        (sections, pending)
    }

    #[test]
    fn docs_list_exactly_the_declared_keys_of_each_action() {
        let (sections, pending) = docs_tables();
        for t in REGISTRY {
            if t.build.is_none() {
                let Some((_, keys)) = pending.iter().find(|(n, _)| n == t.name) else {
                    panic!(
                        "docs/actions.md: `{}` is not in the table of types not supported yet",
                        t.name
                    );
                };
                let declared: Vec<&str> = t.keys.iter().map(|k| k.name).collect();
                assert_eq!(
                    keys, &declared,
                    "docs/actions.md, not supported yet: `{}`",
                    t.name
                );
                continue;
            }
            let Some((_, rows)) = sections.iter().find(|(title, _)| title == t.name) else {
                panic!("docs/actions.md has no `## {}` section", t.name);
            };
            let documented: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let declared: Vec<&str> = t.keys.iter().map(|k| k.name).collect();
            assert_eq!(
                documented, declared,
                "docs/actions.md, `## {}`: keys",
                t.name
            );
            for (spec, (key, default, meaning)) in t.keys.iter().zip(rows) {
                // A required key shows "required", or when it is required in some cases
                // only, its declared default ("required unless `use-mx`").
                let want = match (spec.required, spec.default) {
                    (true, "") => "required",
                    (_, d) => d,
                };
                assert!(
                    !spec.required || want.starts_with("required"),
                    "{}.{key}",
                    t.name
                );
                assert_eq!(default, want, "docs/actions.md, {}.{key}: default", t.name);
                assert!(
                    !spec.doc.is_empty() && meaning.starts_with(spec.doc),
                    "docs/actions.md, {}.{key}: the meaning must start with the declared doc {:?}, found {meaning:?}",
                    t.name,
                    spec.doc
                );
                assert_eq!(
                    spec.is_secret(),
                    meaning.to_ascii_lowercase().contains("a secret"),
                    "docs/actions.md, {}.{key}: says it is a secret exactly when it is one",
                    t.name
                );
            }
        }
        let names: Vec<&str> = REGISTRY.iter().map(|t| t.name).collect();
        for (name, _) in &pending {
            assert!(
                names.contains(&name.as_str()),
                "docs/actions.md lists unknown type {name}"
            );
        }
    }

    fn test_ctx() -> BuildContext {
        crate::install_crypto_provider();
        BuildContext {
            http: reqwest::Client::new(),
            aqua_server: String::new(),
        }
    }

    #[test]
    fn every_postee_type_has_one_row_and_the_schema_follows_the_registry() {
        let names: Vec<&str> = REGISTRY.iter().map(|t| t.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for t in [
            "stdout",
            "webhook",
            "http",
            "exec",
            "slack",
            "teams",
            "email",
            "opsgenie",
            "pagerduty",
            "splunk",
            "servicenow",
            "dependencytrack",
            "nexusiq",
            "jira",
            "awssecurityhub",
            "docker",
            "kubernetes",
        ] {
            assert!(is_implemented(t), "{t}");
        }
        assert_eq!(schema().type_names(), names);
        for t in REGISTRY {
            assert_eq!(schema().keys(t.name), Some(t.keys));
            for k in t.keys {
                assert_eq!(k.name, k.name.to_ascii_lowercase(), "{}.{}", t.name, k.name);
            }
        }
    }

    /// A required key is one whose absence `validate` reports, by its name.
    #[test]
    fn validating_no_keys_reports_each_required_key_missing() {
        let ctx = test_ctx();
        for t in REGISTRY {
            let Some(build) = t.build else { continue };
            let v = build("a", &Fields::new(t.keys), &ctx);
            let errs = v.config.err().unwrap_or_default();
            for k in t.keys {
                let reported = errs.iter().any(|e| e.key == k.name);
                // An optional key is reported missing only when what it defaults to is
                // missing too (email `sender` defaults to `user`).
                let falls_back = k.default.starts_with('`') && k.default.ends_with('`');
                assert!(
                    reported == k.required || reported && falls_back,
                    "{}.{}: required {}, reported in {errs:?}",
                    t.name,
                    k.name,
                    k.required
                );
            }
        }
    }

    /// Secret values given to every implemented type's secret keys, valid or not, never show
    /// up in a problem `build` reports.
    #[test]
    fn load_problems_never_contain_a_secret_value() {
        let ctx = test_ctx();
        for t in REGISTRY {
            let Some(build) = t.build else { continue };
            for value in [
                "not a url value-sec-1",
                "ftp://h/value-sec-2",
                "https://h/value-sec-3",
            ] {
                let mut f = Fields::new(t.keys);
                for k in t.keys.iter().filter(|k| k.kind == Kind::Secret) {
                    f.set(k.name, FieldValue::Secret(Secret::new(value)));
                }
                let mut problems = Problems::default();
                let cfg = ActionConfig {
                    name: "a".into(),
                    kind: t.name.into(),
                    enable: true,
                    runs_on: None,
                    retry: Default::default(),
                    concurrency: Some(1),
                    fields: f.clone(),
                };
                let _ = super::build(&cfg, &ctx, &mut problems);
                let v = build("a", &f, &ctx);
                let shown = format!("{problems} {:?} {:?}", v.warnings, v.config.err());
                assert!(!shown.contains("value-sec"), "{}: {shown}", t.name);
            }
        }
    }

    #[test]
    fn default_concurrency_is_per_type_and_valid() {
        assert_eq!(default_concurrency("webhook"), 128);
        assert_eq!(default_concurrency("slack"), 128);
        assert_eq!(default_concurrency("exec"), 8);
        assert_eq!(default_concurrency("email"), 8);
        assert_eq!(default_concurrency("stdout"), 8);
        for t in REGISTRY {
            let c = t.concurrency as i64;
            assert!(config::CONCURRENCY_RANGE.contains(&c), "{}: {c}", t.name);
        }
    }

    #[test]
    fn http_statuses_are_classified_for_retries() {
        let h = reqwest::header::HeaderMap::new();
        for (code, transient) in [
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (401, false),
            (404, false),
        ] {
            let e = classify_status(reqwest::StatusCode::from_u16(code).unwrap(), &h, "x".into());
            assert_eq!(e.is_transient(), transient, "{code}");
        }
    }

    /// An answer that never ends (a hostile or broken target) costs `limit` bytes, not memory
    /// without bound, and does not hold the delivery forever.
    #[tokio::test]
    async fn body_snippet_stops_at_its_limit_on_an_endless_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        crate::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            let head = "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n";
            s.write_all(head.as_bytes()).await.unwrap();
            let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
            while s.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let resp = reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        let text = tokio::time::timeout(Duration::from_secs(20), body_snippet(resp, 5000))
            .await
            .expect("reading stops at the limit");
        assert_eq!(text, format!("{}…", "x".repeat(5000)));
    }

    #[test]
    fn event_input_paths_follow_objects_arrays_and_escaped_dots() {
        let doc = serde_json::json!({"a": {"b.c": [10, {"d": "x"}]}, "n": null});
        assert_eq!(
            event_input_lookup(&doc, "a.b\\.c.1.d"),
            Some(&serde_json::json!("x"))
        );
        assert_eq!(
            event_input_lookup(&doc, "a.b\\.c.0"),
            Some(&serde_json::json!(10))
        );
        assert_eq!(
            event_input_lookup(&doc, "n"),
            Some(&serde_json::Value::Null)
        );
        for nothing in ["a.b.c", "a.b\\.c.2", "a.b\\.c.x", "missing", "a.b\\.c.0.z"] {
            assert_eq!(event_input_lookup(&doc, nothing), None, "{nothing}");
        }
    }

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(784111777), "1994-11-06T08:49:37Z");
        assert_eq!(rfc3339(1709210096), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn join_path_keeps_a_base_prefix_and_truncation_counts_chars() {
        let b = reqwest::Url::parse("https://proxy.example/opsgenie/").unwrap();
        assert_eq!(
            join_path(&b, "/v2/alerts").as_str(),
            "https://proxy.example/opsgenie/v2/alerts"
        );
        let b = reqwest::Url::parse("https://api.opsgenie.com").unwrap();
        assert_eq!(
            join_path(&b, "/v2/alerts").as_str(),
            "https://api.opsgenie.com/v2/alerts"
        );
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hé", 5), "hé");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(
            httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(784111777))
        );
    }
}
