//! Bytes per sample of blocks before and after compaction, on the
//! realistic mix: replays a generated remote-write directory into a `Db`,
//! cuts 2 h blocks into a local block store, measures them, runs one
//! compaction pass (2h -> 12h -> 48h) and measures the result.
//!
//! ```text
//! cargo run --release -p cairn-workload -- gen --out /tmp/wl \
//!     --series 2000 --duration 16h --start 2023-11-26T00:00:00Z --shards 1
//! cargo run --release -p cairn-workload --example block_size -- /tmp/wl
//! ```
//!
//! Start the window on a 12 h boundary so that its first six 2 h blocks
//! fill one 12 h range. Size counts the blocks' data files (Parquet and
//! index), as recorded in their `meta.json`, and is split by file.
//! `CHUNK_MAX_SAMPLES=N` sets the block chunk length; `KEEP_BLOCKS=DIR`
//! writes the blocks into DIR (kept) instead of a temporary directory, to
//! look inside them (for example per-column sizes with pyarrow).

use std::path::PathBuf;

use anyhow::Context;
use cairn_engine::block::compact::{self, CompactionOptions};
use cairn_engine::block::retention::block_size_bytes;
use cairn_engine::block::{
    BlockMeta, BlockOptions, BlockStore, INDEX_FILE, PARQUET_FILE, list_blocks,
};
use cairn_engine::{Db, DbOptions, Labels, Sample, WriteSeries};
use cairn_workload::remote_write::{decode_payload, read_manifest};
use cairn_workload::send::remote_write_dir;

fn report(what: &str, metas: &[BlockMeta]) {
    let bytes: u64 = metas.iter().map(block_size_bytes).sum();
    let samples: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    let series: u64 = metas.iter().map(|m| m.stats.num_series).sum();
    let per = |b: u64| b as f64 / samples.max(1) as f64;
    let file = |name: &str| -> u64 { metas.iter().filter_map(|m| m.file_size(name)).sum() };
    let (parquet, index) = (file(PARQUET_FILE), file(INDEX_FILE));
    println!(
        "{what}: {} blocks, {series} series-blocks, {samples} samples, {bytes} bytes, {:.3} bytes/sample (series.parquet {:.3}, index {:.3})",
        metas.len(),
        per(bytes),
        per(parquet),
        per(index),
    );
}

fn main() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: block_size <generated workload dir>")?
        .into();
    let rw = remote_write_dir(&dir);
    let mut payloads = read_manifest(&rw)?;
    payloads.sort_by_key(|p| (p.min_t_ms, p.shard, p.seq));
    let tmp = tempfile::tempdir()?;
    let db = Db::open(&tmp.path().join("db"), DbOptions::default())?;
    let mut total = 0u64;
    for p in &payloads {
        let body = std::fs::read(rw.join(&p.file))?;
        let req = decode_payload(&body)?;
        let batch: Vec<WriteSeries> = req
            .timeseries
            .into_iter()
            .map(|ts| WriteSeries {
                labels: Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value))),
                samples: ts
                    .samples
                    .into_iter()
                    .map(|s| Sample::new(s.timestamp, s.value))
                    .collect(),
            })
            .collect();
        let out = db.append(&batch)?;
        total += p.samples;
        anyhow::ensure!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
    }
    println!("appended {total} samples");
    let blocks_dir = match std::env::var_os("KEEP_BLOCKS") {
        Some(d) => PathBuf::from(d),
        None => tmp.path().join("blocks"),
    };
    let store = BlockStore::local(&blocks_dir)?;
    let mut opts = BlockOptions::default();
    if let Ok(n) = std::env::var("CHUNK_MAX_SAMPLES") {
        opts.chunk_max_samples = n.parse().context("CHUNK_MAX_SAMPLES")?;
    }
    db.cut_blocks(&store, 2 * 3_600_000, opts)?;
    let before = list_blocks(&store)?;
    report("2h blocks", &before);
    let result = compact::run(&store, &CompactionOptions::default())?;
    let after = list_blocks(&store)?;
    let compacted: Vec<BlockMeta> = after
        .iter()
        .filter(|m| result.created.contains(&m.ulid))
        .cloned()
        .collect();
    let sources: Vec<BlockMeta> = before
        .iter()
        .filter(|m| result.deleted.contains(&m.ulid))
        .cloned()
        .collect();
    report("compaction sources (2h blocks)", &sources);
    report("compacted blocks", &compacted);
    db.close()?;
    Ok(())
}
