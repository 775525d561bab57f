//! Tests of the chunk codecs: bit-exact round trips against the appended
//! samples as the reference model, for every encoding, and decoding of
//! arbitrary or damaged bytes (errors, never panics).

use proptest::prelude::*;

use super::*;
use crate::sample::STALE_NAN_BITS;

/// Values whose bits matter: NaN payloads, the stale marker, infinities,
/// signed zeros, extremes and subnormals.
const SPECIAL_BITS: [u64; 14] = [
    STALE_NAN_BITS,
    0x7ff8_0000_0000_0001, // Prometheus's ordinary NaN
    0x7ff8_0000_0000_0000, // Rust's NaN
    0xfff8_0000_0000_0000, // negative quiet NaN
    0x7ff0_0000_0000_0001, // signalling NaN
    0x7ff0_0000_0000_0000, // +Inf
    0xfff0_0000_0000_0000, // -Inf
    0x8000_0000_0000_0000, // -0.0
    0x0000_0000_0000_0000, // +0.0
    0x7fef_ffff_ffff_ffff, // f64::MAX
    0xffef_ffff_ffff_ffff, // f64::MIN
    0x0000_0000_0000_0001, // smallest subnormal
    0x0010_0000_0000_0000, // smallest normal
    0x8000_0000_0000_0001, // negative subnormal
];

fn encode(enc: Encoding, samples: &[Sample]) -> ChunkEncoder {
    let mut e = ChunkEncoder::with_encoding(enc);
    for s in samples {
        e.append(s.t, s.v);
    }
    e
}

fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
    samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

fn in_range(samples: &[Sample], mint: i64, maxt: i64) -> Vec<(i64, u64)> {
    bits(samples)
        .into_iter()
        .filter(|(t, _)| (mint..=maxt).contains(t))
        .collect()
}

/// Checks every way of reading `samples` back, in every encoding.
fn check_round_trip(
    samples: &[Sample],
    ranges: &[(i64, i64)],
) -> std::result::Result<(), TestCaseError> {
    for enc in Encoding::ALL {
        let e = encode(enc, samples);
        prop_assert_eq!(e.len(), samples.len());
        prop_assert_eq!(e.min_time(), samples.first().map(|s| s.t));
        prop_assert_eq!(e.max_time(), samples.last().map(|s| s.t));
        prop_assert_eq!(
            e.last().map(|s| (s.t, s.v.to_bits())),
            samples.last().map(|s| (s.t, s.v.to_bits()))
        );

        let mut open = Vec::new();
        e.decode_into(i64::MIN, i64::MAX, &mut open);
        prop_assert_eq!(bits(&open), bits(samples), "open chunk, {:?}", enc);

        let chunk = e.clone().finish();
        let reread = Chunk::from_bytes(chunk.as_bytes().to_vec())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for c in [&chunk, &reread] {
            prop_assert_eq!(c.encoding(), enc);
            prop_assert_eq!(c.len(), samples.len());
            if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
                prop_assert_eq!(c.min_time(), first.t);
                prop_assert_eq!(c.max_time(), last.t);
            }
            let mut got = Vec::new();
            c.decode_into(i64::MIN, i64::MAX, &mut got)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(bits(&got), bits(samples), "sealed chunk, {:?}", enc);
        }
        for &(mint, maxt) in ranges {
            let want = in_range(samples, mint, maxt);
            let mut got = Vec::new();
            reread
                .decode_into(mint, maxt, &mut got)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(bits(&got), want.clone(), "sealed range {}..={}", mint, maxt);
            let mut got = Vec::new();
            e.decode_into(mint, maxt, &mut got);
            prop_assert_eq!(bits(&got), want, "open range {}..={}", mint, maxt);
        }
    }
    check_split_round_trip(samples, ranges)
}

