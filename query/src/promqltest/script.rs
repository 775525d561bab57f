//! Parsing and running one promqltest script.

use std::collections::HashMap;

use cairn_engine::{Labels, Sample};
use regex::Regex;

use super::notation::{self, NotationError, SeqValue, almost_equal, parse_duration_ms};
use super::storage::TestStorage;
use crate::ast::{AtModifier, Expr};
use crate::eval::{Engine, QueryOptions, QueryResult, Value};

/// The line patterns of the script language, compiled once.
struct Patterns {
    instant: Regex,
    range: Regex,
    expect: Regex,
    range_vector: Regex,
    context_funcs: Regex,
}

fn patterns() -> &'static Patterns {
    static P: std::sync::OnceLock<Patterns> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        // The patterns are constants: a failure here is a bug caught by every test run.
        let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("bad built-in pattern {p}: {e}"));
        Patterns {
            instant: re(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$"),
            range: re(r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$"),
            expect: re(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$"),
            range_vector: re(r"^\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$"),
            context_funcs: re(r"(start|end|range|step)\(\)"),
        }
    })
}

/// Relative tolerance of value comparisons (Prometheus's `defaultEpsilon`).
const EPSILON: f64 = 1e-6;

/// How one eval case ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    NotSupported(String),
}

/// One eval of a script: its line (1-based) and outcome.
#[derive(Debug, Clone)]
pub struct Case {
    pub line: usize,
    pub query: String,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
struct Expect {
    fail: Vec<Matcher>,
    warn: Vec<Matcher>,
    info: Vec<Matcher>,
    no_warn: bool,
    no_info: bool,
    ordered: bool,
    // Deprecated forms.
    old_fail: bool,
    old_warn: bool,
    old_info: bool,
    fail_message: Option<String>,
    fail_regexp: Option<Regex>,
}

#[derive(Debug)]
enum Matcher {
    Any,
    Msg(String),
    Re(Regex),
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Msg(m) => m == s,
            Matcher::Re(r) => r.is_match(s),
        }
    }

    fn describe(&self) -> String {
        match self {
            Matcher::Any => ".*".into(),
            Matcher::Msg(m) => format!("message {m:?}"),
            Matcher::Re(r) => format!("pattern {:?}", r.as_str()),
        }
    }
}

#[derive(Debug)]
struct Eval {
    line: usize,
    expr: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    expect: Expect,
    expect_scalar: Option<f64>,
    expected: Vec<(Labels, Vec<SeqValue>)>,
    expected_string: Option<String>,
    range_vector: Option<(i64, i64, i64)>,
    unsupported: Option<String>,
}

impl Eval {
    fn is_fail(&self) -> bool {
        self.expect.old_fail || !self.expect.fail.is_empty()
    }
}

/// Runs a script: every `eval` becomes a [`Case`]. Script syntax errors
/// that make the rest unreadable end the run with `Err`.
pub fn run_script(
    src: &str,
    engine: &Engine,
    storage: &mut dyn TestStorage,
) -> Result<Vec<Case>, String> {
    let lines: Vec<String> = src
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let mut cases = Vec::new();
    // Series whose data could not be loaded, with the reason.
    let mut unsupported_names: Vec<(Labels, String)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if word == "clear" {
            storage.clear()?;
            unsupported_names.clear();
            i += 1;
        } else if word.starts_with("load") {
            i = load(&lines, i, storage, &mut unsupported_names)?;
        } else if word.starts_with("eval") {
            let (next, ev) = parse_eval(&lines, i)?;
            i = next;
            let outcome = run_eval(&ev, engine, storage, &unsupported_names);
            cases.push(Case {
                line: ev.line,
                query: ev.expr.clone(),
                outcome,
            });
        } else {
            return Err(format!("line {}: invalid command {l:?}", i + 1));
        }
    }
    Ok(cases)
}

