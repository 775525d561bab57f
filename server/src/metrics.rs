//! Self-monitoring: the metrics Cairn exposes about itself at `/metrics`,
//! in the Prometheus/OpenMetrics text format (the `prometheus-client`
//! crate does the encoding).
//!
//! Counters and histograms are updated on the request path; gauges that
//! mirror storage state (head series, ...) are refreshed from storage
//! statistics when `/metrics` is scraped. The WAL fsync latency
//! histogram is kept by the engine's WAL writer (fixed buckets, atomics)
//! and copied here at scrape time ([`WalFsyncCollector`]).

use std::sync::Arc;

use cairn_engine::wal::{FSYNC_BUCKETS_SECONDS, FsyncLatency};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::remote_write::{Protocol, RejectReason};

/// Labels of the HTTP latency histogram: the route pattern (not the raw
/// path, which would explode cardinality) and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub handler: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Labels of the rule-group counters: the rule file and the group name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleGroupLabels {
    pub rule_group: String,
}

/// The rule-evaluation counters (Prometheus's `rule_group_iterations_*`
/// and `rule_evaluation_failures_total`), cloned into the group tasks.
#[derive(Clone, Debug, Default)]
pub struct RuleMetrics {
    pub iterations: Family<RuleGroupLabels, Counter>,
    pub evaluations: Family<RuleGroupLabels, Counter>,
    pub last_duration_seconds: Family<RuleGroupLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub iterations_missed: Family<RuleGroupLabels, Counter>,
    pub evaluation_failures: Family<RuleGroupLabels, Counter>,
}

/// Labels of the per-Alertmanager notification counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertmanagerLabels {
    pub alertmanager: String,
}

/// The alert notifier's metrics (Prometheus's `prometheus_notifications_*`
/// with the `cairn_` prefix), and the configuration-reload gauges.
#[derive(Clone, Debug, Default)]
pub struct NotifierMetrics {
    pub dropped: Counter,
    pub sent: Family<AlertmanagerLabels, Counter>,
    pub errors: Family<AlertmanagerLabels, Counter>,
    pub queue_length: Gauge,
    pub queue_capacity: Gauge,
    pub alertmanagers_discovered: Gauge,
    pub reload_successful: Gauge,
    pub reload_success_timestamp_seconds: Gauge,
}

/// A latency histogram kept by the engine with atomics (the WAL's fsyncs,
/// the block store's requests): its last snapshot, encoded as a
/// Prometheus histogram under `name`.
#[derive(Debug)]
pub struct LatencyCollector {
    name: &'static str,
    help: &'static str,
    latest: parking_lot::Mutex<FsyncLatency>,
}

/// `cairn_wal_fsync_duration_seconds`.
pub type WalFsyncCollector = LatencyCollector;

impl Default for LatencyCollector {
    fn default() -> Self {
        LatencyCollector::new(
            "cairn_wal_fsync_duration_seconds",
            "Latency of WAL fsyncs (one per group commit)",
        )
    }
}

impl LatencyCollector {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        LatencyCollector {
            name,
            help,
            latest: parking_lot::Mutex::default(),
        }
    }

    pub fn set(&self, latency: FsyncLatency) {
        *self.latest.lock() = latency;
    }
}

impl Collector for LatencyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let h = *self.latest.lock();
        // Per-bucket counts (the encoder accumulates them); the last bucket
        // is +Inf, which the encoder spells from f64::MAX.
        let buckets: Vec<(f64, u64)> = FSYNC_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(h.counts)
            .collect();
        encoder
            .encode_descriptor(self.name, self.help, None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(h.sum_seconds(), h.count(), &buckets, None)
    }
}

