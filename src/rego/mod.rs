//! regorus set up the way Postee's OPA 0.45 behaves: Rego v0 syntax, non-strict builtin
//! errors, Postee's `jsonformat`, shims for OPA's deprecated builtins, and a time limit.

pub mod gojson;
pub mod vm;

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{anyhow, bail};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

pub use gojson::{go_json, go_json_indent};

/// Time limit for one route condition evaluation.
/// How often (in instructions) regorus checks the time limit.
pub const CHECK_INTERVAL: NonZeroU32 = match NonZeroU32::new(64) {
    Some(n) => n,
    None => panic!("64 is not zero"),
};

/// A failure inside regorus (which reports errors as `anyhow`; they stop at this module's
/// edge, as their message). The extension closures below keep `anyhow`: regorus' extension
/// API requires it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RegoError(String);

impl RegoError {
    pub fn new(message: impl Into<String>) -> Self {
        RegoError(message.into())
    }

    pub fn from_any(e: impl std::fmt::Display) -> Self {
        RegoError(format!("{e:#}"))
    }
}

pub const CONDITION_TIME_LIMIT: Duration = Duration::from_secs(1);
/// Time limit for one template evaluation (a 300-vulnerability scan takes ~30 ms).
pub const TEMPLATE_TIME_LIMIT: Duration = Duration::from_secs(10);

/// A new engine configured like Postee's OPA: v0 syntax, `jsonformat`, old builtins.
pub fn new_engine(time_limit: Duration) -> Engine {
    let mut e = Engine::new();
    e.set_rego_v0(true);
    // OPA's default: a builtin error makes the expression undefined, not the whole query fail.
    e.set_strict_builtin_errors(false);
    e.set_execution_timer_config(ExecutionTimerConfig {
        limit: time_limit,
        check_interval: CHECK_INTERVAL,
    });
    #[allow(
        clippy::expect_used,
        reason = "registering fixed names on a new engine cannot collide"
    )]
    add_extensions(&mut e).expect("extensions register once on a new engine");
    e
}

fn add_extensions(e: &mut Engine) -> anyhow::Result<()> {
    e.add_extension(
        "jsonformat".into(),
        1,
        Box::new(|args: Vec<Value>| {
            let v = &args[0];
            if v.as_object().is_err() {
                bail!("jsonformat: operand 1 must be object");
            }
            Ok(Value::from(go_json_indent(v)?))
        }),
    )?;
    e.add_extension(
        "re_match".into(),
        2,
        Box::new(|args: Vec<Value>| {
            let pattern = args[0]
                .as_string()
                .map_err(|_| anyhow!("re_match: pattern must be a string"))?;
            let value = args[1]
                .as_string()
                .map_err(|_| anyhow!("re_match: value must be a string"))?;
            let re = regex::Regex::new(pattern).map_err(|e| anyhow!("re_match: {e}"))?;
            Ok(Value::from(re.is_match(value)))
        }),
    )?;
    e.add_extension(
        "any".into(),
        1,
        Box::new(|args: Vec<Value>| Ok(Value::from(elements(&args[0], "any")?.any(is_true)))),
    )?;
    e.add_extension(
        "all".into(),
        1,
        Box::new(|args: Vec<Value>| Ok(Value::from(elements(&args[0], "all")?.all(is_true)))),
    )?;
    e.add_extension(
        "set_diff".into(),
        2,
        Box::new(|args: Vec<Value>| {
            let a = args[0]
                .as_set()
                .map_err(|_| anyhow!("set_diff: operand 1 must be set"))?;
            let b = args[1]
                .as_set()
                .map_err(|_| anyhow!("set_diff: operand 2 must be set"))?;
            Ok(a.difference(b).into_value())
        }),
    )?;
    e.add_extension(
        "cast_array".into(),
        1,
        Box::new(|args: Vec<Value>| match &args[0] {
            v @ Value::Array(_) => Ok(v.clone()),
            Value::Set(s) => Ok(Value::from(s.iter().cloned().collect::<Vec<_>>())),
            _ => bail!("cast_array: operand 1 must be array or set"),
        }),
    )?;
    e.add_extension(
        "cast_set".into(),
        1,
        Box::new(|args: Vec<Value>| match &args[0] {
            v @ Value::Set(_) => Ok(v.clone()),
            Value::Array(a) => Ok(Value::from(
                a.iter().cloned().collect::<std::collections::BTreeSet<_>>(),
            )),
            _ => bail!("cast_set: operand 1 must be array or set"),
        }),
    )?;
    for (name, check) in [
        (
            "cast_string",
            (|v: &Value| matches!(v, Value::String(_))) as fn(&Value) -> bool,
        ),
        ("cast_boolean", |v: &Value| matches!(v, Value::Bool(_))),
        ("cast_null", |v: &Value| matches!(v, Value::Null)),
        ("cast_object", |v: &Value| matches!(v, Value::Object(_))),
    ] {
        e.add_extension(
            name.into(),
            1,
            Box::new(move |args: Vec<Value>| {
                if check(&args[0]) {
                    Ok(args[0].clone())
                } else {
                    bail!("{name}: operand 1 has the wrong type")
                }
            }),
        )?;
    }
    Ok(())
}

