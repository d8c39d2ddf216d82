//! `awssecurityhub`: imports the findings of a Trivy ASFF report into AWS Security Hub with
//! `BatchImportFindings` (spec §6.17).
//!
//! Keys (Postee has none): `region` (default: the AWS environment: `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, the profile's `region`, EC2 instance metadata), `endpoint-url`
//! (default `https://securityhub.<region>.amazonaws.com`, or `AWS_ENDPOINT_URL_SECURITYHUB` /
//! `AWS_ENDPOINT_URL` when set: VPC endpoints, proxies, tests) and `timeout` (default 30s,
//! one request, and the time allowed to find credentials).
//!
//! Credentials come from the AWS default chain (the official `aws-config` crate), in its
//! order: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`; the shared config
//! and credentials files with `AWS_PROFILE` (including `role_arn` and `credential_process`);
//! a web identity token (EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`); ECS
//! container credentials; EC2 instance metadata (IMDSv2). They are looked up at the first
//! send (never at load: `postee check` stays offline) and kept until 5 minutes before they
//! expire (15 minutes when they do not say). Requests are signed with SigV4 (`aws-sigv4`),
//! service `securityhub`.
//!
//! The message's description must be the report: `{"Findings": [...]}` (Trivy's
//! `--format asff`, through the `raw-json` template). Each finding is sent as the report
//! has it (Postee rebuilt each from a dozen fields, dropped its `Resources` and
//! `ProductFields` and invented one resource). Calls: `POST {endpoint}/findings/import`,
//! `Content-Type: application/json`, body `{"Findings": [...]}` with at most 100 findings
//! and 6 MB per call (Security Hub's limits), one call after the other.
//!
//! Answers: `200 {"FailedCount":n,"SuccessCount":m,"FailedFindings":[{"Id","ErrorCode",
//! "ErrorMessage"}]}`. A finding that failed with a throttling, limit or internal error is
//! retried: the send is a transient failure, and the next attempt of the same delivery sends
//! only the findings still missing (remembered in memory; after a restart the whole report
//! is sent again, which is harmless: `BatchImportFindings` updates a finding with the same
//! `Id`). Any other per-finding error makes the delivery a permanent failure naming the
//! findings and AWS's messages, once the rest has been imported. A failed call: 408, 429,
//! 5xx, `ThrottlingException`, `LimitExceededException`, expired credentials and transport
//! errors are transient (honouring `Retry-After`); other errors (400 `InvalidInputException`,
//! 401 `InvalidAccessException`, 403 `AccessDeniedException`, `UnrecognizedClientException`,
//! `InvalidSignatureException`) are permanent, with AWS's error type and message and a hint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use serde_json::{Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, body_snippet, classify_transport, join_path, retry_after, shown_url,
};
use crate::config::{Fields, KeySpec, Kind};

/// Postee's prefix of a failed upload.
const FAILED: &str = "upload to AWS Security Hub failed";
/// Postee's error for a report without findings.
pub const NO_FINDINGS: &str = "trivy AWS sent no findings to Postee, skipping sending";
/// Security Hub's limits of one `BatchImportFindings` call.
pub const MAX_FINDINGS_PER_CALL: usize = 100;
pub const MAX_BYTES_PER_CALL: usize = 6 * 1024 * 1024 - 1024;
/// SigV4 service name.
const SERVICE: &str = "securityhub";
/// Deliveries whose missing findings are remembered between attempts; past it the oldest
/// is forgotten (its next attempt sends the whole report again).
const MAX_REMEMBERED: usize = 4096;
/// Credentials are renewed this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How long credentials that do not say when they expire are kept.
const KEEP_UNDATED: Duration = Duration::from_secs(15 * 60);

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::optional(
        "region",
        Kind::Str,
        "the AWS environment",
        "AWS region code (`us-east-1`). Unset: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, then EC2 instance metadata.",
    ),
    KeySpec::optional(
        "endpoint-url",
        Kind::Str,
        "`https://securityhub.<region>.amazonaws.com`",
        "Security Hub endpoint (a VPC endpoint, a proxy, a test server). Unset: `AWS_ENDPOINT_URL_SECURITYHUB`, then `AWS_ENDPOINT_URL`, then AWS's public endpoint of the region.",
    ),
    SEND_TIMEOUT_KEY,
];

