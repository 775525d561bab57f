//! Samples and timestamps: the values the engine stores for each series.

/// Milliseconds since the Unix epoch, the unit of every timestamp in Cairn.
pub type TimestampMs = i64;

/// The bit pattern of Prometheus's staleness marker, a NaN that says "this
/// series ended here". It is stored and returned bit-exactly and must never
/// be confused with an ordinary NaN (whose bits are `0x7ff8000000000001` in
/// Prometheus).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is the staleness marker (compared by bits, not by value).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Timestamp in milliseconds since the epoch.
    pub t: TimestampMs,
    /// The value; may be NaN, ±Inf or the stale marker.
    pub v: f64,
}

impl Sample {
    pub fn new(t: TimestampMs, v: f64) -> Self {
        Sample { t, v }
    }

    /// Bit-exact equality (NaN == NaN when the bits agree), as the WAL and
    /// duplicate detection need it.
    #[inline]
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_not_ordinary_nan() {
        assert!(is_stale_nan(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(f64::from_bits(0x7ff8_0000_0000_0001)));
        assert!(f64::from_bits(STALE_NAN_BITS).is_nan());
    }
}
