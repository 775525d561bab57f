//! Encoding 2, [`Encoding::DecimalGrid`](super::Encoding::DecimalGrid):
//! timestamps predicted on a tracked scrape grid, values as scaled decimal
//! integers when they are, both coded with adaptive Rice codes.
//!
//! Why: metrics are scraped on a fixed interval with a few milliseconds of
//! jitter, and most values are integers (counters, histogram buckets) or
//! have few decimals (gauges). Delta-of-delta and XOR pay for the jitter
//! twice and see decimals as noise; predicting each timestamp from a
//! smoothed grid pays for the jitter once, and integer deltas of decimals
//! cost a few bits.
//!
//! Body layout (after the chunk header, which holds the first timestamp):
//!
//! ```text
//! value mode: '0' + 5-bit exponent e (decimal: v = m / 10^e)
//!             '1'                    (float: Gorilla XOR, as encoding 1)
//! sample 0:   value
//! sample 1:   nominal interval D as a signed varbits, then time, value
//! sample i:   time residual r = t - predicted, as a Rice code (zigzag)
//!             value: decimal mode: Rice code of zigzag(delta - predicted
//!                    delta), or an escape carrying the raw 64 bits (NaN,
//!                    stale marker, +-Inf, -0.0); float mode: XOR record
//! ```
//!
//! A Rice code of `z` with parameter `k`: `q = z >> k` zeros, a '1', then
//! the low `k` bits of `z`; when `q >= 16`: 16 zeros, a flag bit (0: number,
//! 1: raw value), then for a number a 6-bit length-1 and the number's bits,
//! for a raw value 64 bits. `k` adapts to a moving average of recent `z`,
//! computed identically by encoder and decoder. See `docs/format.md`.

// The bit-position reader measured faster for this codec (see bits.rs).
use super::bits::{BitPosReader as BitReader, BitWriter};
use super::{Sink, corrupt};
use crate::error::Result;

/// Unary quotients at or above this are escapes.
const Q_ESCAPE: u32 = 16;
/// Largest Rice parameter; larger numbers are escaped.
const K_MAX: u32 = 40;
/// The moving average keeps `1 << AVG_SHIFT` times the mean of `z`.
const AVG_SHIFT: u32 = 3;
/// Grid correction: the predicted grid moves by `residual >> GRID_GAIN`.
const GRID_GAIN: u32 = 2;
/// A non-escaped `z` adds at most `RICE_CAP_MUL * mean + RICE_CAP_ADD`.
const RICE_CAP_MUL: u64 = 4;
const RICE_CAP_ADD: u64 = 4;
/// The predicted value delta keeps `1 << DELTA_SHIFT` times the average.
const DELTA_SHIFT: u32 = 4;
/// Largest decimal exponent tried (10^22 is the largest exact power of ten).
pub(crate) const MAX_EXPONENT: u32 = 22;
/// Largest |m| of a decimal: integers up to 2^53 are exact in an f64.
const MAX_MANTISSA: i64 = 1 << 53;

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// `v` as `m / 10^e` with `|m| <= 2^53`, if that gives back `v`'s exact
/// bits. Division by an exact power of ten is correctly rounded, so the
/// decoder computes the very same f64.
#[inline]
pub(crate) fn to_decimal(v: f64, e: u32) -> Option<i64> {
    let x = v * POW10[e as usize];
    if x.is_nan() || x.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    // Round half away from zero by hand: `f64::round` is a library call
    // on baseline x86-64, and this runs for every appended value.
    let t = x as i64;
    let frac = x - t as f64;
    let m = if frac >= 0.5 {
        t + 1
    } else if frac <= -0.5 {
        t - 1
    } else {
        t
    };
    (from_decimal(m, e).to_bits() == v.to_bits()).then_some(m)
}

#[inline]
fn from_decimal(m: i64, e: u32) -> f64 {
    if e == 0 {
        m as f64
    } else {
        m as f64 / POW10[e as usize]
    }
}

/// Values that decimal mode stores raw instead of switching modes.
#[inline]
fn is_special(v: f64) -> bool {
    !v.is_finite() || v.to_bits() == (-0.0f64).to_bits()
}

/// The smallest exponent `>= from` at which `v` is a decimal.
pub(crate) fn min_exponent(v: f64, from: u32) -> Option<u32> {
    (from..=MAX_EXPONENT).find(|&e| to_decimal(v, e).is_some())
}

/// The interval the grid assumes: the observed delta rounded to a round
/// number of milliseconds when it is within 5% of one, since scrape and
/// evaluation intervals are round and the first delta carries jitter.
fn nominal_interval(delta: i64) -> i64 {
    for unit in [60_000i64, 10_000, 5_000, 1_000, 500, 100, 50, 10] {
        if delta >= unit / 2
            && let Some(up) = delta.checked_add(unit / 2)
        {
            let rounded = up / unit * unit;
            if (delta - rounded).abs() <= unit / 20 {
                return rounded;
            }
        }
    }
    delta
}

/// Adaptive Rice parameter: a moving average of recent `z`. `ADOPT` says
/// whether an escaped number resets the average (value streams: a new rate
/// or a reset) or is ignored as an outlier (time streams: a missed scrape,
/// a pause).
#[derive(Debug, Clone, Copy, Default)]
struct Rice<const ADOPT: bool> {
    avg: u64,
}

impl<const ADOPT: bool> Rice<ADOPT> {
    #[inline]
    fn k(self) -> u32 {
        (64 - (self.avg >> (AVG_SHIFT + 1)).leading_zeros()).min(K_MAX)
    }

    #[inline]
    fn update(&mut self, z: u64, escaped: bool) {
        let mean = self.avg >> AVG_SHIFT;
        if escaped {
            if ADOPT {
                self.avg = z.min(1 << 40) << AVG_SHIFT;
            }
            return;
        }
        // One large value moves the average by a bounded step, so a single
        // outlier does not inflate the next codes.
        self.avg = self.avg - mean + z.min(RICE_CAP_MUL * mean + RICE_CAP_ADD);
    }

    fn write(&mut self, w: &mut BitWriter, z: u64) -> bool {
        let k = self.k();
        let q = z >> k;
        let escaped = q >= u64::from(Q_ESCAPE);
        if escaped {
            let len = 64 - z.leading_zeros();
            w.write_bits(0, Q_ESCAPE);
            w.write_bits(0, 1);
            w.write_bits(u64::from(len - 1), 6);
            w.write_bits(z, len);
        } else {
            // The unary part's terminating '1' and the k low bits in one
            // write (at most 16 + 40 bits).
            let low = z & ((1u64 << k) - 1);
            w.write_bits((1u64 << k) | low, q as u32 + 1 + k);
        }
        self.update(z, escaped);
        escaped
    }
}

/// A raw value in a value stream: the escape prefix, flag 1, 64 bits.
fn write_raw(w: &mut BitWriter, bits: u64) {
    w.write_bits(0, Q_ESCAPE);
    w.write_bits(1, 1);
    w.write_bits(bits, 64);
}

