//! WAL records: how a new series and a batch of samples become bytes, and
//! back.
//!
//! A record is framed as `type u8 | payload_len u32 LE | crc32c u32 LE |
//! payload`; the CRC covers the type byte, the length and the payload, so a
//! flipped bit anywhere in a record is caught. Payloads are described byte by
//! byte in `docs/format.md` ("WAL"). Appending threads frame their own
//! records (CRC included) so that the single WAL writer thread only copies
//! bytes and fsyncs.

use std::sync::Arc;

use crate::labels::{Label, Labels};

/// Bytes before the payload: type, length, CRC.
pub const FRAME_HEADER_LEN: usize = 9;

/// Largest payload a reader accepts. A length above it is treated as
/// corruption rather than an allocation request.
pub const MAX_PAYLOAD_LEN: u32 = 64 << 20;

/// The kind of a record, the first byte of its frame. Numbers are only ever
/// appended; 0 is never a valid type so that a zero-filled tail reads as
/// corrupt.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// New series: references and their label sets.
    Series = 1,
    /// Samples of known series: reference, timestamp, value bits.
    Samples = 2,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Series),
            2 => Some(RecordType::Samples),
            _ => None,
        }
    }
}

/// One sample of a series named by its reference, as the WAL stores it.
#[derive(Debug, Clone, Copy)]
pub struct RefSample {
    pub series_ref: u32,
    pub t: i64,
    pub v: f64,
}

impl PartialEq for RefSample {
    /// Bit-exact, so NaN payloads and the stale marker compare as stored.
    fn eq(&self, o: &RefSample) -> bool {
        self.series_ref == o.series_ref && self.t == o.t && self.v.to_bits() == o.v.to_bits()
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series(Vec<(u32, Labels)>),
    Samples(Vec<RefSample>),
}

/// Why a record does not decode (the caller adds path and offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes left than the frame header or its payload needs: a torn
    /// write.
    Truncated,
    /// The type byte is not a known record type.
    BadType(u8),
    /// The length field is absurdly large.
    BadLength(u32),
    /// The CRC does not match.
    Checksum { stored: u32, computed: u32 },
    /// The CRC matches but the payload does not parse.
    Payload(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => f.write_str("record truncated"),
            FrameError::BadType(t) => write!(f, "unknown record type {t}"),
            FrameError::BadLength(l) => write!(f, "implausible record length {l}"),
            FrameError::Checksum { stored, computed } => write!(
                f,
                "CRC32C mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FrameError::Payload(r) => write!(f, "malformed payload: {r}"),
        }
    }
}

/// A buffer of framed records, ready to hand to the WAL writer.
#[derive(Debug, Default)]
pub struct RecordBuf {
    buf: Vec<u8>,
}

