//! Rule files in Prometheus's format: parsing and validation.
//!
//! A file is YAML, `groups:` of `name`, `interval`, `limit`,
//! `query_offset`, `labels` and `rules:`, each rule a `record` or an `alert`
//! with `expr`, `for`, `keep_firing_for`, `labels` and `annotations`
//! (`../shared/rules/RULE_FILE_FORMAT.md`). [`parse_rule_file`] returns the
//! validated groups or every problem found, each a [`RuleFileError`] naming
//! the file, the line where the group or rule starts, the group, the rule's
//! 1-based index and its name -- the shape of promtool's messages:
//! `rules.yml:4: group "slo", rule 2, "job:errors:rate5m": invalid field 'for' in recording rule`.
//!
//! The YAML is read into a generic value first so that anchors, aliases and
//! `<<` merge keys work as they do for Prometheus (yaml.v3), then into
//! strict structs (`deny_unknown_fields`). Lines of groups and rules come
//! from [`locate_items`], a scan of the block-style text, because the YAML
//! library reports positions only for syntax errors.
//!
//! Names are checked under Prometheus 3's UTF-8 scheme by default
//! ([`NameValidation::Utf8`]); [`NameValidation::Legacy`] is the
//! `[a-zA-Z_][a-zA-Z0-9_]*` scheme of Prometheus 2.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_query::ast::Expr;
use serde::Deserialize;

use crate::config::PromDuration;
use crate::rules::template;

/// Which label and metric names are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NameValidation {
    /// Any non-empty UTF-8 name (Prometheus 3's default).
    #[default]
    Utf8,
    /// `[a-zA-Z_][a-zA-Z0-9_]*` labels, `[a-zA-Z_:][a-zA-Z0-9_:]*` metrics.
    Legacy,
}

/// A validated rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    pub path: PathBuf,
    pub groups: Vec<RuleGroup>,
}

/// One group: rules evaluated in order at one interval.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    pub name: String,
    /// `None`: the global `evaluation_interval`.
    pub interval: Option<Duration>,
    /// Most series (recording) or alerts (alerting) one rule may produce;
    /// 0 is no limit.
    pub limit: u64,
    /// `None`: the global `rule_query_offset`.
    pub query_offset: Option<Duration>,
    /// Labels added to every rule's output (a rule's own labels win).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
    /// 1-based line where the group starts, when known.
    pub line: Option<usize>,
}

/// Whether a rule records a series or raises alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// `record: <metric name>`.
    Record(String),
    /// `alert: <alert name>`.
    Alert(String),
}

/// One rule of a group.
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: RuleKind,
    /// The expression as written.
    pub expr_text: String,
    /// The parsed expression.
    pub expr: Expr,
    /// `for`: how long an alert is pending before it fires.
    pub for_: Duration,
    /// `keep_firing_for`: how long an alert keeps firing once resolved.
    pub keep_firing_for: Duration,
    /// Labels, templates for alerting rules.
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates); alerting rules only.
    pub annotations: BTreeMap<String, String>,
    /// 1-based line where the rule starts, when known.
    pub line: Option<usize>,
}

