//! Compressed chunks: the unit in which the head holds a series' samples and
//! in which the WAL and blocks persist them.
//!
//! A [`ChunkEncoder`] is the open chunk of a head series: samples are
//! appended one at a time and compressed as they arrive, and it can be read
//! while open. [`ChunkEncoder::finish`] seals it into an immutable,
//! cheaply cloned [`Chunk`], whose bytes ([`Chunk::as_bytes`]) are what gets
//! written to disk and read back with [`Chunk::from_bytes`].
//!
//! Encoded layout (see `docs/format.md`, "Chunks"):
//!
//! ```text
//! ┌──────────┬──────────────┬───────────────┬──────────────────────┬──────────┐
//! │ encoding │ count        │ min_time      │ max_time - min_time  │ body ... │
//! │ 1 byte   │ uvarint      │ zigzag varint │ uvarint              │ bits     │
//! └──────────┴──────────────┴───────────────┴──────────────────────┴──────────┘
//! ```
//!
//! **Architecture Invariant:** the first byte is the [`Encoding`]; encoding
//! numbers are only ever appended, and every encoding ever written stays
//! decodable. Samples come back bit-exactly (NaN payloads, the stale marker,
//! -0.0). Decoding bytes from disk never panics: malformed bytes are
//! [`Error::CorruptChunk`].

mod bits;
mod decimal;
mod xor;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sample::Sample;

/// How a chunk's body is encoded: the first byte of every chunk.
///
/// **Architecture Invariant:** numbers are only ever appended; 0 is never
/// used, so zeroed bytes are not mistaken for a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Delta-of-delta timestamps and Gorilla XOR values, as in Prometheus.
    XorDod = 1,
    /// Timestamps on a tracked scrape grid, values as decimal integers
    /// (Gorilla XOR when they are not), adaptive Rice codes.
    DecimalGrid = 2,
    /// Encoding 2's time and value codes in two separate byte streams
    /// (`uvarint time_len, time stream, value stream`), so that a block can
    /// store a time stream once for every series that shares it. Written
    /// whole, from samples ([`SplitStreams::encode`]); never appended to.
    DecimalSplit = 3,
}

impl Encoding {
    /// Every encoding a [`ChunkEncoder`] appends in, in number order.
    pub const ALL: [Encoding; 2] = [Encoding::XorDod, Encoding::DecimalGrid];

    /// The encoding for a byte, if it is one.
    pub fn from_u8(b: u8) -> Option<Encoding> {
        match b {
            1 => Some(Encoding::XorDod),
            2 => Some(Encoding::DecimalGrid),
            3 => Some(Encoding::DecimalSplit),
            _ => None,
        }
    }
}

/// The encoding new chunks are written in.
pub const DEFAULT_ENCODING: Encoding = Encoding::DecimalGrid;

/// Where decoders put samples; values arrive as raw bits so that NaN
/// payloads are never touched by float arithmetic.
pub(crate) trait Sink {
    fn push(&mut self, t: i64, v: u64);
}

/// A sink writing into a slice sized for the chunk's sample count: no
/// capacity check or length update per sample, and nothing the decode
/// loop must keep in memory (profiles showed `Vec::push`'s length store
/// and the spills around it as a fifth of decoding).
struct SliceSink<'a> {
    buf: &'a mut [Sample],
    n: usize,
}

impl Sink for SliceSink<'_> {
    #[inline(always)]
    fn push(&mut self, t: i64, v: u64) {
        // Decoders push at most the chunk's count, the slice's length.
        debug_assert!(self.n < self.buf.len());
        if let Some(s) = self.buf.get_mut(self.n) {
            *s = Sample {
                t,
                v: f64::from_bits(v),
            };
        }
        self.n += 1;
    }
}

