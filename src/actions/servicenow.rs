//! `servicenow`: inserts a record (an incident by default) with the ServiceNow Table API
//! (spec §6.7).
//!
//! Keys (Postee's): `user` and `password` (required: Basic auth; Postee's load errors `User for
//! "<name>" is empty` / `Password for "<name>" is empty`), `instance` (the `<instance>` of
//! `https://<instance>.service-now.com`), `board` (the table, default `incident`); ours:
//! `instance-url` (the full base URL, for instances not under `service-now.com`, and tests;
//! exactly one of `instance` and `instance-url`) and `timeout` (default 30s; Postee had none).
//!
//! The request, Postee's: `POST <base>/api/now/table/<board>` with `Authorization: Basic`, a
//! JSON body in Postee's field order: `short_description` (title), `work_notes` (`[code]` +
//! description + `[/code]`), `opened_at` (the template's `result_date`, unix seconds, as
//! `YYYY-MM-DD HH:MM:SS` in UTC; Postee used the process's local zone), `caller_id` (`user`),
//! `category`, `subcategory`, `impact` and `urgency` (the template's `result_severity` as a
//! number, 3 when it is not one), `state` (0), `description` (`result_summary`), `assigned_to`,
//! `assignment_group`; plus ours: `correlation_id` (see below).
//!
//! Idempotency: the record carries `correlation_id` = the delivery id (shortened with a hash to
//! ServiceNow's 100 characters). Before inserting, `GET <base>/api/now/table/<board>?
//! sysparm_query=correlation_id=<id>&sysparm_limit=1&sysparm_fields=sys_id,number` looks for
//! it: a hit means an earlier attempt created the record (its answer was lost), so the
//! delivery is done without a second record.
//!
//! Success: any 2xx (ServiceNow answers `201 {"result": {...}}`; Postee accepted only 201).
//! 429, 408 and 5xx are transient; 401/403 (credentials, roles) and other 4xx permanent, with
//! ServiceNow's `error.message` and `error.detail`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, body_snippet, classify_status, classify_transport, join_path, shown_url,
    truncate_chars,
};
use crate::config::{Fields, KeySpec, Kind, Secret};

pub const DEFAULT_TABLE: &str = "incident";
/// Length of ServiceNow's `correlation_id` column.
const MAX_CORRELATION_ID: usize = 100;
/// `impact` and `urgency` when the template gives no numeric severity (Postee's default).
const DEFAULT_SEVERITY: i64 = 3;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "user",
        Kind::Expand,
        "ServiceNow user (Basic auth), also sent as `caller_id`.",
    ),
    KeySpec::required("password", Kind::Secret, "Its password, a secret."),
    // Required, but not with `instance-url` (the docs' default says so).
    KeySpec {
        required: true,
        ..KeySpec::optional(
            "instance",
            Kind::Str,
            "required unless `instance-url`",
            "Instance name: records go to `https://<instance>.service-now.com`.",
        )
    },
    KeySpec::optional(
        "board",
        Kind::Str,
        "`incident`",
        "The table records are inserted into.",
    ),
    KeySpec::optional(
        "instance-url",
        Kind::Str,
        "none",
        "Full base URL of the instance instead of `instance` (custom domains, proxies).",
    ),
    SEND_TIMEOUT_KEY,
];

/// A valid servicenow action.
#[derive(Debug, Clone)]
pub struct ServiceNowConfig {
    /// `https://<instance>.service-now.com` or `instance-url`.
    pub base: reqwest::Url,
    pub table: String,
    pub user: String,
    pub password: Secret,
    pub timeout: Duration,
}