impl Rule {
    /// The `record` or `alert` name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record(n) | RuleKind::Alert(n) => n,
        }
    }
}

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFileError {
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known (YAML syntax errors).
    pub column: Option<usize>,
    /// The group's name, for problems inside a group.
    pub group: Option<String>,
    /// The rule's 1-based index in its group and its name, for problems
    /// inside a rule.
    pub rule: Option<(usize, String)>,
    pub message: String,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}")?,
            (Some(l), None) => write!(f, ":{l}")?,
            _ => {}
        }
        f.write_str(": ")?;
        if let Some(g) = &self.group {
            write!(f, "group {g:?}, ")?;
        }
        if let Some((i, name)) = &self.rule {
            write!(f, "rule {i}, {name:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Checks rule files as `promtool check rules` does, writing its report:
/// `Checking <file>`, then `  SUCCESS: <n> rules found` on `out`, or
/// `  FAILED:` and one line per problem on `err`. Returns whether every
/// file is valid (promtool's exit status 0, else 1).
pub fn check_files(
    paths: &[PathBuf],
    names: NameValidation,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> std::io::Result<bool> {
    let mut ok = true;
    for path in paths {
        writeln!(out, "Checking {}", path.display())?;
        match load_rule_file(path, names) {
            Ok(f) => {
                let n: usize = f.groups.iter().map(|g| g.rules.len()).sum();
                writeln!(out, "  SUCCESS: {n} rules found")?;
            }
            Err(problems) => {
                ok = false;
                writeln!(err, "  FAILED:")?;
                for p in problems {
                    writeln!(err, "{p}")?;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(ok)
}

/// Reads and validates a rule file.
pub fn load_rule_file(path: &Path, names: NameValidation) -> Result<RuleFile, Vec<RuleFileError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleFileError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            group: None,
            rule: None,
            message: format!("cannot read rule file: {e}"),
        }]
    })?;
    parse_rule_file(path, &text, names)
}

// --- the YAML shapes -----------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFile {
    groups: Vec<RawGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawGroup {
    name: String,
    interval: Option<PromDuration>,
    limit: u64,
    query_offset: Option<PromDuration>,
    labels: BTreeMap<String, Scalar>,
    rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRule {
    record: Option<Scalar>,
    alert: Option<Scalar>,
    expr: Option<Scalar>,
    #[serde(rename = "for")]
    for_: Option<PromDuration>,
    keep_firing_for: Option<PromDuration>,
    labels: BTreeMap<String, Scalar>,
    annotations: BTreeMap<String, Scalar>,
}

/// A YAML scalar read as its text, as Go's yaml.v3 does for a string field
/// (`expr: 1` is the expression `1`, `severity: 2` the label value `2`).
#[derive(Debug, Default, Clone)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

// --- parsing and validation ----------------------------------------------

/// Parses and validates the text of a rule file. `path` is used in messages.
pub fn parse_rule_file(
    path: &Path,
    text: &str,
    names: NameValidation,
) -> Result<RuleFile, Vec<RuleFileError>> {
    let err = |line: Option<usize>, column: Option<usize>, message: String| RuleFileError {
        path: path.to_path_buf(),
        line,
        column,
        group: None,
        rule: None,
        message,
    };
    let mut value: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let loc = e.location();
            return Err(vec![err(
                loc.as_ref().map(|l| l.line()),
                loc.as_ref().map(|l| l.column()),
                format!("yaml: {e}"),
            )]);
        }
    };
    if value.is_null() {
        // An empty file has no groups, as in Prometheus.
        return Ok(RuleFile {
            path: path.to_path_buf(),
            groups: Vec::new(),
        });
    }
    if let Err(e) = value.apply_merge() {
        return Err(vec![err(None, None, format!("yaml: {e}"))]);
    }
    let lines = locate_items(text);
    let raw: RawFile = match serde_path_to_error::deserialize(value) {
        Ok(r) => r,
        Err(e) => {
            let line = line_of_path(&lines, e.path());
            let message = format!("{}: {}", e.path(), e.inner());
            return Err(vec![err(line, None, message)]);
        }
    };

    let mut errors = Vec::new();
    let mut groups = Vec::with_capacity(raw.groups.len());
    let mut seen = HashSet::new();
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let gline = lines.get(gi).map(|(l, _)| *l);
        let mut gerr = |message: String| {
            errors.push(RuleFileError {
                path: path.to_path_buf(),
                line: gline,
                column: None,
                group: None,
                rule: None,
                message,
            })
        };
        if g.name.is_empty() {
            gerr("Groupname must not be empty".into());
        } else if !seen.insert(g.name.clone()) {
            gerr(format!(
                "groupname: {:?} is repeated in the same file",
                g.name
            ));
        }
        for name in g.labels.keys() {
            if let Some(m) = check_label_name(name, names) {
                gerr(format!("group {:?}: {m}", g.name));
            }
        }
        let mut rules = Vec::with_capacity(g.rules.len());
        for (ri, r) in g.rules.into_iter().enumerate() {
            let rline = lines
                .get(gi)
                .and_then(|(_, rs)| rs.get(ri))
                .copied()
                .or(gline);
            // Named as promtool names it: the alert name when both are set.
            let rname = r
                .alert
                .as_ref()
                .or(r.record.as_ref())
                .map(|s| s.0.clone())
                .unwrap_or_default();
            let mut problems = Vec::new();
            let rule = validate_rule(r, names, &mut problems);
            for message in problems {
                errors.push(RuleFileError {
                    path: path.to_path_buf(),
                    line: rline,
                    column: None,
                    group: Some(g.name.clone()),
                    rule: Some((ri + 1, rname.clone())),
                    message,
                });
            }
            if let Some(mut rule) = rule {
                rule.line = rline;
                rules.push(rule);
            }
        }
        groups.push(RuleGroup {
            name: g.name,
            interval: g.interval.map(|d| d.0),
            limit: g.limit,
            query_offset: g.query_offset.map(|d| d.0),
            labels: g.labels.into_iter().map(|(k, v)| (k, v.0)).collect(),
            rules,
            line: gline,
        });
    }
    if errors.is_empty() {
        Ok(RuleFile {
            path: path.to_path_buf(),
            groups,
        })
    } else {
        Err(errors)
    }
}

