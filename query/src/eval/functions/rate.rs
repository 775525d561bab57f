//! Counter and gauge rate functions over a range window: `rate`,
//! `increase`, `delta` (extrapolated), `irate`, `idelta` (last two samples),
//! `deriv`, `predict_linear` (least squares), `resets`, `changes`.
//!
//! Each takes the window's samples (already cut to `(t - range, t]`) and
//! returns `None` when Prometheus would emit no sample for the step.

use cairn_engine::Sample;

use super::kahan_inc;

/// The window a range function sees at one step.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Exclusive start of the range, ms (evaluation time minus range and offset).
    pub start: i64,
    /// Inclusive end of the range, ms (evaluation time minus offset).
    pub end: i64,
    /// The selector's range, ms.
    pub range_ms: i64,
    /// The evaluation time of the step, ms.
    pub eval_t: i64,
}

/// What kind of series a rate is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A counter: drops are resets, and it never extrapolates below zero.
    Counter,
    /// A gauge (`delta`).
    Gauge,
}

/// `rate`/`increase` (counters) and `delta` (gauges): the change over the
/// window, extrapolated towards the window's edges, per second when `is_rate`.
pub fn extrapolated_rate(s: &[Sample], w: Window, kind: Kind, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let mut result = s[s.len() - 1].v - s[0].v;
    if kind == Kind::Counter {
        for pair in s.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    Some(extrapolate(s, result, w, kind != Kind::Gauge, is_rate))
}

/// `rate`/`increase` of a counter whose drops inside the window the caller
/// found: `drops` yields, in time order, the value before each drop (what
/// [`extrapolated_rate`] adds for [`Kind::Counter`], in the same order, so
/// the result is bit-identical).
#[inline]
pub fn counter_rate(
    s: &[Sample],
    drops: impl Iterator<Item = f64>,
    w: Window,
    is_rate: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let mut result = s[s.len() - 1].v - s[0].v;
    for v in drops {
        result += v;
    }
    Some(extrapolate(s, result, w, true, is_rate))
}

/// Counter drops of a run of samples, for [`counter_rate`] over windows
/// that slide forward through it: built once per series, each window's
/// drops found without a pass over the window's samples.
#[derive(Debug, Default)]
pub struct Drops {
    /// Every `j` where the value falls from sample `j` to `j + 1`.
    at: Vec<u32>,
    /// The first entry of `at` at or after the last window's start.
    first: usize,
}

impl Drops {
    /// Finds the drops of `samples` (a NaN is never a drop, as in the
    /// per-window pass).
    pub fn rebuild(&mut self, samples: &[Sample]) {
        self.at.clear();
        self.first = 0;
        for (j, w) in samples.windows(2).enumerate() {
            if w[1].v < w[0].v {
                self.at.push(j as u32);
            }
        }
    }

    /// The values before each drop inside the window `samples[lo..hi]`, in
    /// time order. Windows must come with `lo` never decreasing.
    #[inline]
    pub fn in_window<'a>(
        &'a mut self,
        samples: &'a [Sample],
        lo: usize,
        hi: usize,
    ) -> impl Iterator<Item = f64> + 'a {
        while self.first < self.at.len() && (self.at[self.first] as usize) < lo {
            self.first += 1;
        }
        self.at[self.first..]
            .iter()
            .take_while(move |&&j| (j as usize) + 1 < hi)
            .map(move |&j| samples[j as usize].v)
    }
}

