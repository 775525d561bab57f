//! Blocks on a real S3 API: a local S3 server (moto, from PyPI, installed
//! by `scripts/install-peers.sh` into its venv) on 127.0.0.1. Cairn writes
//! its blocks through `storage.url: s3://bucket/prefix` with the endpoint
//! and credentials from the standard `AWS_*` variables; a second Cairn
//! with an empty local data directory then answers every sample of those
//! blocks from S3 alone. While the store is down, the WAL grows up to
//! `storage.wal_max_size`, then writes get 503 until blocks can be written
//! again.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const H: i64 = 3_600_000;
/// A multiple of 2 h, so the block ranges start at BASE.
const BASE: i64 = 1_700_006_400_000;
const STEP: i64 = 30_000;
const SERIES: usize = 8;
const BUCKET: &str = "cairn-blocks";

/// The moto S3 server, killed when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        S3Server::start_on(free_port())
    }

    fn start_on(port: u16) -> S3Server {
        let child = Command::new(py_venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let s3 = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = client();
        for _ in 0..300 {
            if let Ok(r) = client.get(&s3.endpoint).send()
                && r.status().is_success()
            {
                return s3;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not answer on {}", s3.endpoint);
    }

    /// Creates a bucket (moto accepts unsigned requests).
    fn create_bucket(&self, name: &str) {
        let r = client()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .expect("PUT bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Keys under `prefix` in `bucket` (ListObjectsV2, one page).
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = client()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .expect("list objects")
            .text()
            .expect("body");
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file with the moto-backed block store, a fast maintenance
/// loop, small WAL segments and `extra` storage keys.
fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("cairn.yml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  url: s3://{BUCKET}/fleet\n  maintenance_interval: 200ms\n  wal_segment_size: 64KB\n{extra}"
        ),
    )
    .expect("write config");
    config
}

/// The standard AWS variables pointing Cairn's `s3://` store at moto.
fn aws_env(endpoint: &str) -> [(&'static str, &str); 5] {
    [
        ("AWS_ENDPOINT", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "cairn-test"),
        ("AWS_SECRET_ACCESS_KEY", "cairn-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ]
}

fn value(i: usize, t: i64) -> f64 {
    ((t - BASE) / STEP) as f64 * 0.25 + i as f64
}

fn write_hour(server: &Server, h: i64) {
    let a = try_write_hour(server, h, SERIES);
    assert_eq!(a.status, 204, "hour {h}: {}", a.body);
}

fn try_write_hour(server: &Server, h: i64, series_count: usize) -> Answer {
    let id: Vec<String> = (0..series_count).map(|i| i.to_string()).collect();
    let ts = (0..series_count)
        .map(|i| {
            let samples: Vec<(i64, f64)> = (0..H / STEP)
                .map(|k| {
                    let t = BASE + h * H + k * STEP;
                    (t, value(i, t))
                })
                .collect();
            series(&[("__name__", "hist"), ("id", &id[i])], &samples)
        })
        .collect();
    write_v1(server, ts)
}

/// Every raw sample of `hist` in [BASE, BASE + 4 h), as (id, t, bits).
fn all_samples(server: &Server) -> Vec<(String, i64, u64)> {
    samples_until(server, 4)
}

/// Every raw sample of `hist` in [BASE, BASE + hours), as (id, t, bits).
fn samples_until(server: &Server, hours: i64) -> Vec<(String, i64, u64)> {
    let end = BASE + hours * H - 1;
    let (status, v) = get_json(
        server,
        &format!(
            "/api/v1/query?query=hist[{hours}h]&time={}",
            end as f64 / 1000.0
        ),
    );
    assert_eq!(status, 200, "{v}");
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().expect("matrix") {
        let id = s["metric"]["id"].as_str().expect("id").to_string();
        for p in s["values"].as_array().expect("values") {
            let t = (p[0].as_f64().expect("t") * 1000.0).round() as i64;
            let x: f64 = p[1].as_str().expect("value").parse().expect("number");
            out.push((id.clone(), t, x.to_bits()));
        }
    }
    out.sort();
    out
}

fn expected() -> Vec<(String, i64, u64)> {
    expected_of(SERIES, 4)
}

fn expected_of(series_count: usize, hours: i64) -> Vec<(String, i64, u64)> {
    let mut out = Vec::new();
    for i in 0..series_count {
        for k in 0..hours * H / STEP {
            let t = BASE + k * STEP;
            out.push((i.to_string(), t, value(i, t).to_bits()));
        }
    }
    out.sort();
    out
}

#[test]
fn blocks_written_to_s3_are_read_back_by_a_server_with_an_empty_data_dir() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let flags = ["--config", config.to_str().expect("utf-8 path")];
    let env = aws_env(&s3.endpoint);

    let first = dir.path().join("first");
    let server = Server::start_with_env(&first, &flags, &env);
    for h in 0..4 {
        write_hour(&server, h);
    }
    // A newer sample of another series freezes [2 h, 4 h) (10 min
    // out-of-order window); it stays in this server's head and WAL.
    let marker = write_v1(
        &server,
        vec![series(
            &[("__name__", "marker")],
            &[(BASE + 4 * H + 20 * 60_000, 1.0)],
        )],
    );
    assert_eq!(marker.status, 204, "{}", marker.body);
    let mut polls = 0;
    while metric(&server, "cairn_blocks_cut_total") < 2.0 {
        polls += 1;
        assert!(polls < 300, "no blocks cut; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&server, "cairn_maintenance_failures_total"), 0.0);
    let want = expected();
    assert_eq!(all_samples(&server), want);

    // The blocks are in the bucket, under the prefix, published by their
    // meta.json; nothing of them on the local disk.
    let keys = s3.keys(BUCKET, "fleet/");
    let metas: Vec<&String> = keys.iter().filter(|k| k.ends_with("/meta.json")).collect();
    assert_eq!(metas.len(), 2, "{keys:?}");
    for m in &metas {
        let dir = m.trim_end_matches("meta.json");
        for f in ["series.parquet", "index"] {
            assert!(keys.contains(&format!("{dir}{f}")), "{f} of {m}: {keys:?}");
        }
    }
    let local_blocks = first.join("blocks");
    assert!(
        !local_blocks.exists()
            || std::fs::read_dir(&local_blocks)
                .expect("read blocks dir")
                .next()
                .is_none(),
        "blocks written locally"
    );
    assert!(server.stop().success());

    // A new server with an empty data directory finds every sample in S3.
    let second = dir.path().join("second");
    let server = Server::start_with_env(&second, &flags, &env);
    assert_eq!(metric(&server, "cairn_blocks_loaded"), 2.0);
    assert_eq!(all_samples(&server), want, "from S3 alone");
    // Asked again, the block bytes come from the caches (memory, then
    // local disk): no new ranged GET (indexes and footers stay open).
    let range_gets = r#"cairn_object_store_requests{op="range_get"}"#;
    let fetched = metric(&server, range_gets);
    assert!(fetched >= 2.0, "{fetched}");
    assert_eq!(all_samples(&server), want, "from the cache");
    assert_eq!(metric(&server, range_gets), fetched);
    assert!(metric(&server, "cairn_object_cache_bytes") > 0.0);
    assert!(metric(&server, "cairn_blocks_row_group_cache_bytes") > 0.0);
    assert!(metric(&server, "cairn_object_store_request_duration_seconds_count") >= fetched);
    assert_eq!(metric(&server, "cairn_object_store_request_errors"), 0.0);
    assert!(metric(&server, "cairn_blocks_opened_bytes") > 0.0);
    let (status, v) = get_json(&server, "/api/v1/series?match[]=marker");
    assert_eq!(status, 200);
    assert_eq!(
        v["data"],
        serde_json::json!([]),
        "the marker was only local"
    );
    assert!(server.stop().success());
}

#[test]
fn while_the_store_is_down_the_wal_is_bounded_and_writes_resume_after() {
    const MANY: usize = 300;
    let port = free_port();
    let s3 = S3Server::start_on(port);
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "  wal_max_size: 1MB\n");
    let flags = ["--config", config.to_str().expect("utf-8 path")];
    let env = aws_env(&s3.endpoint);
    let server = Server::start_with_env(&dir.path().join("data"), &flags, &env);

    // The store goes away; hours keep coming until the WAL is full.
    drop(s3);
    let mut accepted = 0;
    let refused = loop {
        assert!(accepted < 40, "never refused; log:\n{}", server.log());
        let a = try_write_hour(&server, accepted, MANY);
        if a.status == 204 {
            accepted += 1;
            continue;
        }
        break a;
    };
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("storage.wal_max_size"),
        "{}",
        refused.body
    );
    assert!(accepted >= 3, "refused after {accepted} hours");
    assert!(metric(&server, "cairn_wal_disk_bytes") > (1 << 20) as f64);
    // Everything acknowledged is there, from the head.
    assert_eq!(
        samples_until(&server, accepted),
        expected_of(MANY, accepted)
    );

    // The store comes back (empty, as moto keeps nothing): blocks are
    // written, the WAL shrinks, the refused hour goes in on a retry.
    let s3 = S3Server::start_on(port);
    s3.create_bucket(BUCKET);
    let mut polls = 0;
    loop {
        let a = try_write_hour(&server, accepted, MANY);
        if a.status == 204 {
            break;
        }
        assert_eq!(a.status, 503, "{}", a.body);
        polls += 1;
        assert!(polls < 600, "writes never resumed; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    accepted += 1;
    assert!(metric(&server, "cairn_blocks_cut_total") >= 1.0);
    // (Whether a maintenance pass failed meanwhile or was still retrying
    // its request when the store came back depends on timing.)
    assert!(metric(&server, "cairn_wal_disk_bytes") <= (1 << 20) as f64);
    assert!(!s3.keys(BUCKET, "fleet/").is_empty());
    assert_eq!(
        samples_until(&server, accepted),
        expected_of(MANY, accepted)
    );
    assert!(server.stop().success());
}
