//! Calendar functions (`year`, `month`, `day_of_month`, `day_of_week`,
//! `day_of_year`, `days_in_month`, `hour`, `minute`) on Unix seconds, in
//! UTC, computed with the proleptic Gregorian calendar.

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// The calendar function called `name` applied to Unix time `secs`
/// (truncated to whole seconds, as Prometheus does), if there is one.
pub fn calendar(name: &str, secs: f64) -> Option<f64> {
    let s = secs as i64;
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(match name {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let mut n = d;
            for mm in 1..m {
                n += days_in(y, mm);
            }
            n as f64
        }
        "days_in_month" => days_in(y, m) as f64,
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        _ => return None,
    })
}

/// Whether `name` is one of the calendar functions.
pub fn is_calendar(name: &str) -> bool {
    calendar(name, 0.0).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // 2024-02-29T13:45:00Z = 1709214300
        let t = 1_709_214_300.0;
        let cases = [
            ("year", 2024.0),
            ("month", 2.0),
            ("day_of_month", 29.0),
            ("day_of_week", 4.0),
            ("day_of_year", 60.0),
            ("days_in_month", 29.0),
            ("hour", 13.0),
            ("minute", 45.0),
        ];
        for (name, want) in cases {
            assert_eq!(calendar(name, t), Some(want), "{name}");
        }
        assert_eq!(calendar("year", -1.0), Some(1969.0));
        assert_eq!(calendar("day_of_week", 0.0), Some(4.0));
    }
}