/// What a Rice code held.
enum Code {
    Small(u64),
    Escaped(u64),
    Raw(u64),
}

impl<const ADOPT: bool> Rice<ADOPT> {
    /// Reads one code with the adaptive parameter and adapts it.
    #[inline(always)]
    fn read(&mut self, r: &mut BitReader<'_>) -> Code {
        let code = read_rice(r, self.k());
        match code {
            Code::Small(z) => self.update(z, false),
            Code::Escaped(z) => self.update(z, true),
            Code::Raw(_) => {}
        }
        code
    }
}

/// How values are stored in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueMode {
    Decimal(u32),
    Float,
}

/// The value mode that stores `v` best, on its own.
pub(crate) fn mode_for(v: f64) -> ValueMode {
    if is_special(v) {
        return ValueMode::Decimal(0);
    }
    match min_exponent(v, 0) {
        Some(e) => ValueMode::Decimal(e),
        None => ValueMode::Float,
    }
}

/// Timestamp predictor state, shared by encoder and decoder.
#[derive(Debug, Clone)]
struct TimeState {
    t_prev: i64,
    interval: i64,
    next: i64,
    rice: Rice<false>,
}

impl TimeState {
    fn new(t0: i64) -> Self {
        TimeState {
            t_prev: t0,
            interval: 0,
            next: t0,
            rice: Rice::default(),
        }
    }
}

impl TimeState {
    /// After a sample at `t` whose residual was `r` (`escaped` when it was
    /// too far from the grid to be jitter).
    #[inline]
    fn advance(&mut self, t: i64, r: i64, escaped: bool) {
        if escaped {
            self.interval = nominal_interval(t.wrapping_sub(self.t_prev));
            self.next = t.wrapping_add(self.interval);
        } else {
            let shift = r.wrapping_add(1 << (GRID_GAIN - 1)) >> GRID_GAIN;
            self.next = self.next.wrapping_add(self.interval).wrapping_add(shift);
        }
        self.t_prev = t;
    }
}

/// Decimal value state, shared by encoder and decoder.
#[derive(Debug, Clone, Default)]
struct DecimalState {
    m_prev: i64,
    /// `1 << DELTA_SHIFT` times the moving average of the deltas.
    delta_avg: i64,
    rice: Rice<true>,
}

impl DecimalState {
    /// Sample 0's value in decimal mode: '1' and raw bits, or '0' and the
    /// mantissa as signed varbits (which starts the deltas).
    #[inline(always)]
    fn read_first(&mut self, r: &mut BitReader<'_>, e: u32) -> u64 {
        if r.read_bits(1) == 1 {
            return r.read_bits(64);
        }
        let m = read_signed_varbits(r);
        self.m_prev = m;
        from_decimal(m, e).to_bits()
    }

    /// The value whose residual code was `z` (`escaped` as read), the
    /// state moved past it.
    #[inline(always)]
    fn decode(&mut self, z: u64, escaped: bool, e: u32) -> u64 {
        let m = self
            .m_prev
            .wrapping_add(self.predicted())
            .wrapping_add(unzigzag(z));
        self.advance(m, escaped);
        from_decimal(m, e).to_bits()
    }

    /// The zigzagged residual that codes `m` after this state.
    #[inline]
    fn residual(&self, m: i64) -> u64 {
        zigzag(m.wrapping_sub(self.m_prev).wrapping_sub(self.predicted()))
    }

    /// Writes sample 0's value as [`DecimalState::read_first`] reads it.
    fn write_first(&mut self, w: &mut BitWriter, first: BlockValue) {
        match first {
            BlockValue::Raw(bits) => {
                w.write_bits(1, 1);
                w.write_bits(bits, 64);
            }
            BlockValue::Mantissa(m) => {
                w.write_bits(0, 1);
                write_signed_varbits(w, m);
                self.m_prev = m;
            }
        }
    }

    #[inline]
    fn predicted(&self) -> i64 {
        self.delta_avg.wrapping_add(1 << (DELTA_SHIFT - 1)) >> DELTA_SHIFT
    }

    #[inline]
    fn advance(&mut self, m: i64, escaped: bool) {
        let delta = m.wrapping_sub(self.m_prev);
        // A jump (a reset, a new rate) is believed at once; small changes
        // are averaged.
        self.delta_avg = if escaped {
            delta.wrapping_shl(DELTA_SHIFT)
        } else {
            self.delta_avg
                .wrapping_add(delta)
                .wrapping_sub(self.delta_avg >> DELTA_SHIFT)
        };
        self.m_prev = m;
    }
}

/// Gorilla XOR state for float mode.
#[derive(Debug, Clone, Default)]
struct XorState {
    prev: u64,
    window: Option<(u8, u8)>,
}

impl XorState {
    fn write(&mut self, w: &mut BitWriter, bits: u64) {
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write_bits(0, 1);
            return;
        }
        let lz = x.leading_zeros().min(31);
        let tz = x.trailing_zeros();
        if let Some((wl, wt)) = self.window
            && lz >= u32::from(wl)
            && tz >= u32::from(wt)
        {
            w.write_bits(0b10, 2);
            w.write_bits(x >> wt, 64 - u32::from(wl) - u32::from(wt));
            return;
        }
        let sig = 64 - lz - tz;
        w.write_bits(0b11, 2);
        w.write_bits(u64::from(lz), 5);
        w.write_bits(u64::from(sig & 63), 6);
        w.write_bits(x >> tz, sig);
        self.window = Some((lz as u8, tz as u8));
    }

    #[inline(always)]
    fn read(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        r.ensure(56);
        match r.peek_word().leading_ones().min(2) {
            0 => r.consume(1),
            1 => {
                r.consume(2);
                let (lz, tz) = self
                    .window
                    .map_or((0, 0), |(l, t)| (u32::from(l), u32::from(t)));
                self.prev ^= r.read_bits(64 - lz - tz) << tz;
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
                self.window = Some((lz as u8, tz as u8));
                self.prev ^= r.read_bits(sig) << tz;
            }
        }
        Ok(self.prev)
    }
}

/// Streaming state of an encoding-2 chunk.
#[derive(Debug, Clone)]
pub(crate) struct DecimalEncoder {
    w: BitWriter,
    count: u32,
    time: TimeState,
    values: ValueState,
}

/// The encoder's value state for its mode.
#[derive(Debug, Clone)]
enum ValueState {
    Decimal {
        e: u8,
        state: DecimalState,
        /// Largest |m| so far, to know whether a larger exponent still fits.
        max_abs_m: u64,
    },
    Float(XorState),
}

/// Outcome of an append: done, or the chunk must be re-encoded in another
/// value mode first (the caller re-encodes and appends again).
pub(crate) enum Appended {
    Done,
    NeedsMode(ValueMode),
}

