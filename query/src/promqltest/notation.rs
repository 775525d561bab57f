//! The small notations of promqltest scripts: durations (`1m30s`), label
//! sets (`name{a="1"}`) and the expanding value notation (`0+10x5`, `_x3`,
//! `stale`, `Inf`, `NaN`).
//!
//! These are test-script notations, not PromQL: the runner and the rules
//! unit-test runner both read them, so they live here, public, apart from
//! the PromQL parser. The `{{...}}` native-histogram notation is recognised
//! only to be reported as not supported.

use cairn_engine::{Labels, sample::STALE_NAN_BITS};

/// Why a notation did not parse.
#[derive(Debug, Clone, PartialEq)]
pub enum NotationError {
    /// The text is malformed.
    Malformed(String),
    /// The text uses the native-histogram notation, which Cairn cannot store yet.
    NativeHistogram,
}

impl std::fmt::Display for NotationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotationError::Malformed(s) => f.write_str(s),
            NotationError::NativeHistogram => f.write_str("not supported: native histogram"),
        }
    }
}

fn malformed(s: impl Into<String>) -> NotationError {
    NotationError::Malformed(s.into())
}

/// Parses a Prometheus duration (`0`, `5m`, `1h30m`, `10s53ms`) into
/// milliseconds. Units, largest first: y w d h m s ms, each at most once.
pub fn parse_duration_ms(s: &str) -> Result<i64, NotationError> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    if bytes.is_empty() {
        return Err(malformed("empty duration"));
    }
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(malformed(format!("invalid duration {s:?}")));
        }
        let n: i64 = s[start..i]
            .parse()
            .map_err(|_| malformed(format!("invalid duration {s:?}")))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(|| malformed(format!("invalid duration {s:?}")))?;
        let mult = UNITS[next_unit + pos].1;
        next_unit += pos + 1;
        total = n
            .checked_mul(mult)
            .and_then(|x| x.checked_add(total))
            .ok_or_else(|| malformed(format!("duration {s:?} out of range")))?;
    }
    Ok(total)
}

/// Parses a float the way the scripts write them: decimal, exponent,
/// hexadecimal integers, `Inf`/`+Inf`/`-Inf`, `NaN` (any case).
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else if let Some(hex) = lower.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else {
        if body.is_empty()
            || !body
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
        {
            return None;
        }
        body.replace('_', "").parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Reads a quoted string (`"..."` with Go escapes, `'...'`, or a raw
/// backtick string) at the start of `s`; returns the value and the rest.
pub fn parse_quoted(s: &str) -> Result<(String, &str), NotationError> {
    let mut chars = s.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('"' | '\'' | '`'))) => q,
        _ => return Err(malformed(format!("expected a quoted string at {s:?}"))),
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((out, &s[i + c.len_utf8()..]));
        }
        if c == '\\' && quote != '`' {
            let (_, e) = chars
                .next()
                .ok_or_else(|| malformed("unterminated escape"))?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                '\\' | '"' | '\'' | '`' => out.push(e),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut code = String::new();
                    for _ in 0..n {
                        let (_, h) = chars
                            .next()
                            .ok_or_else(|| malformed("unterminated escape"))?;
                        code.push(h);
                    }
                    let cp = u32::from_str_radix(&code, 16)
                        .map_err(|_| malformed(format!("invalid escape \\{e}{code}")))?;
                    out.push(
                        char::from_u32(cp)
                            .ok_or_else(|| malformed(format!("invalid escape \\{e}{code}")))?,
                    );
                }
                other => return Err(malformed(format!("unknown escape sequence \\{other}"))),
            }
        } else {
            out.push(c);
        }
    }
    Err(malformed(format!("unterminated string in {s:?}")))
}

fn is_name_char(c: char, first: bool) -> bool {
    c == '_' || c == ':' || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
}

fn take_name(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(s.len(), |(i, _)| i);
    (&s[..end], &s[end..])
}