/// Where a setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Key,
    Env(&'static str),
}

/// A valid awssecurityhub action.
#[derive(Debug, Clone)]
pub struct SecurityHubConfig {
    /// From the `region` key or the environment; `None`: asked from the AWS chain (profile,
    /// instance metadata) at the first send.
    pub region: Option<String>,
    /// From `endpoint-url` or the environment; `None`: AWS's endpoint of the region.
    pub endpoint: Option<reqwest::Url>,
    pub timeout: Duration,
}

/// A region code: `us-east-1`, `eu-central-2`, `cn-north-1`, `us-gov-west-1`.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

pub fn validate(f: &Fields) -> Validated<SecurityHubConfig> {
    validate_with_env(f, &|name| std::env::var(name).ok())
}

/// [`validate`] with the environment given (tests).
pub fn validate_with_env(
    f: &Fields,
    env: &dyn Fn(&str) -> Option<String>,
) -> Validated<SecurityHubConfig> {
    let mut c = Check::default();
    let env = |name: &'static str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| (v, Source::Env(name)))
    };
    let region = f
        .non_empty("region")
        .map(|r| (r.trim().to_string(), Source::Key))
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"));
    let region = match region {
        Some((r, _)) if is_region(&r) => Some(r),
        Some((r, Source::Key)) => {
            c.error(
                "region",
                format!("invalid region {r:?}: use an AWS region code such as us-east-1"),
            );
            None
        }
        Some((r, Source::Env(var))) => {
            c.error(
                "region",
                format!(
                    "not set, and {var}={r:?} is not an AWS region code (such as us-east-1): set `region` or fix {var}"
                ),
            );
            None
        }
        None => None,
    };
    // AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true: the SDKs' switch to ignore the variables.
    let env_endpoints = !env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|(v, _)| v.eq_ignore_ascii_case("true"));
    let endpoint = f
        .non_empty("endpoint-url")
        .map(|u| (u.trim().to_string(), Source::Key))
        .or_else(|| {
            env_endpoints
                .then(|| env("AWS_ENDPOINT_URL_SECURITYHUB").or_else(|| env("AWS_ENDPOINT_URL")))
                .flatten()
        });
    let endpoint = match endpoint {
        None => None,
        Some((raw, source)) => match reqwest::Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.query().is_some() || u.fragment().is_some() {
                    c.error(
                        "endpoint-url",
                        format!("{} must not have a query or fragment", shown(&source, &raw)),
                    );
                }
                Some(u)
            }
            Ok(u) => {
                c.error(
                    "endpoint-url",
                    format!(
                        "{}: unsupported scheme `{}` (use http or https)",
                        shown(&source, &raw),
                        u.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                c.error(
                    "endpoint-url",
                    format!("{} is not a valid URL: {e}", shown(&source, &raw)),
                );
                None
            }
        },
    };
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    c.finish(Some(SecurityHubConfig {
        region,
        endpoint,
        timeout,
    }))
}

fn shown(source: &Source, raw: &str) -> String {
    match source {
        Source::Key => format!("{raw:?}"),
        Source::Env(var) => format!("{var}={raw:?}"),
    }
}

pub fn build(
    name: &str,
    cfg: SecurityHubConfig,
    ctx: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(SecurityHub {
        name: name.to_string(),
        cfg,
        http: ctx.http.clone(),
        aws: tokio::sync::OnceCell::new(),
        credentials: tokio::sync::Mutex::new(None),
        missing: std::sync::Mutex::new(Remembered::default()),
    }))
}

/// What the AWS environment gave at the first send.
struct Aws {
    region: String,
    endpoint: reqwest::Url,
    provider: SharedCredentialsProvider,
}

/// Credentials and when to renew them.
struct Cached {
    credentials: Credentials,
    renew_at: SystemTime,
}

/// Per delivery: the findings still to import, and those AWS refused for good.
#[derive(Default)]
struct Remembered {
    by_delivery: BTreeMap<String, Progress>,
    order: std::collections::VecDeque<String>,
}

#[derive(Clone)]
struct Progress {
    /// Which report this is (a replayed delivery may have been rendered again).
    digest: u64,
    /// Ids still to import.
    missing: BTreeSet<String>,
    /// Findings refused for good in earlier attempts.
    refused: Vec<FailedFinding>,
}