/// Encoding 3: written whole from the samples, read back from its bytes
/// and from its two streams put together again.
fn check_split_round_trip(
    samples: &[Sample],
    ranges: &[(i64, i64)],
) -> std::result::Result<(), TestCaseError> {
    if samples.is_empty() {
        return Ok(());
    }
    let fail = |e: Error| TestCaseError::fail(e.to_string());
    let split = SplitStreams::encode(samples);
    let chunk = split.to_chunk().map_err(fail)?;
    prop_assert_eq!(chunk.encoding(), Encoding::DecimalSplit);
    let (times, values) = chunk.split_streams().expect("encoding 3").map_err(fail)?;
    prop_assert_eq!((times, values), (&split.times[..], &split.values[..]));
    let reread = Chunk::from_bytes(chunk.as_bytes().to_vec()).map_err(fail)?;
    prop_assert_eq!(
        (reread.min_time(), reread.max_time()),
        (samples[0].t, samples[samples.len() - 1].t)
    );
    // The time stream depends on the timestamps only.
    let zeros: Vec<Sample> = samples.iter().map(|s| Sample { t: s.t, v: 0.0 }).collect();
    prop_assert_eq!(SplitStreams::encode(&zeros).times, split.times.clone());
    for &(mint, maxt) in [(i64::MIN, i64::MAX)].iter().chain(ranges) {
        let mut got = Vec::new();
        reread.decode_into(mint, maxt, &mut got).map_err(fail)?;
        prop_assert_eq!(
            bits(&got),
            in_range(samples, mint, maxt),
            "split range {}..={}",
            mint,
            maxt
        );
    }
    Ok(())
}

/// Strictly increasing timestamps from a start and gaps, stopping before
/// overflow.
fn timestamps(start: i64, gaps: &[i64]) -> Vec<i64> {
    let mut ts = vec![start];
    let mut t = start;
    for &g in gaps {
        match t.checked_add(g.max(1)) {
            Some(n) => {
                ts.push(n);
                t = n;
            }
            None => break,
        }
    }
    ts
}

fn start_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1_500_000_000_000i64..1_900_000_000_000,
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => -1_000_000i64..1_000_000,
        1 => (i64::MAX - 1_000_000)..=i64::MAX,
    ]
}

fn gap_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 14_990i64..15_010,
        2 => Just(15_000i64),
        2 => 1i64..100,
        1 => 1i64..10_000_000,
        1 => 1i64..(1 << 40),
        1 => 1i64..i64::MAX,
    ]
}

fn timestamps_strategy() -> impl Strategy<Value = Vec<i64>> {
    (
        start_strategy(),
        proptest::collection::vec(gap_strategy(), 0..300),
    )
        .prop_map(|(s, g)| timestamps(s, &g))
}

fn special() -> impl Strategy<Value = f64> {
    proptest::sample::select(SPECIAL_BITS.to_vec()).prop_map(f64::from_bits)
}

/// One value at a time, from a mix of shapes.
fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => any::<u64>().prop_map(f64::from_bits),
        2 => special(),
        1 => any::<f64>(),
        1 => (-1000i64..1000).prop_map(|i| i as f64),
        1 => (-1000i64..1000).prop_map(|i| i as f64 / 10.0),
        1 => (0u64..1 << 53).prop_map(|i| i as f64),
        1 => -1e300f64..1e300,
        1 => -1e-300f64..1e-300,
    ]
}

/// Whole value series with the shapes metrics have.
fn values_strategy(n: usize) -> BoxedStrategy<Vec<f64>> {
    prop_oneof![
        proptest::collection::vec(value_strategy(), n),
        // Monotonic counter with float increments.
        (any::<u32>(), proptest::collection::vec(0.0f64..1000.0, n)).prop_map(|(s, inc)| {
            inc.iter()
                .scan(f64::from(s), |acc, d| {
                    *acc += d;
                    Some(*acc)
                })
                .collect()
        }),
        // Integer counter, often flat, with resets.
        (proptest::collection::vec(
            prop_oneof![3 => Just(0u64), 2 => 0u64..50, 1 => Just(u64::MAX)],
            n
        ))
        .prop_map(|inc| {
            inc.iter()
                .scan(0u64, |acc, &d| {
                    *acc = if d == u64::MAX { 0 } else { *acc + d };
                    Some(*acc as f64)
                })
                .collect()
        }),
        // Gauge with one decimal.
        proptest::collection::vec((0u32..=1000).prop_map(|i| f64::from(i) / 10.0), n),
        // Constant, possibly a special value.
        prop_oneof![special(), any::<f64>()].prop_map(move |v| vec![v; n]),
        // Counter ending in stale markers.
        (0.0f64..1e6).prop_map(move |s| (0..n)
            .map(|i| if i + 3 >= n {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                s + i as f64
            })
            .collect()),
    ]
    .boxed()
}

