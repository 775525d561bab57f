//! Prometheus's XOR chunk wire format, as remote-read's
//! `STREAMED_XOR_CHUNKS` response carries it (`prometheus.Chunk` with
//! encoding `XOR`).
//!
//! The engine's own chunks (`cairn_engine` `chunk/xor.rs`) use a
//! Gorilla-style codec with Cairn's header, so the server re-encodes
//! samples into the exact bytes Prometheus's `chunkenc` decoder reads:
//! a 2-byte big-endian sample count, then an MSB-first bitstream:
//!
//! - sample 0: timestamp as a zigzag varint, value as 64 raw bits;
//! - sample 1: timestamp delta as a uvarint, value XOR-encoded;
//! - later samples: delta-of-delta in a prefix-coded bucket
//!   (`0`; `10`+14 bits; `110`+17 bits; `1110`+20 bits; `1111`+64 bits),
//!   value XOR-encoded.
//!
//! Values XOR against the previous value: `0` when equal; otherwise `1`,
//! then either `0` and the meaningful bits inside the previous window of
//! leading/trailing zeros, or `1`, 5 bits of leading zeros (at most 31),
//! 6 bits of meaningful-bit count (64 written as 0), and those bits.
//! [`decode`] reads the same format back (tests and tools use it).

use cairn_engine::Sample;

/// Most samples Prometheus puts in one chunk; remote-read clients expect
/// chunks no larger.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// MSB-first bit writer over a byte vector.
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn new(bytes: Vec<u8>) -> Self {
        BitWriter { bytes, free: 0 }
    }

    fn bit(&mut self, b: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if b && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// Writes the low `n` bits of `v`, most significant first.
    fn bits(&mut self, v: u64, n: u8) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bits(u64::from(b), 8);
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    fn varint(&mut self, v: i64) {
        self.uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Whether `x` fits the signed `nbits` bucket as Prometheus bounds it:
/// `-(2^(n-1) - 1) ..= 2^(n-1)`.
fn fits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Encodes `samples` (timestamp order, at most 65535) as one Prometheus
/// XOR chunk. Timestamps and value bits are kept exactly (stale NaNs too).
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let count = u16::try_from(samples.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + samples.len() * 2);
    out.extend_from_slice(&count.to_be_bytes());
    let mut w = BitWriter::new(out);
    let (mut prev_t, mut prev_delta, mut prev_v) = (0i64, 0i64, 0u64);
    // Leading 0xff marks "no window yet", so the first XOR writes one.
    let (mut leading, mut trailing) = (0xffu32, 0u32);
    for (i, s) in samples.iter().take(usize::from(count)).enumerate() {
        let v = s.v.to_bits();
        match i {
            0 => {
                w.varint(s.t);
                w.bits(v, 64);
            }
            _ => {
                let delta = s.t.wrapping_sub(prev_t);
                if i == 1 {
                    w.uvarint(delta as u64);
                } else {
                    let dod = delta.wrapping_sub(prev_delta);
                    if dod == 0 {
                        w.bit(false);
                    } else if fits(dod, 14) {
                        w.bits(0b10, 2);
                        w.bits(dod as u64, 14);
                    } else if fits(dod, 17) {
                        w.bits(0b110, 3);
                        w.bits(dod as u64, 17);
                    } else if fits(dod, 20) {
                        w.bits(0b1110, 4);
                        w.bits(dod as u64, 20);
                    } else {
                        w.bits(0b1111, 4);
                        w.bits(dod as u64, 64);
                    }
                }
                prev_delta = delta;
                let x = v ^ prev_v;
                if x == 0 {
                    w.bit(false);
                } else {
                    w.bit(true);
                    let lz = x.leading_zeros().min(31);
                    let tz = x.trailing_zeros();
                    if leading != 0xff && lz >= leading && tz >= trailing {
                        w.bit(false);
                        w.bits(x >> trailing, (64 - leading - trailing) as u8);
                    } else {
                        leading = lz;
                        trailing = tz;
                        w.bit(true);
                        w.bits(u64::from(lz), 5);
                        let sig = 64 - lz - tz;
                        // 64 meaningful bits do not fit 6 bits: written as 0.
                        w.bits(u64::from(sig & 63), 6);
                        w.bits(x >> tz, sig as u8);
                    }
                }
            }
        }
        prev_t = s.t;
        prev_v = v;
    }
    w.bytes
}

/// MSB-first bit reader, for [`decode`].
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = self.bytes.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Some(b)
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.bits(8)?;
            v |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
}