/// Checks one rule; pushes every problem, returns the rule if it has none.
fn validate_rule(r: RawRule, names: NameValidation, problems: &mut Vec<String>) -> Option<Rule> {
    let record = r.record.map(|s| s.0).filter(|s| !s.is_empty());
    let alert = r.alert.map(|s| s.0).filter(|s| !s.is_empty());
    let kind = match (record, alert) {
        (Some(_), Some(_)) => {
            problems.push("only one of 'record' and 'alert' must be set".into());
            None
        }
        (None, None) => {
            problems.push("one of 'record' or 'alert' must be set".into());
            None
        }
        (Some(rec), None) => Some(RuleKind::Record(rec)),
        (None, Some(a)) => Some(RuleKind::Alert(a)),
    };
    let expr_text = r.expr.map(|s| s.0).unwrap_or_default();
    let expr = if expr_text.is_empty() {
        problems.push("field 'expr' must be set in rule".into());
        None
    } else {
        match cairn_query::parser::parse(&expr_text) {
            Ok(e) => Some(e),
            Err(e) => {
                problems.push(format!("could not parse expression: {e}"));
                None
            }
        }
    };
    let for_ = r.for_.map(|d| d.0).unwrap_or_default();
    let keep_firing_for = r.keep_firing_for.map(|d| d.0).unwrap_or_default();
    let labels: BTreeMap<String, String> = r.labels.into_iter().map(|(k, v)| (k, v.0)).collect();
    let annotations: BTreeMap<String, String> =
        r.annotations.into_iter().map(|(k, v)| (k, v.0)).collect();
    if let Some(RuleKind::Record(name)) = &kind {
        if !annotations.is_empty() {
            problems.push("invalid field 'annotations' in recording rule".into());
        }
        if !for_.is_zero() {
            problems.push("invalid field 'for' in recording rule".into());
        }
        if !keep_firing_for.is_zero() {
            problems.push("invalid field 'keep_firing_for' in recording rule".into());
        }
        if name.contains('{') || name.contains('}') {
            problems.push(format!(
                "braces present in the recording rule name; should it be in expr?: {name}"
            ));
        } else if !valid_metric_name(name, names) {
            problems.push(format!("invalid recording rule name: {name}"));
        }
    }
    for name in labels.keys() {
        if let Some(m) = check_label_name(name, names) {
            problems.push(m);
        }
    }
    for name in annotations.keys() {
        if !valid_label_name(name, names) {
            problems.push(format!("invalid annotation name: {name}"));
        }
    }
    // Label and annotation values of alerting rules are templates: they
    // must parse (they are executed per alert at evaluation time).
    if matches!(kind, Some(RuleKind::Alert(_))) {
        for (what, map) in [("label", &labels), ("annotation", &annotations)] {
            for (k, v) in map {
                if let Err(e) = template::Template::parse(k, v) {
                    problems.push(format!("{what} {k:?}: {e}"));
                }
            }
        }
    }
    match (kind, expr) {
        (Some(kind), Some(expr)) if problems.is_empty() => Some(Rule {
            kind,
            expr_text,
            expr,
            for_,
            keep_firing_for,
            labels,
            annotations,
            line: None,
        }),
        _ => None,
    }
}