/// The extrapolation shared by the rate functions: `result` is the change
/// over the samples (corrected for counter resets).
#[inline(always)]
fn extrapolate(s: &[Sample], result: f64, w: Window, is_counter: bool, is_rate: bool) -> f64 {
    let first = s[0];
    let last = s[s.len() - 1];
    let mut to_start = (first.t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_gap = sampled / (s.len() - 1) as f64;
    let threshold = avg_gap * 1.1;
    if to_start >= threshold {
        to_start = avg_gap / 2.0;
    }
    if is_counter {
        // A counter cannot go below zero: do not extrapolate past the point
        // where the line through the samples would cross zero.
        let mut to_zero = to_start;
        if result > 0.0 && first.v >= 0.0 {
            to_zero = sampled * (first.v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_gap / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= w.range_ms as f64 / 1000.0;
    }
    result * factor
}

/// `irate` (`is_rate`) and `idelta`: from the last two samples.
pub fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let prev = s[s.len() - 2];
    let last = s[s.len() - 1];
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    let mut v = last.v;
    // Written as "not a drop" on purpose: with a NaN on either side this is
    // true, so NaN propagates into the result as in Prometheus.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let not_a_drop = !(last.v < prev.v);
    if !is_rate || not_a_drop {
        v = last.v - prev.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares slope and intercept (at `intercept_t`) of the samples.
pub fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let init = s[0].v;
    let const_y = s.iter().all(|p| p.v == init);
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    let sx = sx + cx;
    let sy = sy + cy;
    let sxy = sxy + cxy;
    let sx2 = sx2 + cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// `deriv`: per-second slope of the least-squares line.
pub fn deriv(s: &[Sample]) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    Some(linear_regression(s, s[0].t).0)
}

/// `predict_linear`: the value the least-squares line reaches `secs` after
/// the evaluation time.
pub fn predict_linear(s: &[Sample], eval_t: i64, secs: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(s, eval_t);
    Some(slope * secs + intercept)
}

/// `resets`: how often the value dropped.
pub fn resets(s: &[Sample]) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    Some(s.windows(2).filter(|p| p[1].v < p[0].v).count() as f64)
}

/// `changes`: how often the value changed (NaN to NaN is no change).
pub fn changes(s: &[Sample]) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    Some(
        s.windows(2)
            .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
            .count() as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[(i64, f64)]) -> Vec<Sample> {
        v.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // 0, 10, 20 at 0s/60s/120s; window (-180s, 120s]: start gap 180s
        // exceeds 1.1 * 60s, so extrapolate 30s, but the zero point is at
        // 0s, so the start is not extended at all; the end is exact.
        let s = samples(&[(0, 0.0), (60_000, 10.0), (120_000, 20.0)]);
        let w = Window {
            start: -180_000,
            end: 120_000,
            range_ms: 300_000,
            eval_t: 120_000,
        };
        let inc = extrapolated_rate(&s, w, Kind::Counter, false).unwrap();
        assert!((inc - 20.0).abs() < 1e-9, "{inc}");
        let rate = extrapolated_rate(&s, w, Kind::Counter, true).unwrap();
        assert!((rate - 20.0 / 300.0).abs() < 1e-12, "{rate}");
    }

    #[test]
    fn counter_resets_are_added_back() {
        let s = samples(&[(0, 5.0), (10_000, 8.0), (20_000, 2.0)]);
        let w = Window {
            start: 0,
            end: 20_000,
            range_ms: 20_000,
            eval_t: 20_000,
        };
        // increase = 2 - 5 + 8 = 5 over 20s sampled, start gap 0.
        assert_eq!(extrapolated_rate(&s, w, Kind::Counter, false), Some(5.0));
        // Drops found once for the series give the same.
        let mut drops = Drops::default();
        drops.rebuild(&s);
        assert_eq!(
            counter_rate(&s, drops.in_window(&s, 0, 3), w, false),
            Some(5.0)
        );
        assert_eq!(extrapolated_rate(&s, w, Kind::Gauge, false), Some(-3.0));
        assert_eq!(resets(&s), Some(1.0));
        assert_eq!(changes(&s), Some(2.0));
        assert_eq!(instant_value(&s, true), Some(0.2));
        assert_eq!(instant_value(&s, false), Some(-6.0));
    }

    proptest::proptest! {
        /// Over windows sliding through a counter with resets, the drops
        /// found once per series give bit for bit what the per-window
        /// pass gives.
        #[test]
        fn drops_found_once_match_the_per_window_pass(
            steps in proptest::collection::vec((0u8..4, 0.0f64..1e6), 2..200),
            range in 1usize..60,
        ) {
            let mut v = 0.0;
            let s: Vec<Sample> = steps
                .iter()
                .enumerate()
                .map(|(i, &(kind, x))| {
                    v = match kind {
                        0 => x / 1e3, // a reset to a small value
                        _ => v + x,
                    };
                    Sample::new(i as i64 * 15_000, v)
                })
                .collect();
            let mut drops = Drops::default();
            drops.rebuild(&s);
            for hi in 1..=s.len() {
                let lo = hi.saturating_sub(range);
                let w = Window {
                    start: s[lo].t - 1,
                    end: s[hi - 1].t,
                    range_ms: range as i64 * 15_000,
                    eval_t: s[hi - 1].t,
                };
                let win = &s[lo..hi];
                let want = extrapolated_rate(win, w, Kind::Counter, true);
                let got = counter_rate(win, drops.in_window(&s, lo, hi), w, true);
                proptest::prop_assert_eq!(want.map(f64::to_bits), got.map(f64::to_bits));
            }
        }
    }

    #[test]
    fn regression() {
        let s = samples(&[(0, 1.0), (1000, 3.0), (2000, 5.0)]);
        assert_eq!(deriv(&s), Some(2.0));
        assert_eq!(predict_linear(&s, 2000, 10.0), Some(25.0));
    }
}
