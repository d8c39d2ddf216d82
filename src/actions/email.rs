//! `email`: sends the rendered message by SMTP (spec §6.1), with lettre.
//!
//! Keys (Postee's): `host` (required unless `use-mx`), `port`, `user`, `password` (secret;
//! AUTH when both are set), `sender` (default `user`), `recipients` (required; an entry
//! `<%application_scope_owner%>` is replaced by the event's application scope owners, and
//! dropped when it has none), `client-host-name` (the EHLO name; default this machine's host
//! name), `use-mx`. Ours: `smtp-tls` (`opportunistic`, the default and Postee's behaviour:
//! STARTTLS when the server offers it; `starttls`: required; `implicit`: TLS from the first
//! byte, SMTPS; `none`), `ca-file` (a PEM CA certificate trusted in addition to the system
//! roots, for a private mail server), `timeout` (default 30s).
//!
//! `port` defaults to 465 with `smtp-tls: implicit` and to 25 otherwise (Postee had no
//! default: in MX mode it dialled port 0). TLS certificates are always verified.
//!
//! The message: subject = title, body = the description as `text/html; charset=utf-8`, `To:`
//! every recipient, `From:` the sender, plus `Date`, `Message-ID` and `MIME-Version` (Postee
//! sent none of these, and did not encode non-ASCII subjects).
//!
//! `use-mx: true`: no relay; for each recipient domain, its MX hosts (lowest preference first;
//! the domain itself when it has no MX record) are tried in turn on `port` without AUTH, and
//! the first that accepts gets that domain's recipients (Postee sent the whole list to every
//! domain's MX). A domain that no host accepted fails the delivery (Postee only logged it);
//! the retry skips the domains already delivered (remembered in memory).
//!
//! Failures: SMTP 5xx replies (unknown user, AUTH refused), no usable recipient and bad
//! addresses are permanent; connection errors, timeouts, TLS failures and 4xx replies are
//! transient.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncTransport, Tokio1Executor};
use serde_json::{Value, json};

use super::{Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, Validated};
use crate::config::{Fields, KeySpec, Kind, Secret};

/// The recipient placeholder replaced by the event's owners.
pub const OWNER_PLACEHOLDER: &str = "<%application_scope_owner%>";
/// Deliveries whose MX progress is remembered at most.
const MAX_REMEMBERED: usize = 10_000;