/// Every metric Cairn exposes.
pub struct Metrics {
    pub wal_fsync: Arc<WalFsyncCollector>,
    pub store_latency: Arc<LatencyCollector>,
    registry: Registry,
    pub http_duration: Family<HttpLabels, Histogram>,
    pub ingested_samples: Family<ProtocolLabels, Counter>,
    pub rejected_samples: Family<ReasonLabels, Counter>,
    pub ingested_exemplars: Counter,
    pub append_duration: Histogram,
    pub series_cache_hits: Counter,
    pub series_cache_entries: Gauge,
    pub series_cache_bytes: Gauge,
    pub head_series: Gauge,
    pub head_samples: Gauge,
    pub head_memory_bytes: Gauge,
    pub wal_fsyncs: Gauge,
    pub wal_written_bytes: Gauge,
    pub wal_disk_bytes: Gauge,
    pub metadata_families: Gauge,
    pub resident_memory_bytes: Gauge,
    pub start_time_seconds: Gauge,
    pub ready: Gauge,
    pub rules: RuleMetrics,
    pub notifications: NotifierMetrics,
    /// Queries waiting for a slot or being evaluated (HTTP and gRPC).
    pub queries_in_flight: Gauge,
    pub blocks: BlockMetrics,
}

/// The block lifecycle (`serve.rs`'s maintenance loop).
#[derive(Default, Clone)]
pub struct BlockMetrics {
    pub cut: Counter,
    pub compactions: Counter,
    pub retention_deleted: Counter,
    pub head_truncations: Counter,
    pub head_series_removed: Counter,
    pub wal_segments_deleted: Counter,
    pub failures: Counter,
    pub loaded: Gauge,
    pub bytes: Gauge,
    pub last_duration_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Requests sent to the object store since start, by kind.
    pub store_requests: Family<OpLabels, Gauge>,
    pub store_bytes_fetched: Gauge,
    pub cache_hits: Gauge,
    pub store_errors: Gauge,
    pub cache_bytes: Gauge,
    pub opened_bytes: Gauge,
    pub row_group_cache_bytes: Gauge,
}

/// The kind of an object-store request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

impl BlockMetrics {
    /// Counts what one maintenance pass did.
    pub fn record(&self, r: &cairn_engine::MaintenanceReport, seconds: f64) {
        self.cut.inc_by(r.blocks_cut.len() as u64);
        self.compactions.inc_by(r.compaction.created.len() as u64);
        self.retention_deleted
            .inc_by(r.retention_deleted.len() as u64);
        if r.head_truncated != cairn_engine::head::TruncateStats::default() {
            self.head_truncations.inc();
        }
        self.head_series_removed
            .inc_by(r.head_truncated.series_removed);
        self.wal_segments_deleted.inc_by(r.wal_segments_deleted);
        self.last_duration_seconds.set(seconds);
    }

    fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 7] = [
            ("cairn_blocks_cut", "Blocks cut from the head", &self.cut),
            (
                "cairn_compactions",
                "Blocks written by compaction",
                &self.compactions,
            ),
            (
                "cairn_retention_deleted_blocks",
                "Blocks deleted by retention (time or size)",
                &self.retention_deleted,
            ),
            (
                "cairn_head_truncations",
                "Head truncations that removed data after blocks were cut",
                &self.head_truncations,
            ),
            (
                "cairn_head_series_removed",
                "Series removed from the head because all their data is in blocks",
                &self.head_series_removed,
            ),
            (
                "cairn_wal_segments_deleted",
                "WAL segments replaced by checkpoints",
                &self.wal_segments_deleted,
            ),
            (
                "cairn_maintenance_failures",
                "Maintenance passes (block cut, compaction, retention) that failed",
                &self.failures,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "cairn_blocks_loaded",
            "Published blocks",
            self.loaded.clone(),
        );
        registry.register(
            "cairn_blocks_bytes",
            "Bytes of the published blocks' data files",
            self.bytes.clone(),
        );
        registry.register(
            "cairn_maintenance_last_duration_seconds",
            "Duration of the last successful maintenance pass",
            self.last_duration_seconds.clone(),
        );
        registry.register(
            "cairn_object_store_requests",
            "Requests sent to the block store since start, by kind (get, range_get, put, list, head, delete)",
            self.store_requests.clone(),
        );
        registry.register(
            "cairn_object_store_fetched_bytes",
            "Bytes read from the block store since start",
            self.store_bytes_fetched.clone(),
        );
        registry.register(
            "cairn_object_store_request_errors",
            "Block store requests that failed since start",
            self.store_errors.clone(),
        );
        registry.register(
            "cairn_object_cache_hits",
            "Block store reads served from the local disk cache since start",
            self.cache_hits.clone(),
        );
        registry.register(
            "cairn_object_cache_bytes",
            "Bytes in the local disk cache of the block store",
            self.cache_bytes.clone(),
        );
        registry.register(
            "cairn_blocks_row_group_cache_bytes",
            "Memory held by recently read column chunks of blocks; see storage.row_group_cache_size",
            self.row_group_cache_bytes.clone(),
        );
        registry.register(
            "cairn_blocks_opened_bytes",
            "Memory held by opened blocks (indexes, Parquet footers); see storage.block_memory",
            self.opened_bytes.clone(),
        );
    }

    /// Mirrors the block store's request counters and caches.
    pub fn set_store(&self, s: &crate::storage::StorageStats) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let r = &s.store_requests;
        for (op, v) in [
            ("get", r.gets),
            ("range_get", r.range_gets),
            ("put", r.puts),
            ("list", r.lists),
            ("head", r.heads),
            ("delete", r.deletes),
        ] {
            self.store_requests
                .get_or_create(&OpLabels { op })
                .set(g(v));
        }
        self.store_bytes_fetched.set(g(r.bytes_fetched));
        self.cache_hits.set(g(r.cache_hits));
        self.store_errors.set(g(r.errors));
        self.cache_bytes.set(g(s.object_cache_bytes));
        self.opened_bytes.set(g(s.blocks_opened_bytes));
        self.row_group_cache_bytes.set(g(s.row_group_cache_bytes));
    }
}