impl DecimalEncoder {
    pub(crate) fn new(mode: ValueMode) -> Self {
        let mut w = BitWriter::new();
        match mode {
            ValueMode::Decimal(e) => {
                w.write_bits(0, 1);
                w.write_bits(u64::from(e), 5);
            }
            ValueMode::Float => w.write_bits(1, 1),
        }
        DecimalEncoder {
            w,
            count: 0,
            time: TimeState::new(0),
            values: match mode {
                ValueMode::Decimal(e) => ValueState::Decimal {
                    e: e as u8,
                    state: DecimalState::default(),
                    max_abs_m: 0,
                },
                ValueMode::Float => ValueState::Float(XorState::default()),
            },
        }
    }

    /// Appends a sample, unless its value needs another value mode.
    pub(crate) fn append(&mut self, t: i64, v: f64) -> Appended {
        // Decide the value's coding before writing anything.
        let m = match self.values {
            ValueState::Decimal { e, max_abs_m, .. } if !is_special(v) => {
                match to_decimal(v, e.into()) {
                    Some(m) => Some(m),
                    None => {
                        let e = u32::from(e);
                        let scale_fits = |e2: u32| {
                            10u64
                                .checked_pow(e2 - e)
                                .and_then(|f| max_abs_m.checked_mul(f))
                                .is_some_and(|x| x <= MAX_MANTISSA as u64)
                        };
                        return Appended::NeedsMode(match min_exponent(v, e + 1) {
                            Some(e2) if scale_fits(e2) => ValueMode::Decimal(e2),
                            _ => ValueMode::Float,
                        });
                    }
                }
            }
            _ => None,
        };

        if self.count == 0 {
            self.time.t_prev = t;
        } else {
            if self.count == 1 {
                let interval = nominal_interval(t.wrapping_sub(self.time.t_prev));
                write_signed_varbits(&mut self.w, interval);
                self.time.interval = interval;
                self.time.next = self.time.t_prev.wrapping_add(interval);
            }
            let r = t.wrapping_sub(self.time.next);
            let escaped = self.time.rice.write(&mut self.w, zigzag(r));
            self.time.advance(t, r, escaped);
        }

        match (&mut self.values, m) {
            (ValueState::Float(xor), _) => xor.write(&mut self.w, v.to_bits()),
            (ValueState::Decimal { .. }, None) if self.count == 0 => {
                self.w.write_bits(1, 1);
                self.w.write_bits(v.to_bits(), 64);
            }
            (ValueState::Decimal { .. }, None) => write_raw(&mut self.w, v.to_bits()),
            (
                ValueState::Decimal {
                    state, max_abs_m, ..
                },
                Some(m),
            ) => {
                *max_abs_m = (*max_abs_m).max(m.unsigned_abs());
                if self.count == 0 {
                    // The first value is not a delta: keep it out of the
                    // averages.
                    self.w.write_bits(0, 1);
                    write_signed_varbits(&mut self.w, m);
                    state.m_prev = m;
                } else {
                    let delta = m.wrapping_sub(state.m_prev);
                    let res = delta.wrapping_sub(state.predicted());
                    let escaped = state.rice.write(&mut self.w, zigzag(res));
                    state.advance(m, escaped);
                }
            }
        }
        self.count += 1;
        Appended::Done
    }

    pub(crate) fn body(&self) -> &[u8] {
        self.w.bytes()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.w.heap_bytes()
    }
}

/// A signed number in few bits: 6-bit length (0 for zero), then the
/// zigzagged number's bits.
fn write_signed_varbits(w: &mut BitWriter, v: i64) {
    let z = zigzag(v);
    let len = 64 - z.leading_zeros();
    // Lengths 1..=64 are stored as 0..=63 after a '1'; zero is a lone '0'.
    if len == 0 {
        w.write_bits(0, 1);
    } else {
        w.write_bits(1, 1);
        w.write_bits(u64::from(len - 1), 6);
        w.write_bits(z, len);
    }
}

#[inline(always)]
fn read_signed_varbits(r: &mut BitReader<'_>) -> i64 {
    if r.read_bits(1) == 0 {
        return 0;
    }
    let len = r.read_bits(6) as u32 + 1;
    unzigzag(r.read_bits(len))
}

/// Value decoding for one value mode, so that the sample loop is compiled
/// once per mode without a per-sample mode check.
trait Values {
    /// The first value (sample 0).
    fn first(&mut self, r: &mut BitReader<'_>) -> Result<u64>;
    /// The value of each later sample.
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<u64>;
}

struct DecimalValues {
    e: u32,
    state: DecimalState,
}

impl Values for DecimalValues {
    #[inline(always)]
    fn first(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        Ok(self.state.read_first(r, self.e))
    }

    #[inline(always)]
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        let (z, escaped) = match self.state.rice.read(r) {
            Code::Small(z) => (z, false),
            Code::Escaped(z) => (z, true),
            Code::Raw(bits) => return Ok(bits),
        };
        Ok(self.state.decode(z, escaped, self.e))
    }
}

struct FloatValues(XorState);

impl Values for FloatValues {
    #[inline(always)]
    fn first(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        // The encoder XORs the first value with 0, like every other.
        self.0.read(r)
    }

    #[inline(always)]
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        self.0.read(r)
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
    let full = mint <= t0 && t_last <= maxt;
    if r.read_bits(1) == 0 {
        let e = r.read_bits(5) as u32;
        if e > MAX_EXPONENT {
            return Err(corrupt("decimal exponent out of range"));
        }
        let vals = DecimalValues {
            e,
            state: DecimalState::default(),
        };
        if full {
            decode_samples::<_, true>(r, vals, body, count, t0, t_last, mint, maxt, out)
        } else {
            decode_samples::<_, false>(r, vals, body, count, t0, t_last, mint, maxt, out)
        }
    } else {
        let vals = FloatValues(XorState::default());
        if full {
            decode_samples::<_, true>(r, vals, body, count, t0, t_last, mint, maxt, out)
        } else {
            decode_samples::<_, false>(r, vals, body, count, t0, t_last, mint, maxt, out)
        }
    }
}

