//! The HTTP server's time limits against the real binary: a client that
//! disconnects in the middle of a query stops it (the query leaves
//! `cairn_queries_in_flight` long before it would have finished), and a
//! request body trickled slower than `listen.read_timeout` (a slow-loris
//! POST) is cut off with 408 while the server keeps serving.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{Server, T0};

/// A query that runs for tens of seconds in a debug build (a median over
/// 1 200-point windows at every second of 50 minutes, for 150 series)
/// while holding little memory: only cancellation ends it early.
pub const SLOW_QUERY: &str = "count(quantile_over_time(0.5, rate(load[5m])[20m:1s]))";

/// `cairn_queries_in_flight` from `/metrics`.
fn in_flight(server: &Server) -> f64 {
    let text = support::client()
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("cairn_queries_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cairn_queries_in_flight in:\n{text}"))
}

/// Polls (at most 200 times 50 ms) until `cairn_queries_in_flight` is
/// `want`.
fn wait_in_flight(server: &Server, want: f64) {
    let mut now = f64::NAN;
    for _ in 0..200 {
        now = in_flight(server);
        if now == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cairn_queries_in_flight is {now}, expected {want}");
}

#[test]
fn a_client_that_disconnects_mid_query_releases_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::server_with_query_data(dir.path());
    let url = server.url("/api/v1/query_range");
    let (start, end) = (T0 / 1000, T0 / 1000 + 3000);
    let impatient = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(1500))
            .build()
            .expect("client")
            .get(url)
            .query(&[
                ("query", SLOW_QUERY),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", "1"),
            ])
            .send()
    });
    // The query is running ...
    wait_in_flight(&server, 1.0);
    let gave_up = impatient.join().expect("client thread");
    assert!(
        gave_up.as_ref().is_err_and(|e| e.is_timeout()),
        "the query finished before the client gave up: {gave_up:?}"
    );
    // ... and stops once its client is gone, long before it would end.
    wait_in_flight(&server, 0.0);
    let (status, _) = support::get_json(&server, "/api/v1/query?query=count(load)");
    assert_eq!(status, 200);
}

#[test]
fn a_trickling_body_is_cut_off_with_408() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cairn.yml");
    std::fs::write(&cfg, "listen:\n  read_timeout: 1s\n").expect("config");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", cfg.to_str().expect("utf-8 path")]);

    let mut conn = std::net::TcpStream::connect(&server.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n\
         Content-Length: 100000\r\n\r\n",
        server.addr
    );
    conn.write_all(head.as_bytes()).expect("head");
    // One byte every 100 ms, for at most 30 s: never the whole body.
    let mut writer = conn.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        for _ in 0..300 {
            if writer.write_all(&[0]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the connection closes (or 64 reads): the 408 and its body.
    for _ in 0..64 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("listen.read_timeout"), "{answer}");
    // The server closed the connection: the trickling writer fails.
    assert!(
        trickle.join().expect("writer"),
        "the connection stayed open"
    );
    // And it still takes writes and answers.
    let series = support::series(&[("__name__", "after"), ("k", "v")], &[(T0, 1.0)]);
    let a = support::write_v1(&server, vec![series]);
    assert_eq!(a.status, 204, "{}", a.body);
}