fn samples_strategy() -> impl Strategy<Value = Vec<Sample>> {
    timestamps_strategy().prop_flat_map(|ts| {
        let n = ts.len();
        values_strategy(n)
            .prop_map(move |vs| ts.iter().zip(vs).map(|(&t, v)| Sample { t, v }).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_bit_exactly(samples in samples_strategy(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 4)) {
        // Ranges with ends on, between and outside the samples' times.
        let mut ranges = vec![(i64::MIN, i64::MAX)];
        if !samples.is_empty() {
            let pick = |i: &prop::sample::Index| samples[i.index(samples.len())].t;
            let (a, b) = (pick(&cuts[0]), pick(&cuts[1]));
            ranges.push((a.min(b), a.max(b)));
            ranges.push((a.min(b).saturating_add(1), a.max(b).saturating_sub(1)));
            ranges.push((i64::MIN, pick(&cuts[2])));
            ranges.push((pick(&cuts[3]), i64::MAX));
            ranges.push((a.max(b), a.min(b)));
        }
        check_round_trip(&samples, &ranges)?;
    }

    #[test]
    fn open_chunk_reads_every_prefix(samples in samples_strategy()) {
        for enc in Encoding::ALL {
            let mut e = ChunkEncoder::with_encoding(enc);
            for (i, s) in samples.iter().enumerate() {
                e.append(s.t, s.v);
                let mut got = Vec::new();
                e.decode_into(i64::MIN, i64::MAX, &mut got);
                prop_assert_eq!(bits(&got), bits(&samples[..=i]));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), enc in proptest::sample::select(vec![Encoding::XorDod, Encoding::DecimalGrid, Encoding::DecimalSplit]), mint in any::<i64>(), maxt in any::<i64>()) {
        // With a valid encoding byte so that the body decoders are reached.
        let mut with_enc = bytes.clone();
        if let Some(b) = with_enc.first_mut() {
            *b = enc as u8;
        }
        for b in [bytes, with_enc] {
            if let Ok(c) = Chunk::from_bytes(b) {
                let mut out = Vec::new();
                let _ = c.decode_into(i64::MIN, i64::MAX, &mut out);
                prop_assert!(out.len() <= c.len());
                prop_assert!(out.windows(2).all(|w| w[0].t < w[1].t));
                let mut out = Vec::new();
                let _ = c.decode_into(mint, maxt, &mut out);
                prop_assert!(out.len() <= c.len());
            }
        }
    }

    #[test]
    fn damaged_chunks_error_or_decode_without_panic(samples in samples_strategy(), flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4), cut in any::<prop::sample::Index>()) {
        prop_assume!(!samples.is_empty());
        let split = SplitStreams::encode(&samples).to_chunk().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let chunks: Vec<Chunk> = Encoding::ALL.iter().map(|&enc| encode(enc, &samples).finish()).chain([split]).collect();
        for good in chunks {
            let bytes = good.as_bytes();
            // Truncated: a shorter chunk never decodes to the full samples.
            let len = cut.index(bytes.len());
            if let Ok(c) = Chunk::from_bytes(bytes[..len].to_vec()) {
                let mut out = Vec::new();
                let res = c.decode_into(i64::MIN, i64::MAX, &mut out);
                prop_assert!(res.is_err() || bits(&out) != bits(&samples) || c.len() < samples.len());
            }
            // Bit flips: any outcome but a panic; a success is sorted.
            let mut damaged = bytes.to_vec();
            for (i, bit) in &flips {
                let at = i.index(damaged.len());
                damaged[at] ^= 1 << bit;
            }
            if let Ok(c) = Chunk::from_bytes(damaged) {
                let mut out = Vec::new();
                if c.decode_into(i64::MIN, i64::MAX, &mut out).is_ok() {
                    prop_assert_eq!(out.len(), c.len());
                    prop_assert!(out.windows(2).all(|w| w[0].t < w[1].t));
                }
            }
        }
    }
}

#[test]
fn sealed_chunk_handle_stays_small() {
    // The head keeps one per sealed chunk of every series.
    assert_eq!(std::mem::size_of::<Chunk>(), 40);
}

#[test]
fn empty_chunk_round_trips() {
    for enc in Encoding::ALL {
        let e = ChunkEncoder::with_encoding(enc);
        assert!(e.is_empty());
        assert_eq!(
            (e.min_time(), e.max_time(), e.last().map(|s| s.t)),
            (None, None, None)
        );
        assert_eq!(e.encoded_bytes(), 0);
        let c = Chunk::from_bytes(e.finish().as_bytes().to_vec()).expect("empty chunk decodes");
        assert_eq!(c.len(), 0);
        let mut out = Vec::new();
        c.decode_into(i64::MIN, i64::MAX, &mut out)
            .expect("decodes");
        assert!(out.is_empty());
    }
}

#[test]
fn malformed_headers_are_corrupt_chunk_errors() {
    let valid = {
        let mut e = ChunkEncoder::new();
        e.append(1000, 1.0);
        e.append(2000, 2.0);
        e.finish().as_bytes().to_vec()
    };
    let enc = DEFAULT_ENCODING as u8;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no bytes", vec![]),
        ("encoding 0", vec![0, 0]),
        ("unknown encoding", vec![255, 0]),
        ("count missing", vec![enc]),
        ("count truncated varint", vec![enc, 0x80]),
        (
            "count overflowing varint",
            vec![
                enc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
        ),
        ("count too large", vec![enc, 0xff, 0xff, 0xff, 0x7f, 0, 0]),
        ("min time missing", vec![enc, 2]),
        ("span missing", vec![enc, 2, 0]),
        ("one sample with a span", vec![enc, 1, 0, 5]),
        ("two samples without a span", vec![enc, 2, 0, 0]),
        ("empty chunk with a body", vec![enc, 0, 1]),
        ("header only", valid[..4].to_vec()),
    ];
    for (name, bytes) in cases {
        let res = Chunk::from_bytes(bytes).and_then(|c| {
            let mut out = Vec::new();
            c.decode_into(i64::MIN, i64::MAX, &mut out)
        });
        assert!(
            matches!(res, Err(Error::CorruptChunk { .. })),
            "{name}: expected CorruptChunk, got {res:?}"
        );
    }
}

#[test]
fn trailing_garbage_is_corrupt() {
    for enc in Encoding::ALL {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: i * 15_000,
                v: i as f64,
            })
            .collect();
        let mut bytes = encode(enc, &samples).finish().as_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0]);
        let c = Chunk::from_bytes(bytes).expect("header is fine");
        let mut out = Vec::new();
        assert!(matches!(
            c.decode_into(i64::MIN, i64::MAX, &mut out),
            Err(Error::CorruptChunk { .. })
        ));
    }
}