pub(crate) const KEYS: &[KeySpec] = &[
    // Required, but not with `use-mx` (the docs' default says so).
    KeySpec {
        required: true,
        ..KeySpec::optional(
            "host",
            Kind::Str,
            "required unless `use-mx`",
            "SMTP server (name or IP).",
        )
    },
    KeySpec::optional(
        "port",
        Kind::Int,
        "`25`; `465` with `smtp-tls: implicit`",
        "SMTP port.",
    ),
    KeySpec::optional(
        "user",
        Kind::Expand,
        "none",
        "SMTP AUTH user name (PLAIN or LOGIN) when `password` is set too.",
    ),
    KeySpec::optional(
        "password",
        Kind::Secret,
        "none",
        "SMTP AUTH password, a secret.",
    ),
    KeySpec::optional(
        "sender",
        Kind::Str,
        "`user`",
        "The `From` and envelope sender; must be an email address (checked at load).",
    ),
    KeySpec::required(
        "recipients",
        Kind::StrList,
        "Email addresses (checked at load).",
    ),
    KeySpec::optional(
        "client-host-name",
        Kind::Str,
        "this machine's host name",
        "The name sent in `EHLO`.",
    ),
    KeySpec::optional(
        "use-mx",
        Kind::Bool,
        "`false`",
        "Deliver straight to each recipient domain's MX hosts (below).",
    ),
    KeySpec::optional("smtp-tls", Kind::Str, "`opportunistic`", "How TLS is used."),
    KeySpec::optional(
        "ca-file",
        Kind::Str,
        "none",
        "A PEM CA certificate trusted in addition to the system's roots (a private mail server).",
    ),
    KeySpec::optional(
        "timeout",
        Kind::Str,
        "`30s`",
        "Time limit per SMTP operation and per server, a Go duration.",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Opportunistic,
    StartTls,
    Implicit,
    None,
}

/// Where MX records come from; tests give their own answers.
#[async_trait]
pub trait MxResolver: Send + Sync {
    /// MX hosts of `domain` with their preference. `Ok(empty)` when the domain has no MX
    /// record. `Err((message, transient))` when the lookup failed.
    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, (String, bool)>;
}

/// The system's resolver (`/etc/resolv.conf`), built at the first lookup.
#[derive(Default)]
pub struct SystemResolver {
    inner: tokio::sync::OnceCell<hickory_resolver::TokioResolver>,
}

#[async_trait]
impl MxResolver for SystemResolver {
    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, (String, bool)> {
        let resolver = self
            .inner
            .get_or_try_init(|| async {
                hickory_resolver::Resolver::builder_tokio()
                    .and_then(|b| b.build())
                    .map_err(|e| (format!("cannot set up DNS resolution: {e}"), true))
            })
            .await?;
        match resolver.mx_lookup(format!("{domain}.")).await {
            Ok(lookup) => {
                let mut hosts: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_utf8().trim_end_matches('.').to_string(),
                        )),
                        _ => None,
                    })
                    .collect();
                hosts.sort();
                Ok(hosts)
            }
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) if e.is_nx_domain() => Err((format!("domain {domain} does not exist"), false)),
            Err(e) => Err((format!("MX lookup of {domain} failed: {e}"), true)),
        }
    }
}

/// A valid email action.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// `ca-file`'s PEM, read at load.
    pub ca: Option<Vec<u8>>,
    pub credentials: Option<(String, Secret)>,
    pub sender: Mailbox,
    pub recipients: Vec<String>,
    pub hello: Option<String>,
    pub use_mx: bool,
    pub timeout: Duration,
}

/// Checks the keys. Reads the file system only for `ca-file` (a certificate is checked at
/// load, not at the first send).
pub fn validate(f: &Fields) -> Validated<EmailConfig> {
    let mut c = Check::default();
    let use_mx = f.bool("use-mx").unwrap_or(false);
    let host = f.non_empty("host").map(|h| h.trim().to_string());
    if host.is_none() && !use_mx {
        c.error(
            "host",
            "missing: the SMTP server is required (or set use-mx: true)",
        );
    }
    let tls = tls_mode(f, &mut c);
    let port = port(f, tls, &mut c);
    let ca = ca_file(f, &mut c);
    if ca.is_some() && tls == TlsMode::None {
        c.warn("ca-file", "unused: smtp-tls is none");
    }
    let user = f.non_empty("user").map(|u| u.trim().to_string());
    let password = f.secret("password").filter(|p| !p.is_empty()).cloned();
    let credentials = match (&user, password) {
        (Some(u), Some(p)) => Some((u.clone(), p)),
        _ => None,
    };
    if use_mx && credentials.is_some() {
        c.warn(
            "",
            "user and password are not used with use-mx: true (MX hosts take mail without AUTH)",
        );
    }
    if credentials.is_some()
        && tls == TlsMode::None
        && !matches!(host.as_deref(), Some("localhost" | "127.0.0.1" | "::1"))
    {
        c.warn(
            "smtp-tls",
            "with smtp-tls: none the password is sent in clear text",
        );
    }
    let sender = sender(f, user.as_deref(), &mut c);
    let recipients = recipients(f, &mut c);
    let hello = f
        .non_empty("client-host-name")
        .map(|h| h.trim().to_string());
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    c.finish(sender.map(|sender| EmailConfig {
        host: host.unwrap_or_default(),
        port,
        tls,
        ca,
        credentials,
        sender,
        recipients,
        hello,
        use_mx,
        timeout,
    }))
}

