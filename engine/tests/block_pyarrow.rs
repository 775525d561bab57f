//! A block's Parquet file opens in a standard tool: pyarrow (installed by
//! `scripts/install-peers.sh` into a venv) reads a block written from a
//! real head and finds the same series (labels from the `label.*`
//! columns), the same sample counts and time ranges per series, the
//! format version in the key-value metadata, and `label.__name__`
//! statistics on every row group, through zstd-compressed columns. Sample
//! values are in the engine's chunk codec, which pyarrow does not decode;
//! the counts and ranges come from the `num_samples`, `min_time_ms` and
//! `max_time_ms` columns.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use cairn_engine::block::{self, BlockOptions, BlockStore, PARQUET_FILE};
use cairn_engine::{Db, DbOptions, Labels, MatchOp, Matcher, Sample, WriteSeries};

/// The venv's python, as `scripts/install-peers.sh` creates it.
fn python() -> PathBuf {
    let peers = std::env::var_os("CAIRN_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/cairn-peers")
        });
    let python = peers.join("py-venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-peers.sh (scripts/test.sh does)",
        python.display()
    );
    python
}

/// (metric name, labels, samples, min time, max time) of one series.
type SeriesSummary = (String, BTreeMap<String, String>, usize, i64, i64);

const BASE: i64 = 1_700_006_400_000;

#[test]
fn pyarrow_reads_a_block_and_finds_the_same_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("data"), DbOptions::default()).unwrap();
    let mut batch = Vec::new();
    for (i, name) in ["up", "requests_total", "gpu_util"].iter().enumerate() {
        for pod in 0..4 {
            let labels = Labels::from_pairs([
                ("__name__", name.to_string()),
                ("pod", format!("p{pod}")),
                ("model", ["a", "b"][pod % 2].to_string()),
            ]);
            let n = 100 + 50 * i + pod;
            let samples = (0..n as i64)
                .map(|j| Sample::new(BASE + j * 15_000 + j % 7, (j * (pod as i64 + 1)) as f64))
                .collect();
            batch.push(WriteSeries { labels, samples });
        }
    }
    assert!(db.append(&batch).unwrap().rejected.is_empty());
    let store = BlockStore::local(&dir.path().join("blocks")).unwrap();
    let opts = BlockOptions {
        chunk_max_samples: 60,
        row_group_target_rows: 10,
        ..BlockOptions::default()
    };
    let maxt = BASE + block::DEFAULT_BLOCK_RANGE_MS - 1;
    let meta = block::writer::write_block(&store, &*db.querier(), BASE, maxt, opts)
        .unwrap()
        .expect("data in range");

    let path = dir
        .path()
        .join("blocks")
        .join(&meta.ulid)
        .join(PARQUET_FILE);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/block_pyarrow.py");
    let out = Command::new(python())
        .arg(script)
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["version"], block::FORMAT_VERSION.to_string());

    // What the head holds for the range, in the block's row order (by
    // metric name, then labels).
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".*").unwrap();
    let mut want: Vec<SeriesSummary> = db
        .querier()
        .select(&[all], BASE, maxt)
        .unwrap()
        .into_iter()
        .map(|s| {
            let v = s.samples();
            let labels = s
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            let name = s.labels.metric_name().unwrap_or("").to_string();
            (name, labels, v.len(), v[0].t, v[v.len() - 1].t)
        })
        .collect();
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let got: Vec<SeriesSummary> = seen["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (
                labels["__name__"].clone(),
                labels,
                s["samples"].as_u64().unwrap() as usize,
                s["min_time"].as_i64().unwrap(),
                s["max_time"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // Row groups hold whole metric names, so their __name__ statistics
    // are disjoint and ascending: a filter on the name prunes groups.
    let stats = seen["name_stats"].as_array().unwrap();
    assert_eq!(stats.len(), 3, "{stats:?}");
    for (i, st) in stats.iter().enumerate() {
        assert_eq!(st[0], st[1], "row group {i} holds one metric name");
    }
    db.close().unwrap();
}