impl RecordBuf {
    pub fn new() -> Self {
        RecordBuf::default()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends one Series record holding every `(ref, labels)` pair.
    pub fn push_series<'a>(&mut self, series: impl IntoIterator<Item = (u32, &'a Labels)>) {
        let start = self.begin_frame(RecordType::Series);
        let count_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        let mut n: u32 = 0;
        for (r, labels) in series {
            n += 1;
            self.buf.extend_from_slice(&r.to_le_bytes());
            put_uvarint(&mut self.buf, labels.len() as u64);
            for l in labels {
                put_uvarint(&mut self.buf, l.name.len() as u64);
                self.buf.extend_from_slice(l.name.as_bytes());
                put_uvarint(&mut self.buf, l.value.len() as u64);
                self.buf.extend_from_slice(l.value.as_bytes());
            }
        }
        self.buf[count_at..count_at + 4].copy_from_slice(&n.to_le_bytes());
        self.end_frame(start);
    }

    /// Appends one Samples record (nothing when `samples` is empty).
    pub fn push_samples(&mut self, samples: &[RefSample]) {
        let Some(first) = samples.first() else {
            return;
        };
        let start = self.begin_frame(RecordType::Samples);
        self.buf
            .extend_from_slice(&(samples.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&first.series_ref.to_le_bytes());
        self.buf.extend_from_slice(&first.t.to_le_bytes());
        for s in samples {
            let dr = i64::from(s.series_ref) - i64::from(first.series_ref);
            put_uvarint(&mut self.buf, zigzag(dr));
            put_uvarint(&mut self.buf, zigzag(s.t.wrapping_sub(first.t)));
            self.buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        }
        self.end_frame(start);
    }

    fn begin_frame(&mut self, ty: RecordType) -> usize {
        let start = self.buf.len();
        self.buf.push(ty as u8);
        self.buf.extend_from_slice(&[0; 8]);
        start
    }

    fn end_frame(&mut self, start: usize) {
        let payload_len = (self.buf.len() - start - FRAME_HEADER_LEN) as u32;
        self.buf[start + 1..start + 5].copy_from_slice(&payload_len.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf[start..start + 5]);
        let crc = crc32c::crc32c_append(crc, &self.buf[start + FRAME_HEADER_LEN..]);
        self.buf[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decodes the record at the start of `bytes`; returns it and the number of
/// bytes it took.
pub fn decode_frame(bytes: &[u8]) -> Result<(Record, usize), FrameError> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated);
    }
    let ty = RecordType::from_u8(bytes[0]).ok_or(FrameError::BadType(bytes[0]))?;
    let len = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    if len > MAX_PAYLOAD_LEN {
        return Err(FrameError::BadLength(len));
    }
    let end = FRAME_HEADER_LEN + len as usize;
    if bytes.len() < end {
        return Err(FrameError::Truncated);
    }
    let stored = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
    let computed =
        crc32c::crc32c_append(crc32c::crc32c(&bytes[..5]), &bytes[FRAME_HEADER_LEN..end]);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    let payload = &bytes[FRAME_HEADER_LEN..end];
    let rec = match ty {
        RecordType::Series => Record::Series(decode_series(payload)?),
        RecordType::Samples => Record::Samples(decode_samples(payload)?),
    };
    Ok((rec, end))
}

fn decode_series(p: &[u8]) -> Result<Vec<(u32, Labels)>, FrameError> {
    let mut c = Cursor { b: p, pos: 0 };
    let n = c.u32()?;
    let mut out = Vec::with_capacity((n as usize).min(p.len() / 5));
    for _ in 0..n {
        let r = c.u32()?;
        let nl = c.uvarint()?;
        if nl > p.len() as u64 {
            return Err(FrameError::Payload(format!("label count {nl} too large")));
        }
        let mut labels = Vec::with_capacity(nl as usize);
        for _ in 0..nl {
            let name = c.str()?;
            let value = c.str()?;
            labels.push(Label::new(Arc::<str>::from(name), Arc::<str>::from(value)));
        }
        let sorted = labels.windows(2).all(|w| w[0].name < w[1].name);
        if !sorted
            || labels
                .iter()
                .any(|l| l.value.is_empty() || l.name.is_empty())
        {
            return Err(FrameError::Payload(format!(
                "label set of series {r} is not sorted, unique and non-empty"
            )));
        }
        out.push((r, Labels::from_sorted(labels)));
    }
    c.finish()?;
    Ok(out)
}