/// Encoding 2 picks its value mode from the data and rewrites the open
/// chunk when a later value needs more decimals or is not a decimal; every
/// path must give the samples back bit-exactly.
#[test]
fn decimal_grid_mode_changes_round_trip() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("integers", vec![1.0, 2.0, 5.0, 5.0, 9.0]),
        ("more decimals later", vec![1.0, 2.5, 3.25, 3.125, 1e-7]),
        (
            "decimal then float",
            vec![1.5, 2.5, std::f64::consts::PI, 4.0],
        ),
        ("float first", vec![std::f64::consts::E, 1.0, 2.0]),
        ("stale first", vec![stale, 1.0, 2.5]),
        (
            "specials among decimals",
            vec![
                1.0,
                f64::NAN,
                2.0,
                f64::INFINITY,
                -0.0,
                f64::NEG_INFINITY,
                stale,
                3.0,
            ],
        ),
        ("exponent growth would overflow", vec![9e15, 0.5]),
        (
            "huge and tiny",
            vec![1e300, 1e-300, f64::MAX, f64::MIN_POSITIVE, 5e-324],
        ),
        ("counter reset", vec![1e9, 1e9 + 7.0, 3.0, 10.0, 17.0]),
        (
            "largest exact integers",
            vec![9007199254740992.0, -9007199254740992.0, 9007199254740991.0],
        ),
    ];
    for (name, values) in cases {
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                t: 1_000 + i as i64 * 15_000,
                v,
            })
            .collect();
        let chunk = encode(Encoding::DecimalGrid, &samples).finish();
        let mut got = Vec::new();
        Chunk::from_bytes(chunk.as_bytes().to_vec())
            .and_then(|c| c.decode_into(i64::MIN, i64::MAX, &mut got))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(bits(&got), bits(&samples), "{name}");
    }
}

