//! Data generation shared by the engine's benches: a deterministic random
//! generator and the scrape-timestamp jitter of a Prometheus-style fleet,
//! so the codec bench's chunks and the head-memory bench's series are the
//! same kind of data.

/// SplitMix64: a tiny deterministic generator, so the data is the same on
/// every run and machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.f64();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.f64() * (hi.ln() - lo.ln())).exp()
    }
}

/// A scrape timestamp's distance from its nominal time, in ms: 90% within
/// ±2 ms, 9% within ±10 ms, 1% within ±100 ms.
pub fn scrape_jitter(rng: &mut Rng) -> i64 {
    let p = rng.f64();
    if p < 0.90 {
        rng.range(-2, 2)
    } else if p < 0.99 {
        rng.range(-10, 10)
    } else {
        rng.range(-100, 100)
    }
}