fn load(
    lines: &[String],
    mut i: usize,
    storage: &mut dyn TestStorage,
    unsupported: &mut Vec<(Labels, String)>,
) -> Result<usize, String> {
    let head: Vec<&str> = lines[i].split_whitespace().collect();
    let with_nhcb = head[0] == "load_with_nhcb";
    let gap = head
        .get(1)
        .ok_or_else(|| format!("line {}: load without an interval", i + 1))
        .and_then(|s| parse_duration_ms(s).map_err(|e| format!("line {}: {e}", i + 1)))?;
    let mut batch = Vec::new();
    i += 1;
    while i < lines.len() && !lines[i].is_empty() {
        let line = &lines[i];
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some(series) = first.strip_suffix("@st") {
            // Start timestamps (an experimental feature): not stored.
            if let Ok((labels, _)) = notation::parse_labels(series) {
                unsupported.push((labels, "not supported: start timestamps".into()));
            }
            i += 1;
            continue;
        }
        match notation::parse_series_desc(line) {
            Ok(d) => {
                let mut samples = Vec::with_capacity(d.values.len());
                for (k, v) in d.values.iter().enumerate() {
                    if let Some(v) = v {
                        samples.push(Sample::new(k as i64 * gap, *v));
                    }
                }
                if with_nhcb {
                    // The converted native histogram would be stored under
                    // the base name, without `le`.
                    if let Some(name) = d.labels.metric_name() {
                        let base = name
                            .strip_suffix("_bucket")
                            .or_else(|| name.strip_suffix("_count"))
                            .or_else(|| name.strip_suffix("_sum"))
                            .unwrap_or(name);
                        let mut b = d.labels.builder();
                        b.set("__name__", base.to_string());
                        b.del("le");
                        unsupported.push((
                            b.build(),
                            "not supported: native histogram (load_with_nhcb)".into(),
                        ));
                    }
                }
                // A series given twice in one load: the later line wins.
                match batch.iter_mut().find(|(l, _)| *l == d.labels) {
                    Some(slot) => slot.1 = samples,
                    None => batch.push((d.labels, samples)),
                }
            }
            Err(NotationError::NativeHistogram) => {
                // Load what we can; evals touching this metric are not supported.
                if let Ok((labels, _)) = notation::parse_labels(line) {
                    unsupported.push((labels, "not supported: native histogram".into()));
                }
            }
            Err(e) => return Err(format!("line {}: {e}", i + 1)),
        }
        i += 1;
    }
    storage.load(batch)?;
    Ok(i)
}

fn parse_eval(lines: &[String], i: usize) -> Result<(usize, Eval), String> {
    let l = &lines[i];
    let re_instant = &patterns().instant;
    let re_range = &patterns().range;
    let bad = |m: String| format!("line {}: {m}", i + 1);
    let dur = |s: &str| parse_duration_ms(s).map_err(|e| bad(e.to_string()));
    let (modifier, expr, range, at) = if let Some(c) = re_instant.captures(l) {
        let at = match c.get(2) {
            Some(m) => dur(m.as_str())?,
            None => 0,
        };
        (
            c.get(1).map(|m| m.as_str().to_string()),
            c[3].to_string(),
            None,
            at,
        )
    } else if let Some(c) = re_range.captures(l) {
        let (from, to, step) = (dur(&c[2])?, dur(&c[3])?, dur(&c[4])?);
        if to < from {
            return Err(bad("end timestamp is before start timestamp".into()));
        }
        (
            c.get(1).map(|m| m.as_str().to_string()),
            c[5].to_string(),
            Some((from, to, step)),
            from,
        )
    } else {
        return Err(bad(format!("invalid evaluation command {l:?}")));
    };
    let mut ev = Eval {
        line: i + 1,
        expr,
        range,
        at,
        expect: Expect::default(),
        expect_scalar: None,
        expected: Vec::new(),
        expected_string: None,
        range_vector: None,
        unsupported: None,
    };
    match modifier.as_deref() {
        Some("fail") => ev.expect.old_fail = true,
        Some("warn") => ev.expect.old_warn = true,
        Some("info") => ev.expect.old_info = true,
        Some("ordered") => ev.expect.ordered = true,
        _ => {}
    }
    let re_expect = &patterns().expect;
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let d = &lines[j];
        j += 1;
        if ev.expect.old_fail && d.starts_with("expected_fail_message") {
            ev.expect.fail_message = Some(d["expected_fail_message".len()..].trim().to_string());
            break;
        }
        if ev.expect.old_fail && d.starts_with("expected_fail_regexp") {
            let p = d["expected_fail_regexp".len()..].trim();
            ev.expect.fail_regexp = Some(Regex::new(p).map_err(|e| bad(e.to_string()))?);
            break;
        }
        if let Some(rest) = d.strip_prefix("expect range vector") {
            let c = patterns()
                .range_vector
                .captures(rest)
                .ok_or_else(|| bad(format!("invalid range vector definition {d:?}")))?;
            let (from, to, step) = (dur(&c[1])?, dur(&c[2])?, dur(&c[3])?);
            ev.range_vector = Some((from, to, step));
            ev.at = to;
            continue;
        }
        if let Some(rest) = d.strip_prefix("expect string") {
            let s = rest.trim();
            let unq = if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
                s[1..s.len() - 1].to_string()
            } else {
                notation::parse_quoted(s)
                    .map(|(v, _)| v)
                    .map_err(|_| bad("expected string literal not valid".into()))?
            };
            ev.expected_string = Some(unq);
            continue;
        }
        if d.split(' ').next() == Some("expect") {
            let c = re_expect
                .captures(d.trim())
                .ok_or_else(|| bad(format!("invalid expect statement {d:?}")))?;
            let m = match (c.get(2).map(|m| m.as_str()), c.get(3)) {
                (Some("msg"), Some(v)) => Matcher::Msg(v.as_str().trim().to_string()),
                (Some("regex"), Some(v)) => {
                    Matcher::Re(Regex::new(v.as_str().trim()).map_err(|e| bad(e.to_string()))?)
                }
                _ => Matcher::Any,
            };
            match &c[1] {
                "fail" => ev.expect.fail.push(m),
                "warn" => ev.expect.warn.push(m),
                "info" => ev.expect.info.push(m),
                "no_warn" => ev.expect.no_warn = true,
                "no_info" => ev.expect.no_info = true,
                _ => ev.expect.ordered = true,
            }
            continue;
        }
        if let Some(v) = parse_scalar(d) {
            ev.expect_scalar = Some(v);
            break;
        }
        if d.contains("{{") {
            ev.unsupported = Some("not supported: native histogram".into());
            continue;
        }
        match notation::parse_series_desc(d) {
            Ok(s) => ev.expected.push((s.labels, s.values)),
            Err(NotationError::NativeHistogram) => {
                ev.unsupported = Some("not supported: native histogram".into());
            }
            Err(e) => return Err(format!("line {}: {e}", j)),
        }
    }
    // Skip to the end of the block.
    while j < lines.len() && !lines[j].is_empty() {
        j += 1;
    }
    Ok((j, ev))
}