/// The point of encoding 2: one-decimal gauges and jittered scrape times
/// cost far less than in encoding 1.
#[test]
fn decimal_grid_is_smaller_on_scraped_decimals() {
    let samples: Vec<Sample> = (0..120)
        .map(|i: i64| Sample {
            t: 1_700_000_000_000 + i * 15_000 + (i * 7 % 5 - 2),
            v: ((i * 37) % 1000) as f64 / 10.0,
        })
        .collect();
    let xor = encode(Encoding::XorDod, &samples).finish().as_bytes().len();
    let dec = encode(Encoding::DecimalGrid, &samples)
        .finish()
        .as_bytes()
        .len();
    assert!(
        dec * 2 < xor,
        "DecimalGrid {dec} bytes vs XorDod {xor} bytes"
    );
}

/// Golden chunks: (samples, encoding, bytes, whether the current encoder
/// still writes exactly these bytes), decoded by every later version.
/// **Architecture Invariant:** these bytes never change and always decode;
/// a new coding is a new [`Encoding`], or a new variant inside one that
/// takes a code point no earlier writer used (encoding 3's fixed-grid time
/// coding: a time stream starting with '0'), with its own fixtures. The
/// encoder is also checked to still produce the current ones, so that a
/// change to an encoder's choices is noticed here rather than on disk.
const GOLDEN: [(usize, Encoding, &str, bool); 13] = [
    (
        0,
        Encoding::XorDod,
        concat!(
            "011480f8b2e5bd68c9b2110000000000000000c3a9ac3f400d99999999999b7ff700100000000000",
            "01000bab6eeaaaaaaaaaaa6fff62eaaaaaaaaaaa6ffff17bfeacccccccccccd800d8008000000000",
            "0017fdb80cfff8007c007ffc000000000000c001d00100000000000037ff75fd9400000000000400",
            "2c000db333333333357ffb0001355555555554dfffc001c7ffffffffffd001b0000f55555555555d",
            "ff6c00044ccccccccccd000f00032ccccccccccd4001c0005d555555555537ff7000feaaaaaaaaaa",
            "ac002c00026aaaaaaaaaaa",
        ),
        true,
    ),
    (
        1,
        Encoding::DecimalGrid,
        concat!(
            "021480f8b2e5bd68c9b211049dd4c0200001a50c0c060040002fff0000000000000000012400017f",
            "f000000000000000010000c0000000000000000180005ffe0000000000004c0003ffe00000000000",
            "001800cbd75d5f3099fc57197adf2d",
        ),
        true,
    ),
    (
        2,
        Encoding::DecimalGrid,
        concat!(
            "021e80f8b2e5bd68cebb1b010ea775300c7b060000125000181ce1800007c8e9d547ba0c27bfeb5e",
            "19aeb9b30c00007752ebb00001dd4cf9836d996dfc00002a82f48c88897ff180005ffc0000000000",
            "0080",
        ),
        true,
    ),
    (
        3,
        Encoding::DecimalGrid,
        concat!(
            "021480f8b2e5bd68c9b211e13e014ceea601ff0accd150146eaae7e067f45bffa2a03b1aa9b58380",
            "ca66a7a0280000497d8fd99e2e058000c3555ed0f00e2ff99d80a73d574540f0e299bb7809e16669",
            "a83abf22fd54c6c05ffc37fdbb40b09355d371f7fe834ccc74057fc3b355ac0f9354f350117ec7df",
            "f51f07662fbfd9000c99ade851",
        ),
        true,
    ),
    (4, Encoding::DecimalGrid, "0200", true),
    (
        2,
        Encoding::DecimalSplit,
        concat!(
            "031e80f8b2e5bd68cebb1b1f9dd4c02341000009200010330fab84eb1600000eea5c00003ba99834",
            "bbca60010ebfe00001f213a8f41fbf5f0ebe6e1ddf3db96f80000aa0a918889ff80002ffe00000000",
            "00004",
        ),
        false,
    ),
    (
        5,
        Encoding::DecimalSplit,
        concat!(
            "031480f8b2e5bd68c9b211129dd4c02341000009200010330fab84eb1600b115ffe0020015555555",
            "555556800fffffffffffffbffeaaaaaaaaaaaaa8002aaaaaaaaaaaaa001ffffffffffff2800d5555",
            "55555556a000aaaaaaaaaaaae8007fffffffffffea00755555555555568001555555555556a000ff",
            "ffffffffff28006aaaaaaaaaaaaa00055555555555568003fffffffffffea003aaaaaaaaaaaae800",
            "1555555555555a000ffffffffffffa8006aaaaaaaaaaaba00055555555555540",
        ),
        false,
    ),
    (
        3,
        Encoding::DecimalSplit,
        concat!(
            "031480f8b2e5bd68c9b211129dd4c02341000009200010330fab84eb1600ffc02900000000000000",
            "0020b334540540000000600000001000000018000000080000000800000018000000080000000800",
            "00003000000020000000c0000000800000010000000c00000010000000c00000000000fbfc6fff2b",
            "31dc3aa0",
        ),
        false,
    ),
    // Written with the fixed-grid time coding.
    (
        2,
        Encoding::DecimalSplit,
        concat!(
            "031e80f8b2e5bd68cebb1b164eea610624ecc02b4ecc02b2700000eea5cc0128b530010ebfe00001",
            "f213a8f41fbf5f0ebe6e1ddf3db96f80000aa0a918889ff80002ffe0000000000004",
        ),
        true,
    ),
    // Written with the fixed-grid time coding.
    (
        5,
        Encoding::DecimalSplit,
        concat!(
            "031480f8b2e5bd68c9b2110d4eea610624ecc02b4ecc02b270b115ffe0020015555555555556800f",
            "ffffffffffffbffeaaaaaaaaaaaaa8002aaaaaaaaaaaaa001ffffffffffff2800d555555555556a0",
            "00aaaaaaaaaaaae8007fffffffffffea00755555555555568001555555555556a000ffffffffffff",
            "28006aaaaaaaaaaaaa00055555555555568003fffffffffffea003aaaaaaaaaaaae8001555555555",
            "555a000ffffffffffffa8006aaaaaaaaaaaba00055555555555540",
        ),
        true,
    ),
    // Written with the fixed-grid time coding.
    (
        3,
        Encoding::DecimalSplit,
        concat!(
            "031480f8b2e5bd68c9b2110d4eea610624ecc02b4ecc02b270ffc029000000000000000020b33454",
            "05400000006000000010000000180000000800000008000000180000000800000008000000300000",
            "0020000000c0000000800000010000000c00000010000000c00000000000fbfc6fff2b31dc3aa0",
        ),
        true,
    ),
    // The fixed-grid time coding and the blocked decimal value coding, as
    // first written (every block's Rice parameter searched).
    (
        6,
        Encoding::DecimalSplit,
        concat!(
            "034f80f8b2e5bd68e8a948174eea600f03ffde07ffbc0e00003ba987fb81fff703ff807c087d5541",
            "1048484851414514416b5ad0400001a6541d507541b780005ffe000000000000000005711000015b",
            "0bf8",
        ),
        false,
    ),
    // The same, as written now (parameters searched near the mean).
    (
        6,
        Encoding::DecimalSplit,
        concat!(
            "034f80f8b2e5bd68e8a948174eea600f03ffde07ffbc0e00003ba987fb81fff703ff807c087d5541",
            "1048484851414514416b5ad0400001a6541d50754195400017ff8000000000000000015c44000056",
            "c2aaa8",
        ),
        true,
    ),
];