/// An instance name is one DNS label.
fn valid_instance(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A table name: letters, digits and `_` (`incident`, `sn_si_incident`, `u_alerts`).
fn valid_table(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn validate(f: &Fields) -> Validated<ServiceNowConfig> {
    let mut c = Check::default();
    let user = f.non_empty("user").map(|u| u.trim().to_string());
    if user.is_none() {
        c.error(
            "user",
            "missing: the ServiceNow user is empty (Postee: `User for \"<name>\" is empty`)",
        );
    }
    let password = f.secret("password").filter(|s| !s.is_blank()).cloned();
    if password.is_none() {
        c.error(
            "password",
            "missing: the ServiceNow password is empty (Postee: `Password for \"<name>\" is empty`)",
        );
    }
    let base = match (f.non_empty("instance"), f.non_empty("instance-url")) {
        (Some(_), Some(_)) => {
            c.error(
                "instance-url",
                "set either `instance` or `instance-url`, not both",
            );
            None
        }
        (None, None) => {
            c.error(
                "instance",
                "missing: the instance name (`<instance>` of https://<instance>.service-now.com) or `instance-url` is required",
            );
            None
        }
        (Some(i), None) => {
            let i = i.trim();
            if valid_instance(i) {
                reqwest::Url::parse(&format!("https://{i}.service-now.com")).ok()
            } else {
                c.error(
                    "instance",
                    format!(
                        "{i:?} is not an instance name (letters, digits and `-`, as in https://<instance>.service-now.com); write a full URL as `instance-url`"
                    ),
                );
                None
            }
        }
        (None, Some(_)) => c.base_url(f, "instance-url", ""),
    };
    let table = f
        .non_empty("board")
        .unwrap_or(DEFAULT_TABLE)
        .trim()
        .to_string();
    if !valid_table(&table) {
        c.error(
            "board",
            format!("{table:?} is not a table name (letters, digits and `_`)"),
        );
    }
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let config = match (base, user, password) {
        (Some(base), Some(user), Some(password)) => Some(ServiceNowConfig {
            base,
            table,
            user,
            password,
            timeout,
        }),
        _ => None,
    };
    c.finish(config)
}

pub fn build(
    name: &str,
    cfg: ServiceNowConfig,
    ctx: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    let table_url = join_path(&cfg.base, &format!("/api/now/table/{}", cfg.table));
    Ok(Arc::new(ServiceNow {
        name: name.to_string(),
        table_url,
        table: cfg.table,
        user: cfg.user,
        password: cfg.password,
        timeout: cfg.timeout,
        http: ctx.http.clone(),
    }))
}

pub struct ServiceNow {
    name: String,
    /// `<base>/api/now/table/<table>`.
    table_url: reqwest::Url,
    table: String,
    user: String,
    password: Secret,
    timeout: Duration,
    http: reqwest::Client,
}

/// The `correlation_id` of a delivery: the delivery id when it fits ServiceNow's column and
/// holds no character that means something in an encoded query (`^`, `=`...); otherwise its
/// cleaned start and a hash of the whole id (stable across versions and platforms).
pub fn correlation_id(delivery_id: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b":._-/@".contains(&b);
    if delivery_id.len() <= MAX_CORRELATION_ID && delivery_id.bytes().all(plain) {
        return delivery_id.to_string();
    }
    let h = super::stable_hash(delivery_id);
    let cleaned: String = delivery_id
        .bytes()
        .map(|b| if plain(b) { b as char } else { '_' })
        .take(MAX_CORRELATION_ID - 17)
        .collect();
    format!("{cleaned}-{h:016x}")
}

/// Unix seconds as ServiceNow's date-time value, `YYYY-MM-DD HH:MM:SS` in UTC (the Table API
/// reads field values as stored values, which are UTC). "" when it is not a number.
pub fn opened_at(date: &str) -> String {
    match date.trim().parse::<u64>() {
        Ok(secs) => {
            let t = super::rfc3339(secs);
            // `2026-11-22T10:41:56Z` → `2026-11-22 10:41:56`.
            t.trim_end_matches('Z').replacen('T', " ", 1)
        }
        Err(_) => String::new(),
    }
}

/// ServiceNow's error answer `{"error": {"message", "detail"}, "status": "failure"}` as
/// `message: detail`; any other body as it is (bounded).
pub fn vendor_error(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let e = &v["error"];
        let text = |k: &str| e[k].as_str().map(str::trim).filter(|s| !s.is_empty());
        match (text("message"), text("detail")) {
            (Some(m), Some(d)) => return format!("{m}: {d}"),
            (Some(m), None) => return m.to_string(),
            (None, Some(d)) => return d.to_string(),
            _ => {}
        }
    }
    truncate_chars(body.trim(), 512)
}

/// What to fix for a refused request, by status.
fn hint(status: reqwest::StatusCode, table: &str) -> String {
    match status.as_u16() {
        401 => " (check `user` and `password`)".into(),
        403 => format!(" (the user lacks the roles to read and insert into table `{table}`)"),
        404 => format!(" (no table `{table}` on this instance? check `board`)"),
        _ => String::new(),
    }
}

impl ServiceNow {
    /// The record to insert, in Postee's field order, plus `correlation_id`.
    pub fn body(&self, msg: &Message) -> Value {
        let c = &msg.content;
        let extra = |k: &str| c.extra.get(k).cloned().unwrap_or_default();
        let severity = extra("severity")
            .trim()
            .parse::<i64>()
            .unwrap_or(DEFAULT_SEVERITY);
        // serde_json keeps object keys sorted; the text is built in Postee's order instead.
        let fields: [(&str, Value); 13] = [
            ("short_description", c.title.clone().into()),
            (
                "work_notes",
                format!("[code]{}[/code]", c.description).into(),
            ),
            ("opened_at", opened_at(&extra("date")).into()),
            ("caller_id", self.user.clone().into()),
            ("category", extra("category").into()),
            ("subcategory", extra("subcategory").into()),
            ("impact", severity.into()),
            ("urgency", severity.into()),
            ("state", 0.into()),
            ("description", extra("summary").into()),
            ("assigned_to", extra("assignedTo").into()),
            ("assignment_group", extra("assignedGroup").into()),
            (
                "correlation_id",
                correlation_id(&msg.delivery_id(&self.name)).into(),
            ),
        ];
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// The body as sent: the fields in Postee's order.
    fn body_text(&self, msg: &Message) -> String {
        let body = self.body(msg);
        let parts: Vec<String> = FIELD_ORDER
            .iter()
            .map(|k| format!("{}:{}", json!(k), body[*k]))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// The look-up of an earlier attempt's record.
    fn lookup_url(&self, correlation_id: &str) -> reqwest::Url {
        let mut u = self.table_url.clone();
        u.query_pairs_mut()
            .append_pair("sysparm_query", &format!("correlation_id={correlation_id}"))
            .append_pair("sysparm_limit", "1")
            .append_pair("sysparm_fields", "sys_id,number");
        u
    }

    /// The record an earlier attempt created, if any: `(number, sys_id)`.
    async fn find(&self, correlation_id: &str) -> Result<Option<(String, String)>, ActionError> {
        let resp = self
            .http
            .get(self.lookup_url(correlation_id))
            .timeout(self.timeout)
            .basic_auth(&self.user, Some(self.password.expose()))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let headers = resp.headers().clone();
            let body = body_snippet(resp, 2048).await;
            return Err(classify_status(
                status,
                &headers,
                format!(
                    "ServiceNow look-up in table {} failed: HTTP {status}: {}{}",
                    self.table,
                    vendor_error(&body),
                    hint(status, &self.table)
                ),
            ));
        }
        let body = body_snippet(resp, 64 * 1024).await;
        let v: Value = serde_json::from_str(&body).map_err(|_| {
            ActionError::permanent(format!(
                "ServiceNow look-up in table {}: the answer is not the Table API's JSON: {}",
                self.table,
                truncate_chars(body.trim(), 256)
            ))
        })?;
        let Some(found) = v["result"].as_array() else {
            return Err(ActionError::permanent(format!(
                "ServiceNow look-up in table {}: the answer has no `result` list: {}",
                self.table,
                truncate_chars(body.trim(), 256)
            )));
        };
        Ok(found.first().map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("number"), s("sys_id"))
        }))
    }
}

