//! `nexusiq`: registers a CycloneDX XML BOM with Sonatype Nexus IQ Server as a third-party
//! scan of an application (spec §6.8).
//!
//! Keys (Postee's, all required): `url` (the IQ Server base URL), `user` and `password` (Basic
//! auth), `organization-id` (the organization applications are looked up in and created in);
//! ours: `timeout` (default 120s, the limit Postee set; Postee set it process-wide).
//!
//! The application's name and public id are the title with `.`, `:` and `/` replaced by `_`
//! (`all-in-one:3.5.19223` → `all-in-one_3_5_19223`). Postee's three calls, each with Basic
//! auth, each a success only with a 2xx answer that is a JSON object:
//! 1. `GET <url>/api/v2/applications/organization/<organization-id>`: the application whose
//!    `publicId` is the name, if any;
//! 2. if there is none, `POST <url>/api/v2/applications` `{"name", "organizationId",
//!    "publicId"}`, and its answer's `id`;
//! 3. `POST <url>/api/v2/scan/applications/<id>/sources/cyclone`, `Content-Type:
//!    application/xml`, the description (the `vuls-cyclonedx` template's XML). IQ answers
//!    `{"statusUrl": ...}` (logged) and evaluates the BOM afterwards.
//!
//! Errors carry Postee's prefixes: `error fetching application: ...`, `error creating
//! application: ...`, `error registering bom: ...`. 429, 408, 5xx and connection errors are
//! transient; other statuses and answers that are not JSON objects permanent. A retry starts
//! again at step 1, so an application created by an earlier attempt is found by its public id
//! and not created twice; registering the same BOM twice only evaluates it again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{
    Action, ActionError, BuildContext, Check, Message, Validated, body_snippet, classify_status,
    classify_transport, shown_url, truncate_chars,
};
use crate::config::{Fields, KeySpec, Kind, Secret};

/// Postee's time limit of each Nexus IQ request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read (the organization's application list can be long).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "url",
        Kind::Str,
        "Base URL of the Nexus IQ Server; `/api/v2/...` is appended.",
    ),
    KeySpec::required("user", Kind::Expand, "IQ Server user (Basic auth)."),
    KeySpec::required(
        "password",
        Kind::Secret,
        "Its password (or user token), a secret.",
    ),
    KeySpec::required(
        "organization-id",
        Kind::Str,
        "Internal id of the organization applications are found and created in.",
    ),
    KeySpec::optional(
        "timeout",
        Kind::Str,
        "`120s`",
        "Time limit of each request, a Go duration.",
    ),
];

/// A valid nexusiq action.
#[derive(Debug, Clone)]
pub struct NexusIqConfig {
    pub base: reqwest::Url,
    pub user: String,
    pub password: Secret,
    pub organization_id: String,
    pub timeout: Duration,
}

pub fn validate(f: &Fields) -> Validated<NexusIqConfig> {
    let mut c = Check::default();
    let base = c.url(f);
    let user = f.non_empty("user").map(|u| u.trim().to_string());
    if user.is_none() {
        c.error("user", "missing: the Nexus IQ user is required");
    }
    let password = c.required_secret(f, "password", "the Nexus IQ password is required");
    let organization_id = f.non_empty("organization-id").map(|o| o.trim().to_string());
    if organization_id.is_none() {
        c.error(
            "organization-id",
            "missing: the id of the organization applications belong to is required",
        );
    }
    let timeout = c.timeout(f, DEFAULT_TIMEOUT);
    let config = match (base, user, password, organization_id) {
        (Some(base), Some(user), Some(password), Some(organization_id)) => Some(NexusIqConfig {
            base,
            user,
            password,
            organization_id,
            timeout,
        }),
        _ => None,
    };
    c.finish(config)
}

pub fn build(
    name: &str,
    cfg: NexusIqConfig,
    ctx: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(NexusIq {
        name: name.to_string(),
        base: cfg.base,
        user: cfg.user,
        password: cfg.password,
        organization_id: cfg.organization_id,
        timeout: cfg.timeout,
        http: ctx.http.clone(),
    }))
}

pub struct NexusIq {
    name: String,
    base: reqwest::Url,
    user: String,
    password: Secret,
    organization_id: String,
    timeout: Duration,
    http: reqwest::Client,
}

/// The application name and public id of a title: `.`, `:` and `/` become `_`.
pub fn application_name(title: &str) -> String {
    title.replace(['.', ':', '/'], "_")
}

/// `base` with these path segments added (each percent-encoded as one segment).
fn api_url(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut u = base.clone();
    if let Ok(mut path) = u.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    u
}

impl NexusIq {
    fn applications_url(&self) -> reqwest::Url {
        api_url(
            &self.base,
            &[
                "api",
                "v2",
                "applications",
                "organization",
                &self.organization_id,
            ],
        )
    }

    fn create_url(&self) -> reqwest::Url {
        api_url(&self.base, &["api", "v2", "applications"])
    }

    fn scan_url(&self, id: &str) -> reqwest::Url {
        api_url(
            &self.base,
            &[
                "api",
                "v2",
                "scan",
                "applications",
                id,
                "sources",
                "cyclone",
            ],
        )
    }

    fn create_body(&self, name: &str) -> Value {
        json!({"name": name, "organizationId": self.organization_id, "publicId": name})
    }

