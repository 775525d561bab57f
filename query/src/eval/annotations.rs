//! Warnings and infos that travel beside a query result, with Prometheus's
//! exact texts. Like Prometheus, annotations are deduplicated by their
//! message; the position (`(line:col)` of the expression they are about)
//! is appended when they are rendered against the query text.

use crate::ast::{Span, line_col};

/// Warning or info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Warning,
    Info,
}

/// Extra detail of the "needed to be fixed for monotonicity" info, merged
/// over all steps and series that needed the fix.
#[derive(Debug, Clone, Copy)]
struct Monotonicity {
    min_ts: i64,
    max_ts: i64,
    min_bucket: f64,
    max_bucket: f64,
    max_diff: f64,
    count: usize,
}

#[derive(Debug, Clone)]
struct Annotation {
    kind: Kind,
    message: String,
    span: Span,
    mono: Option<Monotonicity>,
}

/// A set of annotations collected during one evaluation.
#[derive(Debug, Clone, Default)]
pub struct Annotations {
    items: Vec<Annotation>,
}

impl Annotations {
    fn add_full(&mut self, kind: Kind, message: String, span: Span, mono: Option<Monotonicity>) {
        if let Some(a) = self
            .items
            .iter_mut()
            .find(|a| a.kind == kind && a.message == message)
        {
            a.span = span;
            if let (Some(old), Some(new)) = (&mut a.mono, mono) {
                old.min_ts = old.min_ts.min(new.min_ts);
                old.max_ts = old.max_ts.max(new.max_ts);
                old.min_bucket = old.min_bucket.min(new.min_bucket);
                old.max_bucket = old.max_bucket.max(new.max_bucket);
                old.max_diff = old.max_diff.max(new.max_diff);
                old.count += 1;
            }
            return;
        }
        self.items.push(Annotation {
            kind,
            message,
            span,
            mono,
        });
    }

    /// A warning; `message` without the `PromQL warning: ` prefix.
    pub fn warn(&mut self, message: impl Into<String>, span: Span) {
        self.add_full(Kind::Warning, message.into(), span, None);
    }

    /// An info; `message` without the `PromQL info: ` prefix.
    pub fn info(&mut self, message: impl Into<String>, span: Span) {
        self.add_full(Kind::Info, message.into(), span, None);
    }

    /// The info that `histogram_quantile` had to force its buckets into
    /// monotonic order.
    pub fn monotonicity(
        &mut self,
        metric_name: &str,
        span: Span,
        ts: i64,
        min_bucket: f64,
        max_bucket: f64,
        max_diff: f64,
    ) {
        let mut msg = "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)".to_string();
        if !metric_name.is_empty() {
            msg.push_str(&format!(" for metric name {metric_name:?}"));
        }
        self.add_full(
            Kind::Info,
            msg,
            span,
            Some(Monotonicity {
                min_ts: ts,
                max_ts: ts,
                min_bucket,
                max_bucket,
                max_diff,
                count: 0,
            }),
        );
    }

    pub fn merge(&mut self, other: Annotations) {
        for a in other.items {
            self.add_full(a.kind, a.message, a.span, a.mono);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Renders warnings and infos as the API shows them, positions taken
    /// from `query`.
    pub fn render(&self, query: &str) -> (Vec<String>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut infos = Vec::new();
        for a in &self.items {
            let (line, col) = line_col(query, a.span.start as usize);
            let prefix = match a.kind {
                Kind::Warning => "PromQL warning: ",
                Kind::Info => "PromQL info: ",
            };
            let text = match a.mono {
                Some(m) => format!(
                    "{prefix}{}, from buckets {} to {}, with a max diff of {}, over {} samples from {} to {} ({line}:{col})",
                    a.message,
                    go_g(m.min_bucket),
                    go_g(m.max_bucket),
                    go_g_prec2(m.max_diff),
                    m.count + 1,
                    rfc3339(m.min_ts),
                    rfc3339(m.max_ts),
                ),
                None => format!("{prefix}{} ({line}:{col})", a.message),
            };
            match a.kind {
                Kind::Warning => warnings.push(text),
                Kind::Info => infos.push(text),
            }
        }
        (warnings, infos)
    }
}

fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let y = crate::eval::functions::time::calendar("year", secs as f64).unwrap_or(0.0);
    let m = crate::eval::functions::time::calendar("month", secs as f64).unwrap_or(0.0);
    let d = crate::eval::functions::time::calendar("day_of_month", secs as f64).unwrap_or(0.0);
    let _ = days;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        y as i64,
        m as i64,
        d as i64,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Go's `%g` (shortest representation, exponent form for exponents below
/// -4 or from 6 up), as Prometheus prints numbers in messages.
pub fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

/// Go's `%.2g`.
fn go_g_prec2(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return go_g(v);
    }
    let e = format!("{v:.1e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mant = mant.trim_end_matches('0').trim_end_matches('.');
    if !(-4..2).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let r: f64 = format!("{mant}e{exp}").parse().unwrap_or(v);
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_number_format() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(go_g(*v), *want);
        }
        assert_eq!(go_g_prec2(0.5), "0.5");
        assert_eq!(go_g_prec2(1234.0), "1.2e+03");
    }

    #[test]
    fn dedup_and_render() {
        let mut a = Annotations::default();
        a.warn("x", Span::new(4, 5));
        a.warn("x", Span::new(4, 5));
        a.info("y", Span::new(0, 1));
        let (w, i) = a.render("sum(metric)");
        assert_eq!(w, vec!["PromQL warning: x (1:5)"]);
        assert_eq!(i, vec!["PromQL info: y (1:1)"]);
    }
}