fn latency_buckets() -> Histogram {
    // 0.5 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(latency_buckets);
        registry.register(
            "cairn_http_request_duration_seconds",
            "Latency of HTTP requests by route pattern and status code",
            http_duration.clone(),
        );
        let ingested_samples = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "cairn_ingested_samples",
            "Samples appended to storage (durable in the WAL), by write protocol",
            ingested_samples.clone(),
        );
        let rejected_samples = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "cairn_rejected_samples",
            "Samples and histograms rejected on write, by reason",
            rejected_samples.clone(),
        );
        let ingested_exemplars = Counter::default();
        registry.register(
            "cairn_ingested_exemplars",
            "Exemplars kept in the in-memory exemplar store",
            ingested_exemplars.clone(),
        );
        let append_duration = latency_buckets();
        registry.register(
            "cairn_storage_append_duration_seconds",
            "Time to append one write request to storage, WAL fsync included",
            append_duration.clone(),
        );
        let series_cache_hits = Counter::default();
        registry.register(
            "cairn_remote_write_series_cache_hits",
            "Remote-write series named by the series cache (their labels not decoded again)",
            series_cache_hits.clone(),
        );
        let series_cache_entries = Gauge::default();
        registry.register(
            "cairn_remote_write_series_cache_entries",
            "Series in the remote-write series cache",
            series_cache_entries.clone(),
        );
        let series_cache_bytes = Gauge::default();
        registry.register(
            "cairn_remote_write_series_cache_bytes",
            "Memory of the remote-write series cache; see remote_write.series_cache_bytes",
            series_cache_bytes.clone(),
        );
        let head_series = Gauge::default();
        registry.register(
            "cairn_head_series",
            "Series in the head (in-memory) part of storage",
            head_series.clone(),
        );
        let head_samples = Gauge::default();
        registry.register(
            "cairn_head_samples",
            "Samples in the head (in-memory) part of storage",
            head_samples.clone(),
        );
        let head_memory_bytes = Gauge::default();
        registry.register(
            "cairn_head_memory_bytes",
            "Estimated bytes of the head: series, chunks, interned strings, postings",
            head_memory_bytes.clone(),
        );
        // The WAL reports totals since start; exposed as gauges read at
        // scrape time (rate() works on them all the same).
        let wal_fsyncs = Gauge::default();
        registry.register(
            "cairn_wal_fsyncs",
            "WAL fsyncs since start (one per group commit)",
            wal_fsyncs.clone(),
        );
        let wal_written_bytes = Gauge::default();
        registry.register(
            "cairn_wal_written_bytes",
            "Bytes written to the WAL since start",
            wal_written_bytes.clone(),
        );
        let wal_disk_bytes = Gauge::default();
        registry.register(
            "cairn_wal_disk_bytes",
            "Bytes the WAL takes on disk (writes are refused past storage.wal_max_size)",
            wal_disk_bytes.clone(),
        );
        let metadata_families = Gauge::default();
        registry.register(
            "cairn_metadata_families",
            "Metric families with TYPE/HELP/UNIT metadata",
            metadata_families.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "cairn_ready",
            "1 once the WAL is replayed and Cairn serves reads and writes",
            ready.clone(),
        );
        let queries_in_flight = Gauge::default();
        registry.register(
            "cairn_queries_in_flight",
            "PromQL queries waiting for a slot or being evaluated (HTTP and gRPC); \
             a cancelled query counts until its evaluation has stopped",
            queries_in_flight.clone(),
        );
        let resident_memory_bytes = Gauge::default();
        let start_time_seconds = Gauge::default();
        // Process metrics keep their conventional names, without `cairn_`.
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            resident_memory_bytes.clone(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            start_time_seconds.clone(),
        );
        let rules = RuleMetrics::default();
        registry.register(
            "cairn_rule_group_iterations",
            "Scheduled evaluations of a rule group (`file;group`)",
            rules.iterations.clone(),
        );
        registry.register(
            "cairn_rule_evaluations",
            "Rule evaluations of a rule group (one per rule per iteration)",
            rules.evaluations.clone(),
        );
        registry.register(
            "cairn_rule_group_last_duration_seconds",
            "Duration of the last evaluation of a rule group",
            rules.last_duration_seconds.clone(),
        );
        registry.register(
            "cairn_rule_group_iterations_missed",
            "Evaluations of a rule group skipped because the previous one was still running",
            rules.iterations_missed.clone(),
        );
        registry.register(
            "cairn_rule_evaluation_failures",
            "Rule evaluations that failed (query error, limit exceeded, write error)",
            rules.evaluation_failures.clone(),
        );
        let notifications = NotifierMetrics::default();
        registry.register(
            "cairn_notifications_dropped",
            "Alerts dropped because the notification queue was full",
            notifications.dropped.clone(),
        );
        registry.register(
            "cairn_notifications_sent",
            "Alerts sent to an Alertmanager",
            notifications.sent.clone(),
        );
        registry.register(
            "cairn_notifications_errors",
            "Alerts whose sending to an Alertmanager failed",
            notifications.errors.clone(),
        );
        registry.register(
            "cairn_notifications_queue_length",
            "Alerts waiting in the notification queue",
            notifications.queue_length.clone(),
        );
        registry.register(
            "cairn_notifications_queue_capacity",
            "Capacity of the notification queue",
            notifications.queue_capacity.clone(),
        );
        registry.register(
            "cairn_notifications_alertmanagers_discovered",
            "Alertmanagers alerts are sent to",
            notifications.alertmanagers_discovered.clone(),
        );
        registry.register(
            "cairn_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            notifications.reload_successful.clone(),
        );
        registry.register(
            "cairn_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            notifications.reload_success_timestamp_seconds.clone(),
        );
        start_time_seconds.set(chrono::Utc::now().timestamp());
        let wal_fsync = Arc::new(WalFsyncCollector::default());
        registry.register_collector(Box::new(wal_fsync.clone()));
        let store_latency = Arc::new(LatencyCollector::new(
            "cairn_object_store_request_duration_seconds",
            "Latency of block store requests (after the client's retries)",
        ));
        registry.register_collector(Box::new(store_latency.clone()));
        let blocks = BlockMetrics::default();
        blocks.register(&mut registry);
        Metrics {
            wal_fsync,
            store_latency,
            registry,
            http_duration,
            ingested_samples,
            rejected_samples,
            ingested_exemplars,
            append_duration,
            series_cache_hits,
            series_cache_entries,
            series_cache_bytes,
            head_series,
            head_samples,
            head_memory_bytes,
            wal_fsyncs,
            wal_written_bytes,
            wal_disk_bytes,
            metadata_families,
            resident_memory_bytes,
            start_time_seconds,
            ready,
            rules,
            notifications,
            queries_in_flight,
            blocks,
        }
    }

    /// Refreshes the gauges that mirror storage state.
    pub fn set_storage_stats(&self, s: &crate::storage::StorageStats) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.head_series.set(g(s.head_stats.num_series));
        self.series_cache_entries.set(g(s.series_cache_entries));
        self.series_cache_bytes.set(g(s.series_cache_bytes));
        self.head_samples.set(g(s.samples));
        self.head_memory_bytes.set(g(s.memory_bytes));
        self.wal_fsyncs.set(g(s.wal_fsyncs));
        self.wal_written_bytes.set(g(s.wal_bytes_written));
        self.wal_disk_bytes.set(g(s.wal_disk_bytes));
        self.wal_fsync.set(s.wal_fsync_latency);
        self.store_latency.set(s.store_requests.latency);
        self.blocks.loaded.set(g(s.blocks));
        self.blocks.bytes.set(g(s.blocks_bytes));
        self.blocks.set_store(s);
    }

    pub fn count_ingested(&self, protocol: Protocol, n: u64) {
        self.ingested_samples
            .get_or_create(&ProtocolLabels {
                protocol: protocol.as_str(),
            })
            .inc_by(n);
    }

    pub fn count_rejected(&self, reason: RejectReason, n: u64) {
        self.rejected_samples
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(n);
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory_bytes.set(rss);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Resident set size from `/proc/self/statm` (Linux); None elsewhere.
fn resident_memory_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every platform Cairn is built for.
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.count_ingested(Protocol::V2, 5);
        m.count_rejected(RejectReason::TooOld, 2);
        m.http_duration
            .get_or_create(&HttpLabels {
                handler: "/api/v1/write".into(),
                code: 204,
            })
            .observe(0.01);
        let text = m.encode();
        assert!(
            text.contains("cairn_ingested_samples_total{protocol=\"v2\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("cairn_rejected_samples_total{reason=\"too_old\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cairn_http_request_duration_seconds_count{handler=\"/api/v1/write\",code=\"204\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn wal_fsync_histogram_is_cumulative_with_sum_and_count() {
        let m = Metrics::new();
        let mut counts = [0u64; 15];
        counts[3] = 2; // <= 1 ms
        counts[8] = 1; // <= 50 ms
        counts[14] = 1; // > 2.5 s
        m.wal_fsync.set(FsyncLatency {
            counts,
            sum_nanos: 3_500_000_000,
        });
        let text = m.encode();
        for line in [
            "# TYPE cairn_wal_fsync_duration_seconds histogram",
            "cairn_wal_fsync_duration_seconds_bucket{le=\"0.0005\"} 0",
            "cairn_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 2",
            "cairn_wal_fsync_duration_seconds_bucket{le=\"0.05\"} 3",
            "cairn_wal_fsync_duration_seconds_bucket{le=\"2.5\"} 3",
            "cairn_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 4",
            "cairn_wal_fsync_duration_seconds_count 4",
            "cairn_wal_fsync_duration_seconds_sum 3.5",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}