/// A line that is a bare number is an expected scalar.
fn parse_scalar(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.contains(char::is_whitespace) {
        return None;
    }
    if let Some(v) = parse_go_int(t) {
        return Some(v);
    }
    let lower = t.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if lower
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
        || lower == "inf"
        || lower == "nan"
        || lower == "infinity"
    {
        return notation::parse_number(t);
    }
    None
}

fn parse_go_int(t: &str) -> Option<f64> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -(v as f64) } else { v as f64 })
}

/// Names of functions whose result depends on the evaluation time even
/// with `@` set on every selector.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

/// Why a case cannot run: it expects native histograms, or one of its
/// selectors would read a series that could not be loaded.
fn uses_unsupported(ev: &Eval, expr: &Expr, skipped: &[(Labels, String)]) -> Option<String> {
    if let Some(u) = &ev.unsupported {
        return Some(u.clone());
    }
    fn walk<'e>(e: &'e Expr, out: &mut Vec<&'e [cairn_engine::Matcher]>) {
        match e {
            Expr::VectorSelector(vs) => out.push(&vs.matchers),
            Expr::MatrixSelector(ms) => out.push(&ms.vector.matchers),
            other => {
                for c in other.children() {
                    walk(c, out);
                }
            }
        }
    }
    let mut sels = Vec::new();
    walk(expr, &mut sels);
    for (labels, why) in skipped {
        for ms in &sels {
            if ms
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            {
                return Some(format!("{why} (series {labels})"));
            }
        }
    }
    None
}