/// Parses a label set written `name{a="1", b="2"}`, `{a="1"}`, `name`, or
/// with quoted names (`{"my.metric", "a.b"="1"}`); returns it and the rest
/// of the text.
pub fn parse_labels(s: &str) -> Result<(Labels, &str), NotationError> {
    let s = s.trim_start();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let (name, mut rest) = take_name(s);
    if !name.is_empty() {
        pairs.push(("__name__".to_string(), name.to_string()));
    }
    if let Some(r) = rest.strip_prefix('{') {
        rest = r.trim_start();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (lname, r) = if rest.starts_with(['"', '\'', '`']) {
                parse_quoted(rest)?
            } else {
                let (n, r) = take_name(rest);
                if n.is_empty() {
                    return Err(malformed(format!("expected a label name at {rest:?}")));
                }
                (n.to_string(), r)
            };
            let r = r.trim_start();
            if let Some(r) = r.strip_prefix('=') {
                let (v, r) = parse_quoted(r.trim_start())?;
                pairs.push((lname, v));
                rest = r.trim_start();
            } else {
                // A lone quoted string is the metric name.
                pairs.push(("__name__".to_string(), lname));
                rest = r;
            }
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
            } else if !rest.starts_with('}') {
                return Err(malformed(format!("expected ',' or '}}' at {rest:?}")));
            }
        }
    } else if name.is_empty() {
        return Err(malformed(format!("expected a series at {s:?}")));
    }
    let labels = Labels::try_from_pairs(pairs).map_err(|e| malformed(e.to_string()))?;
    Ok((labels, rest))
}

/// One point of an expanded value sequence: a value or a gap (`_`).
pub type SeqValue = Option<f64>;

/// The stale marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

fn parse_base_value(s: &str) -> Result<(f64, &str), NotationError> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let body_start = i;
    if i < b.len() && b[i].is_ascii_alphabetic() {
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let word = &s[body_start..i];
        // `Infx3`, `NaNx2`: the repeat marker is not part of the word.
        let (word, end) = match word.find('x') {
            Some(p) if p > 0 => (&word[..p], body_start + p),
            _ => (word, i),
        };
        let v = match word.to_ascii_lowercase().as_str() {
            "stale" if body_start == 0 => stale_nan(),
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ => return Err(malformed(format!("invalid value {s:?}"))),
        };
        let v = if b[0] == b'-' { -v } else { v };
        return Ok((v, &s[end..]));
    }
    // No hexadecimal here: in `0+0x10` the `x` is the repeat marker.
    {
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_digit() || c == b'.' || c == b'_' {
                i += 1;
            } else if (c == b'e' || c == b'E') && i > body_start {
                i += 1;
                if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                    i += 1;
                }
            } else {
                break;
            }
        }
    }
    let v = parse_number(&s[..i]).ok_or_else(|| malformed(format!("invalid value {s:?}")))?;
    Ok((v, &s[i..]))
}

fn parse_count(s: &str) -> Result<u64, NotationError> {
    s.parse()
        .map_err(|_| malformed(format!("invalid repeat count {s:?}")))
}

/// Expands one item of the value notation into `out`.
pub fn expand_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), NotationError> {
    const MAX_POINTS: u64 = 1_000_000;
    if item.starts_with("{{") {
        return Err(NotationError::NativeHistogram);
    }
    if item == "_" {
        out.push(None);
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n = parse_count(n)?.min(MAX_POINTS);
        out.extend(std::iter::repeat_n(None, n as usize));
        return Ok(());
    }
    let (base, rest) = parse_base_value(item)?;
    if rest.is_empty() {
        out.push(Some(base));
        return Ok(());
    }
    let (delta, rest) = if rest.starts_with(['+', '-']) {
        parse_base_value(rest)?
    } else {
        (0.0, rest)
    };
    let n = rest
        .strip_prefix('x')
        .ok_or_else(|| malformed(format!("invalid value {item:?}")))?;
    let n = parse_count(n)?.min(MAX_POINTS);
    let mut v = base;
    for _ in 0..=n {
        out.push(Some(v));
        v += delta;
    }
    Ok(())
}

