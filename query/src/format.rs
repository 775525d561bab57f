//! Printing an [`Expr`] back as PromQL.
//!
//! `Display` gives the canonical one-line form that Prometheus's `String()`
//! gives (sorted matchers, normalised durations, `on (...)` with a space);
//! [`prettify`] gives the indented multi-line form of
//! `/api/v1/format_query`, splitting any node whose one-line form is longer
//! than 100 bytes. Both re-parse to the same tree: `parse(&e.to_string())
//! == e`.

use std::fmt::{self, Write};

use cairn_engine::Matcher;
use cairn_engine::labels::METRIC_NAME;

use crate::ast::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, MatrixSelector, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};
use crate::parser::go_quote;

/// Lines longer than this are split by [`prettify`].
pub const MAX_LINE_BYTES: usize = 100;

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self)
    }
}

impl fmt::Display for VectorSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_selector(f, self, true)
    }
}

/// A float as Prometheus prints it: shortest round-trip digits, no
/// exponent, `+Inf`, `-Inf`, `NaN` (Go's `strconv.FormatFloat(v, 'f', -1,
/// 64)`).
pub fn format_float(v: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, v);
    out
}

/// Appends `v` as [`format_float`] prints it, without a string of its own
/// (a range query's response holds a value per point).
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Ryu's shortest round-tripping digits (the digits Go prints),
        // laid out without an exponent.
        let mut buf = ryu::Buffer::new();
        write_fixed(out, buf.format_finite(v));
    }
}

/// Writes Ryu's output (`"12.5"`, `"1.0"`, `"1e21"`, `"1.5e-7"`) in
/// positional notation with no trailing `.0`: `12.5`, `1`,
/// `1000000000000000000000`, `0.00000015`.
fn write_fixed(out: &mut String, s: &str) {
    let s = match s.strip_prefix('-') {
        Some(rest) => {
            out.push('-');
            rest
        }
        None => s,
    };
    let Some((mantissa, exp)) = s.split_once('e') else {
        out.push_str(s.strip_suffix(".0").unwrap_or(s));
        return;
    };
    // Ryu writes the exponent as an optional '-' and digits.
    let exp: i64 = exp.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = int.len() + frac.len();
    // Digits before the decimal point.
    let point = int.len() as i64 + exp;
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(int);
        out.push_str(frac);
    } else if point as usize >= digits {
        out.push_str(int);
        out.push_str(frac);
        out.extend(std::iter::repeat_n('0', point as usize - digits));
    } else {
        let in_frac = point as usize - int.len();
        out.push_str(int);
        out.push_str(&frac[..in_frac]);
        out.push('.');
        out.push_str(&frac[in_frac..]);
    }
}

/// A duration in Prometheus's notation (`1h30m`, `500ms`, `0s`); years
/// and weeks only when they divide the duration exactly.
pub fn format_duration(ms: i64) -> String {
    let mut out = String::new();
    write_duration(&mut out, ms).unwrap_or_default();
    out
}

fn write_duration(w: &mut impl Write, ms: i64) -> fmt::Result {
    if ms == 0 {
        return w.write_str("0s");
    }
    let mut rest = ms.unsigned_abs();
    if ms < 0 {
        w.write_char('-')?;
    }
    const UNITS: [(&str, u64, bool); 7] = [
        ("y", 365 * 86_400_000, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ];
    for (unit, mult, exact) in UNITS {
        if exact && !rest.is_multiple_of(mult) {
            continue;
        }
        let v = rest / mult;
        if v > 0 {
            write!(w, "{v}{unit}")?;
            rest -= v * mult;
        }
    }
    Ok(())
}

/// Whether `name` can be written without quotes (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn is_legacy_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn write_label_name(w: &mut impl Write, name: &str) -> fmt::Result {
    if is_legacy_label_name(name) {
        w.write_str(name)
    } else {
        w.write_str(&go_quote(name))
    }
}

fn write_labels(w: &mut impl Write, labels: &[String]) -> fmt::Result {
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            w.write_str(", ")?;
        }
        write_label_name(w, l)?;
    }
    Ok(())
}