/// One entry of `FailedFindings`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedFinding {
    pub id: String,
    pub code: String,
    pub message: String,
}

impl FailedFinding {
    /// Throttling, limits and AWS's internal errors pass; anything else (invalid input,
    /// access) would fail again.
    pub fn is_retryable(&self) -> bool {
        let c = self.code.to_ascii_lowercase();
        [
            "throttl",
            "limitexceeded",
            "internal",
            "unavailable",
            "timeout",
            "toomanyrequests",
        ]
        .iter()
        .any(|w| c.contains(w))
    }
}

pub struct SecurityHub {
    name: String,
    cfg: SecurityHubConfig,
    http: reqwest::Client,
    aws: tokio::sync::OnceCell<Aws>,
    credentials: tokio::sync::Mutex<Option<Cached>>,
    missing: std::sync::Mutex<Remembered>,
}

/// The findings of a report, each as it was.
pub fn findings(description: &str) -> Result<Vec<Value>, ActionError> {
    let report: Value = serde_json::from_str(description).map_err(|e| {
        ActionError::permanent(format!("AWS Security Hub unmarshalling failed: {e}"))
    })?;
    let list = match report.get("Findings") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(ActionError::permanent(
                "AWS Security Hub unmarshalling failed: `Findings` is not a list",
            ));
        }
    };
    if list.is_empty() {
        return Err(ActionError::permanent(NO_FINDINGS));
    }
    if let Some(i) = list.iter().position(|f| !f.is_object()) {
        return Err(ActionError::permanent(format!(
            "AWS Security Hub unmarshalling failed: finding {i} is not a JSON object"
        )));
    }
    Ok(list)
}

fn finding_id(f: &Value) -> Option<&str> {
    f.get("Id").and_then(Value::as_str)
}

/// Findings cut into calls of at most 100 findings and 6 MB; each call's body.
pub fn call_bodies(findings: &[&Value]) -> Vec<(Vec<String>, String)> {
    let mut calls = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut bytes = 0;
    let flush = |ids: &mut Vec<String>, parts: &mut Vec<String>, calls: &mut Vec<_>| {
        if !parts.is_empty() {
            let body = format!("{{\"Findings\":[{}]}}", parts.join(","));
            calls.push((std::mem::take(ids), body));
            parts.clear();
        }
    };
    for f in findings {
        let text = f.to_string();
        if parts.len() == MAX_FINDINGS_PER_CALL || bytes + text.len() + 16 > MAX_BYTES_PER_CALL {
            flush(&mut ids, &mut parts, &mut calls);
            bytes = 0;
        }
        bytes += text.len() + 1;
        ids.push(finding_id(f).unwrap_or_default().to_string());
        parts.push(text);
    }
    flush(&mut ids, &mut parts, &mut calls);
    calls
}

/// FNV-1a of the report, to tell a replay of another rendering from a retry.
fn digest(s: &str) -> u64 {
    super::stable_hash(s)
}

/// The default endpoint of a region.
pub fn default_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{SERVICE}.{region}.{suffix}")
}

/// At most `n` failures, for a message.
fn list_failures(failed: &[FailedFinding], n: usize) -> String {
    let mut s: Vec<String> = failed
        .iter()
        .take(n)
        .map(|f| format!("{} ({}: {})", f.id, f.code, f.message))
        .collect();
    if failed.len() > n {
        s.push(format!("and {} more", failed.len() - n));
    }
    s.join("; ")
}

/// The error type and message of an AWS error answer: the `x-amzn-ErrorType` header
/// (`AccessDeniedException:http://…`), or the body's `__type` (`…#ThrottlingException`) or
/// `code`; the body's `message` or `Message`.
pub fn aws_error(headers: &reqwest::header::HeaderMap, body: &str) -> (String, String) {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| parsed.get(*n).and_then(Value::as_str))
            .map(str::to_string)
    };
    let kind = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).to_string())
        .or_else(|| field(&["__type", "code", "Code"]))
        .map(|t| t.rsplit('#').next().unwrap_or(&t).trim().to_string())
        .unwrap_or_default();
    let message = field(&["message", "Message", "errorMessage"]).unwrap_or_else(|| {
        let b = body.trim();
        super::truncate_chars(b, 512)
    });
    (kind, message)
}

