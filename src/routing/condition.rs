//! Route conditions: Postee's `input:` expressions and `input-files:` filters, compiled once
//! at load with regorus and evaluated per event against `data.postee.allow` (spec §4.3).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regorus::{Engine, Value};

use super::simple::SimpleCondition;
use crate::rego::vm::VmCondition;

use crate::bundle as bundled;
use crate::config::RouteConfig;
use crate::rego;

/// Number of wrapper lines before the route's `input` text in the synthesized module.
pub const WRAPPER_LINES: usize = 5;

/// The module Postee synthesizes from a route's `input` (`regoservice/regocheck.go`).
pub fn wrap_input(input: &str) -> String {
    format!("package postee\n\ndefault allow = false\n\nallow {{\n{input}\n}}\n")
}

/// A compiled route condition. `None` inside matches every event.
#[derive(Clone)]
pub struct Condition {
    engine: Option<Engine>,
    /// The same condition on regorus' VM, when it compiles there (about 5x faster).
    vm: Option<Arc<VmCondition>>,
    /// The same condition evaluated directly, when it is in the simple subset (another 5-16x
    /// faster than the VM in benches/pipeline.rs); it defers to the VM and interpreter when
    /// unsure.
    simple: Option<SimpleCondition>,
}

impl Condition {
    pub fn match_all() -> Self {
        Condition {
            engine: None,
            vm: None,
            simple: None,
        }
    }