/// The sample loop; `FULL` when every sample is inside `[mint, maxt]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decode_samples<V: Values, const FULL: bool>(
    mut r: BitReader<'_>,
    mut vals: V,
    body: &[u8],
    count: usize,
    t0: i64,
    t_last: i64,
    mint: i64,
    maxt: i64,
    out: &mut impl Sink,
) -> Result<()> {
    let mut t = t0;
    let v = vals.first(&mut r)?;
    if FULL || t >= mint {
        out.push(t, v);
    }
    let mut time = TimeState::new(t0);
    if count > 1 {
        time.interval = read_signed_varbits(&mut r);
        time.next = t0.wrapping_add(time.interval);
    }
    for _ in 1..count {
        let (z, escaped) = match time.rice.read(&mut r) {
            Code::Small(z) => (z, false),
            Code::Escaped(z) => (z, true),
            Code::Raw(_) => return Err(corrupt("raw value in the time stream")),
        };
        let res = unzigzag(z);
        let t_next = time.next.wrapping_add(res);
        if t_next <= t {
            return Err(corrupt("timestamps not increasing"));
        }
        t = t_next;
        time.advance(t, res, escaped);
        let v = vals.next(&mut r)?;
        if FULL {
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
    if FULL {
        if t != t_last {
            return Err(corrupt("last timestamp differs from the header's max time"));
        }
        if body.len() as u64 * 8 - r.bits_read() >= 8 {
            return Err(corrupt("bytes left after the last sample"));
        }
    }
    Ok(())
}

/// Encoding 3's two streams of a whole run of samples (sorted by time,
/// at least one): the time stream (sample 1's nominal interval, then a
/// residual per later sample, exactly as encoding 2 codes them) and the
/// value stream (the value mode, then every value, as encoding 2 codes
/// them). Apart, samples that share their timestamps (every series of one
/// scrape) share one time stream, which a block stores once.
pub(crate) fn encode_split(samples: &[(i64, u64)]) -> (Vec<u8>, Vec<u8>) {
    (encode_time_stream(samples), encode_value_stream(samples))
}

/// [`encode_split`] for the head's seal, which keeps the chunk's own
/// encoding-2 bytes when they are shorter: those hold encoding 2's time
/// and decimal codes already, so only the other codings are tried here
/// (the fixed grid, blocked decimals, and the float codings). Half the
/// work of [`encode_split`], which matters in a WAL replay, where every
/// sample passes through a seal.
pub(crate) fn encode_split_for_seal(samples: &[(i64, u64)]) -> (Vec<u8>, Vec<u8>) {
    let times = encode_fixed_grid(samples).unwrap_or_else(|| encode_tracked_times(samples));
    let values = match split_mode(samples) {
        (ValueMode::Decimal(e), codes) => encode_blocked_decimal(&codes, e).into_bytes(),
        (ValueMode::Float, _) => encode_value_stream(samples),
    };
    (times, values)
}

/// The shorter of the two time codings of a run: the tracked grid (as
/// encoding 2) or the fixed grid ([`encode_fixed_grid`]).
fn encode_time_stream(samples: &[(i64, u64)]) -> Vec<u8> {
    let tracked = encode_tracked_times(samples);
    match encode_fixed_grid(samples) {
        Some(fixed) if fixed.len() < tracked.len() => fixed,
        _ => tracked,
    }
}

/// Residuals per block of the fixed-grid time coding; a block whose
/// residuals are all zero is one bit.
const GRID_BLOCK: usize = 16;
/// Largest Rice parameter of the fixed-grid time coding (3 bits).
const GRID_K_MAX: u32 = 7;

/// The fixed-grid timestamps of samples 1.. of a run starting at `t0`:
/// each sample's residual from the grid point `g` (starting at `t0 + off +
/// d`), and the grid's next point: `g + d`, or `t + d` after a residual
/// larger than half an interval (a missed scrape, a new phase).
/// `half` is `|d / 2|`.
#[inline(always)]
fn grid_step(g: i64, t: i64, d: i64, half: u64) -> (i64, i64) {
    let r = t.wrapping_sub(g);
    let next = if r.unsigned_abs() > half {
        t.wrapping_add(d)
    } else {
        g.wrapping_add(d)
    };
    (r, next)
}

/// Bits of a fixed-parameter Rice code of `z` (escapes as in encoding 2).
fn rice_bits(z: u64, k: u32) -> u64 {
    let q = z >> k;
    if q < u64::from(Q_ESCAPE) {
        q + 1 + u64::from(k)
    } else {
        u64::from(Q_ESCAPE) + 1 + 6 + u64::from(64 - z.leading_zeros())
    }
}

/// A fixed-parameter Rice code of `z` (escapes as in encoding 2).
fn write_rice(w: &mut BitWriter, z: u64, k: u32) {
    let q = z >> k;
    if q >= u64::from(Q_ESCAPE) {
        let len = 64 - z.leading_zeros();
        w.write_bits(0, Q_ESCAPE);
        w.write_bits(0, 1);
        w.write_bits(u64::from(len - 1), 6);
        w.write_bits(z, len);
    } else {
        let low = z & ((1u64 << k) - 1);
        w.write_bits((1u64 << k) | low, q as u32 + 1 + k);
    }
}

/// The fixed-grid time coding, for runs of two samples or more: '0' (the
/// tracked coding starts with '1', its interval never being zero), the
/// interval `d` and the grid's offset `off` as signed varbits, a 3-bit Rice
/// parameter `k`, then blocks of [`GRID_BLOCK`] residuals: '1' for a block
/// of zeros, else '0' and a Rice code of each residual's zigzag. Scrapes
/// sit on a fixed grid with independent jitter, which this pays for once
/// and with the best parameter for the whole run, where the tracked grid
/// pays for its own corrections too; on an exact grid it costs a bit per
/// 16 samples. `None` when the interval is not positive.
fn encode_fixed_grid(samples: &[(i64, u64)]) -> Option<Vec<u8>> {
    let (&(t0, _), rest) = samples.split_first()?;
    let &(t1, _) = rest.first()?;
    let d = nominal_interval(t1.wrapping_sub(t0));
    if d <= 0 {
        return None;
    }
    let half = (d / 2).unsigned_abs();
    let residuals = |off: i64| -> Vec<u64> {
        let mut g = t0.wrapping_add(off).wrapping_add(d);
        rest.iter()
            .map(|&(t, _)| {
                let (r, next) = grid_step(g, t, d, half);
                g = next;
                zigzag(r)
            })
            .collect()
    };
    // The offset: the median residual of the grid through t0 (its jitter
    // would otherwise shift every residual), among those within half an
    // interval.
    let mut near: Vec<i64> = residuals(0)
        .into_iter()
        .map(unzigzag)
        .filter(|r| r.unsigned_abs() <= half)
        .collect();
    let mid = near.len() / 2;
    let off = if near.is_empty() {
        0
    } else {
        *near.select_nth_unstable(mid).1
    };
    let zs = residuals(off);
    let blocks = || zs.chunks(GRID_BLOCK).filter(|b| b.iter().any(|&z| z != 0));
    let k = (0..=GRID_K_MAX)
        .min_by_key(|&k| {
            blocks()
                .flat_map(|b| b.iter())
                .map(|&z| rice_bits(z, k))
                .sum::<u64>()
        })
        .unwrap_or(0);
    let mut w = BitWriter::new();
    w.write_bits(0, 1);
    write_signed_varbits(&mut w, d);
    write_signed_varbits(&mut w, off);
    w.write_bits(u64::from(k), 3);
    for b in zs.chunks(GRID_BLOCK) {
        if b.iter().all(|&z| z == 0) {
            w.write_bits(1, 1);
        } else {
            w.write_bits(0, 1);
            for &z in b {
                write_rice(&mut w, z, k);
            }
        }
    }
    Some(w.into_bytes())
}

/// Encoding 2's time coding of a run, in a stream of its own.
fn encode_tracked_times(samples: &[(i64, u64)]) -> Vec<u8> {
    let mut w = BitWriter::new();
    let Some(&(t0, _)) = samples.first() else {
        return w.into_bytes();
    };
    let mut time = TimeState::new(t0);
    for (i, &(t, _)) in samples.iter().enumerate().skip(1) {
        if i == 1 {
            let interval = nominal_interval(t.wrapping_sub(t0));
            write_signed_varbits(&mut w, interval);
            time.interval = interval;
            time.next = t0.wrapping_add(interval);
        }
        let r = t.wrapping_sub(time.next);
        let escaped = time.rice.write(&mut w, zigzag(r));
        time.advance(t, r, escaped);
    }
    w.into_bytes()
}

/// The value mode for a whole run: the smallest exponent at which every
/// ordinary value is a decimal, else float mode.
/// For decimal mode, also every value's code at its exponent (computed
/// once for both decimal codings).
fn split_mode(samples: &[(i64, u64)]) -> (ValueMode, Vec<BlockValue>) {
    let mut e = 0;
    for &(_, bits) in samples {
        let v = f64::from_bits(bits);
        if is_special(v) {
            continue;
        }
        match min_exponent(v, e) {
            Some(e2) => e = e2,
            None => return (ValueMode::Float, Vec::new()),
        }
    }
    let codes: Option<Vec<BlockValue>> = samples
        .iter()
        .map(|&(_, bits)| {
            let v = f64::from_bits(bits);
            if is_special(v) {
                Some(BlockValue::Raw(bits))
            } else {
                to_decimal(v, e).map(BlockValue::Mantissa)
            }
        })
        .collect();
    match codes {
        Some(codes) => (ValueMode::Decimal(e), codes),
        None => (ValueMode::Float, Vec::new()),
    }
}

fn encode_value_stream(samples: &[(i64, u64)]) -> Vec<u8> {
    let mut w = BitWriter::new();
    let (mode, codes) = split_mode(samples);
    match mode {
        ValueMode::Float => {
            // Whichever of the two float codings is smaller for this run.
            let mut xor_w = BitWriter::new();
            xor_w.write_bits(0b10, 2);
            let mut xor = XorState::default();
            for &(_, bits) in samples {
                xor.write(&mut xor_w, bits);
            }
            let mut delta_w = BitWriter::new();
            delta_w.write_bits(0b11, 2);
            let mut state = DecimalState::default();
            for (i, &(_, bits)) in samples.iter().enumerate() {
                let m = bits as i64;
                if i == 0 {
                    write_signed_varbits(&mut delta_w, m);
                    state.m_prev = m;
                } else {
                    let delta = m.wrapping_sub(state.m_prev);
                    let res = delta.wrapping_sub(state.predicted());
                    let escaped = state.rice.write(&mut delta_w, zigzag(res));
                    state.advance(m, escaped);
                }
            }
            return if delta_w.bit_len() < xor_w.bit_len() {
                delta_w.into_bytes()
            } else {
                xor_w.into_bytes()
            };
        }
        ValueMode::Decimal(e) => {
            w.write_bits(0, 1);
            w.write_bits(u64::from(e), 5);
            let mut state = DecimalState::default();
            if let Some((&first, rest)) = codes.split_first() {
                state.write_first(&mut w, first);
                for &code in rest {
                    match code {
                        BlockValue::Raw(bits) => write_raw(&mut w, bits),
                        BlockValue::Mantissa(m) => {
                            let escaped = state.rice.write(&mut w, state.residual(m));
                            state.advance(m, escaped);
                        }
                    }
                }
            }
            let blocked = encode_blocked_decimal(&codes, e);
            if blocked.bit_len() < w.bit_len() {
                return blocked.into_bytes();
            }
        }
    }
    w.into_bytes()
}

/// Values per block of the blocked decimal coding.
const VALUE_BLOCK: usize = 16;
/// The value of the 5-bit exponent field (exponents stop at 22) that
/// marks the blocked decimal coding.
const BLOCKED_DECIMAL: u32 = 31;

/// Bits of a block's Rice parameter `k` after a block with `prev`
/// ([`write_block_k`]).
fn block_k_bits(prev: u32, k: u32) -> u64 {
    if k == prev {
        1
    } else if k == prev + 1 {
        2
    } else if prev > 0 && k == prev - 1 {
        3
    } else {
        9
    }
}

/// A block's Rice parameter, relative to the previous block's: '0' the
/// same, '10' one more, '110' one less, '111' and 6 bits.
fn write_block_k(w: &mut BitWriter, prev: u32, k: u32) {
    if k == prev {
        w.write_bits(0, 1);
    } else if k == prev + 1 {
        w.write_bits(0b10, 2);
    } else if prev > 0 && k == prev - 1 {
        w.write_bits(0b110, 3);
    } else {
        w.write_bits(0b111, 3);
        w.write_bits(u64::from(k), 6);
    }
}

#[inline(always)]
fn read_block_k(r: &mut BitReader<'_>, prev: u32) -> Result<u32> {
    r.ensure(56);
    let k = match r.peek_word().leading_ones() {
        0 => {
            r.consume(1);
            prev
        }
        1 => {
            r.consume(2);
            prev + 1
        }
        2 => {
            r.consume(3);
            prev.wrapping_sub(1)
        }
        _ => {
            r.consume(3);
            r.read_bits(6) as u32
        }
    };
    if k > K_MAX {
        return Err(corrupt("value block Rice parameter out of range"));
    }
    Ok(k)
}

/// The code of one value of a block: a mantissa's residual or a raw value.
#[derive(Clone, Copy)]
enum BlockValue {
    Mantissa(i64),
    Raw(u64),
}

/// Bits of a block coded with parameter `k` from `state` (left as after
/// the block).
fn block_bits(state: &mut DecimalState, block: &[BlockValue], k: u32) -> u64 {
    let mut bits = 0;
    for &v in block {
        match v {
            BlockValue::Raw(_) => bits += u64::from(Q_ESCAPE) + 1 + 64,
            BlockValue::Mantissa(m) => {
                let z = state.residual(m);
                bits += rice_bits(z, k);
                state.advance(m, (z >> k) >= u64::from(Q_ESCAPE));
            }
        }
    }
    bits
}

/// The blocked decimal value coding of a run at exponent `e`: '0', the
/// 5-bit marker 31, the 5-bit `e`, sample 0 as decimal mode writes it,
/// then blocks of [`VALUE_BLOCK`] values: '1' for a block in which every
/// value is its predicted one (a flat counter, a gauge that holds still),
/// else '0', the block's Rice parameter ([`write_block_k`]) and a
/// fixed-parameter Rice code per value. Predictions, escapes and raw
/// values are decimal mode's. A block's parameter is the one that codes it
/// shortest, where decimal mode adapts its parameter sample by sample:
/// fewer bits, and decoding has no adaptation in each code's dependency
/// chain.
fn encode_blocked_decimal(codes: &[BlockValue], e: u32) -> BitWriter {
    let mut w = BitWriter::new();
    w.write_bits(0, 1);
    w.write_bits(u64::from(BLOCKED_DECIMAL), 5);
    w.write_bits(u64::from(e), 5);
    let mut state = DecimalState::default();
    let Some((&first, rest)) = codes.split_first() else {
        return w;
    };
    state.write_first(&mut w, first);
    let mut prev_k = 0;
    for block in rest.chunks(VALUE_BLOCK) {
        // The residuals as they are when no code escapes (an escape
        // resets the predicted delta): the block's as written for every
        // parameter at which none does.
        let mut zs = [0u64; VALUE_BLOCK];
        let (mut n, mut raws) = (0, 0u64);
        let mut probe = state.clone();
        for &v in block {
            match v {
                BlockValue::Raw(_) => raws += 1,
                BlockValue::Mantissa(m) => {
                    zs[n] = probe.residual(m);
                    n += 1;
                    probe.advance(m, false);
                }
            }
        }
        let zs = &zs[..n];
        if raws == 0 && zs.iter().all(|&z| z == 0) {
            w.write_bits(1, 1);
            state = probe;
            continue;
        }
        let max_z = zs.iter().copied().max().unwrap_or(0);
        let bits_at = |k: u32| -> u64 {
            let codes = if max_z >> k < u64::from(Q_ESCAPE) {
                zs.iter().map(|&z| z >> k).sum::<u64>()
                    + n as u64 * u64::from(1 + k)
                    + raws * (u64::from(Q_ESCAPE) + 1 + 64)
            } else {
                block_bits(&mut state.clone(), block, k)
            };
            block_k_bits(prev_k, k) + codes
        };
        // The best parameter is near log2 of the typical residual: try
        // the few around the median's (an outlier would drag a mean) and
        // the previous block's (the cheapest to write) rather than all
        // 41, which made sealing a chunk cost more than appending it.
        let median = if n == 0 {
            0
        } else {
            let mut sorted = [0u64; VALUE_BLOCK];
            sorted[..n].copy_from_slice(zs);
            *sorted[..n].select_nth_unstable(n / 2).1
        };
        let k0 = (64 - median.leading_zeros()).min(K_MAX);
        let k = (k0.saturating_sub(2)..=(k0 + 2).min(K_MAX))
            .chain([prev_k])
            .min_by_key(|&k| bits_at(k))
            .unwrap_or(0);
        w.write_bits(0, 1);
        write_block_k(&mut w, prev_k, k);
        prev_k = k;
        for &v in block {
            match v {
                BlockValue::Raw(bits) => write_raw(&mut w, bits),
                BlockValue::Mantissa(m) => {
                    let z = state.residual(m);
                    write_rice(&mut w, z, k);
                    state.advance(m, (z >> k) >= u64::from(Q_ESCAPE));
                }
            }
        }
    }
    w
}

/// Decoding of the blocked decimal coding ([`encode_blocked_decimal`]).
struct BlockedDecimalValues {
    e: u32,
    state: DecimalState,
    /// The current block's Rice parameter.
    k: u32,
    /// Values left in the current block.
    left: u32,
    /// Whether every value of the current block is its predicted one.
    zeros: bool,
}

impl Values for BlockedDecimalValues {
    #[inline(always)]
    fn first(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        Ok(self.state.read_first(r, self.e))
    }

    #[inline(always)]
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        if self.left == 0 {
            self.zeros = r.read_bits(1) == 1;
            if !self.zeros {
                self.k = read_block_k(r, self.k)?;
            }
            self.left = VALUE_BLOCK as u32;
        }
        self.left -= 1;
        let (z, escaped) = if self.zeros {
            (0, false)
        } else {
            match read_rice(r, self.k) {
                Code::Small(z) => (z, false),
                Code::Escaped(z) => (z, true),
                Code::Raw(bits) => return Ok(bits),
            }
        };
        Ok(self.state.decode(z, escaped, self.e))
    }
}

/// Decodes `count` samples of encoding 3 from its time and value streams
/// (first timestamp `t0`, last `t_last`), pushing those inside `[mint,
/// maxt]` to `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_split(
    times: &[u8],
    values: &[u8],
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
    let mut vr = BitReader::new(values);
    let s = SplitRead {
        times,
        values,
        count,
        t0,
        t_last,
        mint,
        maxt,
    };
    // Value modes: '0' + 5-bit e (decimal), '10' Gorilla XOR, '11' deltas
    // of the bit patterns.
    if vr.read_bits(1) == 0 {
        let e = vr.read_bits(5) as u32;
        if e == BLOCKED_DECIMAL {
            let e = vr.read_bits(5) as u32;
            if e > MAX_EXPONENT {
                return Err(corrupt("decimal exponent out of range"));
            }
            let vals = BlockedDecimalValues {
                e,
                state: DecimalState::default(),
                k: 0,
                left: 0,
                zeros: false,
            };
            return s.run_blocked(vr, vals, out);
        }
        if e > MAX_EXPONENT {
            return Err(corrupt("decimal exponent out of range"));
        }
        let vals = DecimalValues {
            e,
            state: DecimalState::default(),
        };
        s.run(vr, vals, out)
    } else if vr.read_bits(1) == 0 {
        s.run(vr, FloatValues(XorState::default()), out)
    } else {
        s.run(vr, BitsDeltaValues(DecimalState::default()), out)
    }
}