/// A message if `name` may not be a rule or group label name.
fn check_label_name(name: &str, names: NameValidation) -> Option<String> {
    if name == "__name__" || !valid_label_name(name, names) {
        Some(format!("invalid label name: {name}"))
    } else {
        None
    }
}

/// Whether `name` is a valid label name under `names`.
pub fn valid_label_name(name: &str, names: NameValidation) -> bool {
    match names {
        NameValidation::Utf8 => !name.is_empty(),
        NameValidation::Legacy => {
            let mut chars = name.chars();
            matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
                && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        }
    }
}

/// Whether `name` is a valid metric name under `names`.
pub fn valid_metric_name(name: &str, names: NameValidation) -> bool {
    match names {
        NameValidation::Utf8 => !name.is_empty(),
        NameValidation::Legacy => {
            let mut chars = name.chars();
            matches!(chars.next(), Some(c) if c == '_' || c == ':' || c.is_ascii_alphabetic())
                && chars.all(|c| c == '_' || c == ':' || c.is_ascii_alphanumeric())
        }
    }
}

// --- where groups and rules start ----------------------------------------

/// The 1-based lines where each group, and each rule of each group, start,
/// found by scanning block-style YAML (`groups:` then `- name: ...` items,
/// each with `rules:` and its `- ` items). Block scalars (`expr: |`) are
/// skipped. Flow-style files yield fewer entries; messages then go without
/// a line rather than with a wrong one.
pub fn locate_items(text: &str) -> Vec<(usize, Vec<usize>)> {
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut in_groups = false;
    let mut group_indent: Option<usize> = None;
    // Column of the current group's `rules:` key, then its items' column.
    let mut rules_key: Option<usize> = None;
    let mut rules_indent: Option<usize> = None;
    let mut block_scalar: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(col) = block_scalar {
            if indent > col {
                continue;
            }
            block_scalar = None;
        }
        // Peel `- ` sequence markers; each marks an item at its column.
        let mut col = indent;
        let mut rest = trimmed;
        let mut items = Vec::new();
        while rest == "-" || rest.starts_with("- ") {
            items.push(col);
            let after = &rest[1..];
            let inner = after.trim_start_matches(' ');
            col += 1 + after.len() - inner.len();
            rest = inner;
        }
        for item_col in items {
            if in_groups && (group_indent.is_none() || group_indent == Some(item_col)) {
                group_indent = Some(item_col);
                out.push((lineno, Vec::new()));
                rules_key = None;
                rules_indent = None;
            } else if let (Some(k), Some(last)) = (rules_key, out.last_mut())
                && item_col >= k
                && (rules_indent.is_none() || rules_indent == Some(item_col))
            {
                rules_indent = Some(item_col);
                last.1.push(lineno);
            }
        }
        let key = rest.split_once(':').map(|(k, v)| (k.trim(), v.trim()));
        if let Some((k, v)) = key {
            let v = v.split(" #").next().unwrap_or("").trim();
            if k == "groups" && col == 0 {
                in_groups = true;
            } else if k == "rules" && group_indent.is_some_and(|g| col > g) {
                rules_key = Some(col);
                rules_indent = None;
            }
            if v.starts_with('|') || v.starts_with('>') {
                block_scalar = Some(col);
            }
        }
    }
    out
}

