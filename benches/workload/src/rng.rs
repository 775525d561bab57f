//! A small, fully deterministic random source for the generator.
//!
//! The workload must be byte-for-byte reproducible from its seed across
//! releases of this crate's dependencies, so the generator owns its
//! pseudo-random algorithm (SplitMix64, a few lines) instead of relying on
//! a library whose stream may change between versions. Every instance of the
//! fleet draws from its own stream, derived from the seed and its index, so
//! the values of one instance do not depend on how many others there are.

/// SplitMix64: 64-bit state, passes BigCrush, trivially seedable.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A stream for `seed`; `stream` separates independent streams (one per
    /// instance, one for the topology).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng {
            state: seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
        };
        // Warm up so nearby seeds do not give nearby first outputs.
        rng.next_u64();
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as i64
    }

    /// Standard normal by Box-Muller (one of the pair; simplicity over speed).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // (0, 1]
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Log-normal with the given parameters of the underlying normal.
    pub fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        (mu + sigma * self.normal()).exp()
    }

    /// Poisson-distributed count with mean `lambda` (exact below 30, normal
    /// approximation above, never negative).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u64;
            let mut p = self.f64();
            // Bounded: the expected number of rounds is lambda + 1 < 31.
            while p > limit && k < 1000 {
                k += 1;
                p *= self.f64();
            }
            k
        } else {
            (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64
        }
    }

    /// Binomial count of `n` trials with probability `p`, approximated
    /// (Poisson for rare events, normal otherwise), clamped to [0, n].
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let mean = n as f64 * p;
        let k = if mean < 30.0 && p < 0.1 {
            self.poisson(mean)
        } else if n < 30 {
            (0..n).filter(|_| self.f64() < p).count() as u64
        } else {
            let sd = (mean * (1.0 - p)).sqrt();
            (mean + sd * self.normal()).round().max(0.0) as u64
        };
        k.min(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7, 2);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn distributions_stay_in_range_and_near_their_mean() {
        let mut r = Rng::new(42, 0);
        let n = 20_000;
        let mut sum_u = 0.0;
        let mut sum_p = 0u64;
        let mut sum_b = 0u64;
        for _ in 0..n {
            let u = r.f64();
            assert!((0.0..1.0).contains(&u));
            sum_u += u;
            sum_p += r.poisson(4.0);
            let b = r.binomial(50, 0.3);
            assert!(b <= 50);
            sum_b += b;
            let x = r.range_i64(-3, 3);
            assert!((-3..=3).contains(&x));
        }
        assert!((sum_u / n as f64 - 0.5).abs() < 0.02);
        assert!((sum_p as f64 / n as f64 - 4.0).abs() < 0.1);
        assert!((sum_b as f64 / n as f64 - 15.0).abs() < 0.3);
    }
}
