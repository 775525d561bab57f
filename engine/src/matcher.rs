//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics.
//!
//! Regular expressions are RE2 syntax (the `regex` crate), fully anchored.
//! Go's RE2 gives the Perl classes `\d`, `\w`, `\s` and the word boundary
//! `\b` their ASCII meaning, where the `regex` crate's are Unicode-aware
//! (`\d` matches `٣`); [`go_regex`] rewrites them to their ASCII forms so
//! that a pattern selects exactly what it selects in Prometheus.
//! A matcher that matches the empty string also selects series that do not
//! have the label at all, because a missing label has the empty value.
//!
//! For the label index, a regex matcher also carries its [`RegexShape`]: what
//! the pattern provably matches (a set of literals, of literal prefixes, any
//! non-empty string, or else a literal prefix every match starts with),
//! worked out once from the pattern's syntax tree, so that `a|b|c` and
//! `foo.*` are answered by direct look-ups instead of running the regex over
//! every value of the label.

use std::fmt;
use std::sync::Arc;

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

use crate::error::{Error, Result};

/// The four matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

/// Compiles `pattern` as Prometheus does: Go RE2 semantics
/// ([`go_regex`]), `.` matching newlines, anchored at both ends.
pub fn compile_anchored(pattern: &str) -> std::result::Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{})$", go_regex(pattern)))
}

/// Rewrites the Perl character classes and word boundaries of an RE2
/// pattern to the ASCII forms Go gives them: `\d` = `[0-9]`, `\w` =
/// `[0-9A-Za-z_]`, `\s` = `[\t\n\f\r ]`, their negations, and `\b`/`\B`
/// as ASCII word boundaries; inside a bracket class likewise. Everything
/// else (escaped characters, `\pL`, POSIX `[:alpha:]`, which the `regex`
/// crate already treats as ASCII) is copied unchanged.
pub fn go_regex(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains('\\') {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    // Inside a bracket class; `class_start` while its first character may
    // still be a literal `]`.
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                class_start = false;
                let ascii = match e {
                    'd' | 'D' => Some("0-9"),
                    'w' | 'W' => Some("0-9A-Za-z_"),
                    's' | 'S' => Some("\\t\\n\\f\\r "),
                    _ => None,
                };
                match (ascii, in_class) {
                    (Some(set), true) if e.is_ascii_lowercase() => out.push_str(set),
                    (Some(set), _) if e.is_ascii_lowercase() => {
                        out.push('[');
                        out.push_str(set);
                        out.push(']');
                    }
                    (Some(set), _) => {
                        out.push_str("[^");
                        out.push_str(set);
                        out.push(']');
                    }
                    (None, false) if e == 'b' || e == 'B' => {
                        out.push_str("(?-u:\\");
                        out.push(e);
                        out.push(')');
                    }
                    (None, _) => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' if !in_class => {
                out.push('[');
                in_class = true;
                class_start = true;
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as [:alpha:]: copy through its `:]`.
                out.push('[');
                class_start = false;
                let mut prev = '[';
                for p in chars.by_ref() {
                    out.push(p);
                    if prev == ':' && p == ']' {
                        break;
                    }
                    prev = p;
                }
            }
            ']' if in_class && !class_start => {
                out.push(']');
                in_class = false;
            }
            _ => {
                out.push(c);
                class_start = false;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One label matcher, with its regex compiled once.
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
    shape: Option<Arc<RegexShape>>,
}

impl Matcher {
    /// Builds a matcher; for the regex operators, compiles `value` anchored
    /// at both ends.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let (re, shape) = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                let anchored = format!("^(?s:{})$", go_regex(&value));
                let re = Regex::new(&anchored).map_err(|e| Error::InvalidRegex {
                    label: name.clone(),
                    pattern: value.clone(),
                    reason: e.to_string(),
                })?;
                (Some(re), Some(Arc::new(RegexShape::of_anchored(&anchored))))
            }
            MatchOp::Equal | MatchOp::NotEqual => (None, None),
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
            shape,
        })
    }

    /// For the regex operators, what the pattern (not the operator: `!~`
    /// negates it) provably matches; `None` for `=` and `!=`.
    pub fn regex_shape(&self) -> Option<&RegexShape> {
        self.shape.as_deref()
    }

    /// Whether the regex itself (ignoring a `!~` negation) matches `v`;
    /// for `=`/`!=`, whether `v` equals the value.
    pub fn pattern_matches(&self, v: &str) -> bool {
        match &self.re {
            Some(re) => re.is_match(v),
            None => v == self.value,
        }
    }

    /// An equality matcher (cannot fail).
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
            shape: None,
        }
    }

    /// Whether the label value `v` (empty when the label is missing) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::RegexMatch => self.re.as_ref().is_some_and(|re| re.is_match(v)),
            MatchOp::RegexNoMatch => !self.re.as_ref().is_some_and(|re| re.is_match(v)),
        }
    }

    /// Whether a series without this label is selected.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl std::hash::Hash for Matcher {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.op.hash(state);
        self.value.hash(state);
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// What a regex pattern provably matches, derived from its syntax tree.
///
/// **Invariant:** the shape never claims more than the regex: for
/// [`RegexShape::Literals`] a string matches the regex exactly when it
/// equals one of `exact` or starts with one of `prefixes`; for
/// [`RegexShape::NonEmpty`] exactly the non-empty strings match; for
/// [`RegexShape::General`] every match starts with `prefix` and the regex
/// must still be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegexShape {
    /// A finite set of literals and literal prefixes (each followed by `.*`),
    /// sorted and deduplicated. `.*` is `prefixes == [""]`, `a|b` is
    /// `exact == ["a", "b"]`, `foo.*` is `prefixes == ["foo"]`.
    Literals {
        exact: Vec<String>,
        prefixes: Vec<String>,
    },
    /// `.+`: every non-empty string.
    NonEmpty,
    /// Anything else; every match starts with `prefix` (often empty).
    General { prefix: String },
}

