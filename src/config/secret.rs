//! Secret values from the config: resolved from `$VAR`, `env:VAR` or `file:PATH`, never printed.

use std::fmt;

/// A secret string (password, token, API key, webhook URL with a key in it).
/// `Debug` and `Display` print `<hidden>` so a secret cannot reach a log line or an error.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value; call only where it is sent to its target.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Empty or only white space (a required secret that is not really set).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

/// A URL whose text is a secret (Slack and Teams webhook URLs: the path is the key).
/// Prints as `<hidden>`; parse errors never repeat the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(reqwest::Url);

/// Why a secret URL was refused; says nothing about the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUrlError {
    /// Not a URL at all (the parser's reason, which does not quote the input).
    Invalid(String),
    /// A URL whose scheme is not http or https (the scheme is not the secret part).
    Scheme(String),
}

impl fmt::Display for SecretUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretUrlError::Invalid(e) => write!(f, "not a valid URL (value hidden): {e}"),
            SecretUrlError::Scheme(s) => {
                write!(f, "unsupported scheme `{s}` (use http or https)")
            }
        }
    }
}

impl SecretUrl {
    /// An http(s) URL from a secret value.
    pub fn parse(secret: &Secret) -> Result<SecretUrl, SecretUrlError> {
        match reqwest::Url::parse(secret.0.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(SecretUrl(u)),
            Ok(u) => Err(SecretUrlError::Scheme(u.scheme().to_string())),
            Err(e) => Err(SecretUrlError::Invalid(e.to_string())),
        }
    }

    /// The real URL; call only where the request is made.
    pub fn expose(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<hidden>")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where a secret came from, for error messages that must not show the value.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretError {
    /// `$VAR` naming an unset variable: Postee silently uses "", we warn.
    UnsetDollar(String),
    /// `env:VAR` naming an unset variable: an error.
    UnsetEnv(String),
    /// `file:PATH` that cannot be read.
    File(String, String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::UnsetDollar(v) => {
                write!(
                    f,
                    "environment variable {v} is not set (the value is empty, as in Postee)"
                )
            }
            SecretError::UnsetEnv(v) => write!(f, "environment variable {v} is not set"),
            SecretError::File(p, e) => write!(f, "cannot read secret file {p}: {e}"),
        }
    }
}

/// Resolves a raw config value: `$VAR` (Postee: the whole value names a variable),
/// `env:VAR`, `file:PATH` (trailing newline trimmed), or a literal.
/// On `UnsetDollar` the secret is still returned (empty), matching Postee.
pub fn resolve(raw: &str) -> (Secret, Option<SecretError>) {
    resolve_with(raw, |name| std::env::var(name).ok())
}

pub fn resolve_with(
    raw: &str,
    env: impl Fn(&str) -> Option<String>,
) -> (Secret, Option<SecretError>) {
    if let Some(name) = raw.strip_prefix('$') {
        return match env(name) {
            Some(v) => (Secret(v), None),
            None => (
                Secret::default(),
                Some(SecretError::UnsetDollar(name.to_string())),
            ),
        };
    }
    if let Some(name) = raw.strip_prefix("env:") {
        return match env(name) {
            Some(v) => (Secret(v), None),
            None => (
                Secret::default(),
                Some(SecretError::UnsetEnv(name.to_string())),
            ),
        };
    }
    if let Some(path) = raw.strip_prefix("file:") {
        return match std::fs::read_to_string(path) {
            Ok(v) => (Secret(v.trim_end_matches(['\r', '\n']).to_string()), None),
            Err(e) => (
                Secret::default(),
                Some(SecretError::File(path.to_string(), e.to_string())),
            ),
        };
    }
    (Secret(raw.to_string()), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn dollar_env_and_file_forms_resolve() {
        assert_eq!(resolve_with("$TOKEN", env).0.expose(), "s3cr3t");
        assert_eq!(resolve_with("env:TOKEN", env).0.expose(), "s3cr3t");
        assert_eq!(resolve_with("plain", env).0.expose(), "plain");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "from-file\n").unwrap();
        let raw = format!("file:{}", p.display());
        assert_eq!(resolve_with(&raw, env).0.expose(), "from-file");
    }

    #[test]
    fn unset_variables_are_reported_without_values() {
        let (s, e) = resolve_with("$MISSING", env);
        assert!(s.is_empty());
        assert_eq!(e, Some(SecretError::UnsetDollar("MISSING".into())));
        assert!(matches!(
            resolve_with("env:MISSING", env).1,
            Some(SecretError::UnsetEnv(_))
        ));
        assert!(matches!(
            resolve_with("file:/nonexistent/x", env).1,
            Some(SecretError::File(..))
        ));
    }

    #[test]
    fn secret_urls_never_print_not_even_when_invalid() {
        let u = SecretUrl::parse(&Secret::new(" https://hooks.example/T0/B0/key-1 ")).unwrap();
        assert_eq!(u.expose().path(), "/T0/B0/key-1");
        assert_eq!(format!("{u} {u:?}"), "<hidden> <hidden>");
        for bad in [
            "hooks.example/key-2",
            "https://[key-3",
            "https://h:99999999/key-4",
        ] {
            let e = SecretUrl::parse(&Secret::new(bad)).unwrap_err().to_string();
            assert!(e.starts_with("not a valid URL (value hidden)"), "{e}");
            assert!(!e.contains("key-"), "{e}");
        }
        let e = SecretUrl::parse(&Secret::new("ftp://h/key-5")).unwrap_err();
        assert_eq!(e, SecretUrlError::Scheme("ftp".into()));
        assert!(!e.to_string().contains("key-5"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "<hidden>");
        assert_eq!(format!("{s:?}"), "<hidden>");
        assert!(!format!("{:?}", Some(s)).contains("hunter2"));
    }
}