/// What an encoding-3 decode reads, for [`decode_split_samples`].
struct SplitRead<'a> {
    times: &'a [u8],
    values: &'a [u8],
    count: usize,
    t0: i64,
    t_last: i64,
    mint: i64,
    maxt: i64,
}

impl SplitRead<'_> {
    /// The fixed-grid time coding's header, after its '0': the grid.
    #[inline(always)]
    fn read_grid(&self, tr: &mut BitReader<'_>) -> Result<Grid> {
        let d = read_signed_varbits(tr);
        let off = read_signed_varbits(tr);
        let k = tr.read_bits(3) as u32;
        if d <= 0 {
            return Err(corrupt("time grid interval not positive"));
        }
        Ok(Grid::new(self.t0.wrapping_add(off).wrapping_add(d), d, k))
    }

    /// Reads the time coding's header and runs the sample loop for it.
    #[inline(always)]
    fn run<V: Values>(&self, vr: BitReader<'_>, vals: V, out: &mut impl Sink) -> Result<()> {
        let mut tr = BitReader::new(self.times);
        if self.count < 2 {
            return self.run_with(tr, vr, vals, TrackedTimes::new(self.t0), out);
        }
        tr.ensure(56);
        if tr.peek_word() >> 63 == 1 {
            let mut times = TrackedTimes::new(self.t0);
            times.0.interval = read_signed_varbits(&mut tr);
            times.0.next = self.t0.wrapping_add(times.0.interval);
            return self.run_with(tr, vr, vals, times, out);
        }
        tr.consume(1);
        let times = GridTimes {
            grid: self.read_grid(&mut tr)?,
            left: 0,
            zeros: false,
        };
        self.run_with(tr, vr, vals, times, out)
    }

    /// [`SplitRead::run`] for blocked decimal values: with a fixed-grid
    /// time stream (what the writer produces for scrapes), a loop that
    /// reads both streams' block headers once per block and each block in
    /// a loop specialised for which of the two are all zeros.
    #[inline(always)]
    fn run_blocked(
        &self,
        mut vr: BitReader<'_>,
        mut vals: BlockedDecimalValues,
        out: &mut impl Sink,
    ) -> Result<()> {
        let mut tr = BitReader::new(self.times);
        if self.count < 2 || {
            tr.ensure(56);
            tr.peek_word() >> 63 == 1
        } {
            return self.run(vr, vals, out);
        }
        tr.consume(1);
        let grid = self.read_grid(&mut tr)?;
        let v = vals.first(&mut vr)?;
        let st = Blocked {
            tr,
            vr,
            grid,
            st: vals.state,
            kv: 0,
            e: vals.e,
            t: self.t0,
        };
        if self.mint <= self.t0 && self.t_last <= self.maxt {
            self.blocked_samples::<true>(st, v, out)
        } else {
            self.blocked_samples::<false>(st, v, out)
        }
    }

    #[inline(always)]
    fn blocked_samples<const FULL: bool>(
        &self,
        mut b: Blocked<'_, '_>,
        v0: u64,
        out: &mut impl Sink,
    ) -> Result<()> {
        let (mint, maxt) = (self.mint, self.maxt);
        if FULL || self.t0 >= mint {
            out.push(self.t0, v0);
        }
        let mut i = 1;
        while i < self.count {
            let n = (self.count - i).min(GRID_BLOCK);
            let tz = b.tr.read_bits(1) == 1;
            let vz = b.vr.read_bits(1) == 1;
            if !vz {
                b.kv = read_block_k(&mut b.vr, b.kv)?;
            }
            let stop = match (tz, vz) {
                (true, true) => b.block::<FULL, true, true>(n, mint, maxt, out)?,
                (true, false) => b.block::<FULL, true, false>(n, mint, maxt, out)?,
                (false, true) => b.block::<FULL, false, true>(n, mint, maxt, out)?,
                (false, false) => b.block::<FULL, false, false>(n, mint, maxt, out)?,
            };
            if stop {
                break;
            }
            i += n;
        }
        split_end_checks(
            (&b.tr, self.times),
            (&b.vr, self.values),
            FULL.then_some((b.t, self.t_last)),
        )
    }

    #[inline(always)]
    fn run_with<V: Values, T: Times>(
        &self,
        tr: BitReader<'_>,
        vr: BitReader<'_>,
        vals: V,
        times: T,
        out: &mut impl Sink,
    ) -> Result<()> {
        let s = (tr, vr, vals, times);
        let (times_b, values) = (self.times, self.values);
        let (count, t0, t_last, mint, maxt) =
            (self.count, self.t0, self.t_last, self.mint, self.maxt);
        if mint <= t0 && t_last <= maxt {
            decode_split_samples::<_, _, true>(
                s, times_b, values, count, t0, t_last, mint, maxt, out,
            )
        } else {
            decode_split_samples::<_, _, false>(
                s, times_b, values, count, t0, t_last, mint, maxt, out,
            )
        }
    }
}

