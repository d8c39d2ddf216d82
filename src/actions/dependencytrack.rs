//! `dependencytrack`: uploads a CycloneDX JSON BOM to OWASP Dependency-Track (spec §6.9).
//!
//! Keys (Postee's): `url` (required: the API server's base URL), `dependency-track-api-key`
//! (required, secret: an API key whose team has `BOM_UPLOAD` and `PROJECT_CREATION_UPLOAD`);
//! ours: `timeout` (default 30s; Postee had none).
//!
//! The request, Postee's: `PUT <url>/api/v1/bom`, `X-Api-Key: <key>`, JSON
//! `{"projectName", "projectVersion", "autoCreate": true, "bom": "<base64>"}`. The project's
//! name and version are the title split at its first `:` (`library/nginx:1.16`); the BOM is
//! the description, which must be JSON, compacted (whitespace outside strings removed, nothing
//! else changed) and base64-encoded. A title without `:` (`title key has wrong format`) or a
//! description that is not JSON (`description key has wrong format: ...`) is a permanent
//! failure: retrying the same content cannot help.
//!
//! Success: any 2xx; Dependency-Track answers `200 {"token": "<uuid>"}` and processes the BOM
//! afterwards (the token is logged). Failures are `failed to upload BOM: api error (status:
//! N)` (Postee's text) plus the answer; 401 and 403 add what the key needs. 429, 408 and 5xx
//! are transient. Idempotency: an upload replaces the project version's components, so
//! uploading the same BOM again (a retry after a lost answer) changes nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, body_snippet, classify_status, classify_transport, join_path, shown_url,
    truncate_chars,
};
use crate::config::{Fields, KeySpec, Kind, Secret};

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "url",
        Kind::Str,
        "Base URL of the Dependency-Track API server; `/api/v1/bom` is appended.",
    ),
    KeySpec::required(
        "dependency-track-api-key",
        Kind::Secret,
        "API key, a secret. Its team needs the `BOM_UPLOAD` and `PROJECT_CREATION_UPLOAD` permissions.",
    ),
    SEND_TIMEOUT_KEY,
];

/// A valid dependencytrack action.
#[derive(Debug, Clone)]
pub struct DependencyTrackConfig {
    /// `<url>/api/v1/bom`.
    pub endpoint: reqwest::Url,
    pub api_key: Secret,
    pub timeout: Duration,
}

pub fn validate(f: &Fields) -> Validated<DependencyTrackConfig> {
    let mut c = Check::default();
    let url = c.url(f);
    let api_key = c.required_secret(
        f,
        "dependency-track-api-key",
        "the Dependency-Track API key is required",
    );
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let config = match (url, api_key) {
        (Some(url), Some(api_key)) => Some(DependencyTrackConfig {
            endpoint: join_path(&url, "/api/v1/bom"),
            api_key,
            timeout,
        }),
        _ => None,
    };
    c.finish(config)
}

pub fn build(
    name: &str,
    cfg: DependencyTrackConfig,
    ctx: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(DependencyTrack {
        name: name.to_string(),
        endpoint: cfg.endpoint,
        api_key: cfg.api_key,
        timeout: cfg.timeout,
        http: ctx.http.clone(),
    }))
}

pub struct DependencyTrack {
    name: String,
    endpoint: reqwest::Url,
    api_key: Secret,
    timeout: Duration,
    http: reqwest::Client,
}

/// JSON text without the whitespace outside its strings (Go's `json.Compact`: key order,
/// number spelling and escapes stay as they were); the parse error when it is not JSON.
pub fn compact_json(text: &str) -> Result<String, String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for ch in text.chars() {
        if in_string {
            out.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if !matches!(ch, ' ' | '\t' | '\n' | '\r') {
            if ch == '"' {
                in_string = true;
            }
            out.push(ch);
        }
    }
    Ok(out)
}

