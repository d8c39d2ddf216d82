//! Declared action keys (`KeySpec`), the schema the reader checks actions against, and the
//! type-checked values it hands to each action's `validate`.
//!
//! The declarations live next to each action (`actions/<type>.rs`, `KEYS`); this module only
//! defines their shape, so `config` stays below `actions` in the import graph: the reader gets
//! the schema passed in (`actions::schema()` builds it from the registry).

use std::collections::BTreeMap;

use super::secret::Secret;

/// How a key's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// A string that Postee expands from `$VAR` (user names); printable.
    Expand,
    /// A secret: `$VAR`, `env:VAR`, `file:PATH` or literal; never printed.
    Secret,
    Bool,
    Int,
    StrList,
    StrMap,
    /// Map of header name to list of values (http `headers`).
    StrListMap,
    /// kubernetes `kube-actions: {labels: {...}, annotations: {...}, scale-to-zero, delete}`.
    KubeActions,
}

/// One key an action type reads: its name, how it is read, and its user documentation
/// (docs/actions.md shows the same default and starts the key's meaning with `doc`; a test
/// checks both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Canonical (lower-case) spelling; the reader matches any case.
    pub name: &'static str,
    pub kind: Kind,
    /// An enabled action must set it (its `validate` reports it missing, and a test checks
    /// that). When it is needed in some cases only, `default` says when ("required unless
    /// `use-mx`").
    pub required: bool,
    /// The default as the docs show it (markdown); "" for none.
    pub default: &'static str,
    /// One line: what the key means (the start of its docs entry).
    pub doc: &'static str,
}

impl KeySpec {
    pub const fn required(name: &'static str, kind: Kind, doc: &'static str) -> KeySpec {
        KeySpec {
            name,
            kind,
            required: true,
            default: "",
            doc,
        }
    }

    pub const fn optional(
        name: &'static str,
        kind: Kind,
        default: &'static str,
        doc: &'static str,
    ) -> KeySpec {
        KeySpec {
            name,
            kind,
            required: false,
            default,
            doc,
        }
    }

    /// A key known by name and kind only, with no default or doc (test schemas).
    pub const fn known(name: &'static str, kind: Kind) -> KeySpec {
        KeySpec::optional(name, kind, "", "")
    }

    /// Its value is never printed (errors name the key, never the value).
    pub const fn is_secret(&self) -> bool {
        matches!(self.kind, Kind::Secret)
    }
}

/// What the reader knows about action types: each type's name and declared keys.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    types: Vec<(&'static str, &'static [KeySpec])>,
}

impl Schema {
    pub fn new(types: impl IntoIterator<Item = (&'static str, &'static [KeySpec])>) -> Schema {
        Schema {
            types: types.into_iter().collect(),
        }
    }

    /// The keys of an action type (its lower-cased name), `None` for an unknown type.
    pub fn keys(&self, kind: &str) -> Option<&'static [KeySpec]> {
        self.types.iter().find(|(n, _)| *n == kind).map(|(_, k)| *k)
    }

    pub fn type_names(&self) -> Vec<&'static str> {
        self.types.iter().map(|(n, _)| *n).collect()
    }

    /// Every key any type reads, to tell "typo" from "key of another type".
    pub fn all_keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = Vec::new();
        for (_, specs) in &self.types {
            for k in *specs {
                if !keys.contains(&k.name) {
                    keys.push(k.name);
                }
            }
        }
        keys
    }
}

/// A type-checked value of one action key.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(String),
    Secret(Secret),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    ListMap(BTreeMap<String, Vec<String>>),
    Kube(KubeActions),
}

/// What a kubernetes action does to each object (`kube-actions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeActions {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Ours: patch the scale subresource to `spec.replicas: 0`.
    pub scale_to_zero: bool,
    /// Ours: delete the object (pods).
    pub delete: bool,
}

/// The keys an action entry set (absent and null keys are not here), with the declarations
/// they were read by. Reading a key that is not declared, or with the getter of another
/// kind, is a programming mistake: it panics in debug builds (every test) instead of
/// silently reading nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    specs: &'static [KeySpec],
    values: BTreeMap<String, FieldValue>,
}

impl Fields {
    pub fn new(specs: &'static [KeySpec]) -> Fields {
        Fields {
            specs,
            values: BTreeMap::new(),
        }
    }

    /// Sets a key (the reader, and tests).
    pub fn set(&mut self, key: &str, value: FieldValue) {
        self.declared(key);
        self.values.insert(key.to_string(), value);
    }

    /// Names of the keys that are set.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    fn declared(&self, key: &str) -> Option<&KeySpec> {
        let spec = self.specs.iter().find(|s| s.name == key);
        debug_assert!(
            spec.is_some(),
            "action key `{key}` is read but not declared"
        );
        spec
    }

    fn get(&self, key: &str, kinds: &[Kind]) -> Option<&FieldValue> {
        if let Some(spec) = self.declared(key) {
            debug_assert!(
                kinds.contains(&spec.kind),
                "action key `{key}` is declared {:?}, read as {kinds:?}",
                spec.kind
            );
        }
        self.values.get(key)
    }

    /// A printable string key (not a secret: those only come out through [`Fields::secret`]).
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key, &[Kind::Str, Kind::Expand]) {
            Some(FieldValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A string key that is set and not blank.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.str(key).filter(|s| !s.trim().is_empty())
    }

    /// A secret key; its value stays wrapped until it is sent.
    pub fn secret(&self, key: &str) -> Option<&Secret> {
        match self.get(key, &[Kind::Secret]) {
            Some(FieldValue::Secret(s)) => Some(s),
            _ => None,
        }
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key, &[Kind::Bool]) {
            Some(FieldValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key, &[Kind::Int]) {
            Some(FieldValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        match self.get(key, &[Kind::StrList]) {
            Some(FieldValue::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }

    pub fn map(&self, key: &str) -> BTreeMap<String, String> {
        match self.get(key, &[Kind::StrMap]) {
            Some(FieldValue::Map(m)) => m.clone(),
            _ => BTreeMap::new(),
        }
    }

    pub fn kube_actions(&self, key: &str) -> Option<KubeActions> {
        match self.get(key, &[Kind::KubeActions]) {
            Some(FieldValue::Kube(k)) => Some(k.clone()),
            _ => None,
        }
    }

    pub fn list_map(&self, key: &str) -> BTreeMap<String, Vec<String>> {
        match self.get(key, &[Kind::StrListMap]) {
            Some(FieldValue::ListMap(m)) => m.clone(),
            _ => BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[KeySpec] = &[
        KeySpec::required("url", Kind::Str, "where"),
        KeySpec::required("token", Kind::Secret, "who"),
    ];

    #[test]
    fn secrets_do_not_come_out_as_strings() {
        let mut f = Fields::new(KEYS);
        f.set("url", FieldValue::Str("http://x".into()));
        f.set("token", FieldValue::Secret(Secret::new("s3cr3t")));
        assert_eq!(f.str("url"), Some("http://x"));
        assert_eq!(f.secret("token").map(Secret::expose), Some("s3cr3t"));
        assert!(!format!("{f:?}").contains("s3cr3t"));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "read but not declared")]
    fn reading_an_undeclared_key_is_caught() {
        let f = Fields::new(KEYS);
        let _ = f.str("ulr");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "declared Secret")]
    fn reading_a_secret_as_a_string_is_caught() {
        let f = Fields::new(KEYS);
        let _ = f.str("token");
    }
}
