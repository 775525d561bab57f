//! Number formatting of Prometheus's JSON API: sample values are strings
//! formatted as Go's `strconv.FormatFloat(v, 'f', -1, 64)` (the shortest
//! decimal that reads back to the same float, never an exponent), with
//! `NaN`, `+Inf` and `-Inf` spelled as Go spells them.
//!
//! The formatter is the query crate's (PromQL's own printing and
//! `count_values` labels need the same digits); this module names it for
//! the API and holds the API's formatting tests.

pub use cairn_query::format::{format_float as float, write_float};

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
            // -1372524189020589.25 exactly, halfway between two 17-digit
            // strings: Prometheus 2.42 prints the even one (Rust's
            // `Display` the other).
            (
                f64::from_bits(14_056_720_934_152_029_877),
                "-1372524189020589.2",
            ),
            (2.5e-7, "0.00000025"),
            (123456789012345678.0, "123456789012345680"),
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

    proptest::proptest! {
        /// Any finite float prints as digits that read back to it, as
        /// many as Rust's shortest `Display` has, laid out as it lays
        /// them out (the two differ only on which of two equally near
        /// shortest digit strings an exact tie takes: Go, and Ryu, take
        /// the even one; see the table above).
        #[test]
        fn ryu_layout_round_trips_in_shortest_digits(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assume!(v.is_finite());
            let got = float(v);
            let back: f64 = got.parse().expect("a number");
            proptest::prop_assert_eq!(back.to_bits(), v.to_bits());
            let digits = |s: &str| s.trim_start_matches(['-', '0', '.']).chars().filter(char::is_ascii_digit).count();
            let display = format!("{v}");
            proptest::prop_assert_eq!(digits(got.trim_end_matches('0')), digits(display.trim_end_matches('0')));
            proptest::prop_assert_eq!(got.len(), display.len());
        }

        #[test]
        fn ryu_layout_matches_display_on_decimals(m in -1_000_000i64..1_000_000, e in -30i32..30) {
            let v = m as f64 * 10f64.powi(e);
            proptest::prop_assert_eq!(float(v), format!("{v}"));
        }
    }
}
