//! Classic (`le`-bucket) histogram functions: `histogram_quantile` with
//! Prometheus's fixes for buckets that are not monotonic, and
//! `histogram_fraction`.

/// One classic bucket: its upper bound and cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub upper_bound: f64,
    pub count: f64,
}

/// Counts closer than this (relatively) are taken as equal: float noise
/// from `rate` must not count as a monotonicity violation.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// What `bucket_quantile` had to repair, for the info annotation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MonotonicityFix {
    pub forced: bool,
    pub min_bucket: f64,
    pub max_bucket: f64,
    pub max_diff: f64,
}

fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| {
        a.upper_bound
            .partial_cmp(&b.upper_bound)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    // Buckets with the same bound (`le="1"` and `le="1.0"`) are added up,
    // in order, into the first of them.
    buckets.dedup_by(|later, kept| {
        if later.upper_bound == kept.upper_bound {
            kept.count += later.count;
            true
        } else {
            false
        }
    });
}

fn ensure_monotonic(buckets: &mut [Bucket]) -> MonotonicityFix {
    let mut fix = MonotonicityFix {
        forced: false,
        min_bucket: f64::INFINITY,
        max_bucket: f64::NEG_INFINITY,
        max_diff: 0.0,
    };
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if crate::promqltest::notation::almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            fix.forced = true;
            fix.min_bucket = fix.min_bucket.min(b.upper_bound);
            fix.max_bucket = fix.max_bucket.max(b.upper_bound);
            fix.max_diff = fix.max_diff.max(prev - curr);
            continue;
        }
        prev = curr;
    }
    fix
}

/// The `q`-quantile of a classic histogram given by its buckets (any
/// order), interpolating linearly inside the bucket the rank falls in.
/// `buckets` is left sorted and coalesced.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, MonotonicityFix) {
    let none = MonotonicityFix::default();
    if q.is_nan() {
        return (f64::NAN, none);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, none);
    }
    if q > 1.0 {
        return (f64::INFINITY, none);
    }
    if buckets.is_empty() {
        return (f64::NAN, none);
    }
    sort_and_coalesce(buckets);
    if buckets[buckets.len() - 1].upper_bound != f64::INFINITY {
        return (f64::NAN, none);
    }
    let fix = ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return (f64::NAN, fix);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, fix);
    }
    let mut rank = q * observations;
    let n = buckets.len();
    let b = buckets[..n - 1].partition_point(|x| x.count < rank);
    let v = if b == n - 1 {
        buckets[n - 2].upper_bound
    } else if b == 0 && buckets[0].upper_bound <= 0.0 {
        buckets[0].upper_bound
    } else {
        let end = buckets[b].upper_bound;
        let mut count = buckets[b].count;
        let mut start = 0.0;
        if b > 0 {
            start = buckets[b - 1].upper_bound;
            count -= buckets[b - 1].count;
            rank -= buckets[b - 1].count;
        }
        start + (end - start) * (rank / count)
    };
    (v, fix)
}

/// The estimated fraction of observations between `lower` and `upper`.
pub fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<Bucket>) -> f64 {
    if buckets.is_empty() {
        return f64::NAN;
    }
    sort_and_coalesce(&mut buckets);
    if buckets[buckets.len() - 1].upper_bound != f64::INFINITY {
        return f64::NAN;
    }
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper_bound <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper_bound;
        }
        let upper_bound = b.upper_bound;
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[(f64, f64)]) -> Vec<Bucket> {
        v.iter()
            .map(|&(upper_bound, count)| Bucket { upper_bound, count })
            .collect()
    }

    #[test]
    fn quantile_interpolates_inside_bucket() {
        let bs = b(&[(f64::INFINITY, 10.0), (1.0, 5.0), (2.0, 10.0)]);
        assert_eq!(bucket_quantile(0.5, &mut bs.clone()).0, 1.0);
        assert_eq!(bucket_quantile(0.25, &mut bs.clone()).0, 0.5);
        assert_eq!(bucket_quantile(0.75, &mut bs.clone()).0, 1.5);
        assert_eq!(bucket_quantile(1.0, &mut bs.clone()).0, 2.0);
    }

    #[test]
    fn missing_inf_bucket_is_nan_and_non_monotonic_is_fixed() {
        assert!(bucket_quantile(0.5, &mut b(&[(1.0, 5.0)])).0.is_nan());
        let (v, fix) = bucket_quantile(
            0.5,
            &mut b(&[(1.0, 5.0), (2.0, 4.0), (f64::INFINITY, 10.0)]),
        );
        assert!(fix.forced);
        assert_eq!(fix.max_diff, 1.0);
        assert_eq!(fix.min_bucket, 2.0);
        assert_eq!(v, 1.0);
    }

    #[test]
    fn fraction() {
        let bs = b(&[(1.0, 5.0), (2.0, 10.0), (f64::INFINITY, 10.0)]);
        assert_eq!(bucket_fraction(0.0, 1.0, bs.clone()), 0.5);
        assert_eq!(bucket_fraction(1.0, 1.5, bs.clone()), 0.25);
        assert_eq!(bucket_fraction(2.0, 1.0, bs), 0.0);
    }
}