/// `smtp-tls`, defaulting to implicit TLS on port 465.
fn tls_mode(f: &Fields, c: &mut Check) -> TlsMode {
    match f
        .non_empty("smtp-tls")
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        None => {
            if f.int("port") == Some(465) {
                TlsMode::Implicit
            } else {
                TlsMode::Opportunistic
            }
        }
        Some("opportunistic") => TlsMode::Opportunistic,
        Some("starttls") => TlsMode::StartTls,
        Some("implicit") | Some("smtps") => TlsMode::Implicit,
        Some("none") => TlsMode::None,
        Some(other) => {
            c.error(
                "smtp-tls",
                format!("unknown value {other:?}: use opportunistic, starttls, implicit or none"),
            );
            TlsMode::Opportunistic
        }
    }
}

/// `port`, defaulting by the TLS mode.
fn port(f: &Fields, tls: TlsMode, c: &mut Check) -> u16 {
    match f.int("port") {
        None | Some(0) => {
            if tls == TlsMode::Implicit {
                465
            } else {
                25
            }
        }
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            c.error("port", format!("{p} is not a TCP port"));
            25
        }
    }
}

/// `ca-file`, read and checked at load.
fn ca_file(f: &Fields, c: &mut Check) -> Option<Vec<u8>> {
    match f.non_empty("ca-file") {
        None => None,
        Some(file) => match std::fs::read(file) {
            Ok(pem) => match Certificate::from_pem(&pem) {
                Ok(_) => Some(pem),
                Err(e) => {
                    c.error("ca-file", format!("{file} is not a PEM certificate: {e}"));
                    None
                }
            },
            Err(e) => {
                c.error("ca-file", format!("cannot read {file}: {e}"));
                None
            }
        },
    }
}

/// `sender`, defaulting to `user`.
fn sender(f: &Fields, user: Option<&str>, c: &mut Check) -> Option<Mailbox> {
    match f.non_empty("sender").map(str::trim).or(user) {
        None => {
            c.error("sender", "missing: set sender (or user, its default)");
            None
        }
        Some(s) => match s.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(e) => {
                let key = if f.non_empty("sender").is_some() {
                    "sender"
                } else {
                    "user"
                };
                c.error(
                    key,
                    format!("{s:?} is not an email address (the sender defaults to user): {e}"),
                );
                None
            }
        },
    }
}

/// `recipients`: at least one, each an address (or the owners placeholder).
fn recipients(f: &Fields, c: &mut Check) -> Vec<String> {
    let recipients: Vec<String> = f
        .list("recipients")
        .into_iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    if recipients.is_empty() {
        c.error("recipients", "missing: at least one recipient is required");
    }
    for r in &recipients {
        if r != OWNER_PLACEHOLDER
            && let Err(e) = r.parse::<Mailbox>()
        {
            c.error("recipients", format!("{r:?} is not an email address: {e}"));
        }
    }
    recipients
}

pub fn build(name: &str, cfg: EmailConfig, _: &BuildContext) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(Email::new(name, cfg)?))
}

