//! OTLP metric and attribute names to Prometheus metric and label names,
//! following Prometheus's OTLP receiver (its `otlptranslator` rules) so that
//! the same dashboards work whichever way the data arrives.
//!
//! The rules, for the default strategy (`UnderscoreEscapingWithSuffixes`):
//! - the OTel name is cut into tokens at every character outside
//!   `[a-zA-Z0-9:]` (so `.`, `-`, `/` and `_` all separate, and runs of
//!   them collapse), and the tokens are joined with `_`;
//! - the unit becomes a suffix token (`s` -> `seconds`, `By` -> `bytes`,
//!   `By/s` -> `bytes` `per_second`, `{request}` -> nothing, `1` -> nothing)
//!   unless the name already has that token;
//! - a monotonic counter loses every `total` token and gets `total` last;
//!   a gauge of unit `1` likewise gets `ratio` last;
//! - a name starting with a digit gets a `_` prefix; a name of only
//!   underscores (or empty) is an error.
//!
//! Labels: characters outside `[a-zA-Z0-9]` become `_` (runs collapse to
//! one, `__x__` keeps its underscores), a leading digit gets `key_`, a single
//! leading `_` gets `key`. With UTF-8 allowed, names pass through unchanged
//! (a name of only underscores is still an error).

use serde::{Deserialize, Serialize};

/// How OTLP names become Prometheus names (Prometheus's
/// `otlp.translation_strategy`, same spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TranslationStrategy {
    /// Escape to the legacy character set and add unit and type suffixes.
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Escape to the legacy character set, no suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// Keep UTF-8 names (dots and all) but add suffixes.
    #[serde(rename = "NoUTF8EscapingWithSuffixes")]
    NoUtf8EscapingWithSuffixes,
    /// Names pass through unchanged.
    NoTranslation,
}

impl TranslationStrategy {
    /// Whether names are escaped to `[a-zA-Z0-9_:]`.
    pub fn escapes(self) -> bool {
        matches!(
            self,
            Self::UnderscoreEscapingWithSuffixes | Self::UnderscoreEscapingWithoutSuffixes
        )
    }

    /// Whether unit and type suffixes are added.
    pub fn adds_suffixes(self) -> bool {
        matches!(
            self,
            Self::UnderscoreEscapingWithSuffixes | Self::NoUtf8EscapingWithSuffixes
        )
    }
}

/// What kind of Prometheus metric an OTel metric becomes, as far as naming
/// cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Gauge,
    /// A monotonic Sum: gets `_total`.
    MonotonicCounter,
    /// A non-monotonic Sum (an up-down counter): stored as a gauge, but no
    /// `_ratio` (as Prometheus does).
    NonMonotonicCounter,
    Histogram,
    Summary,
}

/// Why a name cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

fn only_underscores(s: &str) -> bool {
    s.chars().all(|c| c == '_')
}

/// Prometheus names of the unit's main part: UCUM codes OTel uses.
fn main_unit_name(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

/// Prometheus names of the unit's "per" part (singular).
fn per_unit_name(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The unit's main and "per" suffixes, before escaping: `By/s` ->
/// (`bytes`, `per_second`). Annotations in braces (`{request}`) yield
/// nothing; unknown units are kept as written.
pub fn unit_suffixes(unit: &str) -> (String, String) {
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit, None),
    };
    let main = main.trim();
    let main_suffix = if main.is_empty() || main.contains(['{', '}']) {
        String::new()
    } else {
        main_unit_name(main).map_or_else(|| main.to_string(), str::to_string)
    };
    let per_suffix = match per.map(str::trim) {
        Some(p) if !p.is_empty() && !p.contains(['{', '}']) => {
            format!("per_{}", per_unit_name(p).unwrap_or(p))
        }
        _ => String::new(),
    };
    (main_suffix, per_suffix)
}

