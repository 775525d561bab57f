//! The load sender: posts remote-write payload files to any remote-write
//! URL, or OTLP payload files to any OTLP/HTTP URL, with a chosen
//! concurrency, and counts what the receiver accepted.
//!
//! Ordering: the generator shards series like Prometheus's queue manager,
//! and each shard's requests are sent one after another by one worker
//! (workers take shards round-robin and walk them in step, request `seq` by
//! request `seq`), so a series' samples arrive in time order at any
//! concurrency, as from a real Prometheus.
//!
//! Retries: 5xx, 429 and transport errors are retried with exponential
//! backoff (bounded attempts); any other 4xx rejects the request's samples
//! (a receiver answers 400 for out-of-order or too-old samples).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Error;
use crate::remote_write::{Payload, read_manifest};

/// The wire protocol of a payload directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Prometheus remote-write 1.0: snappy-compressed protobuf.
    RemoteWrite,
    /// OTLP/HTTP: binary protobuf `ExportMetricsServiceRequest`.
    Otlp,
}

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub url: String,
    pub protocol: Protocol,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub timeout: Duration,
    /// Sends only the first `limit` request rounds (all shards), if set.
    pub limit: Option<usize>,
}

/// What the receiver did with the payloads.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SendReport {
    pub requests: u64,
    pub accepted_samples: u64,
    pub rejected_samples: u64,
    /// Requests rejected with a non-retryable status, or out of attempts.
    pub rejected_requests: u64,
    pub retries: u64,
    pub seconds: f64,
    pub samples_per_second: f64,
    /// The first rejection seen (status and body), to explain it.
    pub first_rejection: Option<String>,
}

enum Outcome {
    Accepted,
    Rejected(String),
}

/// Sends every payload of `dir` (a remote-write directory with a manifest).
pub fn send_dir(dir: &Path, options: &SendOptions) -> Result<SendReport, Error> {
    let manifest = read_manifest(dir)?;
    let shards = manifest.iter().map(|p| p.shard + 1).max().unwrap_or(0);
    let workers = options.concurrency.clamp(1, shards.max(1));
    // Per worker: its shards' payloads, in (seq, shard) order.
    let mut plans: Vec<Vec<&Payload>> = vec![Vec::new(); workers];
    let mut sorted: Vec<&Payload> = manifest
        .iter()
        .filter(|p| options.limit.is_none_or(|l| p.seq < l))
        .collect();
    sorted.sort_by_key(|p| (p.seq, p.shard));
    for p in sorted {
        plans[p.shard % workers].push(p);
    }
    let agent = reqwest::blocking::Client::builder()
        .timeout(options.timeout)
        .pool_max_idle_per_host(workers)
        .build()
        .map_err(|e| Error::Http {
            reason: e.to_string(),
        })?;
    let report = Mutex::new(SendReport::default());
    let started = Instant::now();
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for plan in &plans {
            let agent = agent.clone();
            let report = &report;
            let first_error = &first_error;
            scope.spawn(move || {
                for payload in plan {
                    let path = dir.join(&payload.file);
                    let body = match std::fs::read(&path) {
                        Ok(b) => b,
                        Err(source) => {
                            if let Ok(mut e) = first_error.lock() {
                                e.get_or_insert(Error::Io { path, source });
                            }
                            return;
                        }
                    };
                    let (outcome, retries) = post_with_retries(&agent, options, &body);
                    if let Ok(mut r) = report.lock() {
                        r.requests += 1;
                        r.retries += retries;
                        match outcome {
                            Outcome::Accepted => r.accepted_samples += payload.samples,
                            Outcome::Rejected(why) => {
                                r.rejected_samples += payload.samples;
                                r.rejected_requests += 1;
                                r.first_rejection
                                    .get_or_insert(format!("{}: {why}", payload.file));
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut report = report.into_inner().unwrap_or_default();
    report.seconds = started.elapsed().as_secs_f64();
    report.samples_per_second = report.accepted_samples as f64 / report.seconds.max(1e-9);
    Ok(report)
}

fn post_with_retries(
    agent: &reqwest::blocking::Client,
    options: &SendOptions,
    body: &[u8],
) -> (Outcome, u64) {
    let mut retries = 0;
    let mut backoff = Duration::from_millis(50);
    let mut last = String::new();
    for attempt in 0..options.max_attempts.max(1) {
        if attempt > 0 {
            retries += 1;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        let request = agent
            .post(&options.url)
            .header("Content-Type", "application/x-protobuf")
            .header("User-Agent", "cairn-workload");
        let request = match options.protocol {
            Protocol::RemoteWrite => request
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
            Protocol::Otlp => request,
        };
        let result = request.body(body.to_vec()).send();
        match result {
            Ok(response) => {
                let status = response.status();
                // Read the body whole so the connection is reused.
                let text = response.text().unwrap_or_default();
                if status.is_success() {
                    return (Outcome::Accepted, retries);
                }
                last = format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    text.trim().chars().take(300).collect::<String>()
                );
                if status.as_u16() != 429 && !status.is_server_error() {
                    return (Outcome::Rejected(last), retries);
                }
            }
            Err(e) => last = format!("transport: {e}"),
        }
    }
    (
        Outcome::Rejected(format!(
            "gave up after {} attempts: {last}",
            options.max_attempts
        )),
        retries,
    )
}

/// The remote-write directory inside a generator output directory.
pub fn remote_write_dir(out: &Path) -> PathBuf {
    out.join("remote-write")
}