pub struct Email {
    name: String,
    host: String,
    port: u16,
    tls: TlsMode,
    ca: Option<Vec<u8>>,
    credentials: Option<(String, Secret)>,
    sender: Mailbox,
    recipients: Vec<String>,
    hello: Option<String>,
    use_mx: bool,
    timeout: Duration,
    /// The relay transport (not in MX mode), pooled.
    relay: Option<AsyncSmtpTransport<Tokio1Executor>>,
    resolver: Arc<dyn MxResolver>,
    /// MX mode: delivery id → domains already delivered.
    progress: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Email {
    /// The action for a valid config (the relay transport is set up here, outside MX mode).
    pub fn new(name: &str, cfg: EmailConfig) -> Result<Email, String> {
        let mut email = Email {
            name: name.to_string(),
            host: cfg.host,
            port: cfg.port,
            tls: cfg.tls,
            ca: cfg.ca,
            credentials: cfg.credentials,
            sender: cfg.sender,
            recipients: cfg.recipients,
            hello: cfg.hello,
            use_mx: cfg.use_mx,
            timeout: cfg.timeout,
            relay: None,
            resolver: Arc::new(SystemResolver::default()),
            progress: Mutex::new(HashMap::new()),
        };
        if !email.use_mx {
            let relay = email
                .transport(&email.host, true)
                .map_err(|e| e.to_string())?;
            email.relay = Some(relay);
        }
        Ok(email)
    }

    /// Replaces the MX resolver (tests).
    pub fn with_resolver(mut self, resolver: Arc<dyn MxResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    fn transport(
        &self,
        host: &str,
        with_auth: bool,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, ActionError> {
        let params = || -> Result<TlsParameters, ActionError> {
            let mut b = TlsParameters::builder(host.to_string());
            if let Some(pem) = &self.ca {
                let cert = Certificate::from_pem(pem)
                    .map_err(|e| ActionError::permanent(format!("ca-file: {e}")))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls()
                .map_err(|e| ActionError::permanent(format!("TLS setup for {host}: {e}")))
        };
        let tls = match self.tls {
            TlsMode::None => Tls::None,
            TlsMode::Opportunistic => Tls::Opportunistic(params()?),
            TlsMode::StartTls => Tls::Required(params()?),
            TlsMode::Implicit => Tls::Wrapper(params()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(h) = &self.hello {
            b = b.hello_name(ClientId::Domain(h.clone()));
        }
        if with_auth && let Some((u, p)) = &self.credentials {
            b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        Ok(b.build())
    }

    /// Recipients after owner expansion; owners that are not addresses are dropped.
    pub fn recipients(&self, owners: Option<&str>) -> Vec<Mailbox> {
        let mut out: Vec<Mailbox> = Vec::new();
        for r in &self.recipients {
            let expanded: Vec<String> = if r == OWNER_PLACEHOLDER {
                match owners {
                    Some(o) => o
                        .split(';')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    None => {
                        tracing::debug!(action = %self.name, "no application scope owners; {OWNER_PLACEHOLDER} dropped");
                        Vec::new()
                    }
                }
            } else {
                vec![r.clone()]
            };
            for e in expanded {
                match e.parse::<Mailbox>() {
                    Ok(m) if !out.iter().any(|x| x.email == m.email) => out.push(m),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(action = %self.name, recipient = %e, error = %err, "owner is not an email address; skipped")
                    }
                }
            }
        }
        out
    }

    fn message(
        &self,
        msg: &Message,
        to: &[Mailbox],
        envelope_to: &[Address],
    ) -> Result<lettre::Message, ActionError> {
        let mut b = lettre::Message::builder()
            .from(self.sender.clone())
            .subject(msg.content.title.clone())
            .date_now()
            .message_id(None);
        for m in to {
            b = b.to(m.clone());
        }
        let envelope = Envelope::new(Some(self.sender.email.clone()), envelope_to.to_vec())
            .map_err(|e| ActionError::permanent(format!("invalid envelope: {e}")))?;
        b.envelope(envelope)
            .singlepart(SinglePart::html(msg.content.description.clone()))
            .map_err(|e| ActionError::permanent(format!("cannot build the email: {e}")))
    }

    async fn send_via(
        &self,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        email: lettre::Message,
        server: &str,
    ) -> Result<(), ActionError> {
        match tokio::time::timeout(self.timeout, transport.send(email)).await {
            Err(_) => Err(ActionError::transient(format!(
                "SMTP {server}: no answer within {:?}",
                self.timeout
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify_smtp(&e, server)),
        }
    }

    async fn send_mx(&self, msg: &Message, to: &[Mailbox]) -> Result<(), ActionError> {
        let id = msg.delivery_id(&self.name);
        let done = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_default();
        let mut by_domain: BTreeMap<String, Vec<Address>> = BTreeMap::new();
        for m in to {
            by_domain
                .entry(m.email.domain().to_ascii_lowercase())
                .or_default()
                .push(m.email.clone());
        }
        let mut failures: Vec<ActionError> = Vec::new();
        let mut delivered = done.clone();
        for (domain, rcpts) in &by_domain {
            if done.contains(domain) {
                continue;
            }
            let hosts = match self.resolver.mx(domain).await {
                Ok(h) if h.is_empty() => vec![domain.clone()],
                Ok(h) => h.into_iter().map(|(_, host)| host).collect(),
                Err((message, transient)) => {
                    let message = format!("{domain}: {message}");
                    failures.push(if transient {
                        ActionError::transient(message)
                    } else {
                        ActionError::permanent(message)
                    });
                    continue;
                }
            };
            let mut last = None;
            for host in &hosts {
                let res = match self.transport(host, false) {
                    Ok(t) => {
                        let email = self.message(msg, to, rcpts)?;
                        self.send_via(&t, email, &format!("{host}:{}", self.port))
                            .await
                    }
                    Err(e) => Err(e),
                };
                match res {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match last {
                None => {
                    delivered.insert(domain.clone());
                }
                Some(e) => failures.push(match e {
                    ActionError::Transient {
                        message,
                        retry_after,
                    } => ActionError::Transient {
                        message: format!("{domain}: {message}"),
                        retry_after,
                    },
                    ActionError::Permanent { message } => {
                        ActionError::permanent(format!("{domain}: {message}"))
                    }
                }),
            }
        }
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if failures.is_empty() {
            progress.remove(&id);
            return Ok(());
        }
        if delivered.len() > done.len() {
            if progress.len() >= MAX_REMEMBERED {
                progress.clear();
            }
            progress.insert(id, delivered);
        }
        let message = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Err(if failures.iter().any(ActionError::is_transient) {
            ActionError::transient(message)
        } else {
            ActionError::permanent(message)
        })
    }
}

/// SMTP failures: 5xx replies and client-side problems are permanent, the rest transient.
fn classify_smtp(e: &lettre::transport::smtp::Error, server: &str) -> ActionError {
    let mut msg = format!("SMTP {server}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_permanent() || e.is_client() {
        ActionError::permanent(msg)
    } else {
        ActionError::transient(msg)
    }
}

#[async_trait]
impl Action for Email {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let to = self.recipients(msg.content.owners.as_deref());
        if to.is_empty() {
            return Err(ActionError::permanent("there is no recipient"));
        }
        if self.use_mx {
            return self.send_mx(msg, &to).await;
        }
        let envelope: Vec<Address> = to.iter().map(|m| m.email.clone()).collect();
        let email = self.message(msg, &to, &envelope)?;
        let Some(relay) = self.relay.as_ref() else {
            return Err(ActionError::permanent(
                "no SMTP relay is configured (set host, or use-mx)",
            ));
        };
        self.send_via(relay, email, &format!("{}:{}", self.host, self.port))
            .await
    }

    fn preview(&self, msg: &Message) -> Value {
        let to: Vec<String> = self
            .recipients(msg.content.owners.as_deref())
            .iter()
            .map(ToString::to_string)
            .collect();
        json!({
            "server": if self.use_mx { "<MX hosts of each recipient domain>".to_string() } else { self.host.clone() },
            "port": self.port,
            "smtp_tls": format!("{:?}", self.tls).to_ascii_lowercase(),
            "auth": self.credentials.as_ref().map(|(u, _)| json!({"user": u, "password": "<hidden>"})),
            "from": self.sender.to_string(),
            "to": to,
            "subject": msg.content.title,
            "content_type": "text/html; charset=utf-8",
            "body": msg.content.description,
        })
    }
}