/// What to fix, by AWS error type.
fn hint(kind: &str, region: &str) -> Option<String> {
    Some(match kind {
        "AccessDeniedException" => format!(
            "the identity of these credentials may not call securityhub:BatchImportFindings in {region}: grant it in IAM; or the findings' ProductArn names a product integration not enabled in Security Hub (Trivy's product/aquasecurity/aquasecurity: enable the Aqua Security integration)"
        ),
        "UnrecognizedClientException" => "AWS does not know this access key id: check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id (and AWS_SESSION_TOKEN for temporary keys)".to_string(),
        "InvalidSignatureException" | "SignatureDoesNotMatch" => "the secret access key does not match the access key id, or this machine's clock is off".to_string(),
        "InvalidClientTokenId" => "the access key id or session token is not valid".to_string(),
        "InvalidAccessException" => format!(
            "Security Hub is not enabled for this account in {region}: enable it, or set the right `region`"
        ),
        "InvalidInputException" => "the findings are not valid ASFF: each needs AwsAccountId (the caller's account), ProductArn (of this region), Id, GeneratorId, SchemaVersion, Title, Description, Types, CreatedAt, UpdatedAt, Severity and Resources".to_string(),
        _ => return None,
    })
}

/// Error types retried whatever the status (AWS sends some throttling as 400).
fn is_transient_type(kind: &str) -> bool {
    matches!(
        kind,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "LimitExceededException"
            | "RequestLimitExceeded"
            | "InternalException"
            | "InternalFailure"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "RequestExpired"
    )
}

/// Credentials that AWS says have expired (or a request signed too long ago): the next
/// attempt looks them up again.
fn is_expired_type(kind: &str) -> bool {
    matches!(
        kind,
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired"
    )
}

/// The error of a call AWS answered with a non-2xx status.
pub fn call_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
    region: &str,
) -> ActionError {
    let (kind, message) = aws_error(headers, body);
    let mut text = format!("{FAILED}: HTTP {}", status.as_u16());
    if !kind.is_empty() {
        text.push(' ');
        text.push_str(&kind);
    }
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(&message);
    }
    if let Some(h) = hint(&kind, region) {
        text.push_str(" (");
        text.push_str(&h);
        text.push(')');
    }
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() || is_transient_type(&kind) {
        ActionError::Transient {
            message: text,
            retry_after: retry_after(headers),
        }
    } else {
        ActionError::permanent(text)
    }
}

