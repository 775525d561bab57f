//! Configuration of `cairn serve`: the YAML file, the command-line flags and
//! the `CAIRN_*` environment variables, merged into one [`Config`].
//!
//! Precedence, lowest first: built-in defaults, the YAML file (`--config`),
//! environment variables, flags. Clap reads a flag and its environment
//! variable into the same field, so a flag beats its variable, and both
//! beat the file. Every setting is listed in `docs/configuration.md`; a test
//! checks that the document names every flag.
//!
//! Where Prometheus's configuration has the concept (`global.external_labels`,
//! `global.evaluation_interval`, `rule_files`, `alerting.alertmanagers`), the
//! keys are spelled as Prometheus spells them so sections paste in.
//!
//! An unknown key or a bad value stops start-up with a message naming the
//! key (`deny_unknown_fields` everywhere, values validated in [`Config::validate`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The default HTTP port: not Prometheus's 9090, VictoriaMetrics's 8428 or
/// Alertmanager's 9093, so Cairn can run beside them during a migration.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9201";
/// The default port of the gRPC query service (not OTLP's 4317).
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:9202";
/// The standard OTLP/gRPC port.
pub const DEFAULT_OTLP_GRPC_LISTEN: &str = "127.0.0.1:4317";
/// The standard OTLP/HTTP port.
pub const DEFAULT_OTLP_HTTP_LISTEN: &str = "127.0.0.1:4318";

/// The whole configuration of a running server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Prometheus's `global` section.
    pub global: GlobalConfig,
    /// Rule files (Prometheus's `rule_files`): paths or globs.
    pub rule_files: Vec<String>,
    /// Where alerts go (Prometheus's `alerting` section).
    pub alerting: AlertingConfig,
    /// Rule evaluation and notification settings (Prometheus's
    /// `--rules.alert.*` and `--alertmanager.*` flags).
    pub rules: RulesConfig,
    /// The URL Cairn is reached at (Prometheus's `--web.external-url`).
    pub web: WebConfig,
    /// Listen addresses of every endpoint.
    pub listen: ListenConfig,
    /// Where and how long data is kept.
    pub storage: StorageConfig,
    /// PromQL evaluation limits.
    pub query: QueryConfig,
    /// The remote-write receiver.
    pub remote_write: RemoteWriteConfig,
    /// The OTLP receiver (translation options and limits).
    pub otlp: crate::otlp::OtlpConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Prometheus's `global` section. `scrape_interval` and `scrape_timeout`
/// are accepted (and shown by `/api/v1/status/config`) so a Prometheus
/// file's `global:` pastes in, but Cairn does not scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalConfig {
    pub external_labels: BTreeMap<String, String>,
    pub evaluation_interval: PromDuration,
    /// Default `query_offset` of rule groups (Prometheus's `rule_query_offset`).
    pub rule_query_offset: PromDuration,
    pub scrape_interval: PromDuration,
    pub scrape_timeout: PromDuration,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            external_labels: BTreeMap::new(),
            evaluation_interval: PromDuration::from_secs(60),
            rule_query_offset: PromDuration::from_secs(0),
            scrape_interval: PromDuration::from_secs(60),
            scrape_timeout: PromDuration::from_secs(10),
        }
    }
}

/// Prometheus's `alerting` section (only `alertmanagers` for now).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One entry of `alerting.alertmanagers`, spelled as in Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    pub static_configs: Vec<StaticConfig>,
    pub scheme: String,
    pub path_prefix: String,
    pub timeout: PromDuration,
    pub api_version: String,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            static_configs: Vec::new(),
            scheme: "http".into(),
            path_prefix: "/".into(),
            timeout: PromDuration::from_secs(10),
            api_version: "v2".into(),
        }
    }
}

/// Rule settings that Prometheus takes as flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Least time between two sends of the same alert (`--rules.alert.resend-delay`).
    pub resend_delay: PromDuration,
    /// Longest outage after which `for` state is not restored
    /// (`--rules.alert.for-outage-tolerance`).
    pub for_outage_tolerance: PromDuration,
    /// Least time left of `for` after a restore (`--rules.alert.for-grace-period`).
    pub for_grace_period: PromDuration,
    /// Alerts waiting to be sent at most (`--alertmanager.notification-queue-capacity`).
    pub notification_queue_capacity: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            resend_delay: PromDuration::from_secs(60),
            for_outage_tolerance: PromDuration::from_secs(3600),
            for_grace_period: PromDuration::from_secs(600),
            notification_queue_capacity: 10_000,
        }
    }
}