/// The state of [`SplitRead::run_blocked`]'s loop.
struct Blocked<'t, 'v> {
    tr: BitReader<'t>,
    vr: BitReader<'v>,
    grid: Grid,
    /// Decimal state, the current value block's Rice parameter, exponent.
    st: DecimalState,
    kv: u32,
    e: u32,
    /// The last timestamp.
    t: i64,
}

impl Blocked<'_, '_> {
    /// One block of `n` samples; `TZ`/`VZ` when its time residuals / value
    /// residuals are all zero. True when a sample after `maxt` was met.
    #[inline(always)]
    fn block<const FULL: bool, const TZ: bool, const VZ: bool>(
        &mut self,
        n: usize,
        mint: i64,
        maxt: i64,
        out: &mut impl Sink,
    ) -> Result<bool> {
        for _ in 0..n {
            let x = if TZ {
                self.grid.on_grid()
            } else {
                self.grid.read(&mut self.tr)?
            };
            let v = if VZ {
                self.st.decode(0, false, self.e)
            } else {
                match read_rice(&mut self.vr, self.kv) {
                    Code::Small(z) => self.st.decode(z, false, self.e),
                    Code::Escaped(z) => self.st.decode(z, true, self.e),
                    Code::Raw(bits) => bits,
                }
            };
            if x <= self.t {
                return Err(corrupt("timestamps not increasing"));
            }
            self.t = x;
            if FULL {
                out.push(x, v);
            } else if x > maxt {
                return Ok(true);
            } else if x >= mint {
                out.push(x, v);
            }
        }
        Ok(false)
    }
}

