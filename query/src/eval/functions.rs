//! The PromQL functions, one file per family. These are the numeric
//! kernels: they see plain samples, windows and values, never the AST, so
//! they can be tested on their own. `eval::evaluator` decides which kernel a
//! call dispatches to and handles series, labels and steps around it.

pub mod histogram;
pub mod labels;
pub mod math;
pub mod over_time;
pub mod rate;
pub mod sort;
pub mod time;

/// One step of Kahan-Babuska-Neumaier summation: adds `inc` to the running
/// `sum` with compensation `c`; returns the new pair. Once the sum is
/// infinite the compensation is reset so that `sum + c` stays infinite.
#[inline]
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The `q`-quantile of `values` with linear interpolation between the
/// closest ranks (the φ-quantile of Prometheus's `quantile` aggregation).
/// `values` is sorted in place; NaN sorts first. Out-of-range `q` gives
/// ±Inf, NaN `q` or no values give NaN.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let cases: &[(f64, &[f64], f64)] = &[
            (0.5, &[1.0, 2.0, 3.0, 4.0], 2.5),
            (0.0, &[3.0, 1.0], 1.0),
            (1.0, &[3.0, 1.0], 3.0),
            (0.75, &[1.0], 1.0),
            (-1.0, &[1.0], f64::NEG_INFINITY),
            (2.0, &[1.0], f64::INFINITY),
        ];
        for (q, v, want) in cases {
            let mut v = v.to_vec();
            assert_eq!(quantile(*q, &mut v), *want, "q={q}");
        }
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn kahan_compensates() {
        let (mut s, mut c) = (0.0, 0.0);
        for v in [1e100, 1.0, -1e100] {
            (s, c) = kahan_inc(v, s, c);
        }
        assert_eq!(s + c, 1.0);
    }
}