fn run_eval(
    ev: &Eval,
    engine: &Engine,
    storage: &dyn TestStorage,
    unsupported: &[(Labels, String)],
) -> Outcome {
    if let Some(why) = &ev.unsupported {
        return Outcome::NotSupported(why.clone());
    }
    let expr = match crate::parser::parse(&ev.expr) {
        Ok(e) => {
            if let Some(why) = uses_unsupported(ev, &e, unsupported) {
                // An eval that must fail with a given message passes if it
                // fails with it whatever the data (count_values with an
                // invalid label name over native histograms, say);
                // otherwise the unsupported data decides.
                if ev.is_fail()
                    && expects_specific_failure(ev)
                    && run_query(ev, engine, storage, &e) == Outcome::Passed
                {
                    return Outcome::Passed;
                }
                return Outcome::NotSupported(why);
            }
            e
        }
        Err(e) => {
            let msg = e.to_string();
            let unsupported = msg.contains("not supported") || msg.contains("experimental");
            if ev.is_fail() {
                return match check_failure(ev, &msg) {
                    Ok(()) => Outcome::Passed,
                    Err(_) if unsupported => Outcome::NotSupported(msg),
                    Err(m) => Outcome::Failed(m),
                };
            }
            if msg.contains("not supported") || msg.contains("experimental") {
                return Outcome::NotSupported(msg);
            }
            return Outcome::Failed(format!("parse error: {msg}"));
        }
    };
    run_query(ev, engine, storage, &expr)
}

/// Evaluates a parsed eval and checks its result or failure.
fn run_query(ev: &Eval, engine: &Engine, storage: &dyn TestStorage, expr: &Expr) -> Outcome {
    let q = storage.querier();
    let result = match ev.range {
        Some((start, end, step)) => {
            let r = engine.range_query_expr(
                q,
                expr,
                &ev.expr,
                start,
                end,
                step,
                &QueryOptions::default(),
            );
            check(ev, r, Some((start, end, step)))
        }
        None => run_instant(ev, engine, storage, expr),
    };
    match result {
        Ok(()) => Outcome::Passed,
        Err(m) if m.contains("not supported: ") => Outcome::NotSupported(m),
        Err(m) => Outcome::Failed(m),
    }
}

fn run_instant(
    ev: &Eval,
    engine: &Engine,
    storage: &dyn TestStorage,
    expr: &Expr,
) -> Result<(), String> {
    let mut runs: Vec<(Expr, i64)> = vec![(expr.clone(), ev.at)];
    if let Some(with_at) = at_variant(expr, ev.at) {
        let t = ev.at;
        let times: Vec<i64> = if t == 0 {
            vec![-1000, 0, 1000]
        } else {
            vec![-10 * t, 0, t / 5, t, 10 * t]
        };
        for et in times {
            runs.push((with_at.clone(), et));
        }
    }
    let q = storage.querier();
    let ctx_funcs = &patterns().context_funcs;
    for (e, t) in &runs {
        let r = engine.instant_query_expr(q, e, &ev.expr, *t, &QueryOptions::default());
        let is_scalar = matches!(
            r,
            Ok(QueryResult {
                value: Value::Scalar { .. },
                ..
            })
        );
        let ok = r.is_ok();
        check(ev, r, ev.range_vector).map_err(|m| {
            if *t == ev.at {
                m
            } else {
                format!("{m} (with @ at t={t}ms)")
            }
        })?;
        if !ok
            || ev.range_vector.is_some()
            || ev.expected_string.is_some()
            || ctx_funcs.is_match(&ev.expr)
        {
            continue;
        }
        // The same query as the middle step of a range query.
        let r = engine
            .range_query_expr(
                q,
                e,
                &ev.expr,
                t - 60_000,
                t + 60_000,
                60_000,
                &QueryOptions::default(),
            )
            .map_err(|err| format!("error in range mode: {err}"))?;
        if ev.expect.ordered {
            continue;
        }
        let Value::Matrix(m) = &r.value else {
            return Err("range mode did not return a matrix".into());
        };
        check_sorted(m)?;
        let mut vec = Vec::new();
        for s in m {
            if let Some(p) = s.samples.iter().find(|p| p.t == *t) {
                vec.push(crate::eval::InstantSample {
                    labels: s.labels.clone(),
                    t: *t,
                    v: p.v,
                });
            }
        }
        let value = if is_scalar {
            Value::Scalar {
                t: *t,
                v: vec.first().map_or(f64::NAN, |s| s.v),
            }
        } else {
            Value::Vector(vec)
        };
        compare(ev, &value, None).map_err(|m| format!("{m} (range mode at t={t}ms)"))?;
    }
    Ok(())
}