fn matcher_string(m: &Matcher) -> String {
    let mut s = String::new();
    let _ = write_label_name(&mut s, &m.name);
    s.push_str(m.op.as_str());
    s.push_str(&go_quote(&m.value));
    s
}

fn write_at(w: &mut impl Write, at: Option<AtModifier>) -> fmt::Result {
    match at {
        None => Ok(()),
        Some(AtModifier::Timestamp(ms)) => write!(w, " @ {:.3}", ms as f64 / 1000.0),
        Some(AtModifier::Start) => w.write_str(" @ start()"),
        Some(AtModifier::End) => w.write_str(" @ end()"),
    }
}

fn write_offset(w: &mut impl Write, offset_ms: i64) -> fmt::Result {
    if offset_ms != 0 {
        w.write_str(" offset ")?;
        write_duration(w, offset_ms)?;
    }
    Ok(())
}

fn write_selector(w: &mut impl Write, vs: &VectorSelector, modifiers: bool) -> fmt::Result {
    let name = vs.name.as_deref();
    if let Some(name) = name {
        w.write_str(name)?;
    }
    let mut shown: Vec<String> = vs
        .matchers
        .iter()
        .filter(|m| {
            !(name.is_some_and(|n| !n.is_empty() && m.value == n)
                && m.name == METRIC_NAME
                && m.op == cairn_engine::MatchOp::Equal)
        })
        .map(matcher_string)
        .collect();
    if !shown.is_empty() {
        shown.sort();
        w.write_char('{')?;
        w.write_str(&shown.join(","))?;
        w.write_char('}')?;
    }
    if modifiers {
        write_at(w, vs.at)?;
        write_offset(w, vs.offset_ms)?;
    }
    Ok(())
}

fn write_matrix(w: &mut impl Write, ms: &MatrixSelector) -> fmt::Result {
    write_selector(w, &ms.vector, false)?;
    w.write_char('[')?;
    write_duration(w, ms.range_ms)?;
    w.write_char(']')?;
    write_at(w, ms.vector.at)?;
    write_offset(w, ms.vector.offset_ms)
}

fn write_subquery_suffix(w: &mut impl Write, sq: &SubqueryExpr) -> fmt::Result {
    w.write_char('[')?;
    write_duration(w, sq.range_ms)?;
    w.write_char(':')?;
    if let Some(step) = sq.step_ms {
        write_duration(w, step)?;
    }
    w.write_char(']')?;
    write_at(w, sq.at)?;
    write_offset(w, sq.offset_ms)
}

fn write_binary_modifiers(w: &mut impl Write, b: &BinaryExpr) -> fmt::Result {
    if b.return_bool {
        w.write_str(" bool")?;
    }
    if let Some(vm) = &b.matching {
        let grouped = matches!(
            vm.card,
            VectorMatchCardinality::ManyToOne | VectorMatchCardinality::OneToMany
        );
        if !vm.labels.is_empty() || vm.on || grouped {
            w.write_str(if vm.on { " on (" } else { " ignoring (" })?;
            write_labels(w, &vm.labels)?;
            w.write_char(')')?;
        }
        if grouped {
            w.write_str(if vm.card == VectorMatchCardinality::ManyToOne {
                " group_left ("
            } else {
                " group_right ("
            })?;
            write_labels(w, &vm.include)?;
            w.write_char(')')?;
        }
    }
    Ok(())
}

/// `sum by (a) ` / `sum without (a) ` / `sum` (Prometheus's `ShortString`).
fn write_aggregate_head(w: &mut impl Write, a: &AggregateExpr) -> fmt::Result {
    w.write_str(a.op.as_str())?;
    if a.without {
        w.write_str(" without (")?;
        write_labels(w, &a.grouping)?;
        w.write_str(") ")?;
    } else if !a.grouping.is_empty() {
        w.write_str(" by (")?;
        write_labels(w, &a.grouping)?;
        w.write_str(") ")?;
    }
    Ok(())
}

