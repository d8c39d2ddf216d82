//! `postee test DIR`: runs a folder of template test cases. A case is a directory with a
//! `case.yaml` (what renders: a package, a legacy layout or a route of a config; which events),
//! and `expected.<field>` files holding the exact expected output. Every mismatch is printed as
//! a unified diff; the exit status is 1 when any case fails. The case layout is documented in
//! docs/templates.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regorus::Value;
use serde::Deserialize;

use super::render::{self as commands, Subject};
use crate::app::Paths;
use crate::cli::TestArgs;
use crate::message::Rendered;

/// `case.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaseConfig {
    /// Template package to render with (bundled, or from `rego-templates`).
    pub package: Option<String>,
    /// Postee Go layout: html, slack or jira.
    pub legacy: Option<String>,
    /// Route of `config` to render with (its condition must match).
    pub route: Option<String>,
    /// Config file for `route`, relative to the case directory.
    pub config: Option<PathBuf>,
    /// The event, relative to the case directory (default `input.json`).
    pub input: Option<PathBuf>,
    /// Several events, in arrival order, rendered through the aggregation.
    pub inputs: Vec<PathBuf>,
    /// Render `inputs` (or `input`) through the template's aggregation.
    pub aggregate: bool,
    /// Aqua console URL injected as `input.postee.AquaServer` (default none).
    pub aqua_server: String,
    /// Inject the `postee` key (default true; false evaluates the event exactly as given).
    pub inject: Option<bool>,
    /// Directory of user templates, relative to the case directory (default
    /// `REGO_TEMPLATES_PATH`, then `./rego-templates`).
    pub rego_templates: Option<PathBuf>,
}