fn is_true(v: Value) -> bool {
    v == Value::Bool(true)
}

fn elements(v: &Value, name: &str) -> anyhow::Result<std::vec::IntoIter<Value>> {
    match v {
        Value::Array(a) => Ok(a.to_vec().into_iter()),
        Value::Set(s) => Ok(s.iter().cloned().collect::<Vec<_>>().into_iter()),
        _ => bail!("{name}: operand 1 must be array or set"),
    }
}

/// Evaluates a rule path and says whether it is exactly `true` (undefined is false).
pub fn eval_bool(engine: &mut Engine, input: Value, rule: &str) -> anyhow::Result<bool> {
    engine.set_input(input);
    let v = engine.eval_rule(rule.to_string())?;
    Ok(v == Value::Bool(true))
}

/// First line of a regorus error, plus the rest indented: regorus errors carry
/// `file:line:col` and the offending source line, which is what a Rego author needs.
pub fn describe_error(e: &anyhow::Error) -> String {
    format!("{e:#}").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(module: &str, input: &str) -> Value {
        let mut e = new_engine(CONDITION_TIME_LIMIT);
        e.add_policy("t.rego".into(), module.into()).unwrap();
        e.set_input(Value::from_json_str(input).unwrap());
        e.eval_rule("data.t.x".into()).unwrap()
    }

    #[test]
    fn deprecated_opa_builtins_work() {
        let cases = [
            (
                r#"x = re_match("^alp", input.image)"#,
                r#"{"image":"alpine"}"#,
                "true",
            ),
            (
                r#"x = re_match("^alp", input.image)"#,
                r#"{"image":"debian"}"#,
                "false",
            ),
            ("x = any([false, true])", "{}", "true"),
            ("x = any([])", "{}", "false"),
            ("x = all([true, true])", "{}", "true"),
            ("x = all([true, false])", "{}", "false"),
            ("x = set_diff({1,2,3}, {2})", "{}", "[1,3]"),
            ("x = cast_array({2,1})", "{}", "[1,2]"),
            ("x = count(cast_set([1,1,2]))", "{}", "2"),
            (r#"x = cast_string("a")"#, "{}", "\"a\""),
        ];
        for (rule, input, want) in cases {
            let got = eval(&format!("package t\n{rule}\n"), input);
            assert_eq!(
                got.to_json_str().unwrap().replace([' ', '\n'], ""),
                want,
                "{rule}"
            );
        }
    }

    #[test]
    fn jsonformat_is_go_marshal_indent_with_one_space() {
        let got = eval(
            "package t\nx = jsonformat(input)\n",
            r#"{"user":"demo","a":[1,"<b>"],"e":{}}"#,
        );
        assert_eq!(
            got.as_string().unwrap().as_ref(),
            "{\n \"a\": [\n  1,\n  \"\\u003cb\\u003e\"\n ],\n \"e\": {},\n \"user\": \"demo\"\n}"
        );
    }

    #[test]
    fn v0_syntax_is_accepted() {
        let got = eval(
            "package t\ndefault x = false\nx { contains(input.image, \"alp\") }\n",
            r#"{"image":"alpine"}"#,
        );
        assert_eq!(got, Value::Bool(true));
    }

    #[test]
    fn a_runaway_evaluation_hits_the_time_limit() {
        let mut e = new_engine(Duration::from_millis(50));
        e.add_policy(
            "t.rego".into(),
            "package t\nx = count([1 | numbers.range(1, 3000)[_]; numbers.range(1, 3000)[_]])\n"
                .into(),
        )
        .unwrap();
        let err = e.eval_rule("data.t.x".into()).unwrap_err();
        assert!(
            format!("{err:#}").to_lowercase().contains("time"),
            "{err:#}"
        );
    }
}