/// The failed findings of a `BatchImportFindings` answer.
pub fn failed_findings(answer: &Value) -> Vec<FailedFinding> {
    let text = |f: &Value, k: &str| {
        f.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    answer
        .get("FailedFindings")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|f| FailedFinding {
                    id: text(f, "Id"),
                    code: text(f, "ErrorCode"),
                    message: text(f, "ErrorMessage"),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl SecurityHub {
    /// The region, endpoint and credential chain, from the AWS environment (once).
    async fn aws(&self) -> Result<&Aws, ActionError> {
        self.aws
            .get_or_try_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(http);
                if let Some(r) = &self.cfg.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                let sdk = tokio::time::timeout(self.cfg.timeout, loader.load())
                    .await
                    .map_err(|_| {
                        ActionError::transient(format!(
                            "{FAILED}: reading the AWS configuration took more than {:?}",
                            self.cfg.timeout
                        ))
                    })?;
                let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
                    ActionError::permanent(format!(
                        "{FAILED}: no AWS region: set `region` in the action, AWS_REGION, or `region` in the AWS profile"
                    ))
                })?;
                let provider = sdk.credentials_provider().ok_or_else(|| {
                    ActionError::permanent(format!("{FAILED}: no AWS credential provider"))
                })?;
                let endpoint = match &self.cfg.endpoint {
                    Some(u) => u.clone(),
                    None => reqwest::Url::parse(&default_endpoint(&region)).map_err(|e| {
                        ActionError::permanent(format!(
                            "{FAILED}: region {region:?} gives no endpoint: {e}"
                        ))
                    })?,
                };
                Ok(Aws {
                    region,
                    endpoint: join_path(&endpoint, "/findings/import"),
                    provider,
                })
            })
            .await
    }

    /// Credentials from the chain, kept until shortly before they expire.
    async fn credentials(&self, aws: &Aws) -> Result<Credentials, ActionError> {
        let mut cached = self.credentials.lock().await;
        if let Some(c) = cached.as_ref()
            && SystemTime::now() < c.renew_at
        {
            return Ok(c.credentials.clone());
        }
        let found = tokio::time::timeout(self.cfg.timeout, aws.provider.provide_credentials())
            .await
            .map_err(|_| {
                ActionError::transient(format!(
                    "{FAILED}: looking for AWS credentials took more than {:?}",
                    self.cfg.timeout
                ))
            })?
            .map_err(credentials_error)?;
        let now = SystemTime::now();
        let renew_at = match found.expiry() {
            Some(e) => e.checked_sub(REFRESH_BEFORE_EXPIRY).unwrap_or(now).max(now),
            None => now + KEEP_UNDATED,
        };
        *cached = Some(Cached {
            credentials: found.clone(),
            renew_at,
        });
        Ok(found)
    }

    async fn forget_credentials(&self) {
        *self.credentials.lock().await = None;
    }

    /// One signed `BatchImportFindings` call.
    async fn call(
        &self,
        aws: &Aws,
        creds: &Credentials,
        body: String,
    ) -> Result<Value, ActionError> {
        let headers = sign(aws, creds, &body, SystemTime::now())?;
        let mut req = self
            .http
            .post(aws.endpoint.clone())
            .timeout(self.cfg.timeout)
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| prefixed(classify_transport(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let headers = resp.headers().clone();
            let body = body_snippet(resp, 4096).await;
            if is_expired_type(&aws_error(&headers, &body).0) {
                self.forget_credentials().await;
            }
            return Err(call_error(status, &headers, &body, &aws.region));
        }
        let text = body_snippet(resp, 1024 * 1024).await;
        serde_json::from_str(&text).map_err(|e| {
            ActionError::transient(format!(
                "{FAILED}: the answer is not BatchImportFindings JSON ({e}): {}",
                super::truncate_chars(&text, 256)
            ))
        })
    }

    fn remembered(&self, delivery: &str, digest: u64) -> Option<Progress> {
        let m = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        m.by_delivery
            .get(delivery)
            .filter(|p| p.digest == digest)
            .cloned()
    }

    fn remember(&self, delivery: &str, progress: Option<Progress>) {
        let mut m = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        let m = &mut *m;
        match progress {
            None => {
                if m.by_delivery.remove(delivery).is_some() {
                    m.order.retain(|d| d != delivery);
                }
            }
            Some(p) => {
                if m.by_delivery.insert(delivery.to_string(), p).is_none() {
                    m.order.push_back(delivery.to_string());
                }
                while m.order.len() > MAX_REMEMBERED {
                    if let Some(old) = m.order.pop_front() {
                        m.by_delivery.remove(&old);
                    }
                }
            }
        }
    }

    async fn upload(&self, msg: &Message) -> Result<(), ActionError> {
        let all = findings(&msg.content.description)?;
        let delivery = msg.delivery_id(&self.name);
        let digest = digest(&msg.content.description);
        let earlier = self.remembered(&delivery, digest);
        let (to_send, mut refused): (Vec<&Value>, Vec<FailedFinding>) = match &earlier {
            Some(p) => (
                all.iter()
                    .filter(|f| finding_id(f).is_some_and(|id| p.missing.contains(id)))
                    .collect(),
                p.refused.clone(),
            ),
            None => (all.iter().collect(), Vec::new()),
        };
        let aws = self.aws().await?;
        let calls = call_bodies(&to_send);
        let mut retry: Vec<FailedFinding> = Vec::new();
        let mut imported = 0u64;
        for (i, (ids, body)) in calls.iter().enumerate() {
            let creds = match self.credentials(aws).await {
                Ok(c) => c,
                Err(e) => {
                    self.keep_rest(&delivery, digest, &calls[i..], &retry, &refused);
                    return Err(e);
                }
            };
            let answer = match self.call(aws, &creds, body.clone()).await {
                Ok(a) => a,
                Err(e) => {
                    if e.is_transient() {
                        self.keep_rest(&delivery, digest, &calls[i..], &retry, &refused);
                    } else {
                        self.remember(&delivery, None);
                    }
                    return Err(e);
                }
            };
            let failed = failed_findings(&answer);
            imported += answer
                .get("SuccessCount")
                .and_then(Value::as_u64)
                .unwrap_or((ids.len() - failed.len()) as u64);
            for f in failed {
                if f.is_retryable() {
                    retry.push(f);
                } else {
                    refused.push(f);
                }
            }
        }
        tracing::debug!(action = %self.name, imported, calls = calls.len(), "findings imported into AWS Security Hub");
        if !retry.is_empty() {
            self.keep_rest(&delivery, digest, &[], &retry, &refused);
            let mut text = format!(
                "{FAILED}: {} of {} findings not imported yet, retrying them: {}",
                retry.len(),
                all.len(),
                list_failures(&retry, 10)
            );
            if !refused.is_empty() {
                text.push_str(&format!(
                    "; refused for good: {}",
                    list_failures(&refused, 10)
                ));
            }
            return Err(ActionError::transient(text));
        }
        self.remember(&delivery, None);
        if !refused.is_empty() {
            return Err(ActionError::permanent(format!(
                "{FAILED}: AWS Security Hub refused {} of {} findings: {}",
                refused.len(),
                all.len(),
                list_failures(&refused, 10)
            )));
        }
        Ok(())
    }

    /// Remembers what the next attempt must still send: the calls not made, and the findings
    /// to retry.
    fn keep_rest(
        &self,
        delivery: &str,
        digest: u64,
        not_sent: &[(Vec<String>, String)],
        retry: &[FailedFinding],
        refused: &[FailedFinding],
    ) {
        let missing: BTreeSet<String> = not_sent
            .iter()
            .flat_map(|(ids, _)| ids.iter().cloned())
            .chain(retry.iter().map(|f| f.id.clone()))
            .collect();
        self.remember(
            delivery,
            Some(Progress {
                digest,
                missing,
                refused: refused.to_vec(),
            }),
        );
    }
}

