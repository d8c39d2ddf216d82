//! Route conditions simple enough to evaluate without a Rego engine.
//!
//! Most route `input` conditions are a few lines of reference tests on the event:
//! `contains(input.image, "alpine")`, `input.vulnerability_summary.critical > 0`,
//! `some i` + `input.resources[i].vulnerabilities[_].name == "CVE-1"`. regorus' VM spends
//! most of its time on per-evaluation setup and on re-walking every reference from `input`
//! in each loop iteration, and its loops cannot stop at the first match; here such a
//! condition is a list of paths walked once, stopping at the first element that satisfies
//! the test (~0.1 µs instead of 1–3 µs).
//!
//! Only a small, strictly parsed subset is recognised; anything else (or anything unsure at
//! evaluation time) goes to the VM and interpreter. The subset, one statement per line or
//! `;`-separated, `#` comments allowed:
//!
//! - `some i, j` declaring iteration variables;
//! - `REF`, `REF OP LITERAL` with `OP` one of `== != < <= > >=`;
//! - `contains(REF, "s")`, `startswith(REF, "s")`, `endswith(REF, "s")`;
//!
//! where `REF` is `input` followed by `.field`, `["field"]`, `[0]`, `[_]` or `[i]`, and a
//! literal is a string without escapes, a decimal number, `true`, `false` or `null`.
//!
//! Why the result equals the interpreter's:
//! - every `some` variable must be used exactly once (and `_` is always fresh), so no two
//!   statements share a variable; the body holds iff each statement holds for some binding
//!   of its own variables, which is what [`SimpleCondition::eval`] checks statement by
//!   statement;
//! - a reference step is regorus' own `Value` indexing (what the interpreter does), an
//!   iteration visits array elements and object values, and a scalar has none;
//! - comparisons are regorus' own `Value` operators (what `builtins::comparison` uses,
//!   including its order across types), and number literals are parsed by regorus' number
//!   parser (`Value::from_numeric_string`, what its Rego parser uses);
//! - a statement holds when its value is defined and not `false`; the string builtins hold
//!   on strings as Rust's `str` methods say (regorus' implementation).
//!
//! Sets (never in JSON events), a string builtin on a non-string (a builtin error in Rego)
//! and undefined elements make [`SimpleCondition::eval`] answer `None`: "ask Rego".
//! The table tests below compare every recognised form with the interpreter.

use regorus::Value;

/// A route condition in the simple subset (see the module documentation).
#[derive(Clone, Debug)]
pub struct SimpleCondition {
    statements: Vec<Statement>,
}

#[derive(Clone, Debug)]
struct Statement {
    path: Vec<Step>,
    test: Test,
}

#[derive(Clone, Debug)]
enum Step {
    /// Index by a field name (string) or an array position (number).
    Key(Value),
    /// Every element of an array or value of an object (`[_]`, `[i]`).
    Each,
}

#[derive(Clone, Debug)]
enum Test {
    /// The statement is the reference alone: defined and not `false`.
    Truthy,
    Compare(CmpOp, Value),
    Str(StrFn, String),
}

#[derive(Clone, Copy, Debug)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug)]
enum StrFn {
    Contains,
    StartsWith,
    EndsWith,
}

/// Rego keywords and names that must not be taken for fields or variables here.
const RESERVED: &[&str] = &[
    "allow",
    "as",
    "contains",
    "data",
    "default",
    "else",
    "endswith",
    "every",
    "false",
    "if",
    "import",
    "in",
    "input",
    "not",
    "null",
    "package",
    "some",
    "startswith",
    "true",
    "with",
];