/// Runs a decoder of at most `count` samples, appending what it pushes to
/// `out` (on error, what it pushed before failing).
#[inline(always)]
fn decode_to_vec(
    out: &mut Vec<Sample>,
    count: usize,
    decode: impl FnOnce(&mut SliceSink<'_>) -> Result<()>,
) -> Result<()> {
    let start = out.len();
    out.resize(start + count, Sample { t: 0, v: 0.0 });
    let mut sink = SliceSink {
        buf: &mut out[start..],
        n: 0,
    };
    let res = decode(&mut sink);
    let n = sink.n.min(count);
    out.truncate(start + n);
    res
}

pub(crate) fn corrupt(reason: &str) -> Error {
    Error::CorruptChunk {
        reason: reason.to_string(),
    }
}

/// The per-encoding streaming state.
#[derive(Debug, Clone)]
enum Body {
    Empty(Encoding),
    Xor(xor::XorEncoder),
    Decimal(decimal::DecimalEncoder),
}

/// The open, appendable chunk of a head series.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    body: Body,
    count: u32,
    min_time: i64,
    last: Sample,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        ChunkEncoder::new()
    }
}

impl ChunkEncoder {
    /// An empty chunk in the default encoding.
    pub fn new() -> Self {
        ChunkEncoder::with_encoding(DEFAULT_ENCODING)
    }

    /// An empty chunk in a given encoding (for tests, benches and
    /// migrations; the head uses [`ChunkEncoder::new`]). Encoding 3 is
    /// written whole, never appended to: asked for it, the encoder writes
    /// encoding 2, whose codes it shares.
    pub fn with_encoding(encoding: Encoding) -> Self {
        let encoding = match encoding {
            Encoding::DecimalSplit => Encoding::DecimalGrid,
            e => e,
        };
        ChunkEncoder {
            body: Body::Empty(encoding),
            count: 0,
            min_time: 0,
            last: Sample { t: 0, v: 0.0 },
        }
    }

    /// The encoding this chunk is written in.
    pub fn encoding(&self) -> Encoding {
        match &self.body {
            Body::Empty(e) => *e,
            Body::Xor(_) => Encoding::XorDod,
            Body::Decimal(_) => Encoding::DecimalGrid,
        }
    }

    /// Appends a sample. `t` must be greater than the last appended `t`
    /// (the head guarantees it; out-of-order samples never reach a chunk),
    /// and a chunk holds at most [`MAX_CHUNK_SAMPLES`] samples (the head
    /// cuts chunks at 120).
    pub fn append(&mut self, t: i64, v: f64) {
        debug_assert!(self.count == 0 || t > self.last.t, "samples out of order");
        debug_assert!(self.count < MAX_CHUNK_SAMPLES, "chunk full");
        match &mut self.body {
            Body::Empty(e) => {
                self.body = match e {
                    Encoding::XorDod => Body::Xor(xor::XorEncoder::new(t, v)),
                    Encoding::DecimalGrid | Encoding::DecimalSplit => {
                        let mut d = decimal::DecimalEncoder::new(decimal::mode_for(v));
                        let done = matches!(d.append(t, v), decimal::Appended::Done);
                        debug_assert!(done, "a fresh chunk takes any first value");
                        Body::Decimal(d)
                    }
                };
                self.min_time = t;
            }
            Body::Xor(x) => x.append(t, v),
            Body::Decimal(d) => {
                if let decimal::Appended::NeedsMode(mode) = d.append(t, v) {
                    self.reencode(mode, t, v);
                }
            }
        }
        self.count += 1;
        self.last = Sample { t, v };
    }

    /// Rewrites a decimal chunk in another value mode (a value needed more
    /// decimals, or is not a decimal), then appends `(t, v)`. Happens at
    /// most a few times per chunk: the exponent only grows, and float mode
    /// takes every value.
    #[cold]
    fn reencode(&mut self, mut mode: decimal::ValueMode, t: i64, v: f64) {
        let mut samples = Vec::with_capacity(self.count as usize + 1);
        self.decode_into(i64::MIN, i64::MAX, &mut samples);
        samples.push(Sample { t, v });
        // Bounded: each failed try moves to a larger exponent or to float
        // mode, which never fails.
        for _ in 0..=decimal::MAX_EXPONENT + 1 {
            let mut d = decimal::DecimalEncoder::new(mode);
            let next = samples.iter().find_map(|s| match d.append(s.t, s.v) {
                decimal::Appended::Done => None,
                decimal::Appended::NeedsMode(m) => Some(m),
            });
            match next {
                None => {
                    self.body = Body::Decimal(d);
                    return;
                }
                Some(m) => mode = m,
            }
        }
        let mut d = decimal::DecimalEncoder::new(decimal::ValueMode::Float);
        for s in &samples {
            let _ = d.append(s.t, s.v);
        }
        self.body = Body::Decimal(d);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn min_time(&self) -> Option<i64> {
        (self.count > 0).then_some(self.min_time)
    }

    pub fn max_time(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last.t)
    }

