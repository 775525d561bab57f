//! cairn-workload: a realistic LLM-inference fleet workload, the load
//! sender, and the pieces of the side-by-side comparison
//! (`benches/compare/`) that are Rust.
//!
//! Where it fits: this crate is a *client* of Cairn. It produces the same
//! data for every database under test, as remote-write 1.0 payload files
//! (what agents send), OpenMetrics text (what Prometheus's backfill reads)
//! and OTLP `ExportMetricsServiceRequest` files (what an OpenTelemetry SDK
//! sends); and it sends payloads to any remote-write or OTLP/HTTP URL. It depends on cairn-proto for the wire types only.
//!
//! | module | holds |
//! |---|---|
//! | [`fleet`] | topology: instances, groups, series and their labels |
//! | [`sim`] | values over time and the time-ordered scrape driver; the [`sim::Sink`] output trait |
//! | [`remote_write`] | snappy protobuf payload files and their manifest |
//! | [`openmetrics`] | OpenMetrics text for `promtool tsdb create-blocks-from openmetrics` |
//! | [`otlp`] | OTLP protobuf payload files of the same data |
//! | [`send`] | the concurrent sender (remote-write or OTLP/HTTP) with retries |
//! | [`rng`], [`duration`] | the deterministic random source; argument parsing |

use std::path::{Path, PathBuf};

pub mod duration;
pub mod fleet;
pub mod openmetrics;
pub mod otlp;
pub mod remote_write;
pub mod rng;
pub mod send;
pub mod sim;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {what}: {value:?}")]
    BadArgument { what: &'static str, value: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed line {line}")]
    Manifest { path: PathBuf, line: usize },
    #[error("encoding a payload: {reason}")]
    Encode { reason: String },
    #[error("HTTP client: {reason}")]
    Http { reason: String },
    #[error("decoding a payload: {reason}")]
    Decode { reason: String },
}

/// Output formats of `gen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    RemoteWrite,
    OpenMetrics,
    Otlp,
}

/// Generation parameters beyond the data itself: where and how to write.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    pub dir: PathBuf,
    pub formats: Vec<Format>,
    pub shards: usize,
    pub samples_per_request: usize,
}

pub const SUMMARY_FILE: &str = "summary.json";
pub const OPENMETRICS_FILE: &str = "openmetrics.txt";

/// Generates the workload into `out.dir`: `remote-write/`, `otlp/`,
/// `openmetrics.txt` (as asked) and `summary.json`.
pub fn generate_to_dir(
    config: &sim::WorkloadConfig,
    out: &OutputOptions,
) -> Result<sim::Summary, Error> {
    std::fs::create_dir_all(&out.dir).map_err(|source| Error::Io {
        path: out.dir.clone(),
        source,
    })?;
    let mut rw = None;
    let mut om = None;
    if out.formats.contains(&Format::RemoteWrite) {
        rw = Some(remote_write::RemoteWriteSink::create(
            &send::remote_write_dir(&out.dir),
            out.shards,
            out.samples_per_request,
        )?);
    }
    if out.formats.contains(&Format::OpenMetrics) {
        om = Some(openmetrics::OpenMetricsSink::create(
            &out.dir.join(OPENMETRICS_FILE),
        )?);
    }
    let mut otlp = None;
    if out.formats.contains(&Format::Otlp) {
        otlp = Some(otlp::OtlpSink::create(
            &otlp::otlp_dir(&out.dir),
            out.shards,
            out.samples_per_request,
            config.start_ms,
        )?);
    }
    let mut sinks: Vec<&mut dyn sim::Sink> = Vec::new();
    if let Some(s) = rw.as_mut() {
        sinks.push(s);
    }
    if let Some(s) = om.as_mut() {
        sinks.push(s);
    }
    if let Some(s) = otlp.as_mut() {
        sinks.push(s);
    }
    let summary = sim::generate(config, &mut sinks)?;
    let path = out.dir.join(SUMMARY_FILE);
    let json = serde_json::to_string_pretty(&summary).map_err(|e| Error::Encode {
        reason: e.to_string(),
    })?;
    std::fs::write(&path, json + "\n").map_err(|source| Error::Io { path, source })?;
    Ok(summary)
}

/// The default window: the most recent whole multiple of 2 h that ends at
/// or before `now_ms` on a 2 h boundary (blocks of Prometheus and Cairn are
/// cut at 2 h boundaries, so the data fills whole blocks).
pub fn default_start_ms(now_ms: i64, duration_ms: i64) -> i64 {
    const TWO_HOURS: i64 = 2 * 3_600_000;
    let end = now_ms.div_euclid(TWO_HOURS) * TWO_HOURS;
    let span = (duration_ms + TWO_HOURS - 1).div_euclid(TWO_HOURS) * TWO_HOURS;
    end - span
}

/// Reads `summary.json` of a generated directory.
pub fn read_summary(dir: &Path) -> Result<sim::Summary, Error> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Decode {
        reason: format!("{}: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests;