fn write_expr(w: &mut impl Write, e: &Expr) -> fmt::Result {
    match e {
        Expr::Number(n) => w.write_str(&format_float(n.value)),
        Expr::String(s) => match &s.not_utf8 {
            Some(quoted) => w.write_str(quoted),
            None => w.write_str(&go_quote(&s.value)),
        },
        Expr::VectorSelector(vs) => write_selector(w, vs, true),
        Expr::MatrixSelector(ms) => write_matrix(w, ms),
        Expr::Subquery(sq) => {
            write_expr(w, &sq.expr)?;
            write_subquery_suffix(w, sq)
        }
        Expr::Paren(p) => {
            w.write_char('(')?;
            write_expr(w, &p.expr)?;
            w.write_char(')')
        }
        Expr::Unary(u) => {
            w.write_char('-')?;
            write_expr(w, &u.expr)
        }
        Expr::Binary(b) => {
            write_expr(w, &b.lhs)?;
            w.write_char(' ')?;
            w.write_str(b.op.as_str())?;
            write_binary_modifiers(w, b)?;
            w.write_char(' ')?;
            write_expr(w, &b.rhs)
        }
        Expr::Aggregate(a) => {
            write_aggregate_head(w, a)?;
            w.write_char('(')?;
            if let Some(p) = &a.param {
                write_expr(w, p)?;
                w.write_str(", ")?;
            }
            write_expr(w, &a.expr)?;
            w.write_char(')')
        }
        Expr::Call(c) => {
            w.write_str(c.func.name)?;
            w.write_char('(')?;
            for (i, arg) in c.args.iter().enumerate() {
                if i > 0 {
                    w.write_str(", ")?;
                }
                write_expr(w, arg)?;
            }
            w.write_char(')')
        }
    }
}

/// The multi-line, indented form of `/api/v1/format_query`.
pub fn prettify(e: &Expr) -> String {
    let mut out = String::new();
    pretty(&mut out, e, 0);
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn pretty(out: &mut String, e: &Expr, level: usize) {
    let one_line = e.to_string();
    let split = one_line.len() > MAX_LINE_BYTES;
    match e {
        Expr::Aggregate(a) if split => {
            indent(out, level);
            let _ = write_aggregate_head(out, a);
            out.push_str("(\n");
            if let Some(p) = &a.param {
                pretty(out, p, level + 1);
                out.push_str(",\n");
            }
            pretty(out, &a.expr, level + 1);
            out.push('\n');
            indent(out, level);
            out.push(')');
        }
        Expr::Binary(b) if split => {
            pretty(out, &b.lhs, level + 1);
            out.push('\n');
            indent(out, level);
            out.push_str(b.op.as_str());
            let _ = write_binary_modifiers(out, b);
            out.push('\n');
            pretty(out, &b.rhs, level + 1);
        }
        Expr::Call(c) if split => {
            indent(out, level);
            out.push_str(c.func.name);
            out.push_str("(\n");
            for (i, arg) in c.args.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                pretty(out, arg, level + 1);
            }
            out.push('\n');
            indent(out, level);
            out.push(')');
        }
        Expr::Paren(p) if split => {
            indent(out, level);
            out.push_str("(\n");
            pretty(out, &p.expr, level + 1);
            out.push('\n');
            indent(out, level);
            out.push(')');
        }
        Expr::Subquery(sq) => {
            // Prometheus does not indent an unsplit subquery.
            if split {
                pretty(out, &sq.expr, level);
                let _ = write_subquery_suffix(out, sq);
            } else {
                out.push_str(&one_line);
            }
        }
        Expr::Unary(u) => {
            let mut child = String::new();
            pretty(&mut child, &u.expr, level);
            indent(out, level);
            out.push('-');
            out.push_str(child.trim());
        }
        _ => {
            indent(out, level);
            out.push_str(&one_line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_prometheus() {
        let cases = [
            (0, "0s"),
            (500, "500ms"),
            (90_000, "1m30s"),
            (5_400_000, "1h30m"),
            (86_400_000 * 14, "2w"),
            (86_400_000 * 15, "15d"),
            (365 * 86_400_000, "1y"),
            (-300_000, "-5m"),
            (1_500, "1s500ms"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(format_float(12.34e6), "12340000");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(0.1), "0.1");
    }
}
