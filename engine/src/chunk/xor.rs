//! Encoding 1, [`Encoding::XorDod`](super::Encoding::XorDod): the Gorilla
//! codec as Prometheus uses it. Timestamps are delta-of-delta coded in
//! prefix buckets; values are XOR-ed with the previous value and the
//! meaningful bits stored, reusing the previous leading/trailing-zero window
//! when the new bits fit in it.
//!
//! Bit layout of the body (after the chunk header, which holds the first
//! timestamp):
//!
//! ```text
//! sample 0:  value: 64 raw bits
//! sample i:  dod of the timestamp (delta_0 = 0, so sample 1 codes its delta)
//!              '0'                       dod = 0
//!              '10'   + 14-bit signed    -8192 ..= 8191
//!              '110'  + 17-bit signed
//!              '1110' + 20-bit signed
//!              '1111' + 64 bits          anything (wrapping arithmetic)
//!            value XOR previous value
//!              '0'                       same bits
//!              '10'   + bits in the previous window
//!              '11'   + 5-bit leading zeros + 6-bit length (0 = 64) + bits
//! ```

use super::bits::{BitReader, BitWriter};
use super::{Sink, corrupt};
use crate::error::Result;

/// dod buckets: (prefix bits, prefix length, payload bits).
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

#[inline]
fn fits_signed(v: i64, bits: u32) -> bool {
    let half = 1i64 << (bits - 1);
    -half <= v && v < half
}

#[inline]
fn sign_extend(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Streaming state of an encoding-1 chunk.
#[derive(Debug, Clone)]
pub(crate) struct XorEncoder {
    w: BitWriter,
    t_prev: i64,
    delta_prev: i64,
    v_prev: u64,
    /// Current XOR window; `None` until the first '11' record.
    window: Option<(u8, u8)>,
}

impl XorEncoder {
    /// Starts a body whose first sample is `(t, v)`.
    pub(crate) fn new(t: i64, v: f64) -> Self {
        let mut w = BitWriter::new();
        w.write_bits(v.to_bits(), 64);
        XorEncoder {
            w,
            t_prev: t,
            delta_prev: 0,
            v_prev: v.to_bits(),
            window: None,
        }
    }

    pub(crate) fn append(&mut self, t: i64, v: f64) {
        let delta = t.wrapping_sub(self.t_prev);
        let dod = delta.wrapping_sub(self.delta_prev);
        self.t_prev = t;
        self.delta_prev = delta;
        write_dod(&mut self.w, dod);

        let bits = v.to_bits();
        let x = bits ^ self.v_prev;
        self.v_prev = bits;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        let lz = x.leading_zeros().min(31);
        let tz = x.trailing_zeros();
        if let Some((wl, wt)) = self.window
            && lz >= u32::from(wl)
            && tz >= u32::from(wt)
        {
            let sig = 64 - u32::from(wl) - u32::from(wt);
            self.w.write_bits(0b10, 2);
            self.w.write_bits(x >> wt, sig);
            return;
        }
        let sig = 64 - lz - tz;
        self.w.write_bits(0b11, 2);
        self.w.write_bits(u64::from(lz), 5);
        self.w.write_bits(u64::from(sig & 63), 6);
        self.w.write_bits(x >> tz, sig);
        self.window = Some((lz as u8, tz as u8));
    }

    pub(crate) fn body(&self) -> &[u8] {
        self.w.bytes()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.w.heap_bytes()
    }
}

#[inline]
fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    for &(prefix, plen, bits) in &DOD_BUCKETS {
        if fits_signed(dod, bits) {
            w.write_bits(
                (prefix << bits) | (dod as u64 & ((1 << bits) - 1)),
                plen + bits,
            );
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

#[inline]
fn read_dod(r: &mut BitReader<'_>) -> i64 {
    r.ensure(56);
    let ones = r.peek_word().leading_ones();
    match ones {
        0 => {
            r.consume(1);
            0
        }
        1..=3 => {
            let (_, plen, bits) = DOD_BUCKETS[ones as usize - 1];
            r.consume(plen);
            sign_extend(r.take_buffered(bits), bits)
        }
        _ => {
            r.consume(4);
            r.read_bits(64) as i64
        }
    }
}

/// Decodes `count` samples of a body whose first timestamp is `t0` and last
/// is `t_last`, pushing those inside `[mint, maxt]` to `out`.
pub(crate) fn decode(
    body: &[u8],
    count: usize,
    t0: i64,
    t_last: i64,
    mint: i64,
    maxt: i64,
    out: &mut impl Sink,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let mut r = BitReader::new(body);
    let mut t = t0;
    let mut v = r.read_bits(64);
    let mut delta = 0i64;
    let mut window = (0u32, 0u32);
    let full = mint <= t0 && t_last <= maxt;
    if full || (mint..=maxt).contains(&t) {
        out.push(t, v);
    }
    for _ in 1..count {
        let dod = read_dod(&mut r);
        delta = delta.wrapping_add(dod);
        let t_next = t.wrapping_add(delta);
        if t_next <= t {
            return Err(corrupt("timestamps not increasing"));
        }
        t = t_next;

        r.ensure(56);
        let ctl = r.peek_word().leading_ones().min(2);
        match ctl {
            0 => r.consume(1),
            1 => {
                r.consume(2);
                let (lz, tz) = window;
                v ^= r.read_bits(64 - lz - tz) << tz;
            }
            _ => {
                r.consume(2);
                let hdr = r.take_buffered(11) as u32;
                let lz = hdr >> 6;
                let sig = match hdr & 63 {
                    0 => 64,
                    s => s,
                };
                if lz + sig > 64 {
                    return Err(corrupt("XOR window wider than 64 bits"));
                }
                let tz = 64 - lz - sig;
                window = (lz, tz);
                v ^= r.read_bits(sig) << tz;
            }
        }
        if full {
            out.push(t, v);
        } else if t > maxt {
            break;
        } else if t >= mint {
            out.push(t, v);
        }
    }
    if r.overran() {
        return Err(corrupt("body shorter than its sample count"));
    }
    if full {
        if t != t_last {
            return Err(corrupt("last timestamp differs from the header's max time"));
        }
        if body.len() as u64 * 8 - r.bits_read() >= 8 {
            return Err(corrupt("bytes left after the last sample"));
        }
    }
    Ok(())
}