    /// The last appended sample (for duplicate checks).
    pub fn last(&self) -> Option<Sample> {
        (self.count > 0).then_some(self.last)
    }

    /// Heap memory held by the encoded samples, in bytes (the vector's
    /// capacity; the fixed-size state is `size_of::<ChunkEncoder>()`).
    pub fn encoded_bytes(&self) -> usize {
        match &self.body {
            Body::Empty(_) => 0,
            Body::Xor(x) => x.heap_bytes(),
            Body::Decimal(d) => d.heap_bytes(),
        }
    }

    /// Appends the samples with `mint <= t <= maxt`, sorted by time.
    pub fn decode_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        if self.count == 0 || maxt < self.min_time || mint > self.last.t {
            return;
        }
        let res = self.decode_body(mint, maxt, out);
        // The encoder's own bytes always decode; failing here is a bug in
        // this module, not bad input.
        debug_assert!(res.is_ok(), "open chunk does not decode: {res:?}");
        if let Err(e) = res {
            tracing::error!(error = %e, "open chunk failed to decode");
        }
    }

    fn decode_body(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<()> {
        let count = self.count as usize;
        match &self.body {
            Body::Empty(_) => Ok(()),
            Body::Xor(x) => decode_to_vec(out, count, |out| {
                xor::decode(x.body(), count, self.min_time, self.last.t, mint, maxt, out)
            }),
            Body::Decimal(d) => decode_to_vec(out, count, |out| {
                decimal::decode(d.body(), count, self.min_time, self.last.t, mint, maxt, out)
            }),
        }
    }

    /// Seals the chunk.
    pub fn finish(self) -> Chunk {
        self.to_chunk()
    }

    /// Seals the chunk in the smaller of its own encoding and encoding 3
    /// in the codings encoding 2 lacks (the fixed-grid time stream, blocked
    /// decimal values, and bit-pattern deltas, the smaller coding of float
    /// counters; [`SplitStreams::encode_for_seal`]): what the head keeps
    /// once a chunk is full. Costs a decode and an encode of the chunk,
    /// once per chunk.
    pub fn seal(self) -> Chunk {
        let own = self.to_chunk();
        if own.encoding != Encoding::DecimalGrid || own.is_empty() {
            return own;
        }
        let mut samples = Vec::with_capacity(own.len());
        if own.decode_into(i64::MIN, i64::MAX, &mut samples).is_err() || samples.len() != own.len()
        {
            // The encoder's own bytes always decode; keep them if not.
            return own;
        }
        match SplitStreams::encode_for_seal(&samples).to_chunk() {
            Ok(split) if split.as_bytes().len() < own.as_bytes().len() => split,
            _ => own,
        }
    }

    /// A sealed copy of the chunk as it is now (the encoder goes on):
    /// what a query takes of the open chunk, to decode later and on any
    /// thread instead of under the series' lock.
    pub fn to_chunk(&self) -> Chunk {
        let encoding = self.encoding();
        let body: &[u8] = match &self.body {
            Body::Empty(_) => &[],
            Body::Xor(x) => x.body(),
            Body::Decimal(d) => d.body(),
        };
        let mut bytes = Vec::with_capacity(body.len() + 24);
        bytes.push(encoding as u8);
        put_uvarint(&mut bytes, u64::from(self.count));
        if self.count > 0 {
            put_uvarint(&mut bytes, zigzag(self.min_time));
            put_uvarint(&mut bytes, self.last.t.wrapping_sub(self.min_time) as u64);
        }
        // At most 1 + 4 + 10 + 10 bytes of header: fits a byte.
        let body_offset = bytes.len() as u8;
        bytes.extend_from_slice(body);
        Chunk {
            bytes: bytes.into(),
            encoding,
            count: self.count,
            body_offset,
            min_time: if self.count > 0 {
                self.min_time
            } else {
                i64::MAX
            },
            max_time: if self.count > 0 {
                self.last.t
            } else {
                i64::MIN
            },
        }
    }
}

