//! Parsing of the command line's durations (`15s`, `30m`, `2h`, `1d`) and
//! start times (RFC 3339 `2026-11-23T10:00:00Z`, or milliseconds since the
//! epoch).

use crate::Error;

/// Parses `<n><unit>` with units `ms`, `s`, `m`, `h`, `d` into milliseconds;
/// several parts may follow each other (`1h30m`).
pub fn parse_duration_ms(text: &str) -> Result<i64, Error> {
    let bad = || Error::BadArgument {
        what: "duration",
        value: text.to_string(),
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    if bytes.is_empty() {
        return Err(bad());
    }
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let number: i64 = text[start..i].parse().map_err(|_| bad())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms = match &text[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Parses a start time: milliseconds since the epoch, or an RFC 3339 UTC
/// time `YYYY-MM-DDTHH:MM:SS(.fff)?Z`.
pub fn parse_time_ms(text: &str) -> Result<i64, Error> {
    let bad = || Error::BadArgument {
        what: "time",
        value: text.to_string(),
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, clock) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 {
        return Err(bad());
    }
    let (clock, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let c: Vec<&str> = clock.split(':').collect();
    if c.len() != 3 {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let (year, month, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hour, minute, second) = (num(c[0])?, num(c[1])?, num(c[2])?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let millis = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        num(&digits)?
    };
    let days = days_from_civil(year, month, day);
    Ok((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// well-known civil-calendar algorithm, restated).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, want) in [
            ("15s", 15_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1d", 86_400_000),
        ] {
            assert_eq!(parse_duration_ms(text).ok(), Some(want), "{text}");
        }
        for text in ["", "h", "5", "5x", "-5s"] {
            assert!(parse_duration_ms(text).is_err(), "{text}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z").ok(), Some(0));
        assert_eq!(
            parse_time_ms("2026-11-23T10:00:00Z").ok(),
            Some(1_795_428_000_000)
        );
        assert_eq!(
            parse_time_ms("2000-03-01T00:00:01.5Z").ok(),
            Some(951_868_801_500)
        );
        assert_eq!(parse_time_ms("1795428000000").ok(), Some(1_795_428_000_000));
        assert!(parse_time_ms("2026-13-01T00:00:00Z").is_err());
        assert!(parse_time_ms("yesterday").is_err());
    }
}