/// The line of the group or rule a serde path like `groups[1].rules[0].x`
/// points into.
fn line_of_path(lines: &[(usize, Vec<usize>)], path: &serde_path_to_error::Path) -> Option<usize> {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let mut group = None;
    let mut rule = None;
    let mut i = 0;
    while i + 1 < segs.len() {
        if let (Segment::Map { key }, Segment::Seq { index }) = (segs[i], segs[i + 1]) {
            match key.as_str() {
                "groups" => group = Some(*index),
                "rules" => rule = Some(*index),
                _ => {}
            }
        }
        i += 1;
    }
    let (gline, rules) = lines.get(group?)?;
    match rule {
        Some(r) => rules.get(r).copied().or(Some(*gline)),
        None => Some(*gline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<RuleFile, Vec<String>> {
        parse_rule_file(Path::new("t.yml"), text, NameValidation::Utf8)
            .map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn locates_groups_and_rules() {
        let text = "\
groups:
  - name: a
    interval: 1m
    rules:
      - record: x
        expr: |
          - not an item
          rules:
      - alert: y
        expr: 1
  - name: b
    rules:
    - record: z
      expr: 2
";
        assert_eq!(locate_items(text), vec![(2, vec![5, 9]), (11, vec![13])]);
    }

    #[test]
    fn table_of_problems() {
        // (rule file, the one message expected, as displayed)
        let cases: &[(&str, &str)] = &[
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: rate(x)\n",
                "t.yml:4: group \"g\", rule 1, \"a\": could not parse expression: 1:6: parse error: expected type range vector",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: 1\n        for: 1m\n",
                "t.yml:4: group \"g\", rule 1, \"a\": invalid field 'for' in recording rule",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - expr: 1\n",
                "t.yml:4: group \"g\", rule 1, \"\": one of 'record' or 'alert' must be set",
            ),
            (
                "groups:\n  - name: g\n  - name: g\n",
                "t.yml:3: groupname: \"g\" is repeated in the same file",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: 1\n        annotation: {}\n",
                "t.yml:4: groups[0].rules[0].annotation: unknown field `annotation`",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: 1\n        annotations:\n          s: \"{{ $labels.x \"\n",
                "t.yml:4: group \"g\", rule 1, \"a\": annotation \"s\": template: s:1:",
            ),
            (
                "groups:\n  - name: g\n    interval: 1q\n",
                "t.yml:2: groups[0].interval: invalid duration",
            ),
            ("groups:\n  - name: [g\n", "t.yml:3:1: yaml: "),
        ];
        for (text, want) in cases {
            let got = check(text).expect_err(text);
            assert_eq!(got.len(), 1, "{text}: {got:?}");
            assert!(
                got[0].starts_with(want),
                "{text}:\n got {}\nwant {want}",
                got[0]
            );
        }
    }

    #[test]
    fn a_valid_file_reads_into_groups() {
        let f = check(
            "groups:\n  - name: g\n    interval: 30s\n    limit: 10\n    query_offset: 1m\n    labels:\n      team: ml\n    rules:\n      - record: job:x:sum\n        expr: sum by (job) (x)\n      - alert: High\n        expr: job:x:sum > 1\n        for: 5m\n        keep_firing_for: 1m\n        labels:\n          severity: 2\n        annotations:\n          summary: \"{{ $value | humanize }}\"\n",
        )
        .expect("valid");
        let g = &f.groups[0];
        assert_eq!(g.interval, Some(Duration::from_secs(30)));
        assert_eq!(g.query_offset, Some(Duration::from_secs(60)));
        assert_eq!(g.limit, 10);
        assert_eq!(g.labels["team"], "ml");
        assert_eq!(g.rules[0].kind, RuleKind::Record("job:x:sum".into()));
        assert_eq!(g.rules[0].line, Some(9));
        assert_eq!(g.rules[1].for_, Duration::from_secs(300));
        assert_eq!(g.rules[1].keep_firing_for, Duration::from_secs(60));
        assert_eq!(g.rules[1].labels["severity"], "2");
        assert_eq!(g.rules[1].line, Some(11));
    }

    #[test]
    fn legacy_names_reject_what_utf8_accepts() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: a\n        expr: 1\n        annotations:\n          ins-tance: x\n";
        assert!(parse_rule_file(Path::new("t"), text, NameValidation::Utf8).is_ok());
        let errs = parse_rule_file(Path::new("t"), text, NameValidation::Legacy)
            .expect_err("legacy rejects a dash");
        assert_eq!(errs[0].message, "invalid annotation name: ins-tance");
    }

    /// Every example in `../shared/rules/rulefmt/`: `*.bad.yaml` fails,
    /// the rest pass. `legacy_validation_*` files are checked under the
    /// legacy name scheme, as Prometheus's own tests check them.
    #[test]
    fn shared_rulefmt_examples_match_their_names() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/rules/rulefmt");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("shared rulefmt examples") {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_string();
            let names = if name.starts_with("legacy_validation") {
                NameValidation::Legacy
            } else {
                NameValidation::Utf8
            };
            let got = load_rule_file(&path, names);
            let want_ok = !name.ends_with(".bad.yaml");
            assert_eq!(got.is_ok(), want_ok, "{name}: {got:?}");
            n += 1;
        }
        assert!(n >= 16, "only {n} examples found");
    }
}
