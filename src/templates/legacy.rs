//! Postee's Go "legacy scan renderers" (`legacy-scan-renderer: html | slack | jira`, spec
//! §5.7): an Aqua image scan laid out as HTML, Slack blocks or Jira wiki text, and their
//! aggregation (spec §4.9). Same output as Postee's, written for this project.

use serde::{Deserialize, Deserializer};

use super::Rendered;

/// Which layout a legacy renderer produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Slack,
    Jira,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "html" => Some(Format::Html),
            "slack" => Some(Format::Slack),
            "jira" => Some(Format::Jira),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Slack => "slack",
            Format::Jira => "jira",
        }
    }

    fn p(self, text: &str) -> String {
        match self {
            Format::Html => format!("<p>{text}</p>\n"),
            Format::Jira => format!("{text}\n"),
            Format::Slack => slack_text_block(text),
        }
    }

    fn heading(self, level: u8, text: &str) -> String {
        match self {
            Format::Html => format!("<h{level}>{text}</h{level}>\n"),
            Format::Jira => format!("h{level}. {text}\n"),
            Format::Slack => slack_text_block(&format!("*{text}*")),
        }
    }

    fn colour(self, text: &str, color: &str) -> String {
        match self {
            Format::Html => format!("<span style='color:{color}'>{text}</span>"),
            Format::Jira => format!("{{color:{color}}}{text}{{color}}"),
            Format::Slack => format!("*{text}*"),
        }
    }

    fn link(self, url: &str, title: &str) -> String {
        match self {
            Format::Html => format!("<a href='{url}'>{title}</a>"),
            Format::Jira => format!("[{title}|{url}]"),
            Format::Slack => format!("<{url}|{title}>"),
        }
    }

    /// A table whose first row is the header.
    fn table(self, rows: &[Vec<String>]) -> String {
        match self {
            Format::Html => {
                let mut lines = vec![
                    "<TABLE border='1' style='width: 100%; border-collapse: collapse;'>"
                        .to_string(),
                ];
                for (i, row) in rows.iter().enumerate() {
                    let tag = if i == 0 { "TH" } else { "TD" };
                    lines.push("<TR>".into());
                    lines.push(
                        row.iter()
                            .map(|c| format!("<{tag} style='padding: 5px;'>{c}</{tag}>"))
                            .collect(),
                    );
                    lines.push("</TR>".into());
                }
                lines.push("</TABLE>\n".into());
                lines.join("\n")
            }
            Format::Jira => {
                if rows.is_empty() {
                    return String::new();
                }
                let mut out = String::new();
                for (i, row) in rows.iter().enumerate() {
                    if i == 0 {
                        out.push_str(&format!("||{}||\n", row.join("||")));
                    } else {
                        out.push_str(&format!("|{}|\n", row.join("|")));
                    }
                }
                out.push('\n');
                out
            }
            Format::Slack => slack_table(rows),
        }
    }
}

