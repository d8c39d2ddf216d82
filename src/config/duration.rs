//! The two duration syntaxes of Postee configs: Go durations (`timeout: 2h45m`) and the
//! plugin timeouts (`unique-message-timeout: 2d`).

use std::time::Duration;

/// Parses a Go duration string: a sequence of decimal numbers with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` (e.g. `300ms`, `1.5h`, `2h45m`). `0` alone is zero.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let s = s.trim();
    let err = || format!("invalid duration {orig:?} (expected e.g. 300ms, 10s, 1m30s, 2h)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * secs;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses Postee's plugin timeout syntax (spec §3.4): spaces removed; "" is zero;
/// a trailing `s`/`m`/`h`/`d` multiplies by 1/60/3600/86400; otherwise plain seconds.
/// Unlike Postee, upper-case suffixes (`2H`) are accepted too, and a bad value is an error
/// instead of a silent zero.
pub fn parse_plugin_timeout(s: &str) -> Result<u64, String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Ok(0);
    }
    let lower = compact.to_ascii_lowercase();
    let (digits, mult) = match lower.chars().last() {
        Some('s') => (&lower[..lower.len() - 1], 1),
        Some('m') => (&lower[..lower.len() - 1], 60),
        Some('h') => (&lower[..lower.len() - 1], 3600),
        Some('d') => (&lower[..lower.len() - 1], 86400),
        _ => (lower.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            format!("invalid timeout {s:?} (expected e.g. 600s, 10m, 2h, 1d or seconds)")
        })
}

/// Parses Postee's `max-db-size` (spec §3.2): digits, optional space, optional
/// `b`/`kb`/`mb`/`gb` (1024-based, any case). Postee maps a lone `k`/`m`/`g` to unlimited by
/// mistake; here it means the same as `kb`/`mb`/`gb`. `""` is unlimited (`None`).
pub fn parse_size(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let err = || format!("invalid size {s:?} (expected e.g. 500MB, 1GB, 1024)");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| err())?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(err()),
    };
    let v = n.checked_mul(mult).ok_or_else(err)?;
    Ok(if v == 0 { None } else { Some(v) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        assert_eq!(
            parse_go_duration("300ms").unwrap(),
            Duration::from_millis(300)
        );
        assert_eq!(
            parse_go_duration("2h45m").unwrap(),
            Duration::from_secs(9900)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["60sm", "ten seconds", "", "5", "s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn plugin_timeouts_follow_postee_and_accept_upper_case() {
        let cases = [
            ("1m", 60),
            ("600s", 600),
            ("2h", 7200),
            ("2d", 172800),
            ("2 d", 172800),
            ("300", 300),
            ("", 0),
            (" ", 0),
            ("2H", 7200),
        ];
        for (s, want) in cases {
            assert_eq!(parse_plugin_timeout(s).unwrap(), want, "{s}");
        }
        assert!(parse_plugin_timeout("xxxl").is_err());
    }

    #[test]
    fn sizes_follow_postee_table() {
        assert_eq!(parse_size("").unwrap(), None);
        assert_eq!(parse_size("1b").unwrap(), Some(1));
        assert_eq!(parse_size("2kb").unwrap(), Some(2048));
        assert_eq!(parse_size("3Mb").unwrap(), Some(3 << 20));
        assert_eq!(parse_size("4GB").unwrap(), Some(4 << 30));
        assert_eq!(parse_size("5 b").unwrap(), Some(5));
        assert_eq!(parse_size("6").unwrap(), Some(6));
        assert_eq!(parse_size("1000MB").unwrap(), Some(1000 << 20));
        assert!(parse_size("7TB").is_err());
        assert!(parse_size("8.8").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }
}