/// Samples of the golden chunks (see `GOLDEN`).
fn golden_samples(which: usize) -> Vec<Sample> {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let t = |i: i64| 1_795_000_000_000 + i * 15_000 + [0, 2, -1, 1, 0, -2, 9, 1][(i % 8) as usize];
    let mut out: Vec<Sample> = match which {
        // A one-decimal gauge with specials, in both encodings.
        0 | 1 => (0..20)
            .map(|i| Sample {
                t: t(i),
                v: ((i * 37) % 1000) as f64 / 10.0,
            })
            .collect(),
        // A histogram bucket counter: flat, then rising, a reset, a missed
        // scrape, and a stale marker at the end.
        2 => (0..30)
            .map(|i| Sample {
                t: t(i) + if i >= 20 { 15_000 } else { 0 },
                v: if i < 10 {
                    5.0
                } else if i < 25 {
                    5.0 + (i * i) as f64
                } else {
                    (i - 25) as f64
                },
            })
            .collect(),
        // A float counter that is not decimal (float mode).
        3 => (0..20)
            .map(|i| Sample {
                t: t(i),
                v: 12.5 + (i as f64) * 0.000_001_7 * std::f64::consts::PI,
            })
            .collect(),
        // A float gauge whose sign flips (encoding 3 picks XOR for it).
        5 => (0..20)
            .map(|i| Sample {
                t: t(i),
                v: if i % 2 == 0 { 1.0 } else { -1.0 } * (1.0 + i as f64 / 3.0),
            })
            .collect(),
        // Blocked decimal values on a fixed grid: flat, a steady rate, a
        // faster one, a reset, a NaN, on 15 s scrapes with a missed one.
        6 => (0..80)
            .filter(|&i| i != 40)
            .map(|i| Sample {
                t: 1_795_000_000_000 + i * 15_000 + if i % 16 == 5 { 3 } else { 0 },
                v: match i {
                    0..20 => 7.0,
                    20..50 => 7.0 + ((i - 20) * 3 + i % 2) as f64,
                    50..70 => 100.0 + ((i - 50) * 40 + i % 5) as f64,
                    70 => f64::NAN,
                    _ => (i - 71) as f64,
                },
            })
            .collect(),
        _ => Vec::new(),
    };
    if which == 0 || which == 1 {
        out[5].v = f64::NAN;
        out[6].v = f64::INFINITY;
        out[7].v = -0.0;
        out[8].v = f64::from_bits(0x7ff8_0000_0000_0001);
        out[9].v = f64::NEG_INFINITY;
    }
    if which == 2 || which == 3 {
        let last = out.len() - 1;
        out[last].v = stale;
    }
    out
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("fixture is hex"))
        .collect()
}

