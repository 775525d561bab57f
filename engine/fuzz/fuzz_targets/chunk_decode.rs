//! Fuzz target for the chunk decoders: any bytes given to
//! `Chunk::from_bytes` and `decode_into` must give an error or samples in
//! strictly increasing time order within the requested range, never a
//! panic. The first 16 bytes choose the range, the rest is the chunk.
//!
//! Run: `cd engine/fuzz && cargo +nightly fuzz run chunk_decode`.

#![no_main]

use cairn_engine::Chunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (range, bytes) = data.split_at(data.len().min(16));
    let (mint, maxt) = if range.len() == 16 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&range[..8]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&range[8..]);
        (i64::from_le_bytes(a), i64::from_le_bytes(b))
    } else {
        (i64::MIN, i64::MAX)
    };
    let Ok(chunk) = Chunk::from_bytes(bytes.to_vec()) else {
        return;
    };
    let mut out = Vec::new();
    if chunk.decode_into(mint, maxt, &mut out).is_ok() {
        assert!(out.len() <= chunk.len());
        assert!(out.windows(2).all(|w| w[0].t < w[1].t));
        assert!(out.iter().all(|s| mint <= s.t && s.t <= maxt));
    }
});