/// The upload request body, or why the content cannot be uploaded (Postee's texts).
pub fn upload_body(title: &str, description: &str) -> Result<Value, String> {
    if title.is_empty() {
        return Err("title key not found".into());
    }
    let Some((name, version)) = title.split_once(':') else {
        return Err(format!(
            "title key has wrong format: {:?} is not `<project name>:<version>`",
            truncate_chars(title, 200)
        ));
    };
    let bom =
        compact_json(description).map_err(|e| format!("description key has wrong format: {e}"))?;
    Ok(json!({
        "projectName": name,
        "projectVersion": version,
        "autoCreate": true,
        "bom": base64::engine::general_purpose::STANDARD.encode(bom),
    }))
}

/// What to fix for a refused upload.
fn hint(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => {
            " (the API key was refused: check `dependency-track-api-key`; its team needs the BOM_UPLOAD and PROJECT_CREATION_UPLOAD permissions)"
        }
        403 => {
            " (the API key lacks a permission: its team needs BOM_UPLOAD and PROJECT_CREATION_UPLOAD)"
        }
        404 => " (no such project, and it could not be created: check PROJECT_CREATION_UPLOAD)",
        _ => "",
    }
}

#[async_trait]
impl Action for DependencyTrack {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "dependencytrack"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let body = upload_body(&msg.content.title, &msg.content.description)
            .map_err(ActionError::permanent)?;
        let resp = self
            .http
            .put(self.endpoint.clone())
            .timeout(self.timeout)
            .header("X-Api-Key", self.api_key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let answer = body_snippet(resp, 64 * 1024).await;
        if !status.is_success() {
            let text = truncate_chars(answer.trim(), 1024);
            let text = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            return Err(classify_status(
                status,
                &headers,
                format!(
                    "failed to upload BOM: api error (status: {}){text}{}",
                    status.as_u16(),
                    hint(status)
                ),
            ));
        }
        let token = serde_json::from_str::<Value>(&answer)
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_string))
            .unwrap_or_default();
        tracing::info!(
            action = %self.name, project = %body["projectName"].as_str().unwrap_or_default(),
            version = %body["projectVersion"].as_str().unwrap_or_default(), token = %token,
            "BOM uploaded to Dependency-Track (processed asynchronously; token identifies the processing)"
        );
        Ok(())
    }

    fn preview(&self, msg: &Message) -> Value {
        let body = match upload_body(&msg.content.title, &msg.content.description) {
            Ok(b) => b,
            Err(e) => return json!({"error": e}),
        };
        json!({
            "method": "PUT",
            "url": shown_url(&self.endpoint),
            "timeout": format!("{:?}", self.timeout),
            "headers": {"Content-Type": "application/json", "X-Api-Key": "<hidden>"},
            "body": body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_removes_whitespace_outside_strings_only() {
        assert_eq!(
            compact_json("{\n  \"b\": [1, 2.50],\n  \"a\": \"x y\\\" z\"\n}\n").unwrap(),
            r#"{"b":[1,2.50],"a":"x y\" z"}"#
        );
        assert!(compact_json("<bom/>").is_err());
        assert!(compact_json("").is_err());
    }

    #[test]
    fn the_body_takes_name_and_version_from_the_title() {
        let b = upload_body("library/nginx:1.16:x", "{\"a\": 1}").unwrap();
        assert_eq!(b["projectName"], "library/nginx");
        assert_eq!(b["projectVersion"], "1.16:x");
        assert_eq!(b["autoCreate"], true);
        assert_eq!(b["bom"], "eyJhIjoxfQ==");
        assert_eq!(upload_body("", "{}").unwrap_err(), "title key not found");
        assert!(
            upload_body("nginx", "{}")
                .unwrap_err()
                .starts_with("title key has wrong format")
        );
        assert!(
            upload_body("a:b", "not json")
                .unwrap_err()
                .starts_with("description key has wrong format: ")
        );
    }

    #[test]
    fn validate_needs_url_and_key() {
        use crate::config::FieldValue;
        let errs = validate(&Fields::new(KEYS)).config.unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["url", "dependency-track-api-key"]);
        let mut f = Fields::new(KEYS);
        f.set("url", FieldValue::Str("https://dt.example/base/".into()));
        f.set(
            "dependency-track-api-key",
            FieldValue::Secret(Secret::new("odt_1")),
        );
        let cfg = validate(&f).config.unwrap();
        assert_eq!(cfg.endpoint.as_str(), "https://dt.example/base/api/v1/bom");
    }
}