#[test]
fn golden_chunks_decode_forever() {
    for (which, enc, hex, current) in GOLDEN {
        let want = golden_samples(which);
        let c = Chunk::from_bytes(from_hex(hex)).expect("golden chunk header");
        assert_eq!(c.encoding(), enc, "fixture {which}");
        assert_eq!(c.len(), want.len(), "fixture {which}");
        let mut got = Vec::new();
        c.decode_into(i64::MIN, i64::MAX, &mut got)
            .expect("golden chunk decodes");
        assert_eq!(bits(&got), bits(&want), "fixture {which}");
        if !current {
            continue;
        }
        let again = if enc == Encoding::DecimalSplit {
            SplitStreams::encode(&want).to_chunk().expect("streams")
        } else {
            encode(enc, &want).finish()
        };
        assert_eq!(
            again.as_bytes(),
            &from_hex(hex)[..],
            "fixture {which}: encoder output changed"
        );
    }
}

/// Encoding 3's time stream takes the fixed grid for scrapes on a grid
/// (with jitter, a missed scrape, an outlier) and the tracked grid for a
/// drifting interval; both read back exactly.
#[test]
fn time_streams_take_the_shorter_coding() {
    let t0 = 1_795_000_000_000i64;
    let run = |ts: Vec<i64>| -> Vec<Sample> {
        ts.into_iter()
            .enumerate()
            .map(|(i, t)| Sample { t, v: i as f64 })
            .collect()
    };
    let exact = run((0..240).map(|i| t0 + i * 15_000).collect());
    let jittered = run((0..240)
        .filter(|&i| i != 100)
        .map(|i| {
            t0 + i * 15_000 + [0, 2, -1, 1, -2][(i % 5) as usize] + if i == 50 { 900 } else { 0 }
        })
        .collect());
    let drifting = run((0..240).map(|i| t0 + i * 15_000 + i * i / 4).collect());
    for (name, samples, fixed) in [
        ("exact", &exact, true),
        ("jittered", &jittered, true),
        ("drifting", &drifting, false),
    ] {
        let split = SplitStreams::encode(samples);
        assert_eq!(split.times[0] >> 7 == 0, fixed, "{name}: coding");
        let mut got = Vec::new();
        split
            .to_chunk()
            .expect("chunk")
            .decode_into(i64::MIN, i64::MAX, &mut got)
            .expect("decodes");
        assert_eq!(bits(&got), bits(samples), "{name}");
    }
    // An exact grid: the header and a bit per block of 16.
    assert!(
        SplitStreams::encode(&exact).times.len() <= 12,
        "exact grid takes {} bytes",
        SplitStreams::encode(&exact).times.len()
    );
}

