//! Postee's dedup key (`unique-message-props`, spec §4.6): values at dotted paths of the
//! event, formatted as Go's `%v` formats them, joined by `-`.

use serde_json::Value;

/// The key for `props` over `event`; "" when no prop has a value.
pub fn dedup_key(event: &Value, props: &[String]) -> String {
    let mut parts = Vec::new();
    for prop in props {
        if let Some(v) = lookup(event, prop) {
            let s = go_v(v);
            if !s.is_empty() {
                parts.push(s);
            }
        }
    }
    parts.join("-")
}

/// Walks `a.b.c`: each step needs an object; an array met before the last step continues
/// with its first element (an empty array has no value).
fn lookup<'a>(event: &'a Value, prop: &str) -> Option<&'a Value> {
    let segments: Vec<&str> = prop.split('.').collect();
    let mut cur = event;
    for (i, seg) in segments.iter().enumerate() {
        cur = cur.as_object()?.get(*seg)?;
        if i + 1 < segments.len()
            && let Value::Array(a) = cur
        {
            cur = a.first()?;
        }
    }
    Some(cur)
}

/// Go's `%v` of a value decoded from JSON (numbers are float64).
pub fn go_v(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => go_float_g(n.as_f64().unwrap_or(0.0)),
        Value::Array(a) => format!("[{}]", a.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_v(&m[*k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// `%v` of a float64 is `strconv.FormatFloat(f, 'g', -1, 64)`: the shortest digits, in
/// exponent form (`1e+06`, `1.624544066e+09`) when the decimal exponent is < -4 or >= 6.
fn go_float_g(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let sci = format!("{f:e}"); // e.g. "1.624544066e9", "-5e-7"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        f.to_string()
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_are_built_as_postee_builds_them() {
        let scan = json!({
            "digest": "sha256:abc", "image": "all-in-one:3.5.19223", "registry": "Aqua",
            "vulnerability_summary": {"critical": 0, "high": 7, "medium": 30, "low": 6, "score": 5.020931}
        });
        assert_eq!(
            dedup_key(
                &scan,
                &props(&[
                    "digest",
                    "image",
                    "registry",
                    "vulnerability_summary.critical",
                    "vulnerability_summary.high",
                    "vulnerability_summary.medium",
                    "vulnerability_summary.low"
                ])
            ),
            "sha256:abc-all-in-one:3.5.19223-Aqua-0-7-30-6"
        );
        assert_eq!(
            dedup_key(&scan, &props(&["vulnerability_summary.score"])),
            "5.020931"
        );
        let items = json!({"name": "alpine", "items": [{"id": "KLM"}, {"id": "DEF"}], "empty": [], "s": "str", "arr": {"foo": "bar"}});
        assert_eq!(
            dedup_key(&items, &props(&["name", "items.id"])),
            "alpine-KLM"
        );
        assert_eq!(dedup_key(&items, &props(&["missing", "name"])), "alpine");
        assert_eq!(dedup_key(&items, &props(&["empty.id"])), "");
        assert_eq!(dedup_key(&items, &props(&["s.x"])), "");
        assert_eq!(dedup_key(&items, &props(&["arr.foo"])), "bar");
        assert_eq!(dedup_key(&json!({"e": ""}), &props(&["e"])), "");
    }

    #[test]
    fn values_format_like_go_percent_v() {
        assert_eq!(go_v(&json!(null)), "<nil>");
        assert_eq!(go_v(&json!(true)), "true");
        assert_eq!(go_v(&json!({"b": 1, "a": "x"})), "map[a:x b:1]");
        assert_eq!(go_v(&json!(["x", "y"])), "[x y]");
        assert_eq!(go_v(&json!(7)), "7");
        assert_eq!(go_v(&json!(0.5)), "0.5");
        assert_eq!(go_v(&json!(123456)), "123456");
        assert_eq!(go_v(&json!(1000000)), "1e+06");
        assert_eq!(go_v(&json!(1624544066)), "1.624544066e+09");
        assert_eq!(go_v(&json!(0.00001)), "1e-05");
    }
}
