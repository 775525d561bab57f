//! The `*_over_time` family: aggregations of one series' samples inside a
//! range window (`avg`, `sum`, `count`, `min`, `max`, `last`, `first`,
//! `quantile`, `stddev`, `stdvar`, `mad`, `present`, `ts_of_*`), and
//! `double_exponential_smoothing`.

use cairn_engine::Sample;

use super::{kahan_inc, quantile};

pub fn avg(s: &[Sample]) -> Option<f64> {
    let first = s.first()?;
    let (mut sum, mut c) = (first.v, 0.0);
    let (mut mean, mut count) = (0.0, 1.0);
    let mut incremental = false;
    for (i, p) in s[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(p.v, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            // The sum overflowed: switch to an incremental mean.
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    if incremental {
        Some(mean + c)
    } else {
        Some(sum / count + c / count)
    }
}

pub fn sum(s: &[Sample]) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let (mut sum, mut c) = (0.0, 0.0);
    for p in s {
        (sum, c) = kahan_inc(p.v, sum, c);
    }
    Some(if sum.is_infinite() { sum } else { sum + c })
}

pub fn count(s: &[Sample]) -> Option<f64> {
    (!s.is_empty()).then_some(s.len() as f64)
}

fn compare(s: &[Sample], better: impl Fn(f64, f64) -> bool, timestamp: bool) -> Option<f64> {
    let first = s.first()?;
    let (mut best, mut best_t) = (first.v, first.t);
    for p in s {
        if better(p.v, best) {
            best = p.v;
            best_t = p.t;
        }
    }
    Some(if timestamp {
        best_t as f64 / 1000.0
    } else {
        best
    })
}

pub fn max(s: &[Sample]) -> Option<f64> {
    compare(s, |c, m| c > m || m.is_nan(), false)
}

pub fn min(s: &[Sample]) -> Option<f64> {
    compare(s, |c, m| c < m || m.is_nan(), false)
}

pub fn ts_of_max(s: &[Sample]) -> Option<f64> {
    compare(s, |c, m| c >= m || m.is_nan(), true)
}

pub fn ts_of_min(s: &[Sample]) -> Option<f64> {
    compare(s, |c, m| c <= m || m.is_nan(), true)
}

pub fn last(s: &[Sample]) -> Option<f64> {
    s.last().map(|p| p.v)
}

pub fn first(s: &[Sample]) -> Option<f64> {
    s.first().map(|p| p.v)
}

pub fn ts_of_last(s: &[Sample]) -> Option<f64> {
    s.last().map(|p| p.t as f64 / 1000.0)
}

pub fn ts_of_first(s: &[Sample]) -> Option<f64> {
    s.first().map(|p| p.t as f64 / 1000.0)
}

pub fn present(s: &[Sample]) -> Option<f64> {
    (!s.is_empty()).then_some(1.0)
}

pub fn quantile_over(s: &[Sample], q: f64) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = s.iter().map(|p| p.v).collect();
    Some(quantile(q, &mut v))
}

pub fn variance(s: &[Sample]) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    Some((aux + c_aux) / count)
}

pub fn stddev(s: &[Sample]) -> Option<f64> {
    variance(s).map(f64::sqrt)
}

pub fn mad(s: &[Sample]) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    if s.iter().any(|p| p.v.is_nan()) {
        return Some(f64::NAN);
    }
    let mut v: Vec<f64> = s.iter().map(|p| p.v).collect();
    let median = quantile(0.5, &mut v);
    for x in &mut v {
        *x = (*x - median).abs();
    }
    Some(quantile(0.5, &mut v))
}

/// Holt's linear smoothing with smoothing factor `sf` and trend factor `tf`
/// (both checked by the caller to lie in (0, 1)).
pub fn double_exponential_smoothing(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = s[0].v;
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[f64]) -> Vec<Sample> {
        v.iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64 * 1000, v))
            .collect()
    }

    #[test]
    fn table() {
        let x = s(&[1.0, 5.0, 3.0, 3.0]);
        let cases: Vec<(&str, Option<f64>)> = vec![
            ("avg", avg(&x)),
            ("sum", sum(&x)),
            ("count", count(&x)),
            ("max", max(&x)),
            ("min", min(&x)),
            ("ts_of_max", ts_of_max(&x)),
            ("ts_of_min", ts_of_min(&x)),
            ("last", last(&x)),
            ("q50", quantile_over(&x, 0.5)),
            ("stdvar", variance(&x)),
            ("mad", mad(&x)),
        ];
        let want = [3.0, 12.0, 4.0, 5.0, 1.0, 1.0, 0.0, 3.0, 3.0, 2.0, 1.0];
        for ((name, got), want) in cases.into_iter().zip(want) {
            assert_eq!(got, Some(want), "{name}");
        }
        assert_eq!(avg(&[]), None);
        assert_eq!(max(&s(&[f64::NAN, 2.0])), Some(2.0));
    }
}