/// Expands a whole value sequence (`0+10x3 _ stale 5`).
pub fn parse_values(s: &str) -> Result<Vec<SeqValue>, NotationError> {
    if s.contains("{{") {
        return Err(NotationError::NativeHistogram);
    }
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        expand_item(item, &mut out)?;
    }
    Ok(out)
}

/// A series line: its labels and its expanded values.
#[derive(Debug, Clone)]
pub struct SeriesDesc {
    pub labels: Labels,
    pub values: Vec<SeqValue>,
}

/// Parses a line `metric{labels} values...`.
pub fn parse_series_desc(line: &str) -> Result<SeriesDesc, NotationError> {
    let (labels, rest) = parse_labels(line)?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(malformed(format!("unexpected {rest:?} after the series")));
    }
    Ok(SeriesDesc {
        labels,
        values: parse_values(rest)?,
    })
}

/// Relative float comparison of the scripts: equal when both are the stale
/// marker, both NaN, or they differ by less than `epsilon` times the sum of
/// their magnitudes (values near zero compared against the smallest normal).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    let sa = cairn_engine::is_stale_nan(a);
    let sb = cairn_engine::is_stale_nan(b);
    if sa || sb {
        return sa && sb;
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(s: &str) -> Vec<String> {
        parse_values(s)
            .unwrap()
            .into_iter()
            .map(|v| match v {
                None => "_".to_string(),
                Some(v) if cairn_engine::is_stale_nan(v) => "stale".to_string(),
                Some(v) => v.to_string(),
            })
            .collect()
    }

    #[test]
    fn expanding_notation() {
        let cases: &[(&str, &str)] = &[
            ("1 2 3", "1 2 3"),
            ("0+10x3", "0 10 20 30"),
            ("10-2x2", "10 8 6"),
            ("-1-1x2", "-1 -2 -3"),
            ("5x2", "5 5 5"),
            ("_ _x2 1", "_ _ _ 1"),
            ("stale 1e3 1e-1", "stale 1000 0.1"),
            ("Inf -Inf NaN", "inf -inf NaN"),
            ("1e2+1e1x1", "100 110"),
            ("0+0x2", "0 0 0"),
        ];
        for (input, want) in cases {
            assert_eq!(vals(input).join(" "), *want, "{input}");
        }
    }

    #[test]
    fn native_histograms_are_not_supported() {
        assert_eq!(
            parse_values("1 {{schema:1 sum:3}}").unwrap_err(),
            NotationError::NativeHistogram
        );
    }

    #[test]
    fn series_lines() {
        let d = parse_series_desc(r#"m{a="x", b='y\n'} 1 2"#).unwrap();
        assert_eq!(d.labels.to_string(), "m{a=\"x\", b=\"y\\n\"}");
        assert_eq!(d.values, vec![Some(1.0), Some(2.0)]);
        let d = parse_series_desc(r#"{__name__="m", c="3",} 7"#).unwrap();
        assert_eq!(d.labels.to_string(), "m{c=\"3\"}");
        let d = parse_series_desc(r#"{"my.metric", "a.b"="1"}"#).unwrap();
        assert_eq!(d.labels.metric_name(), Some("my.metric"));
        assert_eq!(d.labels.get("a.b"), Some("1"));
        assert!(parse_series_desc("m{a=1}").is_err());
    }

    #[test]
    fn durations() {
        for (s, ms) in [
            ("0", 0),
            ("5m", 300_000),
            ("1m30s", 90_000),
            ("10s53ms", 10_053),
            ("1h", 3_600_000),
        ] {
            assert_eq!(parse_duration_ms(s).unwrap(), ms, "{s}");
        }
        assert!(parse_duration_ms("5").is_err());
        assert!(parse_duration_ms("1s1m").is_err());
    }

    #[test]
    fn tolerance() {
        assert!(almost_equal(1.0, 1.0 + 1e-9, 1e-6));
        assert!(!almost_equal(1.0, 1.001, 1e-6));
        assert!(almost_equal(f64::NAN, f64::NAN, 1e-6));
        assert!(!almost_equal(stale_nan(), f64::NAN, 1e-6));
        assert!(!almost_equal(0.0, 1e-300, 1e-6));
    }
}
