//! Shared helpers of the integration tests: start the real `cairn` binary
//! on 127.0.0.1 with a temporary data directory, speak remote-write and
//! remote-read to it, stop it with SIGTERM.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::prometheus as pb;
use cairn_proto::prost::Message;

/// Polls of at most this many times 50 ms (start-up, readiness).
const MAX_POLLS: usize = 600;

/// A running `cairn serve`.
pub struct Server {
    child: Child,
    pub addr: String,
    /// `host:port` of the OTLP/gRPC and OTLP/HTTP listeners.
    pub otlp_grpc: String,
    pub otlp_http: String,
    /// `host:port` of the gRPC query service.
    pub grpc: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `cairn serve` on an ephemeral port of 127.0.0.1 with the data
    /// in `data_dir` and the extra flags, and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// As [`Server::start`], with extra environment variables (such as
    /// the `AWS_*` settings of an S3 block store).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-listen", "127.0.0.1:0", "--log-level", "info"])
            .args(["--otlp-grpc-listen", "127.0.0.1:0"])
            .args(["--otlp-http-listen", "127.0.0.1:0"])
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cairn");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (otlp_tx, otlp_rx) = std::sync::mpsc::channel::<(String, String)>();
        let (grpc_tx, grpc_rx) = std::sync::mpsc::channel::<String>();
        {
            let log = log.clone();
            // Keeps draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let field = |key: &str| {
                        line.split(key)
                            .nth(1)
                            .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
                    };
                    if let (Some(g), Some(h)) = (field("otlp_grpc="), field("otlp_http=")) {
                        let _ = otlp_tx.send((g, h));
                    } else if let Some(addr) = field(" grpc=") {
                        let _ = grpc_tx.send(addr);
                    } else if let Some(addr) = field(" http=") {
                        let _ = tx.send(addr);
                    }
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its listen address");
        let (otlp_grpc, otlp_http) = otlp_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its OTLP listen addresses");
        let grpc = grpc_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its gRPC listen address");
        let server = Server {
            child,
            addr,
            otlp_grpc,
            otlp_http,
            grpc,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        server.wait_ready();
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    fn wait_ready(&self) {
        let client = client();
        for _ in 0..MAX_POLLS {
            if let Ok(r) = client.get(self.url("/-/ready")).send()
                && r.status().as_u16() == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server never became ready; log:\n{}", self.log());
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        // Let the drain thread flush the last lines.
        std::thread::sleep(Duration::from_millis(50));
        exit
    }

    /// Sends SIGTERM without waiting for the process to exit.
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The process id (to send signals such as SIGHUP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a sample line of `/metrics` (`name` with its labels, as
/// written, e.g. `cairn_x{op="get"}`).
pub fn metric(server: &Server, name: &str) -> f64 {
    let body = client()
        .get(server.url("/metrics"))
        .send()
        .expect("GET /metrics")
        .text()
        .expect("body");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

/// A free TCP port of 127.0.0.1 (for a peer that needs one on its
/// command line).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A program of the Python venv `scripts/install-peers.sh` creates
/// (`$CAIRN_PEERS_DIR/py-venv/bin/<name>`), asserted to exist.
pub fn py_venv_bin(name: &str) -> PathBuf {
    let peers = std::env::var_os("CAIRN_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/cairn-peers")
        });
    let bin = peers.join("py-venv/bin").join(name);
    assert!(
        bin.exists(),
        "{} missing: run scripts/install-peers.sh (scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A v1 series from `(name, value)` label pairs and `(t, v)` samples.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| pb::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| pb::Sample {
                value: v,
                timestamp: t,
            })
            .collect(),
        ..Default::default()
    }
}

pub fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy")
}

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// POSTs a raw body to `/api/v1/write` with the given headers.
pub fn post_write(server: &Server, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut req = client().post(server.url("/api/v1/write"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().expect("write request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Answer {
        status,
        headers,
        body: resp.text().unwrap_or_default(),
    }
}

pub const V1_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

pub const V2_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Type",
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    ),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "2.0.0"),
];

/// Remote-writes a v1 request; returns the answer.
pub fn write_v1(server: &Server, series: Vec<pb::TimeSeries>) -> Answer {
    let req = pb::WriteRequest {
        timeseries: series,
        metadata: vec![],
    };
    post_write(server, V1_HEADERS, snappy(&req.encode_to_vec()))
}