/// A sealed chunk: immutable, cheap to clone (the bytes are shared).
///
/// 40 bytes: the head keeps one per sealed chunk of every series, so the
/// fields are packed (the header is at most 25 bytes, so its length fits
/// a byte).
#[derive(Clone)]
pub struct Chunk {
    bytes: Arc<[u8]>,
    min_time: i64,
    max_time: i64,
    count: u32,
    body_offset: u8,
    encoding: Encoding,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("encoding", &self.encoding)
            .field("count", &self.count)
            .field("min_time", &self.min_time)
            .field("max_time", &self.max_time)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Most samples a chunk may claim to hold; guards allocations made from a
/// header's count.
pub const MAX_CHUNK_SAMPLES: u32 = 1 << 24;

impl Chunk {
    /// Wraps encoded bytes, validating the header (the body is validated
    /// when decoded).
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Result<Chunk> {
        let bytes: Arc<[u8]> = bytes.into();
        let mut pos = 0usize;
        let Some(&first) = bytes.first() else {
            return Err(corrupt("empty chunk"));
        };
        pos += 1;
        let encoding = Encoding::from_u8(first).ok_or_else(|| Error::CorruptChunk {
            reason: format!("unknown chunk encoding {first}"),
        })?;
        let count = get_uvarint(&bytes, &mut pos)?;
        if count > u64::from(MAX_CHUNK_SAMPLES) {
            return Err(corrupt("sample count too large"));
        }
        let count = count as u32;
        let (min_time, max_time) = if count > 0 {
            let min_time = unzigzag(get_uvarint(&bytes, &mut pos)?);
            let span = get_uvarint(&bytes, &mut pos)?;
            let max_time = min_time.wrapping_add(span as i64);
            if max_time < min_time || (count == 1 && span != 0) || (count > 1 && span == 0) {
                return Err(corrupt("time range does not fit the sample count"));
            }
            (min_time, max_time)
        } else {
            (i64::MAX, i64::MIN)
        };
        if count == 0 && pos != bytes.len() {
            return Err(corrupt("empty chunk with a body"));
        }
        Ok(Chunk {
            encoding,
            count,
            // The header is at most 1 + 4 + 10 + 10 bytes (the count is
            // checked against MAX_CHUNK_SAMPLES above).
            body_offset: pos as u8,
            min_time,
            max_time,
            bytes,
        })
    }

    /// The encoded bytes, header included: what the WAL and blocks persist.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Time of the first sample (`i64::MAX` for an empty chunk).
    pub fn min_time(&self) -> i64 {
        self.min_time
    }

    /// Time of the last sample (`i64::MIN` for an empty chunk).
    pub fn max_time(&self) -> i64 {
        self.max_time
    }

    /// Appends the samples with `mint <= t <= maxt`, sorted by time.
    /// Malformed bytes are [`Error::CorruptChunk`], never a panic; on error,
    /// `out` may hold some of the chunk's samples.
    pub fn decode_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<()> {
        if self.count == 0 || maxt < self.min_time || mint > self.max_time {
            return Ok(());
        }
        let body = &self.bytes[self.body_offset as usize..];
        // A body holds at least one bit per sample after the first (in
        // encodings 1 and 2; in encoding 3 a bit per block of 16 in each
        // stream); reject counts the bytes cannot hold before reserving
        // room for them.
        let samples_per_bit = match self.encoding {
            Encoding::DecimalSplit => 8,
            Encoding::XorDod | Encoding::DecimalGrid => 1,
        };
        if (self.count as u64).saturating_sub(1) > body.len() as u64 * 8 * samples_per_bit {
            return Err(corrupt("sample count larger than the body can hold"));
        }
        let count = self.count as usize;
        let (t0, t_last) = (self.min_time, self.max_time);
        match self.encoding {
            Encoding::XorDod => decode_to_vec(out, count, |out| {
                xor::decode(body, count, t0, t_last, mint, maxt, out)
            }),
            Encoding::DecimalGrid => decode_to_vec(out, count, |out| {
                decimal::decode(body, count, t0, t_last, mint, maxt, out)
            }),
            Encoding::DecimalSplit => {
                let (times, values) = split_body(body)?;
                decode_to_vec(out, count, |out| {
                    decimal::decode_split(times, values, count, t0, t_last, mint, maxt, out)
                })
            }
        }
    }