/// Prometheus's `--web.*` settings that Cairn has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// The URL Cairn is reached at, for alerts' `generatorURL`; empty:
    /// `http://<listen.http>`.
    pub external_url: String,
    /// Serve the admin API (`/api/v1/admin/tsdb/*`), as Prometheus's
    /// `--web.enable-admin-api`; off, it answers 503.
    pub enable_admin_api: bool,
}

/// A list of `host:port` targets with optional labels, as in Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Listen addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Prometheus HTTP API, remote-write/read, `/metrics`.
    pub http: SocketAddr,
    /// OTLP metrics over gRPC.
    pub otlp_grpc: SocketAddr,
    /// OTLP metrics over HTTP.
    pub otlp_http: SocketAddr,
    /// Cairn's gRPC query service.
    pub grpc: SocketAddr,
    /// Longest an HTTP request body may take to arrive whole (as
    /// Prometheus's `--web.read-timeout`); 408 after.
    pub read_timeout: PromDuration,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            http: parse_default_addr(DEFAULT_HTTP_LISTEN),
            otlp_grpc: parse_default_addr(DEFAULT_OTLP_GRPC_LISTEN),
            otlp_http: parse_default_addr(DEFAULT_OTLP_HTTP_LISTEN),
            grpc: parse_default_addr(DEFAULT_GRPC_LISTEN),
            read_timeout: PromDuration::from_secs(60),
        }
    }
}

fn parse_default_addr(s: &str) -> SocketAddr {
    // The defaults are constants of this file, checked by a unit test.
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Local directory for the WAL, the head and (without `url`) blocks.
    pub data_dir: PathBuf,
    /// An object-store URL for blocks (`s3://`, `gs://`, `az://`,
    /// `file://`, `memory://`); empty means blocks stay in `data_dir`.
    pub url: Option<String>,
    /// How long samples are kept.
    pub retention: PromDuration,
    /// Most bytes of blocks kept (oldest blocks deleted first); None for
    /// no limit.
    pub retention_size: Option<ByteSize>,
    /// Block ranges by compaction level, ascending, each a multiple of the
    /// one before; the first is the range blocks are cut from the head at.
    pub compaction_ranges: Vec<PromDuration>,
    /// How far behind the newest sample of a series an older sample is
    /// still accepted (0 = in-order only).
    pub ooo_window: PromDuration,
    /// How often the head is checked for ranges to cut into blocks (then
    /// truncated, the WAL checkpointed, blocks compacted and expired).
    pub maintenance_interval: PromDuration,
    /// Size at which a WAL segment file is closed and a new one started
    /// (Prometheus's `--storage.tsdb.wal-segment-size`).
    pub wal_segment_size: ByteSize,
    /// Most bytes the WAL may take on disk before writes are refused with
    /// 503 (it grows past its usual size only while blocks cannot be
    /// written, for example while the object store is down).
    pub wal_max_size: ByteSize,
    /// Local disk cache of a remote block store's bytes
    /// (`<data_dir>/object-cache`); 0 disables it.
    pub object_cache_size: ByteSize,
    /// Most memory opened blocks (indexes, Parquet footers, cached chunks)
    /// may hold.
    pub block_memory: ByteSize,
    /// Memory for the blocks' recently read column chunks; 0 disables.
    pub row_group_cache_size: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            url: None,
            retention: PromDuration::from_secs(15 * 86_400),
            retention_size: None,
            compaction_ranges: vec![
                PromDuration::from_secs(2 * 3600),
                PromDuration::from_secs(12 * 3600),
                PromDuration::from_secs(48 * 3600),
            ],
            ooo_window: PromDuration::from_secs(600),
            maintenance_interval: PromDuration::from_secs(60),
            wal_segment_size: ByteSize(128 << 20),
            wal_max_size: ByteSize(32 << 30),
            object_cache_size: ByteSize(4 << 30),
            block_memory: ByteSize(1 << 30),
            row_group_cache_size: ByteSize(512 << 20),
        }
    }
}

