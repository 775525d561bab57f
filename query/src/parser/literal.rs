//! Values of literal tokens: numbers, durations and quoted strings, with
//! Prometheus's rules (Go number syntax, `model.ParseDuration`, Go string
//! escapes) and its error messages.

/// The value of a number token (`1`, `0x1f`, `1_000`, `1e-3`, `Inf`, `NaN`).
///
/// Like Prometheus (Go's `strconv.ParseInt` with base 0, then
/// `ParseFloat`), an integer with a leading zero is octal: `010` is 8.
pub fn number(text: &str) -> Result<f64, String> {
    if text.eq_ignore_ascii_case("inf") {
        return Ok(f64::INFINITY);
    }
    if text.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    let owned;
    let clean: &str = if text.contains('_') {
        owned = text.replace('_', "");
        &owned
    } else {
        text
    };
    let err =
        || format!("error parsing number: strconv.ParseFloat: parsing {text:?}: invalid syntax");
    if let Some(hex) = clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
    {
        return match i64::from_str_radix(hex, 16) {
            Ok(v) => Ok(v as f64),
            Err(_) => Err(err()),
        };
    }
    if clean.len() > 1
        && clean.starts_with('0')
        && clean.bytes().all(|b| (b'0'..=b'7').contains(&b))
        && let Ok(v) = i64::from_str_radix(&clean[1..], 8)
    {
        return Ok(v as f64);
    }
    if clean.bytes().all(|b| b.is_ascii_digit())
        && let Ok(v) = clean.parse::<i64>()
    {
        return Ok(v as f64);
    }
    clean.parse::<f64>().map_err(|_| err())
}

/// The largest duration Prometheus accepts (it counts in `int64`
/// nanoseconds), in milliseconds.
pub const MAX_DURATION_MS: i64 = i64::MAX / 1_000_000;

/// The value in milliseconds of a duration token (`1h30m`, `500ms`), with
/// units from largest to smallest, each at most once.
pub fn duration_ms(text: &str) -> Result<i64, String> {
    if text == "0" {
        return Ok(0);
    }
    let invalid = || format!("not a valid duration string: {text:?}");
    let mut rest = text;
    let mut total: i64 = 0;
    let mut last_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let value: i64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (order, mult): (u8, i64) = match unit {
            "y" => (1, 365 * 24 * 3_600_000),
            "w" => (2, 7 * 24 * 3_600_000),
            "d" => (3, 24 * 3_600_000),
            "h" => (4, 3_600_000),
            "m" => (5, 60_000),
            "s" => (6, 1_000),
            "ms" => (7, 1),
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        if order <= last_unit {
            return Err(invalid());
        }
        last_unit = order;
        total = value
            .checked_mul(mult)
            .and_then(|v| v.checked_add(total))
            .filter(|&v| v <= MAX_DURATION_MS)
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    Ok(total)
}

/// Seconds (a PromQL number used as a duration) to milliseconds, rounded
/// to the nearest millisecond; `None` if out of Prometheus's range.
pub fn seconds_to_ms(seconds: f64) -> Option<i64> {
    let ms = (seconds * 1000.0).round();
    if !ms.is_finite() || ms.abs() > MAX_DURATION_MS as f64 {
        return None;
    }
    Some(ms as i64)
}

/// Why a string token cannot be unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnquoteError {
    /// A malformed escape sequence (Prometheus's lexer message).
    Syntax(String),
    /// Escapes such as `\xc5` produced bytes that are not UTF-8: the
    /// string Go-quoted, and its lossy decoding.
    InvalidUtf8 { quoted: String, lossy: String },
}

impl UnquoteError {
    /// The message, for a string used as a label name or otherwise.
    pub fn message(self, label_name: bool) -> String {
        match self {
            UnquoteError::Syntax(m) => m,
            UnquoteError::InvalidUtf8 { quoted, .. } if label_name => {
                format!("invalid label name {quoted}")
            }
            UnquoteError::InvalidUtf8 { quoted, .. } => {
                format!("string {quoted} is not valid UTF-8")
            }
        }
    }
}

impl From<String> for UnquoteError {
    fn from(m: String) -> Self {
        UnquoteError::Syntax(m)
    }
}

impl From<&str> for UnquoteError {
    fn from(m: &str) -> Self {
        UnquoteError::Syntax(m.to_string())
    }
}

