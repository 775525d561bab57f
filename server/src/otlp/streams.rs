//! Per-stream state kept between OTLP requests: delta-to-cumulative
//! accumulation and counter-reset detection from start timestamps.
//!
//! A *stream* is one OTel data-point stream: the metric's Prometheus base
//! name plus its label set (before `le`/`quantile`). The state lives in
//! memory only, so a restart of Cairn forgets it: a delta stream then starts
//! again from its next point, which PromQL sees as a counter reset.
//!
//! **Delta to cumulative** follows the OpenTelemetry Collector's
//! `deltatocumulative` processor, which Prometheus embeds:
//! - the first point of a stream starts it: the cumulative value is the
//!   point's value, and the stream's start is the point's start;
//! - a point whose start is before the stream's start belongs to an older
//!   stream, and a point not later than the last one is out of order: both
//!   are rejected (reported in `partial_success`), the state is unchanged;
//! - a point whose start is after the last point's time leaves a *gap*
//!   (points were lost in between): it is still added, as the processor
//!   does, so the counter only under-counts what was lost;
//! - a stream not seen for `max_stale` is forgotten and starts afresh;
//! - a histogram whose bucket bounds change restarts the stream.
//!
//! **Counter resets** of cumulative streams: when a point's start time is
//! later than the start seen before for the stream, and later than the
//! stream's last sample, the producer restarted; a zero sample is written at
//! the new start time so that `rate()` sees the reset even if the new value
//! is above the old one. The first point of a stream never gets one (its
//! start may be long before the head accepts samples).

use std::collections::HashMap;

use parking_lot::Mutex;

/// The accumulated value of a delta stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Accumulated {
    Number(f64),
    Histogram {
        count: u64,
        sum: f64,
        bounds: Vec<f64>,
        buckets: Vec<u64>,
    },
}

#[derive(Debug, Clone)]
struct DeltaState {
    start_ns: u64,
    last_ns: u64,
    value: Accumulated,
}

#[derive(Debug, Clone)]
enum State {
    Delta(DeltaState),
    Cumulative { start_ns: u64, last_ns: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    /// Wall-clock time of the last update, for expiry.
    seen_ms: i64,
}

/// Why a delta point was not accumulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaReject {
    /// Its start is before the stream's start.
    OlderStart,
    /// Its time is not after the last point's.
    OutOfOrder,
    /// The state table is full.
    TooManyStreams,
}

impl DeltaReject {
    pub fn as_str(self) -> &'static str {
        match self {
            DeltaReject::OlderStart => "delta point starts before its stream",
            DeltaReject::OutOfOrder => "delta point out of order",
            DeltaReject::TooManyStreams => "too many delta streams",
        }
    }
}

/// The state table, shared by the gRPC and HTTP receivers.
#[derive(Debug)]
pub struct Streams {
    inner: Mutex<HashMap<u128, Entry>>,
    max_streams: usize,
    max_stale_ms: i64,
}

impl Streams {
    pub fn new(max_streams: usize, max_stale_ms: i64) -> Self {
        Streams {
            inner: Mutex::new(HashMap::new()),
            max_streams,
            max_stale_ms,
        }
    }

    /// Streams currently tracked.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for one more stream: drops expired ones when full.
    fn has_room(&self, map: &mut HashMap<u128, Entry>, now_ms: i64) -> bool {
        if map.len() < self.max_streams {
            return true;
        }
        let max_stale = self.max_stale_ms;
        map.retain(|_, e| now_ms - e.seen_ms <= max_stale);
        map.len() < self.max_streams
    }

    /// Adds a delta point to its stream and returns the cumulative value.
    pub fn accumulate(
        &self,
        key: u128,
        start_ns: u64,
        time_ns: u64,
        delta: Accumulated,
        now_ms: i64,
    ) -> Result<Accumulated, DeltaReject> {
        let mut map = self.inner.lock();
        let live = map.get(&key).and_then(|e| match &e.state {
            State::Delta(d) if now_ms - e.seen_ms <= self.max_stale_ms => Some(d.clone()),
            _ => None,
        });
        let fresh = |delta: Accumulated| DeltaState {
            start_ns,
            last_ns: time_ns,
            value: delta,
        };
        let next = match live {
            None => fresh(delta),
            Some(prev) => {
                if start_ns < prev.start_ns {
                    return Err(DeltaReject::OlderStart);
                }
                if time_ns <= prev.last_ns {
                    return Err(DeltaReject::OutOfOrder);
                }
                match add(&prev.value, &delta) {
                    Some(value) => DeltaState {
                        start_ns: prev.start_ns,
                        last_ns: time_ns,
                        value,
                    },
                    // Bucket layout changed: a new stream.
                    None => fresh(delta),
                }
            }
        };
        if !map.contains_key(&key) && !self.has_room(&mut map, now_ms) {
            return Err(DeltaReject::TooManyStreams);
        }
        let value = next.value.clone();
        map.insert(
            key,
            Entry {
                state: State::Delta(next),
                seen_ms: now_ms,
            },
        );
        Ok(value)
    }

    /// Records a cumulative point and says whether its stream was reset
    /// (restarted at `start_ns`, after the last point seen), in which case
    /// the caller writes a zero sample at the start time.
    pub fn cumulative_reset(&self, key: u128, start_ns: u64, time_ns: u64, now_ms: i64) -> bool {
        if start_ns == 0 {
            return false;
        }
        let mut map = self.inner.lock();
        let reset = match map.get(&key).map(|e| &e.state) {
            Some(State::Cumulative {
                start_ns: prev_start,
                last_ns,
            }) => start_ns > *prev_start && start_ns > *last_ns && start_ns < time_ns,
            _ => false,
        };
        if !map.contains_key(&key) && !self.has_room(&mut map, now_ms) {
            return false;
        }
        let last_ns = match map.get(&key).map(|e| &e.state) {
            Some(State::Cumulative { last_ns, .. }) if !reset => (*last_ns).max(time_ns),
            _ => time_ns,
        };
        map.insert(
            key,
            Entry {
                state: State::Cumulative { start_ns, last_ns },
                seen_ms: now_ms,
            },
        );
        reset
    }

