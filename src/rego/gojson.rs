//! JSON written exactly as Go's `encoding/json` (Go 1.18, Postee's) writes it: object keys
//! sorted, `<` `>` `&` U+2028 U+2029 escaped, control characters as `\u00XX`.
//! Template results and `jsonformat` must be byte-identical to Postee's (spec §5.3).

use regorus::Value;

/// Compact Go-JSON (`json.Marshal` + `json.Compact`).
pub fn go_json(v: &Value) -> Result<String, serde_json::Error> {
    let j = serde_json::to_value(v)?;
    let mut out = String::new();
    write(&j, None, 0, &mut out);
    Ok(out)
}

/// Indented Go-JSON with a one-space indent (`json.MarshalIndent(v, "", " ")`).
pub fn go_json_indent(v: &Value) -> Result<String, serde_json::Error> {
    let j = serde_json::to_value(v)?;
    let mut out = String::new();
    write(&j, Some(" "), 0, &mut out);
    Ok(out)
}

/// Compact Go-JSON of a serde_json value (the fuzzer checks both flavours agree).
pub fn go_json_serde(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write(v, None, 0, &mut out);
    out
}

fn newline(indent: Option<&str>, level: usize, out: &mut String) {
    if let Some(ind) = indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

fn write(v: &serde_json::Value, indent: Option<&str>, level: usize, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => write_number(n, out),
        J::String(s) => write_string(s, out),
        J::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(indent, level + 1, out);
                write(item, indent, level + 1, out);
            }
            newline(indent, level, out);
            out.push(']');
        }
        J::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(indent, level + 1, out);
                write_string(k, out);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write(&map[k], indent, level + 1, out);
            }
            newline(indent, level, out);
            out.push('}');
        }
    }
}

/// Go prints float64 in the shortest form, without exponent for 1e-6 <= |x| < 1e21.
fn write_number(n: &serde_json::Number, out: &mut String) {
    if n.is_i64() || n.is_u64() {
        out.push_str(&n.to_string());
        return;
    }
    let Some(f) = n.as_f64() else {
        out.push_str(&n.to_string());
        return;
    };
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Go: strconv 'e' format with at least two exponent digits, e.g. 1e+21, 1e-07.
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push_str(mant);
        out.push('e');
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
    } else if f.fract() == 0.0 && abs < 1e21 {
        out.push_str(&format!("{f:.0}"));
    } else {
        out.push_str(&f.to_string());
    }
}

pub(crate) fn write_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => {
                let b = c as u32;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_output_sorts_keys_and_escapes_like_go() {
        let v = Value::from_json_str(
            r#"{"type":"section","text":{"type":"mrkdwn","text":"<http://x|y> & \u0001\b"}}"#,
        )
        .unwrap();
        assert_eq!(
            go_json(&v).unwrap(),
            r#"{"text":{"text":"\u003chttp://x|y\u003e \u0026 \u0001\u0008","type":"mrkdwn"},"type":"section"}"#
        );
    }

    #[test]
    fn numbers_print_as_go_prints_float64() {
        let v = Value::from_json_str(r#"[1624544066, 5.020931, 0, -3, 0.5, 1e21, 1e-7]"#).unwrap();
        assert_eq!(
            go_json(&v).unwrap(),
            "[1624544066,5.020931,0,-3,0.5,1e+21,1e-07]"
        );
    }

    #[test]
    fn indented_output_uses_one_space() {
        let v = Value::from_json_str(r#"{"b":[],"a":{"c":[1]}}"#).unwrap();
        assert_eq!(
            go_json_indent(&v).unwrap(),
            "{\n \"a\": {\n  \"c\": [\n   1\n  ]\n },\n \"b\": []\n}"
        );
    }
}