/// Encoding 3's value stream takes the blocked decimal coding for flat and
/// steady counters, and reads back exactly, whole and by sub-range.
#[test]
fn value_streams_take_the_blocked_decimal_coding() {
    let samples = golden_samples(6);
    let split = SplitStreams::encode(&samples);
    // '0', then the 5-bit marker 31.
    assert_eq!(split.values[0] >> 2, 0b011111, "blocked decimal marker");
    let chunk = split.to_chunk().expect("chunk");
    let (lo, hi) = (samples[0].t, samples[samples.len() - 1].t);
    for (mint, maxt) in [
        (i64::MIN, i64::MAX),
        (lo + 1, hi),
        (lo, lo + 17 * 15_000),
        (lo + 300_000, lo + 700_000),
        (hi, hi),
    ] {
        let mut got = Vec::new();
        chunk.decode_into(mint, maxt, &mut got).expect("decodes");
        assert_eq!(
            bits(&got),
            in_range(&samples, mint, maxt),
            "{mint}..={maxt}"
        );
    }
    // A flat run of 240 values: a bit per 16 on each stream, about.
    let flat: Vec<Sample> = (0..240)
        .map(|i| Sample {
            t: 1_795_000_000_000 + i * 15_000,
            v: 42.0,
        })
        .collect();
    let c = SplitStreams::encode(&flat).to_chunk().expect("chunk");
    assert!(c.as_bytes().len() <= 32, "{} bytes", c.as_bytes().len());
    let mut got = Vec::new();
    c.decode_into(i64::MIN, i64::MAX, &mut got)
        .expect("decodes");
    assert_eq!(bits(&got), bits(&flat));
}

/// Encoding 3 with both block codings, blocks alternating between all-zero
/// and coded residuals in each stream (every combination the decoder
/// specialises), read back whole and by many sub-ranges.
#[test]
fn block_codings_read_back_in_every_combination() {
    let t0 = 1_795_000_000_000i64;
    let samples: Vec<Sample> = (0..240i64)
        .map(|i| {
            let block = (i - 1).max(0) / 16;
            let jitter = if block % 2 == 1 && i % 3 == 0 { 2 } else { 0 };
            let rising = (block / 2) % 2 == 1;
            Sample {
                t: t0 + i * 15_000 + jitter,
                v: if rising {
                    (i * 7 + i % 4) as f64
                } else {
                    1_000.0
                },
            }
        })
        .collect();
    let split = SplitStreams::encode(&samples);
    assert_eq!(split.times[0] >> 7, 0, "fixed grid");
    assert_eq!(split.values[0] >> 2, 0b011111, "blocked decimal");
    let chunk = split.to_chunk().expect("chunk");
    for a in (0..240).step_by(7) {
        for b in (a..240).step_by(11) {
            let (mint, maxt) = (t0 + a * 15_000 - 1, t0 + b * 15_000 + 1);
            let mut got = Vec::new();
            chunk.decode_into(mint, maxt, &mut got).expect("decodes");
            assert_eq!(bits(&got), in_range(&samples, mint, maxt), "{a}..={b}");
        }
    }
    let mut got = Vec::new();
    chunk
        .decode_into(i64::MIN, i64::MAX, &mut got)
        .expect("decodes");
    assert_eq!(bits(&got), bits(&samples));
}