    /// Forgets a stream (it ended: a no-recorded-value point).
    pub fn end(&self, key: u128) {
        self.inner.lock().remove(&key);
    }
}

/// `a + b`, or None when the two cannot be added (different kinds or
/// bucket bounds).
fn add(a: &Accumulated, b: &Accumulated) -> Option<Accumulated> {
    match (a, b) {
        (Accumulated::Number(x), Accumulated::Number(y)) => Some(Accumulated::Number(x + y)),
        (
            Accumulated::Histogram {
                count: c1,
                sum: s1,
                bounds: b1,
                buckets: k1,
            },
            Accumulated::Histogram {
                count: c2,
                sum: s2,
                bounds: b2,
                buckets: k2,
            },
        ) if b1 == b2 && k1.len() == k2.len() => Some(Accumulated::Histogram {
            count: c1.saturating_add(*c2),
            sum: s1 + s2,
            bounds: b1.clone(),
            buckets: k1
                .iter()
                .zip(k2)
                .map(|(x, y)| x.saturating_add(*y))
                .collect(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn num(v: f64) -> Accumulated {
        Accumulated::Number(v)
    }

    /// (start_ns, time_ns, delta, wall ms) -> expected cumulative or error.
    type DeltaRow = (u64, u64, f64, i64, Result<f64, DeltaReject>);

    #[test]
    fn delta_sums_accumulate_by_the_processor_rules() {
        let s = Streams::new(10, 5 * MIN);
        #[rustfmt::skip]
        let table: &[DeltaRow] = &[
            (100, 200, 5.0, 0, Ok(5.0)),          // first point starts the stream
            (200, 300, 2.0, 1, Ok(7.0)),          // adjacent: added
            (300, 300, 9.0, 2, Err(DeltaReject::OutOfOrder)), // same time again
            (250, 280, 9.0, 3, Err(DeltaReject::OutOfOrder)), // earlier time
            (50, 400, 9.0, 4, Err(DeltaReject::OlderStart)),  // starts before the stream
            (500, 600, 1.0, 5, Ok(8.0)),          // a gap (300..500): still added
            // not seen for longer than max_stale: starts afresh
            (700, 800, 4.0, 5 + 6 * MIN, Ok(4.0)),
        ];
        for (i, (start, t, v, now, want)) in table.iter().enumerate() {
            let got = s.accumulate(1, *start, *t, num(*v), *now);
            let got = got.map(|a| match a {
                Accumulated::Number(x) => x,
                other => panic!("row {i}: {other:?}"),
            });
            assert_eq!(&got, want, "row {i}");
        }
    }

    #[test]
    fn delta_histograms_add_buckets_and_restart_on_new_bounds() {
        let s = Streams::new(10, 5 * MIN);
        let h = |count, sum, bounds: &[f64], buckets: &[u64]| Accumulated::Histogram {
            count,
            sum,
            bounds: bounds.to_vec(),
            buckets: buckets.to_vec(),
        };
        let a = s.accumulate(7, 0, 10, h(3, 6.0, &[1.0], &[1, 2]), 0);
        assert_eq!(a, Ok(h(3, 6.0, &[1.0], &[1, 2])));
        let b = s.accumulate(7, 10, 20, h(2, 1.0, &[1.0], &[2, 0]), 0);
        assert_eq!(b, Ok(h(5, 7.0, &[1.0], &[3, 2])));
        let c = s.accumulate(7, 20, 30, h(1, 9.0, &[5.0, 10.0], &[0, 1, 0]), 0);
        assert_eq!(c, Ok(h(1, 9.0, &[5.0, 10.0], &[0, 1, 0])));
    }

    #[test]
    fn the_table_is_bounded_and_expired_streams_make_room() {
        let s = Streams::new(2, MIN);
        assert!(s.accumulate(1, 0, 1, num(1.0), 0).is_ok());
        assert!(s.accumulate(2, 0, 1, num(1.0), 0).is_ok());
        assert_eq!(
            s.accumulate(3, 0, 1, num(1.0), 10),
            Err(DeltaReject::TooManyStreams)
        );
        // an existing stream still updates when the table is full
        assert_eq!(s.accumulate(1, 0, 2, num(1.0), 10), Ok(num(2.0)));
        // once the others expire there is room again
        assert_eq!(s.accumulate(3, 0, 1, num(1.0), 2 * MIN), Ok(num(1.0)));
        assert!(s.len() <= 2);
    }

    #[test]
    fn cumulative_resets_are_seen_from_start_times() {
        let s = Streams::new(10, MIN);
        #[rustfmt::skip]
        let table: &[(u64, u64, bool)] = &[
            (100, 1_000, false), // first point: never a reset
            (100, 2_000, false), // same start
            (2_500, 3_000, true), // restarted after the last point
            (2_500, 4_000, false),
            (0, 5_000, false),    // no start time: nothing known
            (3_500, 6_000, false), // start before the last point: not a clean restart
        ];
        for (i, (start, t, want)) in table.iter().enumerate() {
            assert_eq!(s.cumulative_reset(9, *start, *t, 0), *want, "row {i}");
        }
    }
}