/// PromQL evaluation limits and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Most samples one query may hold in memory at once.
    pub max_samples: u64,
    /// Longest a query may run (a request's `timeout` can only shorten it).
    pub timeout: PromDuration,
    /// Queries evaluated at once; further ones wait.
    pub max_concurrency: usize,
    /// How far back an instant selector looks for a sample.
    pub lookback_delta: PromDuration,
    /// Most points per series in a range query (`(end-start)/step`).
    pub max_points_per_series: u64,
    /// Threads one query decodes and reduces series on; 0: one per core.
    pub threads: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_samples: 50_000_000,
            timeout: PromDuration::from_secs(120),
            max_concurrency: 20,
            lookback_delta: PromDuration::from_secs(300),
            max_points_per_series: 11_000,
            threads: 0,
        }
    }
}

/// The remote-write receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Largest accepted request body as sent (snappy-compressed); larger
    /// bodies get 413 without being read to the end.
    pub max_body_bytes: u64,
    /// Largest accepted body after snappy decompression (checked from the
    /// snappy header before decompressing).
    pub max_decoded_bytes: u64,
    /// Write requests processed at once; beyond this Cairn answers 503
    /// with `Retry-After` so that senders back off and retry.
    pub max_in_flight: usize,
    /// How far in the future a sample's timestamp may be.
    pub max_future: PromDuration,
    /// Memory for the series cache (raw label bytes -> series), which
    /// spares re-reading the labels of series sent before; 0 turns it off.
    pub series_cache_bytes: u64,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 128 << 20,
            max_in_flight: 64,
            max_future: PromDuration::from_secs(600),
            series_cache_bytes: 256 << 20,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `cairn_server=debug,info` ...
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The flags of `cairn serve`. Each has a `CAIRN_*` environment variable;
/// each overrides the YAML key named in its help text.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// YAML configuration file.
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [storage.data_dir; default ./data].
    #[arg(long, env = "CAIRN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address [listen.http; default 127.0.0.1:9201].
    #[arg(long, env = "CAIRN_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// OTLP/gRPC listen address [listen.otlp_grpc; default 127.0.0.1:4317].
    #[arg(long, env = "CAIRN_OTLP_GRPC_LISTEN", value_name = "ADDR")]
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// OTLP/HTTP listen address [listen.otlp_http; default 127.0.0.1:4318].
    #[arg(long, env = "CAIRN_OTLP_HTTP_LISTEN", value_name = "ADDR")]
    pub otlp_http_listen: Option<SocketAddr>,
    /// gRPC query service listen address [listen.grpc; default 127.0.0.1:9202].
    #[arg(long, env = "CAIRN_GRPC_LISTEN", value_name = "ADDR")]
    pub grpc_listen: Option<SocketAddr>,
    /// Object-store URL for blocks [storage.url; default: the data directory].
    #[arg(long, env = "CAIRN_STORAGE_URL", value_name = "URL")]
    pub storage_url: Option<String>,
    /// How long samples are kept [storage.retention; default 15d].
    #[arg(long, env = "CAIRN_RETENTION", value_name = "DURATION")]
    pub retention: Option<PromDuration>,
    /// Most bytes of blocks kept [storage.retention_size; default: no limit].
    #[arg(long, env = "CAIRN_RETENTION_SIZE", value_name = "SIZE")]
    pub retention_size: Option<ByteSize>,
    /// Out-of-order window [storage.ooo_window; default 10m].
    #[arg(long, env = "CAIRN_OOO_WINDOW", value_name = "DURATION")]
    pub ooo_window: Option<PromDuration>,
    /// Most samples a query may load [query.max_samples; default 50000000].
    #[arg(long, env = "CAIRN_QUERY_MAX_SAMPLES", value_name = "N")]
    pub query_max_samples: Option<u64>,
    /// Longest a query may run [query.timeout; default 2m].
    #[arg(long, env = "CAIRN_QUERY_TIMEOUT", value_name = "DURATION")]
    pub query_timeout: Option<PromDuration>,
    /// Queries evaluated at once [query.max_concurrency; default 20].
    #[arg(long, env = "CAIRN_QUERY_MAX_CONCURRENCY", value_name = "N")]
    pub query_max_concurrency: Option<usize>,
    /// Lookback of instant selectors [query.lookback_delta; default 5m].
    #[arg(long, env = "CAIRN_QUERY_LOOKBACK_DELTA", value_name = "DURATION")]
    pub query_lookback_delta: Option<PromDuration>,
    /// Largest remote-write body as sent [remote_write.max_body_bytes; default 33554432].
    #[arg(long, env = "CAIRN_REMOTE_WRITE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub remote_write_max_body_bytes: Option<u64>,
    /// Log filter [log.level; default info].
    #[arg(long, env = "CAIRN_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format [log.format; default text].
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// URL Cairn is reached at, for alerts' generatorURL [web.external_url].
    #[arg(
        long = "web.external-url",
        env = "CAIRN_WEB_EXTERNAL_URL",
        value_name = "URL"
    )]
    pub web_external_url: Option<String>,
    /// Serve /api/v1/admin/tsdb/delete_series and clean_tombstones
    /// [web.enable_admin_api; default off].
    #[arg(long = "web.enable-admin-api", env = "CAIRN_WEB_ENABLE_ADMIN_API")]
    pub web_enable_admin_api: bool,
}

