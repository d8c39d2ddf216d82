//! Problems found while loading a config: every one is collected, none stops the walk.

use std::fmt;

/// How bad a problem is. Warnings become errors under `--strict` / `strict: true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem, with where it is (`routes[name].key`, `actions[name].key`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        if self.path.is_empty() {
            write!(f, "{level}: {}", self.message)
        } else {
            write!(f, "{level}: {}: {}", self.path, self.message)
        }
    }
}

/// The problems of one load, in the order they were found.
#[derive(Debug, Default, Clone)]
pub struct Problems {
    pub items: Vec<Problem>,
}

impl Problems {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.items.push(Problem {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.items.push(Problem {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter().filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.items
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    /// Turns every warning into an error (strict mode).
    pub fn make_strict(&mut self) {
        for p in &mut self.items {
            p.severity = Severity::Error;
        }
    }

    pub fn extend(&mut self, other: Problems) {
        self.items.extend(other.items);
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.items {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `key`, if it is close enough to be a likely typo.
pub fn closest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(&key, c), *c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_a_typo_and_ignores_unrelated_words() {
        let keys = ["input", "input-files", "actions", "template"];
        assert_eq!(closest("templete", &keys), Some("template"));
        assert_eq!(closest("input_files", &keys), Some("input-files"));
        assert_eq!(closest("zzz", &keys), None);
    }
}