/// The content fields a case may check: `expected.<name>`.
fn actual_fields(r: &Rendered) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("title".to_string(), r.title.clone());
    m.insert("result".to_string(), r.description.clone());
    m.insert("url".to_string(), r.url.clone());
    if let Some(o) = &r.owners {
        m.insert("owners".to_string(), o.clone());
    }
    for (k, v) in &r.extra {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// Directories under `dir` (itself included) that hold a `case.yaml`, sorted.
fn find_cases(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("case.yaml").is_file() {
            out.push(d.clone());
        }
        let entries =
            std::fs::read_dir(&d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_event(path: &Path) -> Result<Value, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    crate::event::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Renders one case: the content, or the error the rendering gave.
async fn render_case(dir: &Path, cfg: &CaseConfig) -> Result<Result<Rendered, String>, String> {
    let inputs: Vec<PathBuf> = if cfg.inputs.is_empty() {
        vec![
            cfg.input
                .clone()
                .unwrap_or_else(|| PathBuf::from("input.json")),
        ]
    } else {
        cfg.inputs.clone()
    };
    let events: Vec<Value> = inputs
        .iter()
        .map(|p| read_event(&dir.join(p)))
        .collect::<Result<_, _>>()?;
    let aggregate = cfg.aggregate || !cfg.inputs.is_empty();
    let subject = match (&cfg.package, &cfg.legacy, &cfg.route) {
        (Some(p), None, None) => Subject::Package(p.clone()),
        (None, Some(l), None) => Subject::Legacy(l.clone()),
        (None, None, Some(r)) => Subject::Route {
            cfgfile: Some(dir.join(cfg.config.as_ref().ok_or("`route` needs `config`")?)),
            route: r.clone(),
        },
        _ => return Err("case.yaml must have exactly one of `package`, `legacy`, `route`".into()),
    };
    let out = match subject {
        Subject::Route { cfgfile, route } if aggregate => {
            commands::render_route_aggregate(cfgfile, &route, &events).await
        }
        Subject::Route { cfgfile, route } => {
            commands::render_route_content(cfgfile, &route, &events[0]).await
        }
        subject => {
            let templates = match &cfg.rego_templates {
                Some(d) => dir.join(d),
                None => Paths::from_env().templates_dir,
            };
            commands::render_with_template(
                &subject,
                &templates,
                &cfg.aqua_server,
                cfg.inject.unwrap_or(true),
                &events,
                aggregate,
            )
            .await
        }
    };
    Ok(out)
}

/// The `expected.*` files of a case: field name → expected text.
fn expected_files(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(field) = name.strip_prefix("expected.") {
            let text = std::fs::read_to_string(e.path())
                .map_err(|err| format!("cannot read {}: {err}", e.path().display()))?;
            m.insert(field.to_string(), text);
        }
    }
    Ok(m)
}

/// Outcome of one case: `None` when it passed, else the report to print.
async fn run_case(dir: &Path, update: bool) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string(dir.join("case.yaml"))
        .map_err(|e| format!("cannot read case.yaml: {e}"))?;
    let cfg: CaseConfig = yaml_serde::from_str(&text).map_err(|e| format!("case.yaml: {e}"))?;
    let expected = expected_files(dir)?;
    let outcome = render_case(dir, &cfg).await?;
    if update {
        match &outcome {
            Ok(r) => {
                let actual = actual_fields(r);
                // Always keep title and result; the other fields only when not empty or
                // already checked.
                for (k, v) in &actual {
                    if k == "title" || k == "result" || !v.is_empty() || expected.contains_key(k) {
                        std::fs::write(dir.join(format!("expected.{k}")), v)
                            .map_err(|e| format!("cannot write expected.{k}: {e}"))?;
                    }
                }
            }
            Err(e) => std::fs::write(dir.join("expected.error"), e)
                .map_err(|e| format!("cannot write expected.error: {e}"))?,
        }
        return Ok(None);
    }
    if expected.is_empty() {
        return Ok(Some(
            "no expected.* files (run with --update to create them)".into(),
        ));
    }
    let mut report = String::new();
    match outcome {
        Ok(r) => {
            if let Some(want) = expected.get("error") {
                report.push_str(&format!(
                    "expected an error containing {want:?}, but it rendered\n"
                ));
            }
            let actual = actual_fields(&r);
            for (field, want) in expected.iter().filter(|(k, _)| *k != "error") {
                let got = actual.get(field).map(String::as_str).unwrap_or("");
                if got != want {
                    report.push_str(&format!("{field} differs:\n"));
                    report.push_str(&diff(want, got, &format!("expected.{field}"), "actual"));
                }
            }
        }
        Err(e) => match expected.get("error") {
            Some(want) if e.contains(want.trim_end()) => {}
            Some(want) => report.push_str(&format!(
                "error differs:\n  expected it to contain: {}\n  actual: {e}\n",
                want.trim_end()
            )),
            None => report.push_str(&format!("rendering failed: {e}\n")),
        },
    }
    Ok((!report.is_empty()).then_some(report))
}

/// `postee test DIR [--update] [--filter TEXT]`.
pub async fn run(args: TestArgs) -> i32 {
    let cases = match find_cases(&args.dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for dir in &cases {
        let name = dir
            .strip_prefix(&args.dir)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(dir)
            .display()
            .to_string();
        if args
            .filter
            .as_ref()
            .is_some_and(|f| !name.contains(f.as_str()))
        {
            continue;
        }
        match run_case(dir, args.update).await {
            Ok(None) => {
                passed += 1;
                println!("{} {name}", if args.update { "updated" } else { "ok  " });
            }
            Ok(Some(report)) => {
                failed += 1;
                println!("FAIL {name}");
                for line in report.lines() {
                    println!("    {line}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {e}");
            }
        }
    }
    if cases.is_empty() {
        eprintln!(
            "error: no cases (directories with a case.yaml) under {}",
            args.dir.display()
        );
        return 1;
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 { 1 } else { 0 }
}

/// A unified diff (3 lines of context) of two texts. One-line JSON documents are compared
/// pretty-printed so that the changed element is visible.
pub fn diff(want: &str, got: &str, want_name: &str, got_name: &str) -> String {
    let pretty = |s: &str| -> Option<String> {
        if s.lines().count() > 1 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        if v.is_array() || v.is_object() {
            serde_json::to_string_pretty(&v).ok()
        } else {
            None
        }
    };
    let (a, b, note) = match (pretty(want), pretty(got)) {
        (Some(a), Some(b)) if a != b => (a, b, "(JSON shown pretty-printed)\n"),
        _ => (want.to_string(), got.to_string(), ""),
    };
    let mut out = format!("{note}--- {want_name}\n+++ {got_name}\n");
    let strip = |s: &str| s.strip_suffix('\n').unwrap_or(s).to_string();
    if want != got && strip(want) == strip(got) {
        out.push_str(if want.ends_with('\n') {
            "(only the final newline differs: expected has one, actual has none)\n"
        } else {
            "(only the final newline differs: actual has one, expected has none)\n"
        });
        return out;
    }
    let a_lines: Vec<&str> = a.split('\n').collect();
    let b_lines: Vec<&str> = b.split('\n').collect();
    let ops = line_ops(&a_lines, &b_lines);
    // Group the edit script into hunks with 3 lines of context.
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    if changed.is_empty() {
        return out;
    }
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = (changed[i] + CONTEXT + 1).min(ops.len());
        while i + 1 < changed.len() && changed[i + 1] <= end + CONTEXT {
            i += 1;
            end = (changed[i] + CONTEXT + 1).min(ops.len());
        }
        let (a0, b0) = ops[..start].iter().fold((0, 0), |(x, y), op| match op {
            Op::Same(..) => (x + 1, y + 1),
            Op::Del(_) => (x + 1, y),
            Op::Add(_) => (x, y + 1),
        });
        let (an, bn) = ops[start..end].iter().fold((0, 0), |(x, y), op| match op {
            Op::Same(..) => (x + 1, y + 1),
            Op::Del(_) => (x + 1, y),
            Op::Add(_) => (x, y + 1),
        });
        out.push_str(&format!("@@ -{},{} +{},{} @@\n", a0 + 1, an, b0 + 1, bn));
        for op in &ops[start..end] {
            match op {
                Op::Same(l) => out.push_str(&format!(" {l}\n")),
                Op::Del(l) => out.push_str(&format!("-{l}\n")),
                Op::Add(l) => out.push_str(&format!("+{l}\n")),
            }
        }
        i += 1;
    }
    out
}

enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// Edit script by longest common subsequence (texts here are a few hundred lines).
fn line_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Del(a[i]));
            i += 1;
        } else {
            ops.push(Op::Add(b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let want = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let got = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let d = diff(want, got, "expected.result", "actual");
        assert_eq!(
            d,
            "--- expected.result\n+++ actual\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
    }

    #[test]
    fn diff_pretty_prints_one_line_json() {
        let d = diff(r#"[{"a":1},{"b":2}]"#, r#"[{"a":1},{"b":3}]"#, "x", "y");
        assert!(d.starts_with("(JSON shown pretty-printed)\n"), "{d}");
        assert!(d.contains("-    \"b\": 2\n+    \"b\": 3\n"), "{d}");
    }

    #[test]
    fn diff_names_a_final_newline_difference() {
        let d = diff("x\n", "x", "e", "a");
        assert!(d.contains("only the final newline differs"), "{d}");
    }
}
