//! The `cairn-workload` command: `gen` writes a workload to a directory,
//! `send` posts its remote-write payloads to a URL. See docs/benchmarks.md.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cairn_workload::duration::{parse_duration_ms, parse_time_ms};
use cairn_workload::sim::WorkloadConfig;
use cairn_workload::{Format, OutputOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn-workload",
    about = "LLM-inference fleet workload generator and remote-write sender"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a workload into a directory.
    Gen {
        /// Output directory (remote-write/, openmetrics.txt, summary.json).
        #[arg(long)]
        out: PathBuf,
        /// Active series (10k to 1M; instances and groups scale to reach it).
        #[arg(long, default_value_t = 100_000)]
        series: usize,
        /// Time span, e.g. 30m, 2h.
        #[arg(long, default_value = "2h")]
        duration: String,
        /// First timestamp (RFC 3339 or ms since the epoch); default: the
        /// latest window that ends on a 2 h boundary before now.
        #[arg(long)]
        start: Option<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Redeploys (new `version` label) per instance per hour.
        #[arg(long, default_value_t = 0.0)]
        churn: f64,
        /// Hashed `user_cohort` values per (adapter, route); 0 for no label.
        #[arg(long, default_value_t = 0)]
        cohorts: usize,
        /// Adapters per instance.
        #[arg(long, default_value_t = 10)]
        adapters: usize,
        #[arg(long, default_value = "15s")]
        scrape_interval: String,
        #[arg(long, default_value_t = 5_000)]
        samples_per_request: usize,
        /// Remote-write shards (the sender's maximum useful concurrency).
        #[arg(long, default_value_t = 4)]
        shards: usize,
        /// Comma-separated: remote-write, otlp, openmetrics.
        #[arg(long, default_value = "remote-write")]
        formats: String,
    },
    /// Send the remote-write (or OTLP) payloads of a generated directory.
    Send {
        /// Directory written by `gen`.
        #[arg(long)]
        dir: PathBuf,
        /// Remote-write URL, e.g. http://127.0.0.1:9090/api/v1/write, or
        /// with --otlp an OTLP/HTTP URL, e.g. http://127.0.0.1:4318/v1/metrics.
        #[arg(long)]
        url: String,
        /// Send the `otlp/` payloads (generated with --formats otlp) as
        /// OTLP/HTTP protobuf instead of the remote-write ones.
        #[arg(long)]
        otlp: bool,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 8)]
        max_attempts: u32,
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Send only the first N rounds of requests (one per shard each).
        #[arg(long)]
        limit: Option<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen {
            out,
            series,
            duration,
            start,
            seed,
            churn,
            cohorts,
            adapters,
            scrape_interval,
            samples_per_request,
            shards,
            formats,
        } => {
            let duration_ms = parse_duration_ms(&duration)?;
            let start_ms = match start {
                Some(s) => parse_time_ms(&s)?,
                None => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .context("clock before 1970")?
                        .as_millis() as i64;
                    cairn_workload::default_start_ms(now, duration_ms)
                }
            };
            let mut config = WorkloadConfig::new(seed, series, start_ms, duration_ms);
            config.churn_per_hour = churn;
            config.cohorts = cohorts;
            config.adapters = adapters;
            config.scrape_interval_ms = parse_duration_ms(&scrape_interval)?;
            let formats = formats
                .split(',')
                .map(|f| match f.trim() {
                    "remote-write" => Ok(Format::RemoteWrite),
                    "openmetrics" => Ok(Format::OpenMetrics),
                    "otlp" => Ok(Format::Otlp),
                    other => {
                        anyhow::bail!("unknown format {other:?} (remote-write, otlp, openmetrics)")
                    }
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let options = OutputOptions {
                dir: out,
                formats,
                shards,
                samples_per_request,
            };
            let summary = cairn_workload::generate_to_dir(&config, &options)?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Send {
            dir,
            url,
            otlp,
            concurrency,
            max_attempts,
            timeout_s,
            limit,
        } => {
            let (protocol, payload_dir) = if otlp {
                (
                    cairn_workload::send::Protocol::Otlp,
                    cairn_workload::otlp::otlp_dir(&dir),
                )
            } else {
                (
                    cairn_workload::send::Protocol::RemoteWrite,
                    cairn_workload::send::remote_write_dir(&dir),
                )
            };
            let options = cairn_workload::send::SendOptions {
                url,
                protocol,
                concurrency,
                max_attempts,
                timeout: Duration::from_secs(timeout_s),
                limit,
            };
            let report = cairn_workload::send::send_dir(&payload_dir, &options)?;
            eprintln!(
                "sent {} requests: {} samples accepted, {} rejected, {:.0} samples/s in {:.1} s",
                report.requests,
                report.accepted_samples,
                report.rejected_samples,
                report.samples_per_second,
                report.seconds
            );
            println!("{}", serde_json::to_string(&report)?);
            if report.accepted_samples == 0 && report.requests > 0 {
                anyhow::bail!(
                    "the receiver accepted nothing: {:?}",
                    report.first_rejection
                );
            }
        }
    }
    Ok(())
}