fn decode_samples(p: &[u8]) -> Result<Vec<RefSample>, FrameError> {
    let mut c = Cursor { b: p, pos: 0 };
    let n = c.u32()?;
    if n == 0 {
        return Err(FrameError::Payload("empty samples record".into()));
    }
    let base_ref = i64::from(c.u32()?);
    let base_t = c.i64()?;
    // Each sample takes at least 10 bytes; bound the allocation by the input.
    let mut out = Vec::with_capacity((n as usize).min(p.len() / 10 + 1));
    for _ in 0..n {
        let r = base_ref + unzigzag(c.uvarint()?);
        let series_ref = u32::try_from(r)
            .map_err(|_| FrameError::Payload(format!("series reference {r} out of range")))?;
        let t = base_t.wrapping_add(unzigzag(c.uvarint()?));
        let v = f64::from_bits(c.u64()?);
        out.push(RefSample { series_ref, t, v });
    }
    c.finish()?;
    Ok(out)
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                FrameError::Payload(format!("payload ends early at byte {}", self.pos))
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        Ok(self.u64()? as i64)
    }
    fn uvarint(&mut self) -> Result<u64, FrameError> {
        let mut x: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            if shift == 63 && b > 1 {
                return Err(FrameError::Payload("varint overflows 64 bits".into()));
            }
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err(FrameError::Payload("varint longer than 10 bytes".into()))
    }
    fn str(&mut self) -> Result<&'a str, FrameError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| FrameError::Payload("string too long".into()))?;
        std::str::from_utf8(self.take(n)?)
            .map_err(|e| FrameError::Payload(format!("label is not UTF-8: {e}")))
    }
    fn finish(&self) -> Result<(), FrameError> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(FrameError::Payload(format!(
                "{} trailing bytes",
                self.b.len() - self.pos
            )))
        }
    }
}

fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn decode_all(mut b: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (r, n) = decode_frame(b).expect("decodes");
            out.push(r);
            b = &b[n..];
        }
        out
    }

    #[test]
    fn series_and_samples_round_trip_bit_exact() {
        let l1 = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        let l2 = Labels::from_pairs([("__name__", "x"), ("é", "ü")]);
        let samples = vec![
            RefSample {
                series_ref: 7,
                t: 1000,
                v: 1.5,
            },
            RefSample {
                series_ref: 3,
                t: -5,
                v: f64::from_bits(STALE_NAN_BITS),
            },
            RefSample {
                series_ref: u32::MAX,
                t: i64::MAX,
                v: -0.0,
            },
            RefSample {
                series_ref: 0,
                t: i64::MIN,
                v: f64::from_bits(0x7ff8_0000_0000_0001),
            },
        ];
        let mut b = RecordBuf::new();
        b.push_series([(7, &l1), (3, &l2)]);
        b.push_samples(&samples);
        b.push_samples(&[]);
        let recs = decode_all(b.as_bytes());
        assert_eq!(
            recs,
            vec![
                Record::Series(vec![(7, l1), (3, l2)]),
                Record::Samples(samples)
            ]
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut b = RecordBuf::new();
        b.push_samples(&[RefSample {
            series_ref: 1,
            t: 2,
            v: 3.0,
        }]);
        let bytes = b.into_bytes();
        for i in 0..bytes.len() * 8 {
            let mut c = bytes.clone();
            c[i / 8] ^= 1 << (i % 8);
            assert!(decode_frame(&c).is_err(), "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn zero_bytes_and_short_input_are_errors() {
        assert_eq!(decode_frame(&[0; 32]).unwrap_err(), FrameError::BadType(0));
        let mut b = RecordBuf::new();
        b.push_samples(&[RefSample {
            series_ref: 1,
            t: 2,
            v: 3.0,
        }]);
        let bytes = b.into_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_frame(&bytes[..cut]).unwrap_err(),
                FrameError::Truncated
            );
        }
    }

    proptest! {
        #[test]
        fn samples_round_trip(v in proptest::collection::vec((any::<u32>(), any::<i64>(), any::<u64>()), 1..50)) {
            let samples: Vec<RefSample> = v.iter().map(|&(r, t, bits)| RefSample { series_ref: r, t, v: f64::from_bits(bits) }).collect();
            let mut b = RecordBuf::new();
            b.push_samples(&samples);
            let (rec, n) = decode_frame(b.as_bytes()).expect("decodes");
            prop_assert_eq!(n, b.len());
            prop_assert_eq!(rec, Record::Samples(samples));
        }
    }
}