impl SimpleCondition {
    /// Recognises a route's `input` text; `None` when it is outside the subset.
    pub fn parse(text: &str) -> Option<SimpleCondition> {
        // Rego's lexer rejects a carriage return not followed by a line feed (found by
        // fuzzing).
        if text.split("\r\n").any(|part| part.contains('\r')) {
            return None;
        }
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
            vars: Vec::new(),
        };
        let mut statements = Vec::new();
        loop {
            p.skip_between_statements(statements.is_empty() && p.vars.is_empty())?;
            if p.pos == p.s.len() {
                break;
            }
            let word = p.ident()?;
            match word {
                "some" => p.some_declaration()?,
                "input" => {
                    let path = p.path()?;
                    p.skip_spaces();
                    let test = match p.cmp_op() {
                        Some(op) => {
                            p.skip_spaces();
                            Test::Compare(op, p.literal()?)
                        }
                        None => Test::Truthy,
                    };
                    statements.push(Statement { path, test });
                }
                "contains" | "startswith" | "endswith" => {
                    let f = match word {
                        "contains" => StrFn::Contains,
                        "startswith" => StrFn::StartsWith,
                        _ => StrFn::EndsWith,
                    };
                    p.expect(b'(')?;
                    p.skip_spaces();
                    if p.ident()? != "input" {
                        return None;
                    }
                    let path = p.path()?;
                    p.skip_spaces();
                    p.expect(b',')?;
                    p.skip_spaces();
                    let needle = p.string()?;
                    p.skip_spaces();
                    p.expect(b')')?;
                    statements.push(Statement {
                        path,
                        test: Test::Str(f, needle),
                    });
                }
                _ => return None,
            }
            p.end_of_statement()?;
        }
        // Each declared variable used exactly once: no joins between statements.
        if statements.is_empty() || p.vars.iter().any(|(_, uses)| *uses != 1) {
            return None;
        }
        Some(SimpleCondition { statements })
    }

    /// Whether the condition holds for `input`; `None` when Rego must decide.
    pub fn eval(&self, input: &Value) -> Option<bool> {
        for s in &self.statements {
            if !any_match(input, &s.path, &s.test)? {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// Whether some binding of the path's iterations reaches a value passing `test`.
fn any_match(v: &Value, path: &[Step], test: &Test) -> Option<bool> {
    if matches!(v, Value::Set(_) | Value::Undefined) {
        return None;
    }
    let Some((step, rest)) = path.split_first() else {
        return test.holds(v);
    };
    match step {
        Step::Key(k) => match &v[k] {
            Value::Undefined => Some(false),
            next => any_match(next, rest, test),
        },
        Step::Each => {
            let mut found = false;
            match v {
                Value::Array(a) => {
                    for e in a.iter() {
                        if any_match(e, rest, test)? {
                            found = true;
                            break;
                        }
                    }
                }
                Value::Object(o) => {
                    for e in o.values() {
                        if any_match(e, rest, test)? {
                            found = true;
                            break;
                        }
                    }
                }
                _ => {}
            }
            Some(found)
        }
    }
}

impl Test {
    fn holds(&self, v: &Value) -> Option<bool> {
        Some(match self {
            Test::Truthy => *v != Value::Bool(false),
            Test::Compare(op, lit) => match op {
                CmpOp::Eq => v == lit,
                CmpOp::Ne => v != lit,
                CmpOp::Lt => v < lit,
                CmpOp::Le => v <= lit,
                CmpOp::Gt => v > lit,
                CmpOp::Ge => v >= lit,
            },
            Test::Str(f, needle) => {
                let Value::String(s) = v else {
                    return None;
                };
                match f {
                    StrFn::Contains => s.contains(needle.as_str()),
                    StrFn::StartsWith => s.starts_with(needle.as_str()),
                    StrFn::EndsWith => s.ends_with(needle.as_str()),
                }
            }
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Declared `some` variables and how often they are used.
    vars: Vec<(String, usize)>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_comment(&mut self) {
        if self.peek() == Some(b'#') {
            while !matches!(self.peek(), None | Some(b'\n')) {
                self.pos += 1;
            }
        }
    }

    /// Blank space, line ends and comments, and at most one `;` between two statements with
    /// no comment after it: Rego rejects a body that starts or ends with `;`, `;;`, and `;`
    /// followed by a comment (found by fuzzing).
    fn skip_between_statements(&mut self, first: bool) -> Option<()> {
        let mut semicolon = false;
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'#') if semicolon => return None,
                Some(b'#') => self.skip_comment(),
                Some(b';') if first || semicolon => return None,
                Some(b';') => {
                    semicolon = true;
                    self.pos += 1;
                }
                None if semicolon => return None,
                _ => return Some(()),
            }
        }
    }

    /// After a statement: only spaces and a comment before the end of the line, a `;` or
    /// the end of the text.
    fn end_of_statement(&mut self) -> Option<()> {
        self.skip_spaces();
        self.skip_comment();
        matches!(self.peek(), None | Some(b'\n' | b'\r' | b';')).then_some(())
    }

    fn ident(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_')) {
            return None;
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos]).ok()
    }

    /// `some a, b`: new, unreserved names.
    fn some_declaration(&mut self) -> Option<()> {
        if !matches!(self.peek(), Some(b' ' | b'\t')) {
            return None;
        }
        loop {
            self.skip_spaces();
            let name = self.ident()?;
            if name == "_" || RESERVED.contains(&name) || self.vars.iter().any(|(v, _)| v == name) {
                return None;
            }
            self.vars.push((name.to_string(), 0));
            self.skip_spaces();
            if self.expect(b',').is_none() {
                return Some(());
            }
        }
    }

    /// The steps after `input`, up to the first character that cannot continue a reference.
    fn path(&mut self) -> Option<Vec<Step>> {
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                Some(b'.') => {
                    self.pos += 1;
                    let name = self.ident()?;
                    if name == "_" || RESERVED.contains(&name) {
                        return None;
                    }
                    steps.push(Step::Key(Value::from(name)));
                }
                Some(b'[') => {
                    self.pos += 1;
                    let step = match self.peek()? {
                        b'"' => Step::Key(Value::from(self.string()?)),
                        b'0'..=b'9' => {
                            let n = self.number()?;
                            if !n.bytes().all(|b| b.is_ascii_digit()) {
                                return None;
                            }
                            Step::Key(Value::from_numeric_string(n).ok()?)
                        }
                        _ => {
                            let name = self.ident()?;
                            if name != "_" {
                                let (_, uses) = self.vars.iter_mut().find(|(v, _)| v == name)?;
                                *uses += 1;
                            }
                            Step::Each
                        }
                    };
                    self.expect(b']')?;
                    steps.push(step);
                }
                _ => return Some(steps),
            }
        }
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let two = self.s.get(self.pos..self.pos + 2);
        let (op, len) = match two {
            Some(b"==") => (CmpOp::Eq, 2),
            Some(b"!=") => (CmpOp::Ne, 2),
            Some(b"<=") => (CmpOp::Le, 2),
            Some(b">=") => (CmpOp::Ge, 2),
            _ => match self.peek()? {
                b'<' => (CmpOp::Lt, 1),
                b'>' => (CmpOp::Gt, 1),
                _ => return None,
            },
        };
        self.pos += len;
        Some(op)
    }

    fn literal(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => Some(Value::from(self.string()?)),
            b'-' | b'0'..=b'9' => Value::from_numeric_string(self.number()?).ok(),
            _ => match self.ident()? {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                "null" => Some(Value::Null),
                _ => None,
            },
        }
    }

    /// A double-quoted string without escapes or control characters.
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
        let s = std::str::from_utf8(&self.s[start..self.pos])
            .ok()?
            .to_string();
        self.pos += 1;
        Some(s)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, not followed by anything that could extend it.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'1'..=b'9')) {
                return None;
            }
        }
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos - from
        };
        let first = self.peek();
        let n = digits(self);
        if n == 0 || (first == Some(b'0') && n > 1) {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.')
        ) {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.pos]).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::RouteConfig;
    use crate::routing::Condition;

    fn build(input: &str) -> Condition {
        let route = RouteConfig {
            name: "r".into(),
            input: input.into(),
            ..RouteConfig::default()
        };
        Condition::build(&route, Path::new("/nonexistent"))
            .unwrap_or_else(|e| panic!("{input:?}: {e:?}"))
    }

    /// Conditions in the subset, over the edge cases of each construct.
    const RECOGNISED: &[&str] = &[
        "input",
        "input.a",
        "input.a == 1",
        "input.a == 1.0",
        "input.a == \"1\"",
        "input.a != 1",
        "input.a < 2",
        "input.a <= 1",
        "input.a > 0",
        "input.a >= 1.5",
        "input.a > -1",
        "input.a < \"a\"",
        "input.a > \"\"",
        "input.a == true",
        "input.a == false",
        "input.a != false",
        "input.a == null",
        "input.a > null",
        "input.a == 9007199254740993",
        "input.a > 0.1",
        "input[\"a\"][\"b\"] == 2",
        "input.a.b",
        "input.a.b.c == \"x\"",
        "input.xs[0] == 1",
        "input.xs[1]",
        "input.xs[_]",
        "input.xs[_] == 2",
        "input.xs[_] != 2",
        "input.xs[_] > 2",
        "some i\ninput.xs[i] > 1",
        "some i, j\ninput.m[i].xs[j] == \"x\"",
        "input.m[_].xs[_]",
        "some k\ninput.m[k].xs",
        "some i\ninput.resources[i].vulnerabilities[_].name == \"CVE-7\"",
        "some i\ninput.resources[i].vulnerabilities[_].fix_version",
        "input.resources[_].vulnerabilities[_].name != \"CVE-7\"",
        "contains(input.image, \"alp\")",
        "contains(input.image, \"\")",
        "contains(input.image, \"ï\")",
        "startswith(input.image, \"alp\")",
        "endswith(input.image, \":3\")",
        "contains(input.xs[_], \"b\")",
        "contains( input.image , \"alp\" )",
        "input.a > 0\ninput.a <= 5",
        "startswith(input.image, \"all\"); input.registry == \"Aqua\"",
        "# a comment\n\ninput.a == 1 # trailing\n\n",
        "input.a==1\r\ninput.s!=\"x\"",
        "\tinput.s != \"x\"",
        "input.s == \"x#y\"",
        "input.a > 0 # c\n;input.a <= 5",
        "some i;input.xs[i] > 1",
        "input.a > 0\n\n;\r\n\tinput.s != \"x\"",
    ];

    const EVENTS: &[&str] = &[
        r#"{}"#,
        r#"{"a":1}"#,
        r#"{"a":1.0}"#,
        r#"{"a":1.5}"#,
        r#"{"a":"1"}"#,
        r#"{"a":"b"}"#,
        r#"{"a":""}"#,
        r#"{"a":2}"#,
        r#"{"a":5}"#,
        r#"{"a":6}"#,
        r#"{"a":0}"#,
        r#"{"a":-1}"#,
        r#"{"a":-2}"#,
        r#"{"a":0.1}"#,
        r#"{"a":9007199254740992}"#,
        r#"{"a":9007199254740993}"#,
        r#"{"a":false}"#,
        r#"{"a":true}"#,
        r#"{"a":null}"#,
        r#"{"a":[1]}"#,
        r#"{"a":{}}"#,
        r#"{"a":{"b":2}}"#,
        r#"{"a":{"b":false}}"#,
        r#"{"a":{"b":{"c":"x"}}}"#,
        r#"{"a":{"b":["c"]}}"#,
        r#"{"a":[{"b":2}]}"#,
        r#"{"xs":[]}"#,
        r#"{"xs":[1,2,3]}"#,
        r#"{"xs":[2]}"#,
        r#"{"xs":[false]}"#,
        r#"{"xs":[null]}"#,
        r#"{"xs":[false,false]}"#,
        r#"{"xs":{"k":2,"l":3}}"#,
        r#"{"xs":{"0":1,"1":2}}"#,
        r#"{"xs":"abc"}"#,
        r#"{"xs":5}"#,
        r#"{"xs":null}"#,
        r#"{"xs":["a","bc"]}"#,
        r#"{"xs":["b",1]}"#,
        r#"{"xs":[1,"b"]}"#,
        r#"{"m":{"p":{"xs":["x"]}}}"#,
        r#"{"m":[{"xs":["y"]},{"xs":["x"]}]}"#,
        r#"{"m":[{"xs":"x"}]}"#,
        r#"{"m":[{"xs":{"q":"x"}}]}"#,
        r#"{"m":[{}]}"#,
        r#"{"m":[{"xs":false}]}"#,
        r#"{"m":"x"}"#,
        r#"{"resources":[]}"#,
        r#"{"resources":[{"vulnerabilities":[]}]}"#,
        r#"{"resources":[{"vulnerabilities":[{"name":"CVE-1"},{"name":"CVE-7"}]}]}"#,
        r#"{"resources":[{"vulnerabilities":[{"name":"CVE-7"}]}]}"#,
        r#"{"resources":[{"vulnerabilities":{"x":{"name":"CVE-7"}}}]}"#,
        r#"{"resources":{"r":{"vulnerabilities":[{"name":"CVE-7"}]}}}"#,
        r#"{"resources":[{"vulnerabilities":[{"name":7}]}]}"#,
        r#"{"resources":"CVE-7"}"#,
        r#"{"resources":[null,{"vulnerabilities":[{"fix_version":""}]}]}"#,
        r#"{"resources":[{"vulnerabilities":[{"fix_version":false}]}]}"#,
        r#"{"resources":[{"vulnerabilities":[{"fix_version":null}]}]}"#,
        r#"{"resources":[{"vulnerabilities":[{"fix_version":false},{"fix_version":"1.2"}]}]}"#,
        r#"{"resources":[{"vulnerabilities":[{}]}]}"#,
        r#"{"image":"alpine:3"}"#,
        r#"{"image":"debian"}"#,
        r#"{"image":""}"#,
        r#"{"image":"ünïcode"}"#,
        r#"{"image":5}"#,
        r#"{"image":null}"#,
        r#"{"image":["alpine"]}"#,
        r#"{"image":"all-in-one","registry":"Aqua"}"#,
        r#"{"image":"all-in-one","registry":"Hub"}"#,
        r#"{"s":"x"}"#,
        r#"{"s":"y"}"#,
        r#"{"s":1}"#,
        r#"{"s":"x#y"}"#,
        r#"{"a":1,"s":"x"}"#,
        r#"{"a":1,"s":"z"}"#,
    ];

    /// Every recognised condition on every event gives the interpreter's answer, or defers.
    #[test]
    fn the_simple_path_equals_the_interpreter() {
        let events: Vec<Value> = EVENTS
            .iter()
            .map(|e| Value::from_json_str(e).unwrap())
            .collect();
        let (mut yes, mut no, mut deferred) = (0, 0, 0);
        for text in RECOGNISED {
            let simple = SimpleCondition::parse(text)
                .unwrap_or_else(|| panic!("{text:?} should be recognised"));
            let cond = build(text);
            assert!(cond.uses_simple_path(), "{text:?}");
            let interp = cond.interpreter_only();
            let general = cond.without_simple_path();
            for (event, raw) in events.iter().zip(EVENTS) {
                let want = interp.matches(event);
                match simple.eval(event) {
                    Some(got) => {
                        assert_eq!(Ok(got), want, "{text:?} on {raw}");
                        if got {
                            yes += 1;
                        } else {
                            no += 1;
                        }
                    }
                    None => {
                        // Deferring is only for a string builtin on a non-string.
                        assert!(
                            matches!(simple.statements[0].test, Test::Str(..)),
                            "{text:?} deferred on {raw}"
                        );
                        deferred += 1;
                    }
                }
                // Whatever path answers, the condition as a whole agrees with the interpreter,
                // and so does the general path (VM, then interpreter).
                let want = want.unwrap_or(false);
                assert_eq!(
                    cond.matches(event).unwrap_or(false),
                    want,
                    "{text:?} on {raw}"
                );
                assert_eq!(
                    general.matches(event).unwrap_or(false),
                    want,
                    "VM: {text:?} on {raw}"
                );
            }
        }
        assert!(
            yes > 200 && no > 1000,
            "both outcomes exercised ({yes}, {no})"
        );
        assert!(deferred > 10, "the deferral exercised ({deferred})");
    }

    #[test]
    fn the_first_satisfying_element_decides_before_an_unsure_one() {
        let c = SimpleCondition::parse("contains(input.xs[_], \"b\")").unwrap();
        let eval = |e: &str| c.eval(&Value::from_json_str(e).unwrap());
        assert_eq!(eval(r#"{"xs":["b",1]}"#), Some(true));
        assert_eq!(eval(r#"{"xs":[1,"b"]}"#), None);
        assert_eq!(eval(r#"{"xs":["a"]}"#), Some(false));
        assert_eq!(eval(r#"{"xs":5}"#), Some(false));
        // Sets never come from JSON; if one did, Rego decides.
        let mut with_set = Value::new_object();
        with_set
            .as_object_mut()
            .unwrap()
            .insert(Value::from("xs"), Value::new_set());
        assert_eq!(c.eval(&with_set), None);
    }

    /// Anything outside the subset goes to the VM and interpreter.
    #[test]
    fn everything_else_is_left_to_rego() {
        for text in [
            "",
            "# only a comment",
            "some i\ninput.a[i].x == 1\ninput.a[i].y == 2",
            "some i\ninput.a[i][i]",
            "some i\ninput.a == 1",
            "some i, i\ninput.a[i]",
            "some _\ninput.a[_]",
            "some input\ninput.a[input]",
            "some i\nsome i\ninput.a[i]",
            "input.a[i] == 1",
            "input.a = 1",
            "input.a := 1",
            "x := input.a\nx == 1",
            "not input.a",
            "input.a == 1 with input as {}",
            "count(input.a) > 0",
            "re_match(\"a\", input.a)",
            "regex.match(\"a\", input.a)",
            "input.a == \"x\\\"y\"",
            "input.a == \"x\\ny\"",
            "input.a == `raw`",
            "input.a == 1e3",
            "input.a == 01",
            "input.a == -0",
            "input.a == 1.",
            "input.a == .5",
            "input.a == 1 - 2",
            "input.a == -1-2",
            "input.a == 1 == 2",
            "1 == input.a",
            "input.a == input.b",
            "input.a + 1 > 2",
            "some x in input.a",
            "input.a[-1]",
            "input.a[1.5]",
            "input.a[01]",
            "input.a[ 0 ]",
            "input. a == 1",
            "input .a == 1",
            "input.a ==\n1",
            "input.a\n== 1",
            "input.a.b(1)",
            "input.default == 1",
            "input._ == 1",
            "data.x == 1",
            "inputs.a == 1",
            "contains(input.a, input.b)",
            "contains(\"abc\", input.a)",
            "contains (input.a, \"b\")",
            "contains(input.a, \"b\", \"c\")",
            "contains(input.a \"b\")",
            "lower(input.a) == \"b\"",
            "input.a == truex",
            "input.a == yes",
            "input.a == \"unterminated",
            // `;` where Rego does not take it (found by fuzzing).
            ";input.a",
            "# c\n;input.a",
            "input.a;",
            "input.a\n;",
            "input.a;;input.b",
            "input.a;\n;input.b",
            "input.a; # c\ninput.b",
            "input.a;\n# c\ninput.b",
            "\rinput.a",
            "input.a\rinput.b",
            "input.a\r",
            "input.a # c\rd",
        ] {
            assert!(
                SimpleCondition::parse(text).is_none(),
                "{text:?} should be left to Rego"
            );
        }
    }

    /// The conditions of the benchmark configuration all take the simple path.
    #[test]
    fn the_benchmark_routes_take_the_simple_path() {
        let cfg = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/cfg-route.yaml"),
        )
        .unwrap();
        let doc: serde_json::Value = yaml_serde::from_str(&cfg).unwrap();
        let routes = doc["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 10);
        for r in routes {
            let input = r["input"].as_str().unwrap();
            assert!(build(input).uses_simple_path(), "{input:?}");
        }
    }
}