/// Postee's field order (Go struct order), then ours.
const FIELD_ORDER: [&str; 13] = [
    "short_description",
    "work_notes",
    "opened_at",
    "caller_id",
    "category",
    "subcategory",
    "impact",
    "urgency",
    "state",
    "description",
    "assigned_to",
    "assignment_group",
    "correlation_id",
];

#[async_trait]
impl Action for ServiceNow {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "servicenow"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let id = correlation_id(&msg.delivery_id(&self.name));
        if let Some((number, sys_id)) = self.find(&id).await? {
            tracing::info!(
                action = %self.name, table = %self.table, number = %number, sys_id = %sys_id,
                correlation_id = %id,
                "ServiceNow record of this delivery exists already (an earlier attempt created it): not inserting another"
            );
            return Ok(());
        }
        let resp = self
            .http
            .post(self.table_url.clone())
            .timeout(self.timeout)
            .basic_auth(&self.user, Some(self.password.expose()))
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(self.body_text(msg))
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = body_snippet(resp, 64 * 1024).await;
        if !status.is_success() {
            return Err(classify_status(
                status,
                &headers,
                format!(
                    "ServiceNow insert into table {} failed: HTTP {status}: {}{}",
                    self.table,
                    vendor_error(&body),
                    hint(status, &self.table)
                ),
            ));
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let s = |k: &str| v["result"][k].as_str().unwrap_or_default().to_string();
        tracing::info!(
            action = %self.name, table = %self.table, number = %s("number"), sys_id = %s("sys_id"),
            "ServiceNow record created"
        );
        Ok(())
    }