impl Config {
    /// Reads the file named by `--config` (if any), applies the flags and
    /// environment variables, and validates the result.
    pub fn load(args: &ServeArgs) -> Result<Config> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_args(args);
        config.validate()?;
        Ok(config)
    }

    /// Parses a YAML file (without applying flags or validating).
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_yaml(&text).map_err(|e| match e {
            Error::ConfigInvalid { reason, .. } => Error::ConfigInvalid {
                origin: path.display().to_string(),
                reason,
            },
            other => other,
        })?;
        if let Some(dir) = path.parent() {
            config.resolve_relative_paths(dir);
        }
        Ok(config)
    }

    /// Makes relative `rule_files` entries relative to `dir`, the config
    /// file's directory, as Prometheus does, so a configuration works
    /// whatever directory Cairn is started from.
    fn resolve_relative_paths(&mut self, dir: &Path) {
        for entry in &mut self.rule_files {
            if Path::new(entry.as_str()).is_relative() {
                *entry = dir.join(entry.as_str()).to_string_lossy().into_owned();
            }
        }
    }

    /// Parses YAML text. An empty document is the default configuration.
    pub fn from_yaml(text: &str) -> Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        // serde_path_to_error names the full key path (`storage.retention`)
        // of a bad value; the YAML error alone names only the section.
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let reason = if path.is_empty() || path == "." {
                inner
            } else {
                format!("key {path}: {inner}")
            };
            Error::ConfigInvalid {
                origin: "configuration".into(),
                reason,
            }
        })
    }

    /// The configuration as YAML (for `/api/v1/status/config`).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_else(|e| format!("# unprintable: {e}\n"))
    }

    /// Overrides file settings with the flags and variables that were given.
    pub fn apply_args(&mut self, a: &ServeArgs) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut self.storage.data_dir, &a.data_dir);
        set(&mut self.listen.http, &a.http_listen);
        set(&mut self.listen.otlp_grpc, &a.otlp_grpc_listen);
        set(&mut self.listen.otlp_http, &a.otlp_http_listen);
        set(&mut self.listen.grpc, &a.grpc_listen);
        if a.storage_url.is_some() {
            self.storage.url = a.storage_url.clone();
        }
        set(&mut self.storage.retention, &a.retention);
        if a.retention_size.is_some() {
            self.storage.retention_size = a.retention_size;
        }
        set(&mut self.storage.ooo_window, &a.ooo_window);
        set(&mut self.query.max_samples, &a.query_max_samples);
        set(&mut self.query.timeout, &a.query_timeout);
        set(&mut self.query.max_concurrency, &a.query_max_concurrency);
        set(&mut self.query.lookback_delta, &a.query_lookback_delta);
        set(
            &mut self.remote_write.max_body_bytes,
            &a.remote_write_max_body_bytes,
        );
        set(&mut self.log.level, &a.log_level);
        set(&mut self.log.format, &a.log_format);
        set(&mut self.web.external_url, &a.web_external_url);
        if a.web_enable_admin_api {
            self.web.enable_admin_api = true;
        }
    }

    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &str, reason: impl Into<String>) -> Error {
            Error::ConfigValue {
                key: key.into(),
                reason: reason.into(),
            }
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(bad("storage.data_dir", "must not be empty"));
        }
        if let Some(url) = &self.storage.url {
            const SCHEMES: &[&str] = &["file://", "memory://", "s3://", "gs://", "az://"];
            if !SCHEMES.iter().any(|s| url.starts_with(s)) {
                return Err(bad(
                    "storage.url",
                    format!("{url:?} does not start with one of {}", SCHEMES.join(", ")),
                ));
            }
        }
        if !(64 << 10..=1 << 30).contains(&self.storage.wal_segment_size.0) {
            return Err(bad(
                "storage.wal_segment_size",
                "must be between 64KB and 1GB",
            ));
        }
        if self.storage.wal_max_size.0 < 2 * self.storage.wal_segment_size.0 {
            return Err(bad(
                "storage.wal_max_size",
                "must be at least twice storage.wal_segment_size",
            ));
        }
        if self.storage.maintenance_interval.is_zero() {
            return Err(bad(
                "storage.maintenance_interval",
                "must be greater than 0",
            ));
        }
        if self.storage.retention.is_zero() {
            return Err(bad("storage.retention", "must be greater than 0"));
        }
        if self.storage.retention_size == Some(ByteSize(0)) {
            return Err(bad("storage.retention_size", "must be greater than 0"));
        }
        let ranges = &self.storage.compaction_ranges;
        if ranges.first().is_none_or(|r| r.as_millis_i64() <= 0) {
            return Err(bad(
                "storage.compaction_ranges",
                "must list at least one range greater than 0",
            ));
        }
        if let Some(w) = ranges.windows(2).find(|w| {
            let (a, b) = (w[0].as_millis_i64(), w[1].as_millis_i64());
            b <= a || b % a != 0
        }) {
            return Err(bad(
                "storage.compaction_ranges",
                format!(
                    "{} after {}: each range must be a larger multiple of the one before",
                    w[1], w[0]
                ),
            ));
        }
        if self.query.max_samples == 0 {
            return Err(bad("query.max_samples", "must be greater than 0"));
        }
        if self.listen.read_timeout.is_zero() {
            return Err(bad("listen.read_timeout", "must be greater than 0"));
        }
        if self.query.timeout.is_zero() {
            return Err(bad("query.timeout", "must be greater than 0"));
        }
        if self.query.max_concurrency == 0 {
            return Err(bad("query.max_concurrency", "must be greater than 0"));
        }
        if self.query.lookback_delta.is_zero() {
            return Err(bad("query.lookback_delta", "must be greater than 0"));
        }
        if self.query.max_points_per_series == 0 {
            return Err(bad("query.max_points_per_series", "must be greater than 0"));
        }
        if self.remote_write.max_body_bytes == 0 {
            return Err(bad("remote_write.max_body_bytes", "must be greater than 0"));
        }
        if self.remote_write.max_decoded_bytes == 0 {
            return Err(bad(
                "remote_write.max_decoded_bytes",
                "must be greater than 0",
            ));
        }
        if self.remote_write.max_in_flight == 0 {
            return Err(bad("remote_write.max_in_flight", "must be greater than 0"));
        }
        if self.global.evaluation_interval.is_zero() {
            return Err(bad("global.evaluation_interval", "must be greater than 0"));
        }
        for name in self.global.external_labels.keys() {
            if !crate::remote_write::is_valid_label_name(name) {
                return Err(bad(
                    "global.external_labels",
                    format!("invalid label name {name:?}"),
                ));
            }
        }
        for (i, am) in self.alerting.alertmanagers.iter().enumerate() {
            if am.scheme != "http" && am.scheme != "https" {
                return Err(bad(
                    &format!("alerting.alertmanagers[{i}].scheme"),
                    format!("{:?} is not http or https", am.scheme),
                ));
            }
            if am.api_version != "v2" {
                return Err(bad(
                    &format!("alerting.alertmanagers[{i}].api_version"),
                    format!("{:?} is not supported (only v2)", am.api_version),
                ));
            }
        }
        if self.rules.notification_queue_capacity == 0 {
            return Err(bad(
                "rules.notification_queue_capacity",
                "must be greater than 0",
            ));
        }
        let url = &self.web.external_url;
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(bad(
                "web.external_url",
                format!("{:?} is not an http(s) URL", self.web.external_url),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(bad(
                "log.level",
                format!("{:?} is not a log filter", self.log.level),
            ));
        }
        Ok(())
    }

    /// Every setting as a flat `name -> value` map, for
    /// `/api/v1/status/flags` (names are the flag names without `--`).
    pub fn flags(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("data-dir", self.storage.data_dir.display().to_string());
        put("http-listen", self.listen.http.to_string());
        put("otlp-grpc-listen", self.listen.otlp_grpc.to_string());
        put("otlp-http-listen", self.listen.otlp_http.to_string());
        put("grpc-listen", self.listen.grpc.to_string());
        put("storage-url", self.storage.url.clone().unwrap_or_default());
        put("retention", self.storage.retention.to_string());
        put(
            "retention-size",
            self.storage
                .retention_size
                .map(|b| b.to_string())
                .unwrap_or_else(|| "0B".into()),
        );
        put("ooo-window", self.storage.ooo_window.to_string());
        put("query-max-samples", self.query.max_samples.to_string());
        put("query-timeout", self.query.timeout.to_string());
        put(
            "query-max-concurrency",
            self.query.max_concurrency.to_string(),
        );
        put(
            "query-lookback-delta",
            self.query.lookback_delta.to_string(),
        );
        put(
            "remote-write-max-body-bytes",
            self.remote_write.max_body_bytes.to_string(),
        );
        put("web.external-url", self.web.external_url.clone());
        put(
            "web.enable-admin-api",
            self.web.enable_admin_api.to_string(),
        );
        put("log-level", self.log.level.clone());
        put(
            "log-format",
            match self.log.format {
                LogFormat::Text => "text".into(),
                LogFormat::Json => "json".into(),
            },
        );
        m
    }
}