/// Above this many literals a pattern is treated as general: expanding
/// `[a-z]{3}` into literals would cost more than running the regex.
const MAX_LITERALS: usize = 256;
/// A character class of at most this many characters is expanded into
/// literals (`[abc]`, and `a|b|c`, which the regex parser turns into one).
const MAX_CLASS_CHARS: u32 = 16;

/// One alternative of a finite pattern: a literal, open-ended when `open`
/// (followed by `.*`).
type Piece = (String, bool);

impl RegexShape {
    /// The shape of an already anchored pattern `^(?s:...)$`, the exact text
    /// the matcher compiles, so that the analysis sees what the regex runs.
    fn of_anchored(anchored: &str) -> RegexShape {
        let general = RegexShape::General {
            prefix: String::new(),
        };
        let Ok(hir) = regex_syntax::Parser::new().parse(anchored) else {
            return general;
        };
        // The top level must be `^`, the user's pattern, `$`; anything else
        // (a pattern that closes the group early) is left to the regex.
        let HirKind::Concat(subs) = hir.kind() else {
            return general;
        };
        let n = subs.len();
        let anchored_ok = n >= 2
            && matches!(subs[0].kind(), HirKind::Look(Look::Start))
            && matches!(subs[n - 1].kind(), HirKind::Look(Look::End));
        if !anchored_ok {
            return general;
        }
        let inner = &subs[1..n - 1];
        if let [only] = inner
            && is_any_repetition(only, 1)
        {
            return RegexShape::NonEmpty;
        }
        match pieces_of_concat(inner) {
            Some(pieces) => {
                let mut exact = Vec::new();
                let mut prefixes = Vec::new();
                for (s, open) in pieces {
                    if open {
                        prefixes.push(s);
                    } else {
                        exact.push(s);
                    }
                }
                prefixes.sort();
                prefixes.dedup();
                if prefixes.first().is_some_and(|p| p.is_empty()) {
                    // `.*` somewhere at the top: everything matches.
                    prefixes.truncate(1);
                    exact.clear();
                }
                exact.sort();
                exact.dedup();
                RegexShape::Literals { exact, prefixes }
            }
            None => {
                let mut prefix = String::new();
                for h in inner {
                    match h.kind() {
                        HirKind::Literal(lit) => match std::str::from_utf8(&lit.0) {
                            Ok(s) => prefix.push_str(s),
                            Err(_) => break,
                        },
                        _ => break,
                    }
                }
                RegexShape::General { prefix }
            }
        }
    }
}

/// Whether `h` is `.{min,}` with `.` matching every character (`(?s)`).
fn is_any_repetition(h: &Hir, min: u32) -> bool {
    match h.kind() {
        HirKind::Repetition(r) if r.min == min && r.max.is_none() => match r.sub.kind() {
            HirKind::Class(Class::Unicode(c)) => {
                let ranges = c.ranges();
                ranges.len() == 1 && ranges[0].start() == '\0' && ranges[0].end() == char::MAX
            }
            _ => false,
        },
        _ => false,
    }
}