/// Timestamp decoding of an encoding-3 time stream, one coding per type.
trait Times {
    /// The next sample's timestamp.
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<i64>;
}

/// The tracked grid (encoding 2's coding).
struct TrackedTimes(TimeState);

impl TrackedTimes {
    fn new(t0: i64) -> Self {
        TrackedTimes(TimeState::new(t0))
    }
}

impl Times for TrackedTimes {
    #[inline(always)]
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<i64> {
        let (z, escaped) = match self.0.rice.read(r) {
            Code::Small(z) => (z, false),
            Code::Escaped(z) => (z, true),
            Code::Raw(_) => return Err(corrupt("raw value in the time stream")),
        };
        let res = unzigzag(z);
        let t = self.0.next.wrapping_add(res);
        self.0.advance(t, res, escaped);
        Ok(t)
    }
}

/// The fixed grid ([`encode_fixed_grid`]).
struct GridTimes {
    grid: Grid,
    /// Residuals left in the current block.
    left: u32,
    /// Whether the current block is all zeros.
    zeros: bool,
}

impl Times for GridTimes {
    #[inline(always)]
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<i64> {
        if self.left == 0 {
            self.zeros = r.read_bits(1) == 1;
            self.left = GRID_BLOCK as u32;
        }
        self.left -= 1;
        if self.zeros {
            Ok(self.grid.on_grid())
        } else {
            self.grid.read(r)
        }
    }
}

/// The fixed grid's decoding state: the next grid point `g`, the interval
/// `d`, `|d / 2|`, the Rice parameter.
#[derive(Clone, Copy)]
struct Grid {
    g: i64,
    d: i64,
    half: u64,
    k: u32,
}

