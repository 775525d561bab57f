//! Number formatting of Prometheus's JSON API: sample values are strings
//! formatted as Go's `strconv.FormatFloat(v, 'f', -1, 64)` (the shortest
//! decimal that reads back to the same float, never an exponent), with
//! `NaN`, `+Inf` and `-Inf` spelled as Go spells them.

/// A sample value as Prometheus's API prints it.
pub fn float(v: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, v);
    out
}

/// Appends a sample value as Prometheus's API prints it, without a string
/// of its own (a range query's body holds a value per point).
pub fn write_float(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust's Display of f64 is the shortest round-tripping decimal and
        // never uses an exponent: the same digits as Go's 'f', -1. Writing
        // into a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_format_float_f_minus_1() {
        let table = [
            (1.0, "1"),
            (-0.0, "-0"),
            (0.1, "0.1"),
            (1.5e-7, "0.00000015"),
            (1e21, "1000000000000000000000"),
            (123456789.125, "123456789.125"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::from_bits(cairn_engine::STALE_NAN_BITS), "NaN"),
            (1.0 / 3.0, "0.3333333333333333"),
        ];
        for (v, want) in table {
            assert_eq!(float(v), want, "{v:?}");
        }
        // 17 significant digits, then zeros up to the decimal point.
        assert_eq!(
            float(f64::MAX),
            format!("17976931348623157{}", "0".repeat(292))
        );
    }
}
