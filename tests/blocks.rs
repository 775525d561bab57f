//! The block lifecycle in the running server: history written by remote
//! write is cut into blocks by the maintenance loop, the head shrinks, WAL
//! segments are replaced by a checkpoint, and after a restart every sample
//! is read back exactly once, from blocks and head together.

mod support;

use std::time::Duration;

use support::*;

const H: i64 = 3_600_000;
/// A multiple of 2 h, so the block ranges start at BASE.
const BASE: i64 = 1_700_006_400_000;
const STEP: i64 = 30_000;
const SERIES: usize = 10;

fn value(i: usize, t: i64) -> f64 {
    ((t - BASE) / STEP) as f64 * 1.5 + i as f64
}

/// Writes hour `h` of every series (oldest hours first: "too old" is
/// measured against the newest sample in the head).
fn write_hour(server: &Server, h: i64) {
    let id: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    let ts = (0..SERIES)
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
    let a = write_v1(server, ts);
    assert_eq!(a.status, 204, "hour {h}: {}", a.body);
}

/// Every raw sample of every series over the whole written range, as
/// (id, t, value bits), checking each timestamp occurs once per series.
fn all_samples(server: &Server) -> Vec<(String, i64, u64)> {
    let end = BASE + 5 * H;
    let (status, v) = get_json(
        server,
        &format!("/api/v1/query?query=hist[6h]&time={}", end as f64 / 1000.0),
    );
    assert_eq!(status, 200, "{v}");
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().expect("matrix") {
        let id = s["metric"]["id"].as_str().expect("id").to_string();
        let mut last = i64::MIN;
        for p in s["values"].as_array().expect("values") {
            let t = (p[0].as_f64().expect("t") * 1000.0).round() as i64;
            assert!(t > last, "series {id}: {t} after {last}");
            last = t;
            let x: f64 = p[1].as_str().expect("value").parse().expect("number");
            out.push((id.clone(), t, x.to_bits()));
        }
    }
    out.sort();
    out
}

fn expected() -> Vec<(String, i64, u64)> {
    let mut out = Vec::new();
    for i in 0..SERIES {
        for k in 0..5 * H / STEP {
            let t = BASE + k * STEP;
            out.push((i.to_string(), t, value(i, t).to_bits()));
        }
    }
    out.sort();
    out
}

fn wal_entries(server: &Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(server.data_dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn history_is_cut_into_blocks_and_read_back_once_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = dir.path().join("cairn.yml");
    std::fs::write(
        &config,
        "storage:\n  maintenance_interval: 200ms\n  wal_segment_size: 64KB\n",
    )
    .expect("write config");
    let flags = ["--config", config.to_str().expect("utf-8 path")];
    let server = Server::start(&data, &flags);
    for h in 0..5 {
        write_hour(&server, h);
    }
    let want = expected();

    // The newest sample is at 5 h - 30 s: with the 10 min out-of-order
    // window, [0, 2 h) and [2 h, 4 h) are frozen and cut.
    let mut polls = 0;
    while metric(&server, "cairn_blocks_cut_total") < 2.0 {
        polls += 1;
        assert!(polls < 300, "no blocks cut; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&server, "cairn_blocks_loaded"), 2.0);
    assert!(metric(&server, "cairn_blocks_bytes") > 0.0);
    assert_eq!(metric(&server, "cairn_maintenance_failures_total"), 0.0);
    let blocks: Vec<_> = std::fs::read_dir(data.join("blocks"))
        .expect("blocks dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    assert_eq!(blocks.len(), 2, "{blocks:?}");

    // The head holds the last hour only; the WAL was checkpointed there.
    let (status, tsdb) = get_json(&server, "/api/v1/status/tsdb");
    assert_eq!(status, 200);
    let head = &tsdb["data"]["headStats"];
    assert_eq!(head["numSeries"], SERIES as u64, "{head}");
    assert!(
        head["minTime"].as_i64().expect("minTime") >= BASE + 4 * H,
        "{head}"
    );
    assert!(metric(&server, "cairn_head_samples") <= (SERIES as i64 * H / STEP) as f64);
    assert!(metric(&server, "cairn_wal_segments_deleted_total") >= 1.0);
    let wal = wal_entries(&server);
    assert!(wal.iter().any(|n| n.starts_with("checkpoint.")), "{wal:?}");
    assert!(!wal.contains(&"00000000".to_string()), "{wal:?}");

    // Every sample once, from the blocks and the head.
    assert_eq!(all_samples(&server), want);
    // The cut ranges are closed: a late sample is refused, nothing stored.
    let late = write_v1(
        &server,
        vec![series(
            &[("__name__", "hist"), ("id", "0")],
            &[(BASE + H, 1.0)],
        )],
    );
    assert_eq!(late.status, 400, "{}", late.body);
    assert!(
        late.body.contains("too_old") || late.body.contains("too old"),
        "{}",
        late.body
    );

    assert!(server.stop().success());
    let server = Server::start(&data, &flags);
    assert_eq!(all_samples(&server), want, "after a restart");
    let (_, tsdb) = get_json(&server, "/api/v1/status/tsdb");
    assert_eq!(tsdb["data"]["headStats"]["numSeries"], SERIES as u64);
    assert!(server.stop().success());
}