fn prefixed(e: ActionError) -> ActionError {
    match e {
        ActionError::Transient {
            message,
            retry_after,
        } => ActionError::Transient {
            message: format!("{FAILED}: {message}"),
            retry_after,
        },
        ActionError::Permanent { message } => {
            ActionError::permanent(format!("{FAILED}: {message}"))
        }
    }
}

/// What the credential chain's failure means for the delivery: nothing found or a broken
/// profile is permanent (a person must fix it; the dead letter can be replayed); a provider
/// that failed or took too long (STS, IMDS, ECS unreachable) is transient.
fn credentials_error(e: CredentialsError) -> ActionError {
    let detail = {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    };
    match e {
        CredentialsError::CredentialsNotLoaded(_) => ActionError::permanent(format!(
            "{FAILED}: no AWS credentials found (looked for AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared config and credentials files with AWS_PROFILE, a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, EKS IRSA), ECS container credentials and EC2 instance metadata): {detail}"
        )),
        CredentialsError::InvalidConfiguration(_) => ActionError::permanent(format!(
            "{FAILED}: the AWS credential configuration is invalid: {detail}"
        )),
        _ => ActionError::transient(format!("{FAILED}: cannot get AWS credentials: {detail}")),
    }
}

/// The SigV4 headers of a call: `Authorization`, `X-Amz-Date`, and `X-Amz-Security-Token`
/// with temporary credentials.
fn sign(
    aws: &Aws,
    creds: &Credentials,
    body: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, ActionError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = creds.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&aws.region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ActionError::permanent(format!("{FAILED}: cannot sign: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        aws.endpoint.as_str(),
        [("content-type", "application/json")].into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| ActionError::permanent(format!("{FAILED}: cannot sign: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| ActionError::permanent(format!("{FAILED}: cannot sign: {e}")))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect())
}

#[async_trait]
impl Action for SecurityHub {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "awssecurityhub"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        self.upload(msg).await
    }

    fn preview(&self, msg: &Message) -> Value {
        let all = match findings(&msg.content.description) {
            Ok(f) => f,
            Err(e) => return json!({"error": e.to_string()}),
        };
        let region = self
            .cfg
            .region
            .clone()
            .unwrap_or_else(|| "<region from the AWS profile or instance metadata>".into());
        let url = match &self.cfg.endpoint {
            Some(u) => shown_url(&join_path(u, "/findings/import")),
            None if self.cfg.region.is_some() => {
                format!("{}/findings/import", default_endpoint(&region))
            }
            None => format!("https://{SERVICE}.{region}.amazonaws.com/findings/import"),
        };
        let refs: Vec<&Value> = all.iter().collect();
        let calls: Vec<Value> = call_bodies(&refs)
            .into_iter()
            .map(|(ids, body)| {
                json!({
                    "method": "POST",
                    "url": url,
                    "timeout": format!("{:?}", self.cfg.timeout),
                    "headers": {
                        "Content-Type": "application/json",
                        "X-Amz-Date": "<time of sending>",
                        "Authorization": format!("AWS4-HMAC-SHA256 Credential=<access key id>/<date>/{region}/{SERVICE}/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=<hidden>"),
                        "X-Amz-Security-Token": "<hidden, with temporary credentials>",
                    },
                    "findings": ids.len(),
                    "body": serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body)),
                })
            })
            .collect();
        json!({
            "credentials": "the AWS default chain at the first send: environment, AWS_PROFILE and shared files, web identity token, ECS, EC2 instance metadata",
            "calls": calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn region_and_endpoint_come_from_the_keys_then_the_environment() {
        let mut f = Fields::new(KEYS);
        let v = validate_with_env(&f, &env_of(&[]));
        let cfg = v.config.unwrap();
        assert_eq!(cfg.region, None);
        assert_eq!(cfg.endpoint, None);
        let env = env_of(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            (
                "AWS_ENDPOINT_URL",
                "https://vpce-1.securityhub.eu-west-1.vpce.amazonaws.com",
            ),
        ]);
        let cfg = validate_with_env(&f, &env).config.unwrap();
        assert_eq!(cfg.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            cfg.endpoint.unwrap().host_str(),
            Some("vpce-1.securityhub.eu-west-1.vpce.amazonaws.com")
        );
        let ignoring = env_of(&[
            ("AWS_ENDPOINT_URL", "https://localstack:4566"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(
            validate_with_env(&f, &ignoring).config.unwrap().endpoint,
            None
        );
        f.set("region", FieldValue::Str("us-gov-west-1".into()));
        f.set(
            "endpoint-url",
            FieldValue::Str("http://127.0.0.1:4566".into()),
        );
        let cfg = validate_with_env(&f, &env).config.unwrap();
        assert_eq!(cfg.region.as_deref(), Some("us-gov-west-1"));
        assert_eq!(cfg.endpoint.unwrap().as_str(), "http://127.0.0.1:4566/");
    }

    #[test]
    fn bad_regions_and_endpoints_are_load_errors_naming_their_source() {
        let mut f = Fields::new(KEYS);
        f.set("region", FieldValue::Str("US East".into()));
        f.set("endpoint-url", FieldValue::Str("ftp://x".into()));
        let errs = validate_with_env(&f, &env_of(&[])).config.unwrap_err();
        assert_eq!(errs[0].key, "region");
        assert!(
            errs[0].message.contains("invalid region \"US East\""),
            "{errs:?}"
        );
        assert_eq!(errs[1].key, "endpoint-url");
        assert!(
            errs[1].message.contains("unsupported scheme `ftp`"),
            "{errs:?}"
        );
        let f = Fields::new(KEYS);
        let errs = validate_with_env(
            &f,
            &env_of(&[("AWS_REGION", "moon"), ("AWS_ENDPOINT_URL", "not a url")]),
        )
        .config
        .unwrap_err();
        assert!(errs[0].message.contains("AWS_REGION=\"moon\""), "{errs:?}");
        assert!(
            errs[1].message.contains("AWS_ENDPOINT_URL=\"not a url\""),
            "{errs:?}"
        );
        for r in ["us-east-1", "cn-north-1", "us-gov-west-1", "ap-southeast-5"] {
            assert!(is_region(r), "{r}");
        }
        for r in [
            "us",
            "us-east",
            "US-EAST-1",
            "us-east-x",
            "-us-east-1",
            "us--1",
        ] {
            assert!(!is_region(r), "{r}");
        }
        assert_eq!(
            default_endpoint("cn-north-1"),
            "https://securityhub.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn reports_are_read_whole_and_empty_ones_are_postee_errors() {
        let f = findings(r#"{"Findings":[{"Id":"a","Resources":[{"Type":"Container"}],"ProductFields":{"Product Name":"Trivy"}}]}"#).unwrap();
        assert_eq!(f[0]["Resources"][0]["Type"], "Container");
        assert_eq!(f[0]["ProductFields"]["Product Name"], "Trivy");
        for empty in [r#"{"Findings":[]}"#, "{}", r#"{"Findings":null}"#] {
            let e = findings(empty).unwrap_err();
            assert!(!e.is_transient());
            assert_eq!(e.to_string(), NO_FINDINGS);
        }
        let e = findings("invalid").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AWS Security Hub unmarshalling failed: ")
        );
        assert!(findings(r#"{"Findings":[1]}"#).is_err());
    }

    #[test]
    fn calls_hold_at_most_100_findings_and_6_mb() {
        let many: Vec<Value> = (0..250).map(|i| json!({"Id": format!("f{i}")})).collect();
        let refs: Vec<&Value> = many.iter().collect();
        let calls = call_bodies(&refs);
        let sizes: Vec<usize> = calls.iter().map(|(ids, _)| ids.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let body: Value = serde_json::from_str(&calls[2].1).unwrap();
        assert_eq!(body["Findings"][0]["Id"], "f200");
        let big = "x".repeat(200 * 1024);
        let large: Vec<Value> = (0..60)
            .map(|i| json!({"Id": i.to_string(), "Description": big}))
            .collect();
        let refs: Vec<&Value> = large.iter().collect();
        let calls = call_bodies(&refs);
        assert!(calls.len() >= 2);
        assert!(calls.iter().all(|(_, b)| b.len() <= MAX_BYTES_PER_CALL));
        assert_eq!(calls.iter().map(|(ids, _)| ids.len()).sum::<usize>(), 60);
    }

    #[test]
    fn aws_errors_are_classified_with_their_type_message_and_a_hint() {
        use reqwest::StatusCode;
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "x-amzn-errortype",
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/"
                .parse()
                .unwrap(),
        );
        let e = call_error(
            StatusCode::FORBIDDEN,
            &h,
            r#"{"Message":"User: arn:aws:iam::1:user/x is not authorized"}"#,
            "us-east-1",
        );
        assert!(!e.is_transient());
        let t = e.to_string();
        assert!(t.starts_with("upload to AWS Security Hub failed: HTTP 403 AccessDeniedException: User: arn:aws:iam::1:user/x is not authorized ("), "{t}");
        assert!(t.contains("securityhub:BatchImportFindings"), "{t}");
        let none = reqwest::header::HeaderMap::new();
        let e = call_error(
            StatusCode::BAD_REQUEST,
            &none,
            r#"{"__type":"com.amazonaws.coral#ThrottlingException","message":"Rate exceeded"}"#,
            "r",
        );
        assert!(e.is_transient(), "{e}");
        let e = call_error(
            StatusCode::BAD_REQUEST,
            &none,
            r#"{"__type":"InvalidInputException","message":"bad"}"#,
            "r",
        );
        assert!(!e.is_transient());
        assert!(e.to_string().contains("InvalidInputException: bad"));
        let e = call_error(StatusCode::SERVICE_UNAVAILABLE, &none, "<html>", "r");
        assert!(e.is_transient());
        for (code, retry) in [
            ("InternalException", true),
            ("ThrottlingException", true),
            ("LimitExceeded", true),
            ("InvalidInput", false),
            ("AccessDenied", false),
        ] {
            let f = FailedFinding {
                id: "a".into(),
                code: code.into(),
                message: String::new(),
            };
            assert_eq!(f.is_retryable(), retry, "{code}");
        }
    }

    #[test]
    fn signing_gives_the_sigv4_headers() {
        let aws = Aws {
            region: "eu-west-1".into(),
            endpoint: reqwest::Url::parse(
                "https://securityhub.eu-west-1.amazonaws.com/findings/import",
            )
            .unwrap(),
            provider: SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "t")),
        };
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("tok".into()), None, "t");
        let h: BTreeMap<String, String> = sign(
            &aws,
            &creds,
            "{}",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .unwrap()
        .into_iter()
        .collect();
        assert_eq!(h["x-amz-date"], "20231114T221320Z");
        assert_eq!(h["x-amz-security-token"], "tok");
        let auth = &h["authorization"];
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/securityhub/aws4_request, SignedHeaders="), "{auth}");
        assert!(!auth.contains("secret"));
    }
}