    fn preview(&self, msg: &Message) -> Value {
        let id = correlation_id(&msg.delivery_id(&self.name));
        let body: Value =
            serde_json::from_str(&self.body_text(msg)).unwrap_or_else(|_| self.body(msg));
        json!({
            "timeout": format!("{:?}", self.timeout),
            "requests": [
                {
                    "purpose": "look for the record of an earlier attempt; if one is found, stop",
                    "method": "GET",
                    "url": shown_url(&self.lookup_url(&id)),
                    "headers": {"Accept": "application/json", "Authorization": "Basic <hidden>"},
                },
                {
                    "purpose": "insert the record",
                    "method": "POST",
                    "url": shown_url(&self.table_url),
                    "headers": {
                        "Accept": "application/json",
                        "Content-Type": "application/json",
                        "Authorization": "Basic <hidden>",
                    },
                    "body": body,
                },
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;
    use crate::message::Rendered;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        let mut f = Fields::new(KEYS);
        for (k, v) in pairs {
            let value = if *k == "password" {
                FieldValue::Secret(Secret::new(*v))
            } else {
                FieldValue::Str(v.to_string())
            };
            f.set(k, value);
        }
        f
    }

    #[test]
    fn validate_builds_the_instance_url_and_checks_each_key() {
        let cfg = validate(&fields(&[
            ("user", "postee"),
            ("password", "pw"),
            ("instance", "dev12345"),
        ]))
        .config
        .unwrap();
        assert_eq!(cfg.base.as_str(), "https://dev12345.service-now.com/");
        assert_eq!(cfg.table, "incident");
        let cfg = validate(&fields(&[
            ("user", "postee"),
            ("password", "pw"),
            ("instance-url", "https://itsm.example.com/sn"),
            ("board", "sn_si_incident"),
        ]))
        .config
        .unwrap();
        assert_eq!(cfg.base.as_str(), "https://itsm.example.com/sn");
        assert_eq!(cfg.table, "sn_si_incident");

        let keys = |pairs: &[(&str, &str)]| -> Vec<String> {
            let errs = validate(&fields(pairs)).config.unwrap_err();
            errs.into_iter().map(|e| e.key).collect()
        };
        assert_eq!(keys(&[]), ["user", "password", "instance"]);
        assert_eq!(
            keys(&[
                ("user", "u"),
                ("password", "p"),
                ("instance", "dev1"),
                ("instance-url", "https://x.example")
            ]),
            ["instance-url"]
        );
        assert_eq!(
            keys(&[
                ("user", "u"),
                ("password", " "),
                ("instance", "https://dev1.service-now.com"),
                ("board", "incident; drop")
            ]),
            ["password", "instance", "board"]
        );
    }

    #[test]
    fn opened_at_is_utc_and_empty_when_not_a_number() {
        assert_eq!(opened_at("1624544066"), "2021-06-24 14:14:26");
        assert_eq!(opened_at("0"), "1970-01-01 00:00:00");
        assert_eq!(opened_at(""), "");
        assert_eq!(opened_at("yesterday"), "");
    }

    #[test]
    fn correlation_ids_fit_the_column_and_encoded_queries() {
        assert_eq!(correlation_id("18c0:r:snow"), "18c0:r:snow");
        let long = format!("e:{}:a", "r".repeat(200));
        let c = correlation_id(&long);
        assert_eq!(c.len(), MAX_CORRELATION_ID);
        assert_eq!(c, correlation_id(&long), "stable");
        assert_ne!(c, correlation_id(&format!("{long}b")));
        let odd = correlation_id("e:a^ORb=c:x");
        assert!(!odd.contains('^') && !odd.contains('='), "{odd}");
    }

    #[test]
    fn the_body_follows_postees_mapping_and_order() {
        crate::install_crypto_provider();
        let a = ServiceNow {
            name: "snow".into(),
            table_url: reqwest::Url::parse("https://dev1.service-now.com/api/now/table/incident")
                .unwrap(),
            table: "incident".into(),
            user: "postee".into(),
            password: Secret::new("pw"),
            timeout: DEFAULT_SEND_TIMEOUT,
            http: reqwest::Client::new(),
        };
        let mut content = Rendered {
            title: "t".into(),
            description: "<p>d</p>".into(),
            ..Default::default()
        };
        for (k, v) in [
            ("date", "1624544066"),
            ("severity", "1"),
            ("summary", "s"),
            ("category", "c"),
            ("subcategory", "sc"),
            ("assignedTo", "owner"),
            ("assignedGroup", "group"),
        ] {
            content.extra.insert(k.into(), v.into());
        }
        let msg = Message {
            event_id: "e1".into(),
            route: "r".into(),
            content,
        };
        assert_eq!(
            a.body_text(&msg),
            r#"{"short_description":"t","work_notes":"[code]<p>d</p>[/code]","opened_at":"2021-06-24 14:14:26","caller_id":"postee","category":"c","subcategory":"sc","impact":1,"urgency":1,"state":0,"description":"s","assigned_to":"owner","assignment_group":"group","correlation_id":"e1:r:snow"}"#
        );
        let mut plain = msg.clone();
        plain.content.extra.clear();
        let b = a.body(&plain);
        assert_eq!(b["impact"], 3);
        assert_eq!(b["urgency"], 3);
        assert_eq!(b["opened_at"], "");
        assert_eq!(
            a.lookup_url("e1:r:snow").as_str(),
            "https://dev1.service-now.com/api/now/table/incident?sysparm_query=correlation_id%3De1%3Ar%3Asnow&sysparm_limit=1&sysparm_fields=sys_id%2Cnumber"
        );
    }

    #[test]
    fn vendor_errors_carry_message_and_detail() {
        assert_eq!(
            vendor_error(
                r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#
            ),
            "User Not Authenticated: Required to provide Auth information"
        );
        assert_eq!(
            vendor_error("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}