    /// Compiles a route's condition. `input-files` (when given) replace `input`, and several
    /// files OR together because their `allow` rules are incremental definitions.
    pub fn build(route: &RouteConfig, filters_dir: &Path) -> Result<Condition, Vec<String>> {
        let mut engine = rego::new_engine(rego::CONDITION_TIME_LIMIT);
        let mut errors = Vec::new();
        if !route.input_files.is_empty() {
            for name in &route.input_files {
                match resolve_filter(name, filters_dir) {
                    Ok((path, text)) => {
                        if let Err(e) = engine.add_policy(path, text) {
                            errors.push(format!(
                                "input-files `{name}`: {}",
                                rego::describe_error(&e)
                            ));
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        } else if !route.input.trim().is_empty() {
            let path = format!("routes[{}].input", route.name);
            if let Err(e) = engine.add_policy(path, wrap_input(&route.input)) {
                errors.push(condition_error(&rego::describe_error(&e), &route.input));
            }
        } else {
            return Ok(Condition::match_all());
        }
        if errors.is_empty() {
            // Analyse and schedule now so that compile errors (conflicts, recursion) show at load.
            engine.set_input(Value::new_object());
            if let Err(e) = engine.eval_rule("data.postee.allow".into()) {
                let msg = rego::describe_error(&e);
                // A runtime error on an empty event is fine (the condition may need fields);
                // only compile-time problems are load errors.
                if is_compile_error(&msg) {
                    errors.push(format!("condition does not compile: {msg}"));
                }
            }
        }
        if errors.is_empty() {
            let vm_wanted = std::env::var("POSTEE_REGO_VM").map_or(true, |v| v != "off");
            let (vm, simple) = if vm_wanted {
                let simple = if route.input_files.is_empty() {
                    SimpleCondition::parse(&route.input)
                } else {
                    None
                };
                (VmCondition::compile(&engine).ok().map(Arc::new), simple)
            } else {
                (None, None)
            };
            Ok(Condition {
                engine: Some(engine),
                vm,
                simple,
            })
        } else {
            Err(errors)
        }
    }

    /// The interpreter only, for tests that compare both paths.
    pub fn interpreter_only(&self) -> Condition {
        Condition {
            engine: self.engine.clone(),
            vm: None,
            simple: None,
        }
    }

    /// The VM (where it compiles) and the interpreter, without the simple path: for tests
    /// and benchmarks of the general path.
    pub fn without_simple_path(&self) -> Condition {
        Condition {
            engine: self.engine.clone(),
            vm: self.vm.clone(),
            simple: None,
        }
    }

    pub fn uses_vm(&self) -> bool {
        self.vm.is_some()
    }

    pub fn uses_simple_path(&self) -> bool {
        self.simple.is_some()
    }

    pub fn matches_all(&self) -> bool {
        self.engine.is_none()
    }

    /// Whether the event matches. An error (bad builtin use, time limit) is returned so the
    /// caller can log it with the route name; it counts as no match.
    pub fn matches(&self, input: &Value) -> Result<bool, rego::RegoError> {
        let Some(engine) = &self.engine else {
            return Ok(true);
        };
        if let Some(simple) = &self.simple
            && let Some(allow) = simple.eval(input)
        {
            return Ok(allow);
        }
        if let Some(vm) = &self.vm
            && let Ok(allow) = vm.allow(input)
        {
            return Ok(allow);
        }
        let mut e = engine.clone();
        rego::eval_bool(&mut e, input.clone(), "data.postee.allow")
            .map_err(|e| rego::RegoError::new(rego::describe_error(&e)))
    }
}

/// Rewrites a regorus error about the synthesized module so it points into the route's
/// `input` text (line and column of the condition, and that line) instead of the wrapper.
pub fn condition_error(msg: &str, input: &str) -> String {
    let message = msg
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(msg)
        .trim();
    let loc = msg.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("-->")?;
        let mut parts = rest.rsplitn(3, ':');
        let col: usize = parts.next()?.trim().parse().ok()?;
        let line: usize = parts.next()?.trim().parse().ok()?;
        Some((line, col))
    });
    match loc {
        Some((line, col))
            if line > WRAPPER_LINES && line - WRAPPER_LINES <= input.lines().count() =>
        {
            let n = line - WRAPPER_LINES;
            let text = input.lines().nth(n - 1).unwrap_or("");
            format!("Rego error at condition line {n}, column {col}: {message}\n    | {text}")
        }
        _ => format!("Rego error at the end of the condition: {message}"),
    }
}

fn is_compile_error(msg: &str) -> bool {
    let m = msg.to_lowercase();
    [
        "recursion",
        "conflict",
        "could not find function",
        "unsafe",
        "not defined",
        "multiple default",
        "parse",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// Finds a filter file: `REGO_FILTERS_PATH/<name>` (names already under that directory, and
/// absolute paths, are used as they are), else the bundled filter of that name.
pub fn resolve_filter(name: &str, filters_dir: &Path) -> Result<(String, String), String> {
    let p = Path::new(name);
    let path: PathBuf = if p.is_absolute() || p.starts_with(filters_dir) {
        p.to_path_buf()
    } else {
        filters_dir.join(p)
    };
    if path.is_file() {
        return std::fs::read_to_string(&path)
            .map(|t| (path.display().to_string(), t))
            .map_err(|e| format!("input-files `{name}`: cannot read {}: {e}", path.display()));
    }
    let base = p.file_name().and_then(|b| b.to_str()).unwrap_or(name);
    if let Some(src) = bundled::filter(base) {
        return Ok((src.path, src.text));
    }
    Err(format!(
        "input-files `{name}`: not found at {} (REGO_FILTERS_PATH) nor among the bundled filters ({})",
        path.display(),
        bundled::filter_names().join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(input: &str, files: &[&str]) -> RouteConfig {
        RouteConfig {
            name: "r".into(),
            input: input.into(),
            input_files: files.iter().map(|s| s.to_string()).collect(),
            ..RouteConfig::default()
        }
    }

    fn check(cond: &Condition, event: &str) -> bool {
        cond.matches(&Value::from_json_str(event).unwrap()).unwrap()
    }

    const CVE7: &str = "some i\ninput.resources[i].vulnerabilities[_].name == \"CVE-7\"";
    const JOIN: &str = "some i\ninput.resources[i].resource.name == \"openssl\"\ninput.resources[i].vulnerabilities[_].name == \"CVE-7\"";

    /// The table of route conditions users write, with events that should and should not match.
    #[test]
    fn route_condition_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("", r#"{"image":"x"}"#, true),
            (
                r#"contains(input.image, "alpine")"#,
                r#"{"image":"alpine:3.18"}"#,
                true,
            ),
            (
                r#"contains(input.image, "alpine")"#,
                r#"{"image":"debian"}"#,
                false,
            ),
            (r#"contains(input.image, "alpine")"#, r#"{}"#, false),
            (
                "input.vulnerability_summary.critical > 0",
                r#"{"vulnerability_summary":{"critical":2}}"#,
                true,
            ),
            (
                "input.vulnerability_summary.critical > 0",
                r#"{"vulnerability_summary":{"critical":0}}"#,
                false,
            ),
            (
                "startswith(input.image, \"all\")\ninput.registry == \"Aqua\"",
                r#"{"image":"all-in-one","registry":"Aqua"}"#,
                true,
            ),
            (
                "startswith(input.image, \"all\")\ninput.registry == \"Aqua\"",
                r#"{"image":"all-in-one","registry":"Hub"}"#,
                false,
            ),
            (
                "regex.match(\"^TRC-[0-9]+$\", input.SigMetadata.ID)",
                r#"{"SigMetadata":{"ID":"TRC-2"}}"#,
                true,
            ),
            (
                "re_match(\"^TRC-2$\", input.SigMetadata.ID)",
                r#"{"SigMetadata":{"ID":"TRC-20"}}"#,
                false,
            ),
            (
                "some i\ninput.resources[i].vulnerabilities[_].fix_version",
                r#"{"resources":[{"vulnerabilities":[{"fix_version":"1.2"}]}]}"#,
                true,
            ),
            (
                "some i\ninput.resources[i].vulnerabilities[_].fix_version",
                r#"{"resources":[{"vulnerabilities":[{}]}]}"#,
                false,
            ),
            (
                "input.ArtifactType == \"container_image\"\ncount(input.Results) > 0",
                r#"{"ArtifactType":"container_image","Results":[{}]}"#,
                true,
            ),
            ("input", r#"{"a":1}"#, true),
            (
                CVE7,
                r#"{"resources":[{"vulnerabilities":[{"name":"CVE-7"}]}]}"#,
                true,
            ),
            (
                CVE7,
                r#"{"resources":[{"vulnerabilities":[{"name":"CVE-1"}]},{"vulnerabilities":[{"name":"CVE-2"},{"name":"CVE-7"}]}]}"#,
                true,
            ),
            (
                CVE7,
                r#"{"resources":[{"vulnerabilities":[{"name":"CVE-70"}]}]}"#,
                false,
            ),
            (CVE7, r#"{"resources":[{"vulnerabilities":[]}]}"#, false),
            (CVE7, r#"{"resources":[]}"#, false),
            (CVE7, r#"{}"#, false),
            (CVE7, r#"{"resources":"CVE-7"}"#, false),
            (
                CVE7,
                r#"{"resources":[{"vulnerabilities":"CVE-7"}]}"#,
                false,
            ),
            (
                CVE7,
                r#"{"resources":[{"vulnerabilities":[{"name":7}]}]}"#,
                false,
            ),
            (
                CVE7,
                r#"{"resources":{"a":{"vulnerabilities":{"b":{"name":"CVE-7"}}}}}"#,
                true,
            ),
            (
                "input.resources[_].vulnerabilities[_].name == \"CVE-7\"",
                r#"{"resources":[{"vulnerabilities":[{"name":"CVE-7"}]}]}"#,
                true,
            ),
            ("input.xs[_]", r#"{"xs":[false, 0]}"#, true),
            ("input.xs[_]", r#"{"xs":[false]}"#, false),
            ("input.xs[_] == \"a\"", r#"{"xs":"a"}"#, false),
            ("input.xs[0] == 1", r#"{"xs":{"0":1}}"#, false),
            ("input.a > 1", r#"{"a":"0"}"#, true),
            ("input.a == 1", r#"{"a":1.0}"#, true),
            ("input.a == 1", r#"{"a":"1"}"#, false),
            (
                "contains(input.images[_], \"alp\")",
                r#"{"images":[1,"alpine"]}"#,
                true,
            ),
            (
                JOIN,
                r#"{"resources":[{"resource":{"name":"openssl"},"vulnerabilities":[{"name":"CVE-7"}]}]}"#,
                true,
            ),
            (
                JOIN,
                r#"{"resources":[{"resource":{"name":"openssl"},"vulnerabilities":[]},{"resource":{"name":"zlib"},"vulnerabilities":[{"name":"CVE-7"}]}]}"#,
                false,
            ),
        ];
        for (input, event, want) in cases {
            let cond = Condition::build(&route(input, &[]), Path::new("/nonexistent")).unwrap();
            assert_eq!(check(&cond, event), *want, "condition {input:?} on {event}");
            // The simple path, the VM (when the condition compiles there) and the
            // interpreter agree.
            assert_eq!(
                check(&cond.without_simple_path(), event),
                *want,
                "VM: {input:?} on {event}"
            );
            assert_eq!(
                check(&cond.interpreter_only(), event),
                *want,
                "interpreter: {input:?} on {event}"
            );
        }
        // A join between statements is beyond the simple path.
        let join = Condition::build(&route(JOIN, &[]), Path::new("/nonexistent")).unwrap();
        assert!(!join.uses_simple_path() && join.uses_vm());
    }

    /// Conditions run on the VM when they compile there; on every bundled filter and every
    /// fixture the VM and the interpreter must agree.
    #[test]
    fn vm_and_interpreter_agree_on_filters_and_fixtures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
        let events: Vec<Value> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                Value::from_json_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap()
            })
            .collect();
        let mut conditions: Vec<Condition> = bundled::filter_names()
            .iter()
            .map(|n| Condition::build(&route("", &[n]), Path::new("/nonexistent")).unwrap())
            .collect();
        for input in [
            r#"contains(input.image, "all-in-one")"#,
            "input.vulnerability_summary.critical > 0",
            "some i\ninput.resources[i].vulnerabilities[_].fix_version",
            "input.SigMetadata.ID == \"TRC-2\"",
            "input.kind == \"VulnerabilityReport\"\ninput.report.summary.criticalCount > 0",
            CVE7,
            "some i\ninput.resources[i].vulnerabilities[_].aqua_severity == \"high\"",
            "input.Results[_].Vulnerabilities[_].Severity == \"CRITICAL\"",
            "startswith(input.SigMetadata.ID, \"TRC-\")\ninput.SigMetadata.Properties.Severity >= 2",
        ] {
            let c = Condition::build(&route(input, &[]), Path::new("/nonexistent")).unwrap();
            assert!(c.uses_vm(), "{input} should run on the VM");
            assert!(c.uses_simple_path(), "{input} should take the simple path");
            conditions.push(c);
        }
        let join = Condition::build(&route(JOIN, &[]), Path::new("/nonexistent")).unwrap();
        assert!(join.uses_vm() && !join.uses_simple_path());
        conditions.push(join);
        let mut matched = 0;
        for c in &conditions {
            let slow = c.interpreter_only();
            let vm = c.without_simple_path();
            for e in &events {
                let fast = c.matches(e).unwrap_or(false);
                let want = slow.matches(e).unwrap_or(false);
                assert_eq!(fast, want);
                assert_eq!(vm.matches(e).unwrap_or(false), want);
                matched += usize::from(fast);
            }
        }
        assert!(matched > 5, "the fixtures exercise matches too ({matched})");
    }

    #[test]
    fn bundled_filter_files_or_together() {
        let cond = Condition::build(
            &route("ignored", &["Initial Access", "Credential Access"]),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert!(check(&cond, r#"{"SigMetadata":{"ID":"TRC-12"}}"#));
        assert!(check(&cond, r#"{"SigMetadata":{"ID":"TRC-8"}}"#));
        assert!(!check(&cond, r#"{"SigMetadata":{"ID":"TRC-2"}}"#));
        // Postee's substring test matched TRC-1x for TRC-1; ours is exact.
        assert!(!check(&cond, r#"{"SigMetadata":{"ID":"TRC-120"}}"#));
    }

    #[test]
    fn every_bundled_filter_compiles_alone_and_all_together() {
        let names = bundled::filter_names();
        for n in &names {
            Condition::build(&route("", &[n]), Path::new("/nonexistent"))
                .unwrap_or_else(|e| panic!("{n}: {e:?}"));
        }
        Condition::build(&route("", &names), Path::new("/nonexistent")).unwrap();
    }

    #[test]
    fn filter_files_come_from_rego_filters_path_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.rego"),
            "package postee\nallow { input.x == 1 }\n",
        )
        .unwrap();
        let cond = Condition::build(&route("", &["mine.rego"]), dir.path()).unwrap();
        assert!(check(&cond, r#"{"x":1}"#));
        assert!(!check(&cond, r#"{"x":2}"#));
        let err = Condition::build(&route("", &["missing.rego"]), dir.path())
            .err()
            .unwrap();
        assert!(err[0].contains("not found"), "{err:?}");
    }

    #[test]
    fn a_bad_condition_is_a_load_error_pointing_at_the_line() {
        let err = Condition::build(&route("contains(input.image,", &[]), Path::new("/x"))
            .err()
            .unwrap();
        assert!(
            err[0].contains("at the end of the condition: expecting }"),
            "{err:?}"
        );
        let err = Condition::build(&route("input.a == 1\ninput.b === 2", &[]), Path::new("/x"))
            .err()
            .unwrap();
        assert!(err[0].contains("condition line 2"), "{err:?}");
        assert!(err[0].contains("input.b === 2"), "{err:?}");
        let err = Condition::build(&route("nosuchfn(input.image)", &[]), Path::new("/x"))
            .err()
            .unwrap();
        assert!(err[0].contains("nosuchfn"), "{err:?}");
    }

    #[test]
    fn a_runtime_error_is_reported_and_means_no_match_to_the_caller() {
        let cond =
            Condition::build(&route("to_number(input.x) > 1", &[]), Path::new("/x")).unwrap();
        let r = cond.matches(&Value::from_json_str(r#"{"x":"abc"}"#).unwrap());
        assert!(matches!(r, Ok(false) | Err(_)));
    }
}