    /// An encoding-3 chunk of `count` samples from `min_time` to `max_time`
    /// put together from its two streams (as a block stores them). The
    /// header is validated here, the streams when decoded.
    pub fn from_streams(
        count: u32,
        min_time: i64,
        max_time: i64,
        times: &[u8],
        values: &[u8],
    ) -> Result<Chunk> {
        let mut bytes = Vec::with_capacity(32 + times.len() + values.len());
        bytes.push(Encoding::DecimalSplit as u8);
        put_uvarint(&mut bytes, u64::from(count));
        if count > 0 {
            put_uvarint(&mut bytes, zigzag(min_time));
            put_uvarint(&mut bytes, max_time.wrapping_sub(min_time) as u64);
        }
        put_uvarint(&mut bytes, times.len() as u64);
        bytes.extend_from_slice(times);
        bytes.extend_from_slice(values);
        Chunk::from_bytes(bytes)
    }

    /// The time and value streams of an encoding-3 chunk.
    pub fn split_streams(&self) -> Option<Result<(&[u8], &[u8])>> {
        (self.encoding == Encoding::DecimalSplit)
            .then(|| split_body(&self.bytes[self.body_offset as usize..]))
    }
}

/// An encoding-3 body: `uvarint time_len`, the time stream, the value
/// stream.
fn split_body(body: &[u8]) -> Result<(&[u8], &[u8])> {
    let mut pos = 0usize;
    let len = get_uvarint(body, &mut pos)?;
    let rest = &body[pos..];
    if len > rest.len() as u64 {
        return Err(corrupt("time stream longer than the chunk"));
    }
    Ok(rest.split_at(len as usize))
}

/// Codes a run of (timestamp, value bits) as encoding 3's time and value
/// streams.
type StreamCoder = fn(&[(i64, u64)]) -> (Vec<u8>, Vec<u8>);

/// A run of samples coded as encoding 3's two streams: what the block
/// writer stores (the time stream once per distinct run of timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitStreams {
    pub count: u32,
    pub min_time: i64,
    pub max_time: i64,
    pub times: Vec<u8>,
    pub values: Vec<u8>,
}

impl SplitStreams {
    /// Codes `samples` (sorted by time, one per timestamp, at least one,
    /// at most [`MAX_CHUNK_SAMPLES`]).
    pub fn encode(samples: &[Sample]) -> SplitStreams {
        SplitStreams::encode_with(samples, decimal::encode_split)
    }

    /// Codes `samples` as [`SplitStreams::encode`] does, but only in the
    /// codings an encoding-2 chunk of the same samples does not already
    /// have (what [`ChunkEncoder::seal`] compares with its own bytes).
    pub fn encode_for_seal(samples: &[Sample]) -> SplitStreams {
        SplitStreams::encode_with(samples, decimal::encode_split_for_seal)
    }

    fn encode_with(samples: &[Sample], code: StreamCoder) -> SplitStreams {
        let raw: Vec<(i64, u64)> = samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
        let (times, values) = code(&raw);
        SplitStreams {
            count: samples.len() as u32,
            min_time: samples.first().map_or(i64::MAX, |s| s.t),
            max_time: samples.last().map_or(i64::MIN, |s| s.t),
            times,
            values,
        }
    }

    /// The chunk these streams make.
    pub fn to_chunk(&self) -> Result<Chunk> {
        Chunk::from_streams(
            self.count,
            self.min_time,
            self.max_time,
            &self.times,
            &self.values,
        )
    }
}

#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_uvarint(bytes: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some(&b) = bytes.get(*pos) else {
            return Err(corrupt("header truncated"));
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(corrupt("varint overflows 64 bits"));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(corrupt("varint overflows 64 bits"))
}

#[cfg(test)]
mod tests;