/// The expression with `@ t` on every selector and subquery that has no
/// `@` yet (not inside a subquery that has one); `None` when a function
/// makes the result depend on the evaluation time.
fn at_variant(expr: &Expr, t: i64) -> Option<Expr> {
    fn unsafe_call(e: &Expr) -> bool {
        if let Expr::Call(c) = e
            && AT_UNSAFE.contains(&c.func.name)
        {
            return true;
        }
        e.children().into_iter().any(unsafe_call)
    }
    fn set(e: &mut Expr, t: i64) {
        match e {
            Expr::VectorSelector(vs) => {
                if vs.at.is_none() {
                    vs.at = Some(AtModifier::Timestamp(t));
                }
            }
            Expr::MatrixSelector(ms) => {
                if ms.vector.at.is_none() {
                    ms.vector.at = Some(AtModifier::Timestamp(t));
                }
            }
            Expr::Subquery(sq) => {
                if sq.at.is_some() {
                    return;
                }
                // The inner expression is evaluated relative to the
                // subquery's own `@` time: its selectors stay as they are.
                sq.at = Some(AtModifier::Timestamp(t));
            }
            other => {
                for c in other.children_mut() {
                    set(c, t);
                }
            }
        }
    }
    if unsafe_call(expr) {
        return None;
    }
    let mut e = expr.clone();
    set(&mut e, t);
    Some(e)
}

/// Whether a failing eval names its error (a message or a pattern), so
/// that failing with it shows the right failure, not just any.
fn expects_specific_failure(ev: &Eval) -> bool {
    ev.expect.fail_message.is_some()
        || ev.expect.fail_regexp.is_some()
        || ev.expect.fail.iter().any(|m| !matches!(m, Matcher::Any))
}

fn check_failure(ev: &Eval, msg: &str) -> Result<(), String> {
    if let Some(m) = &ev.expect.fail_message
        && m != msg
    {
        return Err(format!("expected error {m:?}, got: {msg}"));
    }
    if let Some(r) = &ev.expect.fail_regexp
        && !r.is_match(msg)
    {
        return Err(format!(
            "expected error matching {:?}, got: {msg}",
            r.as_str()
        ));
    }
    if let Some(m) = ev.expect.fail.first()
        && !m.matches(msg)
    {
        return Err(format!(
            "expected error matching {}, got: {msg}",
            m.describe()
        ));
    }
    Ok(())
}

fn check(
    ev: &Eval,
    r: crate::Result<QueryResult>,
    range: Option<(i64, i64, i64)>,
) -> Result<(), String> {
    let res = match r {
        Err(e) => {
            return if ev.is_fail() {
                check_failure(ev, &e.to_string())
            } else {
                Err(format!("error evaluating query: {e}"))
            };
        }
        Ok(r) => r,
    };
    if ev.is_fail() {
        return Err("expected an error but the query succeeded".into());
    }
    check_annotations(ev, &res)?;
    compare(ev, &res.value, range)
}

fn check_annotations(ev: &Eval, res: &QueryResult) -> Result<(), String> {
    let e = &ev.expect;
    if e.old_warn && res.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if e.old_info && res.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    for (kind, want, got) in [
        ("warn", &e.warn, &res.warnings),
        ("info", &e.info, &res.infos),
    ] {
        if want.is_empty() {
            continue;
        }
        if got.is_empty() {
            return Err(format!("expected {kind} annotations but none were found"));
        }
        for w in want {
            if !got.iter().any(|g| w.matches(g)) {
                return Err(format!(
                    "expected {kind} annotation matching {} but found: {got:?}",
                    w.describe()
                ));
            }
        }
        for g in got {
            if !want.iter().any(|w| w.matches(g)) {
                return Err(format!("unexpected {kind} annotation {g:?}"));
            }
        }
    }
    if e.no_warn && !res.warnings.is_empty() {
        return Err(format!(
            "unexpected warning annotations: {:?}",
            res.warnings
        ));
    }
    if e.no_info && !res.infos.is_empty() {
        return Err(format!("unexpected info annotations: {:?}", res.infos));
    }
    Ok(())
}

fn check_sorted(m: &[crate::eval::RangeSeries]) -> Result<(), String> {
    for w in m.windows(2) {
        if prom_cmp(&w[0].labels, &w[1].labels) == std::cmp::Ordering::Greater {
            return Err(format!(
                "matrix results should always be sorted by labels: {} before {}",
                w[0].labels, w[1].labels
            ));
        }
    }
    Ok(())
}

/// Prometheus's label-set order (name by name, then value).
fn prom_cmp(a: &Labels, b: &Labels) -> std::cmp::Ordering {
    a.cmp(b)
}