/// Unquotes a string token (with its quotes): `"..."` and `'...'` with Go
/// escapes, `` `...` `` raw. The result must be valid UTF-8.
pub fn unquote(token: &str) -> Result<String, UnquoteError> {
    let quote = token.chars().next().unwrap_or('"');
    let inner = token
        .get(1..token.len().saturating_sub(1))
        .filter(|_| token.len() >= 2)
        .ok_or(UnquoteError::Syntax("unterminated quoted string".into()))?;
    if quote == '`' {
        return Ok(inner.replace('\r', ""));
    }
    if !inner.contains('\\') {
        return Ok(inner.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = chars.next() else {
            return Err("escape sequence not terminated".into());
        };
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            c if c == quote => Some(c as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let (n, base, max, first) = match e {
            '0'..='7' => (3, 8, 255u32, Some(e)),
            'x' => (2, 16, 255, chars.next()),
            'u' => (4, 16, 0x10FFFF, chars.next()),
            'U' => (8, 16, 0x10FFFF, chars.next()),
            other => {
                return Err(format!("unknown escape sequence {}", go_rune_desc(other)).into());
            }
        };
        let mut x: u32 = 0;
        let mut ch = first;
        for i in 0..n {
            let Some(c) = ch else {
                return Err("escape sequence not terminated".into());
            };
            let d = c.to_digit(16).filter(|&d| d < base).ok_or_else(|| {
                UnquoteError::Syntax(format!(
                    "illegal character {} in escape sequence",
                    go_rune_desc(c)
                ))
            })?;
            x = x * base + d;
            if i + 1 < n {
                ch = chars.next();
            }
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            return Err("escape sequence is an invalid Unicode code point".into());
        }
        if e == 'u' || e == 'U' {
            let c = char::from_u32(x).ok_or(UnquoteError::Syntax(
                "escape sequence is an invalid Unicode code point".into(),
            ))?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        } else {
            out.push(x as u8);
        }
    }
    String::from_utf8(out).map_err(|e| {
        let bytes = e.into_bytes();
        UnquoteError::InvalidUtf8 {
            quoted: go_quote_bytes(&bytes),
            lossy: String::from_utf8_lossy(&bytes).into_owned(),
        }
    })
}

/// Go's `%#U` of a rune: `U+0063 'c'`.
fn go_rune_desc(c: char) -> String {
    format!("U+{:04X} '{}'", c as u32, c)
}

/// Go's `%q` of arbitrary bytes: invalid UTF-8 bytes as `\xNN`.
fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        let q = super::lexer::go_quote(chunk.valid());
        s.push_str(&q[1..q.len() - 1]);
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let cases: &[(&str, f64)] = &[
            ("1", 1.0),
            ("0x1F", 31.0),
            ("010", 8.0),
            ("09", 9.0),
            ("1_000", 1000.0),
            ("12.34e6", 12_340_000.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("Inf", f64::INFINITY),
        ];
        for &(text, want) in cases {
            assert_eq!(number(text), Ok(want), "{text}");
        }
        assert!(number("nan").is_ok_and(f64::is_nan));
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("1y"), Ok(31_536_000_000));
        assert_eq!(duration_ms("2w1d"), Ok(15 * 86_400_000));
        assert_eq!(
            duration_ms("5m1h"),
            Err("not a valid duration string: \"5m1h\"".into())
        );
        assert_eq!(
            duration_ms("5y1hs"),
            Err("unknown unit \"hs\" in duration \"5y1hs\"".into())
        );
        assert_eq!(duration_ms("400y"), Err("duration out of range".into()));
    }

    #[test]
    fn strings() {
        assert_eq!(unquote(r#""a\"b\n""#), Ok("a\"b\n".to_string()));
        assert_eq!(unquote(r"'it\'s'"), Ok("it's".into()));
        assert_eq!(unquote(r#""\u00e9\x41\101""#), Ok("éAA".into()));
        assert_eq!(unquote("`a\\nb`"), Ok("a\\nb".into()));
        assert_eq!(
            unquote(r#""\c""#),
            Err(UnquoteError::Syntax(
                "unknown escape sequence U+0063 'c'".into()
            ))
        );
        assert_eq!(
            unquote(r#""\x.""#),
            Err(UnquoteError::Syntax(
                "illegal character U+002E '.' in escape sequence".into()
            ))
        );
        assert_eq!(
            unquote(r#""a\xc5z""#).map_err(|e| e.message(true)),
            Err("invalid label name \"a\\xc5z\"".into())
        );
        assert!(unquote(r#""\'""#).is_err());
    }
}