/// Sign-extends the low `n` bits of `v` the way Prometheus's decoder does
/// (values above `2^(n-1)` are negative).
fn signed(v: u64, n: u32) -> i64 {
    if v > 1 << (n - 1) {
        v as i64 - (1i64 << n)
    } else {
        v as i64
    }
}

/// Decodes one Prometheus XOR chunk; `None` if it is truncated or malformed.
pub fn decode(chunk: &[u8]) -> Option<Vec<Sample>> {
    let count = usize::from(u16::from_be_bytes([*chunk.first()?, *chunk.get(1)?]));
    let mut r = BitReader {
        bytes: &chunk[2..],
        pos: 0,
    };
    let mut out = Vec::with_capacity(count);
    let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    for i in 0..count {
        if i == 0 {
            let z = r.uvarint()?;
            t = ((z >> 1) as i64) ^ -((z & 1) as i64);
            v = r.bits(64)?;
        } else {
            if i == 1 {
                delta = r.uvarint()? as i64;
            } else {
                let mut prefix = 0;
                while prefix < 4 && r.bit()? {
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    1 => signed(r.bits(14)?, 14),
                    2 => signed(r.bits(17)?, 17),
                    3 => signed(r.bits(20)?, 20),
                    _ => r.bits(64)? as i64,
                };
                delta = delta.wrapping_add(dod);
            }
            t = t.wrapping_add(delta);
            if r.bit()? {
                if r.bit()? {
                    leading = r.bits(5)? as u32;
                    let mut sig = r.bits(6)? as u32;
                    if sig == 0 {
                        sig = 64;
                    }
                    trailing = 64u32.checked_sub(leading + sig)?;
                }
                let sig = 64 - leading - trailing;
                v ^= r.bits(sig)? << trailing;
            }
        }
        out.push(Sample {
            t,
            v: f64::from_bits(v),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
    }

    #[test]
    fn header_and_first_sample_bytes() {
        // t=1 zigzags to 2; value 0.0 is 64 zero bits.
        let bytes = encode(&[Sample { t: 1, v: 0.0 }]);
        assert_eq!(bytes, vec![0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        // A regular second-and-third sample with an unchanged value: delta
        // uvarint 15, then value bit 0; third: dod bit 0, value bit 0.
        let bytes = encode(&[
            Sample { t: 0, v: 1.0 },
            Sample { t: 15, v: 1.0 },
            Sample { t: 30, v: 1.0 },
        ]);
        let mut expect = vec![0, 3, 0];
        expect.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        expect.push(15);
        expect.push(0); // three zero bits, padded
        assert_eq!(bytes, expect);
    }

    #[test]
    fn table_round_trips() {
        let cases: Vec<Vec<Sample>> = vec![
            vec![],
            vec![Sample { t: -5, v: f64::NAN }],
            (0..120)
                .map(|i| Sample {
                    t: 1_700_000_000_000 + i * 15_000,
                    v: i as f64 * 0.5,
                })
                .collect(),
            vec![
                Sample { t: 0, v: 1.0 },
                Sample { t: 1, v: -1.0 },
                Sample {
                    t: 8193,
                    v: f64::from_bits(0x7ff0_0000_0000_0002),
                },
                Sample {
                    t: 8194 + 65_536,
                    v: f64::INFINITY,
                },
                Sample {
                    t: 8194 + 65_536 + 600_000,
                    v: f64::MIN_POSITIVE,
                },
                Sample {
                    t: i64::MAX / 2,
                    v: 3.0,
                },
            ],
        ];
        for case in cases {
            let got = decode(&encode(&case)).expect("decodes");
            assert!(same(&got, &case), "{case:?} came back as {got:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_any_series(
            start in -1_000_000_000_000i64..2_000_000_000_000,
            steps in proptest::collection::vec((0i64..2_000_000, any::<u64>(), 0u8..3), 0..200),
        ) {
            let mut t = start;
            let mut samples = Vec::new();
            let mut prev = 0u64;
            for (dt, bits, kind) in steps {
                t += dt;
                // Mix repeated values, small changes and arbitrary bits.
                let v = match kind { 0 => prev, 1 => prev ^ (bits & 0xffff), _ => bits };
                prev = v;
                samples.push(Sample { t, v: f64::from_bits(v) });
            }
            let got = decode(&encode(&samples)).expect("decodes");
            prop_assert!(same(&got, &samples));
        }
    }
}