fn fmt_vals(v: &[SeqValue]) -> String {
    v.iter()
        .map(|x| x.map_or("_".to_string(), |f| f.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn compare(ev: &Eval, value: &Value, range: Option<(i64, i64, i64)>) -> Result<(), String> {
    let expected: HashMap<&Labels, (usize, &Vec<SeqValue>)> = ev
        .expected
        .iter()
        .enumerate()
        .map(|(i, (l, v))| (l, (i + 1, v)))
        .collect();
    match value {
        Value::Matrix(m) => {
            if ev.expect.ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if let Some(s) = ev.expect_scalar {
                return Err(format!("expected scalar {s}, but got a matrix"));
            }
            check_sorted(m)?;
            let (start, end, step) = range.unwrap_or((ev.at, ev.at, 1));
            let mut seen = 0;
            for s in m {
                let Some((_, vals)) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has {:?}",
                        s.labels, s.samples
                    ));
                };
                seen += 1;
                let mut want = Vec::new();
                for (i, v) in vals.iter().enumerate() {
                    let t = start + i as i64 * step;
                    if t > end {
                        return Err(format!(
                            "expected {} points for {}, but query time range cannot return this many points",
                            vals.len(),
                            s.labels
                        ));
                    }
                    if let Some(v) = v {
                        want.push((t, *v));
                    }
                }
                if want.len() != s.samples.len() {
                    return Err(format!(
                        "expected {} points for {}, got {}: {:?}",
                        want.len(),
                        s.labels,
                        s.samples.len(),
                        s.samples.iter().map(|p| (p.t, p.v)).collect::<Vec<_>>()
                    ));
                }
                for ((t, v), p) in want.iter().zip(&s.samples) {
                    if *t != p.t {
                        return Err(format!(
                            "expected a point at t={t} for {}, got t={}",
                            s.labels, p.t
                        ));
                    }
                    if !almost_equal(p.v, *v, EPSILON) {
                        return Err(format!(
                            "expected {v} at t={t} for {}, got {}",
                            s.labels, p.v
                        ));
                    }
                }
            }
            if seen != expected.len() {
                let missing: Vec<String> = ev
                    .expected
                    .iter()
                    .filter(|(l, _)| !m.iter().any(|s| &s.labels == l))
                    .map(|(l, v)| format!("{l} {}", fmt_vals(v)))
                    .collect();
                return Err(format!("expected metrics not found: {missing:?}"));
            }
        }
        Value::Vector(v) => {
            if let Some(s) = ev.expect_scalar {
                return Err(format!(
                    "expected scalar {s}, but got a vector of {} samples",
                    v.len()
                ));
            }
            for (pos, s) in v.iter().enumerate() {
                let Some((want_pos, vals)) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        s.labels, s.v
                    ));
                };
                if ev.expect.ordered && *want_pos != pos + 1 {
                    return Err(format!(
                        "expected metric {} at position {want_pos} but was at {}",
                        s.labels,
                        pos + 1
                    ));
                }
                let want = vals.first().copied().flatten();
                match want {
                    Some(w) if almost_equal(w, s.v, EPSILON) => {}
                    _ => {
                        return Err(format!(
                            "expected {} for {} but got {}",
                            fmt_vals(vals),
                            s.labels,
                            s.v
                        ));
                    }
                }
            }
            if v.len() != expected.len() {
                let missing: Vec<String> = ev
                    .expected
                    .iter()
                    .filter(|(l, _)| !v.iter().any(|s| &s.labels == l))
                    .map(|(l, x)| format!("{l} {}", fmt_vals(x)))
                    .collect();
                return Err(format!("expected metrics not found: {missing:?}"));
            }
        }
        Value::Scalar { v, .. } => {
            let Some(want) = ev.expect_scalar else {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {v}"
                ));
            };
            if !almost_equal(want, *v, EPSILON) {
                return Err(format!("expected scalar {want} but got {v}"));
            }
        }
        Value::String { v, .. } => {
            if ev.expected_string.as_deref() != Some(v.as_str()) {
                return Err(format!(
                    "expected string {:?} but got {v:?}",
                    ev.expected_string
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_lines() {
        assert_eq!(parse_scalar("3"), Some(3.0));
        assert_eq!(parse_scalar("-0.5"), Some(-0.5));
        assert_eq!(parse_scalar("0x10"), Some(16.0));
        assert_eq!(parse_scalar("NaN").map(f64::is_nan), Some(true));
        assert_eq!(parse_scalar("metric"), None);
        assert_eq!(parse_scalar("{} 3"), None);
    }
}