/// `{"type":"section","text":{"type":"mrkdwn","text":…}},` as Go's encoder writes the struct.
fn slack_text_block(text: &str) -> String {
    let mut s = String::from(r#"{"type":"section","text":{"type":"mrkdwn","text":"#);
    crate::rego::gojson::write_string(text, &mut s);
    s.push_str("}},");
    s
}

fn slack_fields_block(fields: &[String]) -> String {
    let mut s = String::from(r#"{"type":"section","fields":["#);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"type":"mrkdwn","text":"#);
        crate::rego::gojson::write_string(f, &mut s);
        s.push('}');
    }
    s.push_str("]},");
    s
}

/// Postee's Slack table: a 2×5 table becomes one section of header/value pairs; otherwise
/// sections of 5 rows, two fields per row (the first column, or the first two when the header
/// starts with `#`; then the other columns joined by ` / `), header cells in bold.
fn slack_table(rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    if rows.len() == 2 && rows[0].len() == 5 {
        let fields: Vec<String> = (0..5)
            .flat_map(|j| {
                [
                    format!("*{}*", rows[0][j]),
                    rows[1].get(j).cloned().unwrap_or_default(),
                ]
            })
            .collect();
        return slack_fields_block(&fields);
    }
    let numbered = rows[0].first().is_some_and(|h| h == "#");
    let mut out = String::new();
    for chunk in rows.chunks(5).enumerate().map(|(k, c)| (k * 5, c)) {
        let (start, chunk) = chunk;
        let mut fields = Vec::new();
        for (offset, row) in chunk.iter().enumerate() {
            let bold = |s: &str| {
                if start + offset == 0 {
                    format!("*{s}*")
                } else {
                    s.to_string()
                }
            };
            let split = if numbered { 2 } else { 1 };
            let first: Vec<String> = row.iter().take(split).map(|c| bold(c)).collect();
            let rest: Vec<String> = row.iter().skip(split).map(|c| bold(c)).collect();
            fields.push(first.join(" "));
            fields.push(rest.join(" / "));
        }
        out.push_str(&slack_fields_block(&fields));
    }
    out
}

/// Go's `json.Unmarshal` leaves a field at its zero value for `null`; serde needs telling.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The fields of an Aqua scan the legacy layout reads (Postee's `ScanImageInfo`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Scan {
    #[serde(deserialize_with = "nullable")]
    image: String,
    #[serde(deserialize_with = "nullable")]
    registry: String,
    #[serde(deserialize_with = "nullable")]
    image_assurance_results: Assurance,
    #[serde(deserialize_with = "nullable")]
    vulnerability_summary: Summary,
    #[serde(deserialize_with = "nullable")]
    scan_options: ScanOptions,
    #[serde(deserialize_with = "nullable")]
    resources: Vec<Resource>,
    #[serde(deserialize_with = "nullable")]
    malware: Vec<Malware>,
    #[serde(deserialize_with = "nullable")]
    sensitive_data: Vec<Sensitive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Assurance {
    #[serde(deserialize_with = "nullable")]
    disallowed: bool,
    #[serde(deserialize_with = "nullable")]
    checks_performed: Vec<Check>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Check {
    #[serde(deserialize_with = "nullable")]
    control: String,
    #[serde(deserialize_with = "nullable")]
    policy_name: String,
    #[serde(deserialize_with = "nullable")]
    failed: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Summary {
    #[serde(deserialize_with = "nullable")]
    critical: i64,
    #[serde(deserialize_with = "nullable")]
    high: i64,
    #[serde(deserialize_with = "nullable")]
    medium: i64,
    #[serde(deserialize_with = "nullable")]
    low: i64,
    #[serde(deserialize_with = "nullable")]
    negligible: i64,
    #[serde(deserialize_with = "nullable")]
    sensitive: i64,
    #[serde(deserialize_with = "nullable")]
    malware: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ScanOptions {
    #[serde(deserialize_with = "nullable")]
    scan_sensitive_data: bool,
    #[serde(deserialize_with = "nullable")]
    scan_malware: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Resource {
    #[serde(deserialize_with = "nullable")]
    resource: ResourceDetails,
    #[serde(deserialize_with = "nullable")]
    vulnerabilities: Vec<Vulnerability>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResourceDetails {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Vulnerability {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    fix_version: String,
    #[serde(deserialize_with = "nullable")]
    aqua_severity: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Malware {
    #[serde(deserialize_with = "nullable")]
    malware: String,
    #[serde(deserialize_with = "nullable")]
    path: String,
    #[serde(deserialize_with = "nullable")]
    hash: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Sensitive {
    #[serde(deserialize_with = "nullable")]
    filename: String,
    #[serde(deserialize_with = "nullable")]
    path: String,
    #[serde(rename = "type", deserialize_with = "nullable")]
    kind: String,
    #[serde(deserialize_with = "nullable")]
    hash: String,
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.to_string()
    }
}

/// Postee's `ClearField`: control characters and U+FFFD removed.
fn clear_field(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '\u{FFFD}')
        .collect()
}

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "negligible"];

// Long on purpose: one linear pass that writes Postee's Go layout section by section, in
// the order of its output; split up, the order of the output would be harder to check
// against Postee's goldens.
fn description(f: Format, scan: &Scan, aqua_server: &str, link: &str) -> String {
    let mut out = String::new();
    out.push_str(&f.p(&format!("Image name: {}", scan.image)));
    out.push_str(&f.p(&format!("Registry: {}", scan.registry)));
    out.push_str(&f.p(if scan.image_assurance_results.disallowed {
        "Image is non-compliant"
    } else {
        "Image is compliant"
    }));
    let yes_no = |n: i64| if n > 0 { "Yes" } else { "No" };
    if scan.scan_options.scan_malware {
        out.push_str(&f.p(&format!(
            "Malware found: {}",
            yes_no(scan.vulnerability_summary.malware)
        )));
    }
    if scan.scan_options.scan_sensitive_data {
        out.push_str(&f.p(&format!(
            "Sensitive data found: {}",
            yes_no(scan.vulnerability_summary.sensitive)
        )));
    }
    let s = &scan.vulnerability_summary;
    let colours = ["#c00000", "#e0443d", "#f79421", "#e1c930", "green"];
    let counts = [s.critical, s.high, s.medium, s.low, s.negligible];
    out.push_str(
        &f.table(&[
            SEVERITIES.iter().map(|n| n.to_uppercase()).collect(),
            counts
                .iter()
                .zip(colours)
                .map(|(n, c)| f.colour(&n.to_string(), c))
                .collect(),
        ]),
    );
    let checks = &scan.image_assurance_results.checks_performed;
    if !checks.is_empty() {
        out.push_str(&f.heading(2, "Assurance controls"));
        let mut rows = vec![strings(&["#", "Control", "Policy Name", "Status"])];
        for (i, c) in checks.iter().enumerate() {
            rows.push(vec![
                (i + 1).to_string(),
                c.control.clone(),
                c.policy_name.clone(),
                if c.failed { "FAIL" } else { "PASS" }.into(),
            ]);
        }
        out.push_str(&f.table(&rows));
    }
    if !scan.resources.is_empty() {
        out.push_str(&f.heading(2, "Found vulnerabilities"));
        for severity in SEVERITIES {
            let mut rows = vec![strings(&[
                "Vulnerability ID",
                "Resource name",
                "Installed version",
                "Fix version",
            ])];
            for r in &scan.resources {
                for v in &r.vulnerabilities {
                    if v.aqua_severity.to_lowercase() == severity {
                        rows.push(vec![
                            or_none(&v.name),
                            or_none(&r.resource.name),
                            or_none(&r.resource.version),
                            if v.fix_version.is_empty() {
                                "none".into()
                            } else {
                                clear_field(&v.fix_version)
                            },
                        ]);
                    }
                }
            }
            if rows.len() > 1 {
                let mut title = severity.to_string();
                title[..1].make_ascii_uppercase();
                out.push_str(&f.heading(3, &format!("{title} severity vulnerabilities")));
                out.push_str(&f.table(&rows));
            }
        }
    }
    if !scan.malware.is_empty() {
        out.push('\n');
        out.push_str(&f.heading(2, "Malware"));
        let mut rows = vec![strings(&["#", "Malware", "Hash", "Path"])];
        for (i, m) in scan.malware.iter().enumerate() {
            rows.push(vec![
                i.to_string(),
                m.malware.clone(),
                m.hash.clone(),
                m.path.clone(),
            ]);
        }
        out.push_str(&f.table(&rows));
    }
    if !scan.sensitive_data.is_empty() {
        out.push('\n');
        out.push_str(&f.heading(2, "Sensitive Data"));
        let mut rows = vec![strings(&["File name", "Path", "Type", "Hash"])];
        for s in &scan.sensitive_data {
            rows.push(vec![
                s.filename.clone(),
                s.path.clone(),
                s.kind.clone(),
                s.hash.clone(),
            ]);
        }
        out.push_str(&f.table(&rows));
    }
    if !aqua_server.is_empty() {
        out.push_str(&f.p(&format!("See more: {}", f.link(link, link))));
    }
    out
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// Renders one Aqua scan. `aqua_server` is the `…/#/images/` form (`""`: no link, no url).
pub fn render(f: Format, input: &serde_json::Value, aqua_server: &str) -> Result<Rendered, String> {
    let scan: Scan = serde_json::from_value(input.clone()).map_err(|e| {
        format!(
            "legacy-scan-renderer {}: the event is not an Aqua scan: {e}",
            f.name()
        )
    })?;
    let title = match input.get("image") {
        Some(serde_json::Value::String(s)) => format!("{s} vulnerability scan report"),
        _ => "%!s(<nil>) vulnerability scan report".to_string(),
    };
    let link = format!(
        "{aqua_server}{}/{}",
        scan.registry,
        query_escape(&scan.image)
    );
    Ok(Rendered {
        title,
        description: description(f, &scan, aqua_server, &link),
        url: if aqua_server.is_empty() {
            String::new()
        } else {
            link
        },
        ..Rendered::default()
    })
}

/// Postee's legacy aggregation: each item's title as a level-1 heading followed by its
/// description; urls joined by newlines; owners joined by `;`.
pub fn aggregate(f: Format, items: &[Rendered]) -> Rendered {
    let mut description = String::new();
    let mut url = String::new();
    let mut owners = Vec::new();
    for item in items {
        description.push_str(&f.heading(1, &item.title));
        description.push_str(&item.description);
        if !url.is_empty() {
            url.push('\n');
        }
        url.push_str(&item.url);
        if let Some(o) = item.owners.as_ref().filter(|o| !o.is_empty()) {
            owners.push(o.clone());
        }
    }
    Rendered {
        title: "Vulnerability scan report".into(),
        description,
        url,
        owners: (!owners.is_empty()).then(|| owners.join(";")),
        ..Rendered::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan() -> serde_json::Value {
        serde_json::json!({
            "image": "alpine:3.8", "registry": "Docker Hub",
            "image_assurance_results": {"disallowed": true, "checks_performed": [
                {"control": "max_severity", "policy_name": "Default", "failed": true}]},
            "vulnerability_summary": {"critical": 1, "high": 0, "medium": 0, "low": 0, "negligible": 0, "malware": 1},
            "scan_options": {"scan_malware": true, "scan_sensitive_data": true},
            "resources": [{"resource": {"name": "musl", "version": "1.1"}, "vulnerabilities": [
                {"name": "CVE-1", "aqua_severity": "Critical", "fix_version": "1.2\u{0007}"},
                {"name": "CVE-2", "aqua_severity": "weird"}]}],
            "malware": [{"malware": "eicar", "hash": "h", "path": "/p"}]
        })
    }

    #[test]
    fn html_layout_matches_postees_providers() {
        let out = render(Format::Html, &scan(), "https://aqua/#/images/").unwrap();
        assert_eq!(out.title, "alpine:3.8 vulnerability scan report");
        assert_eq!(out.url, "https://aqua/#/images/Docker Hub/alpine%3A3.8");
        let want = "<p>Image name: alpine:3.8</p>\n<p>Registry: Docker Hub</p>\n<p>Image is non-compliant</p>\n\
<p>Malware found: Yes</p>\n<p>Sensitive data found: No</p>\n\
<TABLE border='1' style='width: 100%; border-collapse: collapse;'>\n<TR>\n\
<TH style='padding: 5px;'>CRITICAL</TH><TH style='padding: 5px;'>HIGH</TH><TH style='padding: 5px;'>MEDIUM</TH><TH style='padding: 5px;'>LOW</TH><TH style='padding: 5px;'>NEGLIGIBLE</TH>\n</TR>\n<TR>\n\
<TD style='padding: 5px;'><span style='color:#c00000'>1</span></TD><TD style='padding: 5px;'><span style='color:#e0443d'>0</span></TD><TD style='padding: 5px;'><span style='color:#f79421'>0</span></TD><TD style='padding: 5px;'><span style='color:#e1c930'>0</span></TD><TD style='padding: 5px;'><span style='color:green'>0</span></TD>\n</TR>\n</TABLE>\n\
<h2>Assurance controls</h2>\n\
<TABLE border='1' style='width: 100%; border-collapse: collapse;'>\n<TR>\n\
<TH style='padding: 5px;'>#</TH><TH style='padding: 5px;'>Control</TH><TH style='padding: 5px;'>Policy Name</TH><TH style='padding: 5px;'>Status</TH>\n</TR>\n<TR>\n\
<TD style='padding: 5px;'>1</TD><TD style='padding: 5px;'>max_severity</TD><TD style='padding: 5px;'>Default</TD><TD style='padding: 5px;'>FAIL</TD>\n</TR>\n</TABLE>\n\
<h2>Found vulnerabilities</h2>\n<h3>Critical severity vulnerabilities</h3>\n\
<TABLE border='1' style='width: 100%; border-collapse: collapse;'>\n<TR>\n\
<TH style='padding: 5px;'>Vulnerability ID</TH><TH style='padding: 5px;'>Resource name</TH><TH style='padding: 5px;'>Installed version</TH><TH style='padding: 5px;'>Fix version</TH>\n</TR>\n<TR>\n\
<TD style='padding: 5px;'>CVE-1</TD><TD style='padding: 5px;'>musl</TD><TD style='padding: 5px;'>1.1</TD><TD style='padding: 5px;'>1.2</TD>\n</TR>\n</TABLE>\n\
\n<h2>Malware</h2>\n\
<TABLE border='1' style='width: 100%; border-collapse: collapse;'>\n<TR>\n\
<TH style='padding: 5px;'>#</TH><TH style='padding: 5px;'>Malware</TH><TH style='padding: 5px;'>Hash</TH><TH style='padding: 5px;'>Path</TH>\n</TR>\n<TR>\n\
<TD style='padding: 5px;'>0</TD><TD style='padding: 5px;'>eicar</TD><TD style='padding: 5px;'>h</TD><TD style='padding: 5px;'>/p</TD>\n</TR>\n</TABLE>\n\
<p>See more: <a href='https://aqua/#/images/Docker Hub/alpine%3A3.8'>https://aqua/#/images/Docker Hub/alpine%3A3.8</a></p>\n";
        assert_eq!(out.description, want);
    }

    #[test]
    fn jira_layout_uses_wiki_tables_and_colours() {
        let out = render(Format::Jira, &scan(), "").unwrap();
        assert!(out.description.starts_with(
            "Image name: alpine:3.8\nRegistry: Docker Hub\nImage is non-compliant\nMalware found: Yes\nSensitive data found: No\n\
||CRITICAL||HIGH||MEDIUM||LOW||NEGLIGIBLE||\n|{color:#c00000}1{color}|{color:#e0443d}0{color}|"
        ), "{}", out.description);
        assert!(out.description.contains("h3. Critical severity vulnerabilities\n||Vulnerability ID||Resource name||Installed version||Fix version||\n|CVE-1|musl|1.1|1.2|\n\n"));
        assert!(!out.description.contains("See more"));
        assert_eq!(out.url, "");
    }

    #[test]
    fn slack_layout_is_go_encoded_blocks() {
        let out = render(Format::Slack, &scan(), "https://aqua/#/images/").unwrap();
        let d = &out.description;
        assert!(
            d.starts_with(
                r#"{"type":"section","text":{"type":"mrkdwn","text":"Image name: alpine:3.8"}},"#
            ),
            "{d}"
        );
        assert!(d.contains(r#"{"type":"section","fields":[{"type":"mrkdwn","text":"*CRITICAL*"},{"type":"mrkdwn","text":"*1*"},{"type":"mrkdwn","text":"*HIGH*"},"#));
        assert!(d.contains(r#"{"type":"mrkdwn","text":"*#* *Control*"},{"type":"mrkdwn","text":"*Policy Name* / *Status*"},{"type":"mrkdwn","text":"1 max_severity"},{"type":"mrkdwn","text":"Default / FAIL"}]},"#));
        assert!(d.contains(
            r#"{"type":"mrkdwn","text":"CVE-1"},{"type":"mrkdwn","text":"musl / 1.1 / 1.2"}"#
        ));
        assert!(d.ends_with(r#"{"type":"section","text":{"type":"mrkdwn","text":"See more: \u003chttps://aqua/#/images/Docker Hub/alpine%3A3.8|https://aqua/#/images/Docker Hub/alpine%3A3.8\u003e"}},"#), "{d}");
    }

    #[test]
    fn a_type_mismatch_is_an_error_and_a_missing_image_prints_like_go() {
        let err = render(Format::Html, &serde_json::json!({"image": 3}), "").unwrap_err();
        assert!(err.contains("not an Aqua scan"), "{err}");
        let out = render(Format::Html, &serde_json::json!({"registry": null}), "").unwrap();
        assert_eq!(out.title, "%!s(<nil>) vulnerability scan report");
    }

    #[test]
    fn aggregation_concatenates_with_headings_urls_and_owners() {
        let item = |t: &str, u: &str, o: Option<&str>| Rendered {
            title: t.into(),
            description: format!("<p>{t}</p>\n"),
            url: u.into(),
            owners: o.map(String::from),
            ..Rendered::default()
        };
        let out = aggregate(
            Format::Html,
            &[
                item("b", "", Some("x")),
                item("a", "u2", None),
                item("c", "u3", Some("y")),
            ],
        );
        assert_eq!(out.title, "Vulnerability scan report");
        assert_eq!(
            out.description,
            "<h1>b</h1>\n<p>b</p>\n<h1>a</h1>\n<p>a</p>\n<h1>c</h1>\n<p>c</p>\n"
        );
        assert_eq!(out.url, "u2\nu3");
        assert_eq!(out.owners.as_deref(), Some("x;y"));
    }
}