/// A unit suffix escaped to metric-name characters, runs of `_` collapsed
/// and a leading `_` removed.
fn clean_unit(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if is_metric_char(c) { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    match out.strip_prefix('_') {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

/// The Prometheus metric name of an OTel metric (the base name: histogram
/// and summary series add `_bucket`, `_sum`, `_count` to it).
pub fn metric_name(
    name: &str,
    unit: &str,
    kind: NameKind,
    strategy: TranslationStrategy,
) -> Result<String, NameError> {
    let out = match (strategy.escapes(), strategy.adds_suffixes()) {
        (true, true) => escaped_with_suffixes(name, unit, kind),
        (true, false) => {
            let joined = name
                .split(|c: char| !is_metric_char(c) && c != '_')
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            prefix_digit(joined)
        }
        (false, true) => utf8_with_suffixes(name, unit, kind),
        (false, false) => name.to_string(),
    };
    if out.is_empty() {
        return Err(NameError(format!(
            "metric name {name:?} is empty after normalisation"
        )));
    }
    if only_underscores(&out) && out != name {
        return Err(NameError(format!(
            "metric name {name:?} normalises to the invalid name {out:?}"
        )));
    }
    if only_underscores(&out) {
        return Err(NameError(format!(
            "metric name {name:?} has only underscores"
        )));
    }
    Ok(out)
}

fn prefix_digit(s: String) -> String {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

fn escaped_with_suffixes(name: &str, unit: &str, kind: NameKind) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !is_metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = unit_suffixes(unit);
    let mut main = clean_unit(&main);
    let mut per = clean_unit(&per);
    if tokens.contains(&main) {
        main.clear();
    }
    if per == "per_" {
        per.clear();
    } else {
        if per.ends_with('_') {
            per.pop();
        }
        if tokens.contains(&per) {
            per.clear();
        }
    }
    if !per.is_empty() && main.ends_with('_') {
        main.pop();
    }
    if !main.is_empty() {
        tokens.push(main);
    }
    if !per.is_empty() {
        tokens.push(per);
    }
    if kind == NameKind::MonotonicCounter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && kind == NameKind::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    prefix_digit(tokens.join("_"))
}

/// Removes `_suffix` (the suffix and one delimiter before it) when the
/// name is longer than that.
fn trim_suffix_and_delimiter<'a>(name: &'a str, suffix: &str) -> &'a str {
    if name.ends_with(suffix) && name.len() > suffix.len() + 1 {
        &name[..name.len() - suffix.len() - 1]
    } else {
        name
    }
}

fn utf8_with_suffixes(name: &str, unit: &str, kind: NameKind) -> String {
    let ratio = unit == "1" && kind == NameKind::Gauge;
    let total = kind == NameKind::MonotonicCounter;
    let mut base = name;
    if ratio {
        base = trim_suffix_and_delimiter(base, "ratio");
    }
    if total {
        base = trim_suffix_and_delimiter(base, "total");
    }
    let (main, per) = unit_suffixes(unit);
    if !per.is_empty() {
        base = trim_suffix_and_delimiter(base, &per);
    }
    let mut out = base.to_string();
    if !main.is_empty() && !out.ends_with(&main) {
        out.push('_');
        out.push_str(&main);
    }
    if !per.is_empty() {
        out.push('_');
        out.push_str(&per);
    }
    if total {
        out.push_str("_total");
    }
    if ratio {
        out.push_str("_ratio");
    }
    out
}

/// The Prometheus label name of an OTel attribute key.
pub fn label_name(key: &str, utf8_allowed: bool) -> Result<String, NameError> {
    if key.is_empty() {
        return Err(NameError("attribute key is empty".into()));
    }
    if utf8_allowed {
        if only_underscores(key) {
            return Err(NameError(format!(
                "attribute key {key:?} has only underscores"
            )));
        }
        return Ok(key.to_string());
    }
    let reserved = key.len() >= 4 && key.starts_with("__") && key.ends_with("__");
    let inner = if reserved {
        &key[2..key.len() - 2]
    } else {
        key
    };
    let mut out = String::with_capacity(key.len() + 4);
    if reserved {
        out.push_str("__");
    }
    let mut prev_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_underscore = false;
        } else if !prev_underscore {
            out.push('_');
            prev_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    if only_underscores(&out) {
        return Err(NameError(format!(
            "attribute key {key:?} normalises to the invalid label name {out:?}"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use NameKind::*;
    use TranslationStrategy::*;

    fn check(name: &str, unit: &str, kind: NameKind, strategy: TranslationStrategy, want: &str) {
        let got = metric_name(name, unit, kind, strategy);
        assert_eq!(
            got.as_deref(),
            Ok(want),
            "{name:?} unit {unit:?} {kind:?} {strategy:?}"
        );
    }

    #[test]
    fn metric_names_with_suffixes() {
        let s = UnderscoreEscapingWithSuffixes;
        #[rustfmt::skip]
        let table: &[(&str, &str, NameKind, &str)] = &[
            ("http.server.request.duration", "s", Histogram, "http_server_request_duration_seconds"),
            ("system.memory.usage", "By", Gauge, "system_memory_usage_bytes"),
            ("http.server.active_requests", "{request}", NonMonotonicCounter, "http_server_active_requests"),
            ("jvm.gc.collections", "{collection}", MonotonicCounter, "jvm_gc_collections_total"),
            ("cpu.utilization", "1", Gauge, "cpu_utilization_ratio"),
            ("net.io", "By/s", Gauge, "net_io_bytes_per_second"),
            // unit 1 on a counter or an up-down counter: no suffix at all
            ("requests.count", "1", MonotonicCounter, "requests_count_total"),
            ("queue.fill", "1", NonMonotonicCounter, "queue_fill"),
            // the unit token is not repeated; total and ratio move to the end
            ("latency_seconds", "s", Histogram, "latency_seconds"),
            ("requests_total_count", "", MonotonicCounter, "requests_count_total"),
            ("hit_ratio.cache", "1", Gauge, "hit_cache_ratio"),
            ("tokens.total", "{token}", MonotonicCounter, "tokens_total"),
            // invalid characters and runs of separators collapse to one _
            ("a--b//c..d__e", "", Gauge, "a_b_c_d_e"),
            ("ns:metric.x", "", Gauge, "ns:metric_x"),
            // leading digit
            ("1st.metric", "", Gauge, "_1st_metric"),
            // units: unknown kept and escaped, per units, annotations dropped
            ("foo", "ms", Gauge, "foo_milliseconds"),
            ("foo", "KiBy", Gauge, "foo_kibibytes"),
            ("foo", "Cel", Gauge, "foo_celsius"),
            ("foo", "%", Gauge, "foo_percent"),
            ("foo", "widgets", Gauge, "foo_widgets"),
            ("foo", "m/s", Gauge, "foo_meters_per_second"),
            ("foo", "{packet}/s", MonotonicCounter, "foo_per_second_total"),
            ("foo", "1/h", Gauge, "foo_per_hour"),
            ("foo", "req/mo", Gauge, "foo_req_per_month"),
            ("foo", "By/{x}", Gauge, "foo_bytes"),
            ("foo", "kg.m", Gauge, "foo_kg_m"),
            ("bytes.sent", "By", MonotonicCounter, "bytes_sent_total"),
        ];
        for (name, unit, kind, want) in table {
            check(name, unit, *kind, s, want);
        }
    }

    #[test]
    fn metric_names_in_other_strategies() {
        #[rustfmt::skip]
        let table: &[(&str, &str, NameKind, TranslationStrategy, &str)] = &[
            ("http.server.duration", "s", Histogram, UnderscoreEscapingWithoutSuffixes, "http_server_duration"),
            ("a__b.c", "By", MonotonicCounter, UnderscoreEscapingWithoutSuffixes, "a__b_c"),
            ("9lives", "", Gauge, UnderscoreEscapingWithoutSuffixes, "_9lives"),
            ("http.server.duration", "s", Histogram, NoUtf8EscapingWithSuffixes, "http.server.duration_seconds"),
            ("requests.total", "", MonotonicCounter, NoUtf8EscapingWithSuffixes, "requests_total"),
            ("cpu.util", "1", Gauge, NoUtf8EscapingWithSuffixes, "cpu.util_ratio"),
            ("io", "By/s", Gauge, NoUtf8EscapingWithSuffixes, "io_bytes_per_second"),
            ("http.server.duration", "s", Histogram, NoTranslation, "http.server.duration"),
            ("ünïcode.ok", "", Gauge, NoTranslation, "ünïcode.ok"),
        ];
        for (name, unit, kind, strategy, want) in table {
            check(name, unit, *kind, *strategy, want);
        }
    }

    #[test]
    fn invalid_metric_names_are_errors() {
        for (name, strategy) in [
            ("", UnderscoreEscapingWithSuffixes),
            ("...", UnderscoreEscapingWithSuffixes),
            ("___", UnderscoreEscapingWithoutSuffixes),
            ("", NoTranslation),
            ("__", NoTranslation),
        ] {
            assert!(
                metric_name(name, "", Gauge, strategy).is_err(),
                "{name:?} {strategy:?}"
            );
        }
    }

    #[test]
    fn label_names() {
        #[rustfmt::skip]
        let table: &[(&str, bool, Option<&str>)] = &[
            ("http.method", false, Some("http_method")),
            ("k8s.pod.name", false, Some("k8s_pod_name")),
            ("123invalid", false, Some("key_123invalid")),
            ("_private", false, Some("key_private")),
            ("__reserved__", false, Some("__reserved__")),
            ("__x", false, Some("key_x")), // runs collapse first
            ("a..b--c", false, Some("a_b_c")),
            ("ok_name", false, Some("ok_name")),
            ("émoji😀", false, Some("key_moji_")),
            ("..", false, Some("key_")), // as Prometheus: `_` then `key`
            ("", false, None),
            ("http.method", true, Some("http.method")),
            ("___", true, None),
        ];
        for (key, utf8, want) in table {
            let got = label_name(key, *utf8).ok();
            assert_eq!(got.as_deref(), *want, "{key:?} utf8={utf8}");
        }
    }

    #[test]
    fn unit_suffixes_split_main_and_per() {
        assert_eq!(unit_suffixes("By/s"), ("bytes".into(), "per_second".into()));
        assert_eq!(unit_suffixes("{req}/min"), ("".into(), "per_min".into()));
        assert_eq!(unit_suffixes("1"), ("".into(), "".into()));
        assert_eq!(unit_suffixes(" s "), ("seconds".into(), "".into()));
        assert_eq!(unit_suffixes("s/"), ("seconds".into(), "".into()));
    }
}