/// The finite set of pieces `h` matches, or `None` when it is not provably
/// such a set (or too large).
fn pieces(h: &Hir) -> Option<Vec<Piece>> {
    match h.kind() {
        HirKind::Empty => Some(vec![(String::new(), false)]),
        HirKind::Literal(lit) => Some(vec![(String::from_utf8(lit.0.to_vec()).ok()?, false)]),
        HirKind::Class(Class::Unicode(c)) => {
            let mut count = 0u32;
            for r in c.ranges() {
                count += u32::from(r.end()) - u32::from(r.start()) + 1;
                if count > MAX_CLASS_CHARS {
                    return None;
                }
            }
            let mut out = Vec::new();
            for r in c.ranges() {
                for cp in u32::from(r.start())..=u32::from(r.end()) {
                    out.push((char::from_u32(cp)?.to_string(), false));
                }
            }
            Some(out)
        }
        HirKind::Capture(c) => pieces(&c.sub),
        HirKind::Concat(subs) => pieces_of_concat(subs),
        HirKind::Alternation(subs) => {
            let mut out = Vec::new();
            for s in subs {
                out.extend(pieces(s)?);
                if out.len() > MAX_LITERALS {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Repetition(_) if is_any_repetition(h, 0) => Some(vec![(String::new(), true)]),
        HirKind::Class(Class::Bytes(_)) | HirKind::Look(_) | HirKind::Repetition(_) => None,
    }
}

/// The pieces of a concatenation: the cross product of its parts' pieces,
/// where a `.*` makes every piece so far open-ended; anything after an
/// open-ended piece other than another `.*` is not a finite shape.
fn pieces_of_concat(subs: &[Hir]) -> Option<Vec<Piece>> {
    let mut acc: Vec<Piece> = vec![(String::new(), false)];
    for sub in subs {
        if is_any_repetition(sub, 0) {
            for p in &mut acc {
                p.1 = true;
            }
            continue;
        }
        if acc.iter().any(|p| p.1) {
            return None;
        }
        let next = pieces(sub)?;
        if acc.len().saturating_mul(next.len()) > MAX_LITERALS {
            return None;
        }
        let mut joined = Vec::with_capacity(acc.len() * next.len());
        for (a, _) in &acc {
            for (b, open) in &next {
                joined.push((format!("{a}{b}"), *open));
            }
        }
        acc = joined;
    }
    Some(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_and_boundaries_are_ascii_as_in_go() {
        for (pattern, value, want) in [
            (r"\d+", "123", true),
            (r"\d+", "١٢٣", false), // Arabic-Indic digits: not \d in Go
            (r"\D", "٣", true),
            (r"\w+", "abc_9", true),
            (r"\w+", "é", false),
            (r"\W", "é", true),
            (r"\s", "\u{a0}", false), // no-break space: not \s in Go
            (r"\s", "\t", true),
            (r"\s", "\u{b}", false), // vertical tab: not \s in Go
            (r"\S", "\u{a0}", true),
            (r"[\d.]+", "1.5", true),
            (r"[\d.]+", "١.٥", false),
            (r"[^\d]+", "abc", true),
            (r"[^\d]+", "a1", false),
            (r"[\D]", "x", true),
            (r"[]\d]+", "]1", true),
            (r"[[:alpha:]\d]+", "a1", true),
            (r".*\bapi\b.*", "the api here", true),
            (r".*\bapi\b.*", "éapi", true), // é is not a word character in Go
            (r".*\Bpi.*", "api", true),
            (r"\\d", "\\d", true), // an escaped backslash, then a literal d
            (r"\.\d", ".5", true),
            (r"\pL+", "é", true), // Unicode classes stay Unicode
        ] {
            let re = compile_anchored(pattern).unwrap();
            assert_eq!(
                re.is_match(value),
                want,
                "{pattern} on {value:?} ({})",
                go_regex(pattern)
            );
            let m = Matcher::new(MatchOp::RegexMatch, "l", pattern).unwrap();
            assert_eq!(m.matches(value), want, "matcher {pattern} on {value:?}");
        }
        assert!(matches!(
            go_regex("abc|de.*"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn regex_is_fully_anchored() {
        let m = Matcher::new(MatchOp::RegexMatch, "job", "api|web").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("apis"));
        assert!(!m.matches("xapi"));
        assert!(!m.matches_empty());
        let m = Matcher::new(MatchOp::RegexMatch, "job", "a.*|").unwrap();
        assert!(m.matches_empty());
    }

    fn shape(pattern: &str) -> RegexShape {
        Matcher::new(MatchOp::RegexMatch, "l", pattern)
            .unwrap()
            .regex_shape()
            .cloned()
            .unwrap()
    }

    fn lits(exact: &[&str], prefixes: &[&str]) -> RegexShape {
        RegexShape::Literals {
            exact: exact.iter().map(|s| s.to_string()).collect(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn general(prefix: &str) -> RegexShape {
        RegexShape::General {
            prefix: prefix.to_string(),
        }
    }

    #[test]
    fn regex_shapes() {
        let table: Vec<(&str, RegexShape)> = vec![
            ("", lits(&[""], &[])),
            ("foo", lits(&["foo"], &[])),
            ("a|b|c", lits(&["a", "b", "c"], &[])),
            ("api|web|", lits(&["", "api", "web"], &[])),
            ("(api|web)", lits(&["api", "web"], &[])),
            ("foo|foobar", lits(&["foo", "foobar"], &[])),
            ("[xy]z", lits(&["xz", "yz"], &[])),
            ("(?i)ab", lits(&["AB", "Ab", "aB", "ab"], &[])),
            ("foo.*", lits(&[], &["foo"])),
            ("foo.*.*", lits(&[], &["foo"])),
            ("(foo|bar).*", lits(&[], &["bar", "foo"])),
            ("foo.*|x", lits(&["x"], &["foo"])),
            (".*", lits(&[], &[""])),
            ("x|.*", lits(&[], &[""])),
            (".+", RegexShape::NonEmpty),
            ("foo.+", general("foo")),
            ("f.*r", general("f")),
            ("[a-z]x.*y", general("")),
            ("fo+", general("f")),
            ("[a-z]+", general("")),
            ("(?-s:.*)", general("")),
            ("^foo", general("")),
            ("a)|(b", general("")),
        ];
        for (pattern, want) in table {
            assert_eq!(shape(pattern), want, "pattern {pattern:?}");
        }
        assert!(Matcher::equal("l", "v").regex_shape().is_none());
    }

    #[test]
    fn bad_regex_is_a_clear_error() {
        let err = Matcher::new(MatchOp::RegexMatch, "job", "(").unwrap_err();
        assert!(err.to_string().contains("label \"job\""), "{err}");
    }

    /// Random patterns over a small grammar: literals, classes, `.`, `.*`,
    /// `.+`, groups, alternations, repetitions, case folding.
    fn arb_pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("ab".to_string()),
            Just("fo".to_string()),
            Just(String::new()),
            Just("[ab]".to_string()),
            Just(".".to_string()),
            Just(".*".to_string()),
            Just(".+".to_string()),
            Just("\\n".to_string()),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}{b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}|{b}")),
                inner.clone().prop_map(|a| format!("({a})")),
                inner.clone().prop_map(|a| format!("(?:{a})?")),
                inner.clone().prop_map(|a| format!("(?:{a})+")),
                inner.clone().prop_map(|a| format!("(?i:{a})")),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The shape never claims more than the regex: literal shapes match
        /// exactly the same strings, `.+` the non-empty ones, and a general
        /// shape's prefix starts every match.
        #[test]
        fn regex_shape_agrees_with_the_regex(
            pattern in arb_pattern(),
            inputs in proptest::collection::vec("[abfoAB\n]{0,6}", 1..24),
        ) {
            let m = Matcher::new(MatchOp::RegexMatch, "l", pattern.as_str()).unwrap();
            let shape = m.regex_shape().cloned().unwrap();
            for s in &inputs {
                let want = m.matches(s);
                match &shape {
                    RegexShape::Literals { exact, prefixes } => {
                        let got = exact.iter().any(|e| e == s)
                            || prefixes.iter().any(|p| s.starts_with(p.as_str()));
                        proptest::prop_assert_eq!(got, want, "{:?} on {:?}: {:?}", pattern, s, shape);
                    }
                    RegexShape::NonEmpty => proptest::prop_assert_eq!(!s.is_empty(), want),
                    RegexShape::General { prefix } => {
                        proptest::prop_assert!(!want || s.starts_with(prefix.as_str()),
                            "{:?} on {:?}: {:?}", pattern, s, shape);
                    }
                }
            }
        }
    }
}