/// Reads every series matching `name="value"` equality matchers in
/// `[mint, maxt]` by remote-read: labels and samples exactly as stored.
pub fn read(
    server: &Server,
    matchers: &[(&str, &str)],
    mint: i64,
    maxt: i64,
) -> Vec<(Vec<(String, String)>, Vec<(i64, u64)>)> {
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: mint,
            end_timestamp_ms: maxt,
            matchers: matchers
                .iter()
                .map(|(n, v)| pb::LabelMatcher {
                    r#type: pb::label_matcher::Type::Eq as i32,
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            hints: None,
        }],
        accepted_response_types: vec![pb::read_request::ResponseType::Samples as i32],
    };
    let resp = client()
        .post(server.url("/api/v1/read"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(snappy(&req.encode_to_vec()))
        .send()
        .expect("read request");
    assert_eq!(resp.status().as_u16(), 200, "remote-read failed");
    let body = resp.bytes().expect("body");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy response");
    let r = pb::ReadResponse::decode(raw.as_slice()).expect("ReadResponse");
    r.results[0]
        .timeseries
        .iter()
        .map(|ts| {
            (
                ts.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                // Values as bits, so NaN payloads (stale markers) compare.
                ts.samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

/// Series as remote-read returns them: labels, then (timestamp, value bits).
pub type ReadSeries = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;

/// Remote-reads `queries` (equality matchers, mint, maxt) asking for
/// STREAMED_XOR_CHUNKS, checks the framing (uvarint size, big-endian
/// CRC32C, message) and every chunk (XOR, at most 120 samples, its min/max
/// times equal its first/last sample), and returns the series of each
/// query with consecutive frames of one series joined, plus the number of
/// frames.
pub fn read_streamed(
    server: &Server,
    queries: &[(&[(&str, &str)], i64, i64)],
) -> (Vec<ReadSeries>, usize) {
    let req = pb::ReadRequest {
        queries: queries
            .iter()
            .map(|(matchers, mint, maxt)| pb::Query {
                start_timestamp_ms: *mint,
                end_timestamp_ms: *maxt,
                matchers: matchers
                    .iter()
                    .map(|(n, v)| pb::LabelMatcher {
                        r#type: pb::label_matcher::Type::Eq as i32,
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                hints: None,
            })
            .collect(),
        accepted_response_types: vec![
            pb::read_request::ResponseType::StreamedXorChunks as i32,
            pb::read_request::ResponseType::Samples as i32,
        ],
    };
    let resp = client()
        .post(server.url("/api/v1/read"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(snappy(&req.encode_to_vec()))
        .send()
        .expect("read request");
    assert_eq!(resp.status().as_u16(), 200, "remote-read failed");
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    assert!(resp.headers().get("content-encoding").is_none());
    let body = resp.bytes().expect("body");
    let mut out: Vec<ReadSeries> = vec![Vec::new(); queries.len()];
    let mut rest: &[u8] = &body;
    let mut frames = 0;
    while !rest.is_empty() {
        let mut size: u64 = 0;
        let mut shift = 0;
        loop {
            let b = rest[0];
            rest = &rest[1..];
            size |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
            assert!(shift < 64, "uvarint too long");
        }
        let crc = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        let msg = &rest[4..4 + size as usize];
        rest = &rest[4 + size as usize..];
        assert_eq!(crc32c::crc32c(msg), crc, "frame {frames} checksum");
        frames += 1;
        let frame = pb::ChunkedReadResponse::decode(msg).expect("ChunkedReadResponse");
        let result = &mut out[frame.query_index as usize];
        for cs in frame.chunked_series {
            let labels: Vec<(String, String)> = cs
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let mut samples = Vec::new();
            for c in &cs.chunks {
                assert_eq!(c.r#type, pb::chunk::Encoding::Xor as i32);
                let got = cairn_server::xor_chunk::decode(&c.data).expect("XOR chunk");
                assert!(!got.is_empty() && got.len() <= 120, "{} samples", got.len());
                assert_eq!(got[0].t, c.min_time_ms);
                assert_eq!(got[got.len() - 1].t, c.max_time_ms);
                samples.extend(got.iter().map(|s| (s.t, s.v.to_bits())));
            }
            match result.last_mut() {
                Some((last, s)) if *last == labels => s.extend(samples),
                _ => result.push((labels, samples)),
            }
        }
    }
    (out, frames)
}

/// GETs a JSON API path and returns (status, parsed body).
pub fn get_json(server: &Server, path_and_query: &str) -> (u16, serde_json::Value) {
    let resp = client()
        .get(server.url(path_and_query))
        .send()
        .expect("GET");
    let status = resp.status().as_u16();
    let text = resp.text().expect("text");
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path_and_query}: body is not JSON ({e}): {text}"));
    (status, json)
}

/// Sends raw bytes over TCP and returns the response's status line and
/// headers (for requests a normal client cannot make, like a huge
/// declared Content-Length).
pub fn raw_http(addr: &str, request_head: &str, body_prefix: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request_head.as_bytes()).expect("write head");
    s.write_all(body_prefix).expect("write body");
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    // Read until the end of the headers (or the connection closes).
    for _ in 0..64 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// 2023-11-14T22:13:20Z: the first sample of [`server_with_query_data`].
pub const T0: i64 = 1_700_000_000_000;
/// Samples per series of [`server_with_query_data`], one every [`STEP`] ms.
pub const POINTS: i64 = 80;
pub const STEP: i64 = 15_000;

/// Starts a server with known data for the query APIs: two request
/// counters (`infer_requests_total{model, route}`), a gauge with awkward
/// fractions (`gpu_util{gpu="0"}`, for bit-exactness), and 150 `load{i}`
/// series (work for deadline tests), 20 minutes from [`T0`].
pub fn server_with_query_data(dir: &Path) -> Server {
    let server = Server::start(dir, &[]);
    let mut all = Vec::new();
    for (model, per_step) in [("llama", 3.0), ("mistral", 5.0)] {
        let samples: Vec<(i64, f64)> = (0..POINTS)
            .map(|i| (T0 + i * STEP, i as f64 * per_step + 0.1))
            .collect();
        all.push(series(
            &[
                ("__name__", "infer_requests_total"),
                ("model", model),
                ("route", "/chat"),
            ],
            &samples,
        ));
    }
    let gauge: Vec<(i64, f64)> = (0..POINTS)
        .map(|i| (T0 + i * STEP, 0.1 * i as f64 + 0.2))
        .collect();
    all.push(series(&[("__name__", "gpu_util"), ("gpu", "0")], &gauge));
    for k in 0..150 {
        let samples: Vec<(i64, f64)> = (0..POINTS)
            .map(|i| (T0 + i * STEP, (i * (k + 1)) as f64))
            .collect();
        all.push(series(
            &[("__name__", "load"), ("i", &k.to_string())],
            &samples,
        ));
    }
    let answer = write_v1(&server, all);
    assert_eq!(answer.status, 204, "{}", answer.body);
    server
}