impl Grid {
    fn new(g: i64, d: i64, k: u32) -> Self {
        Grid {
            g,
            d,
            half: (d / 2).unsigned_abs(),
            k,
        }
    }

    /// The timestamp of a sample in a block of zero residuals.
    #[inline(always)]
    fn on_grid(&mut self) -> i64 {
        let t = self.g;
        self.g = t.wrapping_add(self.d);
        t
    }

    /// The timestamp of a sample whose residual is coded.
    #[inline(always)]
    fn read(&mut self, r: &mut BitReader<'_>) -> Result<i64> {
        let z = match read_rice(r, self.k) {
            Code::Small(z) | Code::Escaped(z) => z,
            Code::Raw(_) => return Err(corrupt("raw value in the time stream")),
        };
        let t = self.g.wrapping_add(unzigzag(z));
        (_, self.g) = grid_step(self.g, t, self.d, self.half);
        Ok(t)
    }
}

/// Reads a Rice code with parameter `k` ([`write_rice`]). The common
/// case (no escape) is a handful of shifts on the reader's 64-bit buffer;
/// escapes take the cold path.
#[inline(always)]
fn read_rice(r: &mut BitReader<'_>, k: u32) -> Code {
    r.ensure(56);
    let w = r.peek_word();
    let q = w.leading_zeros();
    if q < Q_ESCAPE {
        let x = (w << q) >> (63 - k);
        let z = (x ^ (1 << k)) | (u64::from(q) << k);
        r.consume(q + 1 + k);
        return Code::Small(z);
    }
    let code;
    (*r, code) = read_rice_escape(r.clone());
    code
}

#[cold]
#[inline(never)]
fn read_rice_escape(mut r: BitReader<'_>) -> (BitReader<'_>, Code) {
    r.consume(Q_ESCAPE);
    if r.read_bits(1) == 1 {
        let bits = r.read_bits(64);
        return (r, Code::Raw(bits));
    }
    let len = r.read_bits(6) as u32 + 1;
    let z = r.read_bits(len);
    (r, Code::Escaped(z))
}

/// Encoding 3's second float coding: a value's bits read as an integer,
/// coded like a decimal mantissa (delta from the previous one minus the
/// predicted delta, adaptive Rice). For a float counter the bit patterns
/// of positive values grow with the value, and the delta is the increase
/// in units in the last place: a few bits fewer than XOR's changed
/// mantissa bits, and no window to re-send.
struct BitsDeltaValues(DecimalState);

impl Values for BitsDeltaValues {
    #[inline(always)]
    fn first(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        let m = read_signed_varbits(r);
        self.0.m_prev = m;
        Ok(m as u64)
    }

    #[inline(always)]
    fn next(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        let (z, escaped) = match self.0.rice.read(r) {
            Code::Small(z) => (z, false),
            Code::Escaped(z) => (z, true),
            Code::Raw(_) => return Err(corrupt("raw value in a bit-delta value stream")),
        };
        let m = self
            .0
            .m_prev
            .wrapping_add(self.0.predicted())
            .wrapping_add(unzigzag(z));
        self.0.advance(m, escaped);
        Ok(m as u64)
    }
}

/// The sample loop of encoding 3; `FULL` when every sample is inside
/// `[mint, maxt]`. `s` holds the time and value readers and decoders.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decode_split_samples<V: Values, T: Times, const FULL: bool>(
    s: (BitReader<'_>, BitReader<'_>, V, T),
    times: &[u8],
    values: &[u8],
    count: usize,
    t0: i64,
    t_last: i64,
    mint: i64,
    maxt: i64,
    out: &mut impl Sink,
) -> Result<()> {
    let (mut tr, mut vr, mut vals, mut time) = s;
    let mut t = t0;
    let v = vals.first(&mut vr)?;
    if FULL || t >= mint {
        out.push(t, v);
    }
    for _ in 1..count {
        let t_next = time.next(&mut tr)?;
        if t_next <= t {
            return Err(corrupt("timestamps not increasing"));
        }
        t = t_next;
        let v = vals.next(&mut vr)?;
        if FULL {
            out.push(t, v);
        } else if t > maxt {
            break;
        } else if t >= mint {
            out.push(t, v);
        }
    }
    split_end_checks((&tr, times), (&vr, values), FULL.then_some((t, t_last)))
}

/// The checks after encoding 3's last sample read: neither stream read
/// past its end and, when every sample was read (`whole` holds the last
/// timestamp read and the header's), the last is the header's and no whole
/// byte is left in either stream. Inlined: an out-of-line call taking the
/// readers' addresses would keep them in memory for the whole loop.
#[inline(always)]
fn split_end_checks(
    (tr, times): (&BitReader<'_>, &[u8]),
    (vr, values): (&BitReader<'_>, &[u8]),
    whole: Option<(i64, i64)>,
) -> Result<()> {
    if tr.overran() || vr.overran() {
        return Err(corrupt("stream shorter than its sample count"));
    }
    if let Some((t, t_last)) = whole {
        if t != t_last {
            return Err(corrupt("last timestamp differs from the header's max time"));
        }
        if times.len() as u64 * 8 - tr.bits_read() >= 8
            || values.len() as u64 * 8 - vr.bits_read() >= 8
        {
            return Err(corrupt("bytes left after the last sample"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_interval_rounds_jittered_scrape_intervals() {
        let cases: [(i64, i64); 14] = [
            (15_000, 15_000),
            (15_003, 15_000),
            (14_950, 15_000),
            (15_300, 15_300),
            (30_002, 30_000),
            (60_500, 60_000),
            (1_008, 1_000),
            (997, 1_000),
            (137, 137),
            (1, 1),
            (0, 0),
            (-15_000, -15_000),
            (i64::MAX, i64::MAX),
            (i64::MAX - 20_000, i64::MAX - 20_000),
        ];
        for (delta, want) in cases {
            assert_eq!(nominal_interval(delta), want, "delta {delta}");
        }
    }

    #[test]
    fn decimals_are_detected_exactly() {
        let cases: [(f64, Option<(u32, i64)>); 11] = [
            (0.0, Some((0, 0))),
            (42.0, Some((0, 42))),
            (45.5, Some((1, 455))),
            (0.1, Some((1, 1))),
            (0.3, Some((1, 3))),
            (123.456, Some((3, 123_456))),
            (-7.25, Some((2, -725))),
            (9_007_199_254_740_992.0, Some((0, 1 << 53))),
            // 16 significant digits still fit in 2^53.
            (std::f64::consts::PI, Some((15, 3_141_592_653_589_793))),
            // 17 significant digits do not.
            (0.1 + 0.2, None),
            (1e300, None),
        ];
        for (v, want) in cases {
            let got = min_exponent(v, 0).map(|e| (e, to_decimal(v, e).expect("exponent found")));
            assert_eq!(got, want, "value {v}");
        }
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(min_exponent(v, 0), None, "value {v}");
        }
        assert!(is_special(-0.0) && !is_special(0.0));
    }
}