/// A duration written as Prometheus writes them: one or more
/// `<integer><unit>` parts, units `y w d h m s ms`, largest first, such as
/// `15d`, `1h30m`, `500ms`; `0` alone is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    pub const fn from_secs(s: u64) -> Self {
        PromDuration(Duration::from_secs(s))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn as_millis_i64(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl std::str::FromStr for PromDuration {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("invalid duration {s:?} (expected e.g. 15d, 1h30m, 500ms)");
        if s == "0" {
            return Ok(PromDuration::default());
        }
        if s.is_empty() {
            return Err(bad());
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total: u64 = 0;
        // Units must appear from largest to smallest, each at most once.
        let mut last_unit = 0usize;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
            let n: u64 = s[start..i].parse().map_err(|_| bad())?;
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[ustart..i];
            let pos = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
            if pos < last_unit || (pos == last_unit && total != 0) {
                return Err(bad());
            }
            last_unit = pos;
            total = n
                .checked_mul(UNITS[pos].1)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(bad)?;
        }
        Ok(PromDuration(Duration::from_millis(total)))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        // Days are the largest unit printed (`30d`, not `4w2d`), so
        // retention reads as it was probably written.
        for (unit, len) in UNITS.iter().skip(2) {
            if ms >= *len {
                write!(f, "{}{unit}", ms / len)?;
                ms %= len;
            }
        }
        Ok(())
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// The engine's maintenance settings (compaction ranges, retention by
    /// time and size), for [`cairn_engine::Db::run_maintenance`].
    pub fn maintenance_options(&self) -> cairn_engine::MaintenanceOptions {
        let mut opts = cairn_engine::MaintenanceOptions::default();
        opts.compaction.ranges_ms = self
            .storage
            .compaction_ranges
            .iter()
            .map(PromDuration::as_millis_i64)
            .collect();
        opts.retention.retention_ms = Some(self.storage.retention.as_millis_i64());
        opts.retention.max_bytes = self.storage.retention_size.map(|b| b.0);
        opts
    }
}

/// A size in bytes written as Prometheus's `--storage.tsdb.retention.size`:
/// an integer with a unit `B KB MB GB TB PB EB` (powers of 1024), such as
/// `512MB`; a YAML integer is a count of bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const BYTE_UNITS: &[(&str, u32)] = &[
    ("EB", 6),
    ("PB", 5),
    ("TB", 4),
    ("GB", 3),
    ("MB", 2),
    ("KB", 1),
    ("B", 0),
];

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("invalid size {s:?} (expected e.g. 512MB, 10GB, 1TB)");
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (n, unit) = s.split_at(digits);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let (_, pow) = BYTE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        n.checked_mul(1024u64.pow(*pow))
            .map(ByteSize)
            .ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, pow) in BYTE_UNITS {
            let len = 1024u64.pow(*pow);
            if self.0 >= len && self.0.is_multiple_of(len) {
                return write!(f, "{}{unit}", self.0 / len);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = Config::default();
        c.validate().expect("defaults validate");
        assert_eq!(c.listen.http.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(c.listen.grpc.to_string(), DEFAULT_GRPC_LISTEN);
        assert_eq!(c.listen.otlp_grpc.port(), 4317);
        assert_eq!(c.listen.otlp_http.port(), 4318);
        for taken in [9090, 8428, 9093] {
            assert_ne!(c.listen.http.port(), taken);
            assert_ne!(c.listen.grpc.port(), taken);
        }
        assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn sizes_parse_and_print_like_prometheus() {
        let table = [
            ("512MB", Some(512 << 20), "512MB"),
            ("1GB", Some(1 << 30), "1GB"),
            ("1536KB", Some(1536 << 10), "1536KB"),
            ("10B", Some(10), "10B"),
            ("0B", Some(0), "0B"),
            ("1TB", Some(1 << 40), "1TB"),
            ("10", None, ""),
            ("MB", None, ""),
            ("1.5GB", None, ""),
            ("1gb", None, ""),
            ("-1GB", None, ""),
            ("99999999999EB", None, ""),
        ];
        for (text, want, printed) in table {
            match want {
                Some(n) => {
                    let b: ByteSize = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    assert_eq!(b.0, n, "{text:?}");
                    assert_eq!(b.to_string(), printed, "{text:?}");
                }
                None => assert!(text.parse::<ByteSize>().is_err(), "{text:?} should parse"),
            }
        }
    }

    #[test]
    fn maintenance_settings_reach_the_engine() {
        let c = Config::from_yaml(
            "storage:\n  retention: 30d\n  retention_size: 10GB\n  compaction_ranges: [1h, 6h]\n",
        )
        .expect("ok");
        let o = c.maintenance_options();
        assert_eq!(o.compaction.ranges_ms, vec![3_600_000, 6 * 3_600_000]);
        assert_eq!(o.retention.retention_ms, Some(30 * 86_400_000));
        assert_eq!(o.retention.max_bytes, Some(10 << 30));
        // A YAML integer is bytes.
        let c = Config::from_yaml("storage:\n  retention_size: 1000\n").expect("ok");
        assert_eq!(c.storage.retention_size, Some(ByteSize(1000)));
        // Defaults: Prometheus's 2h/12h/48h ladder, no size limit.
        let o = Config::default().maintenance_options();
        assert_eq!(
            o.compaction.ranges_ms,
            cairn_engine::block::compact::DEFAULT_RANGES_MS
        );
        assert_eq!(o.retention.max_bytes, None);
        for (yaml, key) in [
            (
                "storage:\n  compaction_ranges: []\n",
                "storage.compaction_ranges",
            ),
            (
                "storage:\n  compaction_ranges: [2h, 3h]\n",
                "storage.compaction_ranges",
            ),
            (
                "storage:\n  compaction_ranges: [2h, 2h]\n",
                "storage.compaction_ranges",
            ),
            ("storage:\n  retention_size: 0B\n", "storage.retention_size"),
        ] {
            let err = Config::from_yaml(yaml)
                .and_then(|c| c.validate().map(|()| c))
                .expect_err(yaml);
            assert!(err.to_string().contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn durations_parse_and_print_like_prometheus() {
        let table = [
            ("0", Some(0), "0s"),
            ("0s", Some(0), "0s"),
            ("15d", Some(15 * 86_400_000), "15d"),
            ("2w", Some(14 * 86_400_000), "14d"),
            ("10m", Some(600_000), "10m"),
            ("1h30m", Some(5_400_000), "1h30m"),
            ("500ms", Some(500), "500ms"),
            ("1y", Some(365 * 86_400_000), "365d"),
            ("1m30s250ms", Some(90_250), "1m30s250ms"),
            ("", None, ""),
            ("10", None, ""),
            ("m", None, ""),
            ("1.5h", None, ""),
            ("30m1h", None, ""),
            ("1h1h", None, ""),
            ("5x", None, ""),
            ("-5m", None, ""),
            ("99999999999999999999y", None, ""),
        ];
        for (text, want_ms, printed) in table {
            let got = text.parse::<PromDuration>();
            match want_ms {
                Some(ms) => {
                    let d = got.unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    assert_eq!(d.0.as_millis() as u64, ms, "{text:?}");
                    assert_eq!(d.to_string(), printed, "{text:?}");
                }
                None => assert!(got.is_err(), "{text:?} should not parse"),
            }
        }
    }

    #[test]
    fn yaml_sections_paste_in_from_prometheus() {
        let yaml = r#"
global:
  scrape_interval: 15s
  evaluation_interval: 30s
  rule_query_offset: 1m
  external_labels:
    cluster: eu-1
rule_files:
  - rules/*.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["localhost:9093"]
storage:
  data_dir: /var/lib/cairn
  retention: 30d
  ooo_window: 10m
listen:
  http: 0.0.0.0:9201
"#;
        let c = Config::from_yaml(yaml).expect("parses");
        c.validate().expect("validates");
        assert_eq!(c.global.evaluation_interval, PromDuration::from_secs(30));
        assert_eq!(c.global.rule_query_offset, PromDuration::from_secs(60));
        assert_eq!(c.global.external_labels["cluster"], "eu-1");
        assert_eq!(c.rule_files, vec!["rules/*.yml".to_string()]);
        assert_eq!(
            c.alerting.alertmanagers[0].static_configs[0].targets,
            vec!["localhost:9093".to_string()]
        );
        assert_eq!(c.alerting.alertmanagers[0].api_version, "v2");
        assert_eq!(c.storage.retention, PromDuration::from_secs(30 * 86_400));
        assert_eq!(c.storage.ooo_window, PromDuration::from_secs(600));
        assert_eq!(c.listen.http.port(), 9201);
        // Untouched sections keep their defaults.
        assert_eq!(c.query, QueryConfig::default());
        // What we print parses back to the same configuration.
        assert_eq!(Config::from_yaml(&c.to_yaml()).expect("round trip"), c);
    }

    #[test]
    fn rule_files_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("cairn.yml");
        std::fs::write(
            &file,
            "rule_files:\n  - rules/*.yml\n  - /etc/cairn/a.yml\n",
        )
        .expect("write config");
        let c = Config::from_file(&file).expect("config");
        assert_eq!(
            c.rule_files,
            vec![
                dir.path()
                    .join("rules/*.yml")
                    .to_string_lossy()
                    .into_owned(),
                "/etc/cairn/a.yml".to_string(),
            ]
        );
    }

    /// Each bad file must fail with a message that names the offending key.
    #[test]
    fn bad_files_name_the_key() {
        let table = [
            ("storage:\n  retension: 5d\n", "retension"),
            ("storage:\n  retention: 5 days\n", "storage.retention"),
            ("query:\n  max_samples: lots\n", "query.max_samples"),
            ("listen:\n  http: nowhere\n", "listen.http"),
            ("bogus: 1\n", "bogus"),
            (
                "global:\n  evaluation_interval: 1q\n",
                "global.evaluation_interval",
            ),
        ];
        for (yaml, key) in table {
            let err = Config::from_yaml(yaml).expect_err(yaml).to_string();
            assert!(err.contains(key), "{yaml:?}: {err:?} does not name {key}");
        }
        let table = [
            ("storage:\n  url: ftp://x\n", "storage.url"),
            ("query:\n  timeout: 0s\n", "query.timeout"),
            (
                "remote_write:\n  max_in_flight: 0\n",
                "remote_write.max_in_flight",
            ),
            (
                "alerting:\n  alertmanagers:\n    - api_version: v1\n",
                "alerting.alertmanagers[0].api_version",
            ),
            (
                "global:\n  external_labels:\n    \"\": x\n",
                "global.external_labels",
            ),
        ];
        for (yaml, key) in table {
            let c = Config::from_yaml(yaml).expect(yaml);
            let err = c.validate().expect_err(yaml).to_string();
            assert!(err.contains(key), "{yaml:?}: {err:?} does not name {key}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let mut c = Config::from_yaml("storage:\n  retention: 30d\n  data_dir: /a\n").expect("ok");
        let args = ServeArgs {
            retention: Some(PromDuration::from_secs(3600)),
            http_listen: Some("127.0.0.1:1234".parse().expect("addr")),
            ..Default::default()
        };
        c.apply_args(&args);
        assert_eq!(c.storage.retention, PromDuration::from_secs(3600));
        assert_eq!(c.storage.data_dir, PathBuf::from("/a"));
        assert_eq!(c.listen.http.port(), 1234);
        assert_eq!(c.flags()["retention"], "1h");
    }

    /// docs/configuration.md must mention every flag and file key.
    #[test]
    fn documentation_lists_every_flag() {
        let doc = include_str!("../../docs/configuration.md");
        for flag in Config::default().flags().keys() {
            assert!(doc.contains(&format!("--{flag}")), "--{flag} undocumented");
        }
        assert!(doc.contains("--config"));
        let yaml = Config::default().to_yaml();
        for line in yaml.lines() {
            let key = line.trim_start().trim_start_matches("- ");
            if let Some((k, _)) = key.split_once(':') {
                assert!(doc.contains(k), "file key {k} undocumented");
            }
        }
    }
}