    /// Sends one call and returns its answer, which must be a JSON object; errors start with
    /// `what` (Postee's prefixes).
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Map<String, Value>, ActionError> {
        let resp = req
            .timeout(self.timeout)
            .basic_auth(&self.user, Some(self.password.expose()))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                let e = classify_transport(&e);
                prefixed(e, what)
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if !status.is_success() {
            let body = body_snippet(resp, 1024).await;
            let hint = match status.as_u16() {
                401 => " (check `user` and `password`)",
                403 => " (the user lacks a permission on the organization or application)",
                404 => " (check `url` and `organization-id`)",
                _ => "",
            };
            let body = body.trim();
            let sep = if body.is_empty() { "" } else { ": " };
            return Err(classify_status(
                status,
                &headers,
                format!("{what}: HTTP {status}{sep}{body}{hint}"),
            ));
        }
        let body = body_snippet(resp, MAX_ANSWER).await;
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(ActionError::permanent(format!(
                "{what}: the answer is not a JSON object: {}",
                truncate_chars(body.trim(), 256)
            ))),
        }
    }

    /// The internal id of the application with this public id, created when missing.
    async fn application_id(&self, name: &str) -> Result<String, ActionError> {
        let list = self
            .call(
                self.http
                    .get(self.applications_url())
                    .header("Content-Type", "application/json"),
                "error fetching application",
            )
            .await?;
        let found = list
            .get("applications")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a["publicId"] == name);
        if let Some(app) = found {
            return id_of(app, "error fetching application");
        }
        let created = self
            .call(
                self.http
                    .post(self.create_url())
                    .json(&self.create_body(name)),
                "error creating application",
            )
            .await?;
        let id = id_of(&Value::Object(created), "error creating application")?;
        tracing::info!(action = %self.name, application = %name, id = %id, "Nexus IQ application created");
        Ok(id)
    }
}

fn prefixed(e: ActionError, what: &str) -> ActionError {
    match e {
        ActionError::Transient {
            message,
            retry_after,
        } => ActionError::Transient {
            message: format!("{what}: {message}"),
            retry_after,
        },
        ActionError::Permanent { message } => ActionError::Permanent {
            message: format!("{what}: {message}"),
        },
    }
}

fn id_of(app: &Value, what: &str) -> Result<String, ActionError> {
    match app.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ActionError::permanent(format!(
            "{what}: the application has no `id`: {}",
            truncate_chars(&app.to_string(), 256)
        ))),
    }
}

#[async_trait]
impl Action for NexusIq {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "nexusiq"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let name = application_name(&msg.content.title);
        if name.trim().is_empty() {
            return Err(ActionError::permanent(
                "error fetching application: the title is empty (it names the application)",
            ));
        }
        let id = self.application_id(&name).await?;
        let answer = self
            .call(
                self.http
                    .post(self.scan_url(&id))
                    .header("Content-Type", "application/xml")
                    .body(msg.content.description.clone()),
                "error registering bom",
            )
            .await?;
        let status_url = answer
            .get("statusUrl")
            .and_then(Value::as_str)
            .unwrap_or_default();
        tracing::info!(
            action = %self.name, application = %name, id = %id, status_url = %status_url,
            "BOM registered with Nexus IQ (evaluated asynchronously)"
        );
        Ok(())
    }

    fn preview(&self, msg: &Message) -> Value {
        let name = application_name(&msg.content.title);
        let auth = "Basic <hidden>";
        json!({
            "timeout": format!("{:?}", self.timeout),
            "application": name,
            "requests": [
                {
                    "purpose": "find the application whose publicId is the name",
                    "method": "GET",
                    "url": shown_url(&self.applications_url()),
                    "headers": {"Accept": "application/json", "Content-Type": "application/json", "Authorization": auth},
                },
                {
                    "purpose": "only when it is not found: create it, and use its id",
                    "method": "POST",
                    "url": shown_url(&self.create_url()),
                    "headers": {"Accept": "application/json", "Content-Type": "application/json", "Authorization": auth},
                    "body": self.create_body(&name),
                },
                {
                    "purpose": "register the BOM",
                    "method": "POST",
                    "url": shown_url(&self.scan_url("APPLICATION-ID")).replace("APPLICATION-ID", "<application id>"),
                    "headers": {"Accept": "application/json", "Content-Type": "application/xml", "Authorization": auth},
                    "body": msg.content.description,
                },
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;

    #[test]
    fn names_are_sanitised_as_postee_does() {
        assert_eq!(
            application_name("all-in-one:3.5.19223"),
            "all-in-one_3_5_19223"
        );
        assert_eq!(
            application_name("docker.io/library/nginx:1.25"),
            "docker_io_library_nginx_1_25"
        );
    }

    #[test]
    fn validate_requires_every_key_and_builds_the_urls() {
        crate::install_crypto_provider();
        let errs = validate(&Fields::new(KEYS)).config.unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["url", "user", "password", "organization-id"]);
        let mut f = Fields::new(KEYS);
        f.set("url", FieldValue::Str("https://iq.example/prefix".into()));
        f.set("user", FieldValue::Str("admin".into()));
        f.set("password", FieldValue::Secret(Secret::new("pw")));
        f.set("organization-id", FieldValue::Str("org 1".into()));
        let cfg = validate(&f).config.unwrap();
        assert_eq!(cfg.timeout, DEFAULT_TIMEOUT);
        let a = NexusIq {
            name: "iq".into(),
            base: cfg.base,
            user: cfg.user,
            password: cfg.password,
            organization_id: cfg.organization_id,
            timeout: cfg.timeout,
            http: reqwest::Client::new(),
        };
        assert_eq!(
            a.applications_url().as_str(),
            "https://iq.example/prefix/api/v2/applications/organization/org%201"
        );
        assert_eq!(
            a.scan_url("abc").as_str(),
            "https://iq.example/prefix/api/v2/scan/applications/abc/sources/cyclone"
        );
    }
}
