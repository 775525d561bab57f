//! The lifecycle of `cairn serve`: logging, binding, opening storage (WAL
//! replay) in the background while `/-/healthy` answers and `/-/ready`
//! says 503, serving (the OTLP receivers and the gRPC query service on
//! their own ports too), and
//! graceful shutdown on SIGINT/SIGTERM: stop
//! accepting, finish in-flight requests, save metadata, close the WAL.
//! Once storage is open, a maintenance loop runs the block lifecycle
//! (`Db::maintain`) every `storage.maintenance_interval`, one pass at a
//! time, and stops before storage is closed.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::config::{Config, LogConfig, LogFormat};
use crate::error::{Error, Result};
use crate::grpc;
use crate::http::{AppState, router};
use crate::metadata::MetadataStore;
use crate::otlp::{self, OtlpReceiver};
use crate::storage::DbStorage;

/// How often changed metadata is written to the data directory.
const METADATA_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Installs the global `tracing` subscriber (text or JSON lines on stderr).
pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second initialisation (tests) is not an error worth stopping for.
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the server until SIGINT/SIGTERM or a fatal start-up error.
pub async fn run(config: Config) -> Result<()> {
    run_reloadable(config, None).await
}

/// [`run`], with the flags the configuration came from: a reload (SIGHUP,
/// `POST /-/reload`) reads the file again and applies them again.
pub async fn run_reloadable(config: Config, args: Option<crate::config::ServeArgs>) -> Result<()> {
    let addr = config.listen.http;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let data_dir = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        Error::Engine(cairn_engine::Error::Io {
            path: data_dir.clone(),
            source: e,
        })
    })?;
    tracing::info!(
        http = %listener.local_addr().unwrap_or(addr),
        data_dir = %data_dir.display(),
        "Cairn listening; opening storage"
    );

    let otlp_grpc_addr = config.listen.otlp_grpc;
    let otlp_http_addr = config.listen.otlp_http;
    // Rule files load before anything is served: a broken file stops
    // start-up with every problem listed (see `rules::manager`).
    let grpc_addr = config.listen.grpc;
    let state = Arc::new(AppState::new(config, MetadataStore::load(&data_dir)));
    let (rules_stop, rules_stop_rx) = tokio::sync::watch::channel(false);
    let rules = crate::rules::reload::start(&state, args, rules_stop_rx.clone())?;
    let _ = state.rules.set(rules);

    // OTLP: its own gRPC and HTTP ports, and `/otlp/v1/metrics` (and
    // Prometheus's `/api/v1/otlp/v1/metrics`) on the main port.
    let otlp = Arc::new(OtlpReceiver::new(state.clone()));
    let (otlp_stop, otlp_stop_rx) = tokio::sync::watch::channel(false);
    let (otlp_addrs, otlp_tasks) =
        otlp::spawn_listeners(otlp.clone(), otlp_grpc_addr, otlp_http_addr, otlp_stop_rx).await?;
    tracing::info!(
        otlp_grpc = %otlp_addrs.grpc,
        otlp_http = %otlp_addrs.http,
        "OTLP receivers listening"
    );
    // The gRPC query service, on its own port.
    let (grpc_addr, grpc_task) =
        grpc::spawn_listener(state.clone(), grpc_addr, otlp_stop.subscribe()).await?;
    tracing::info!(grpc = %grpc_addr, "gRPC query service listening");
    let fatal: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<()>();
    let (maint_stop, maint_stop_rx) = tokio::sync::watch::channel(false);
    let maint_task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::new(Mutex::new(None));

    // Open storage in the background: replaying a long WAL must not keep
    // the health endpoint from answering.
    {
        let state = state.clone();
        let fatal = fatal.clone();
        let maint_task = maint_task.clone();
        tokio::spawn(async move {
            let st = state.clone();
            let opened = tokio::task::spawn_blocking(move || DbStorage::open(&st.config)).await;
            match opened {
                Ok(Ok(storage)) => {
                    state.set_storage(Arc::new(storage));
                    tracing::info!("storage open, WAL replayed: ready");
                    *maint_task.lock() =
                        Some(tokio::spawn(maintenance_loop(state.clone(), maint_stop_rx)));
                    if let Some(mgr) = state.rules.get() {
                        let sink = Arc::new(crate::rules::manager::StorageSink(state.clone()));
                        let tasks = mgr.spawn(
                            rules_engine(&state.config),
                            sink,
                            state.metrics.rules.clone(),
                            rules_stop_rx,
                        );
                        tracing::info!(tasks, "rule evaluation started");
                    }
                }
                Ok(Err(e)) => {
                    *fatal.lock() = Some(e);
                    let _ = fail_tx.send(());
                }
                Err(e) => {
                    *fatal.lock() = Some(Error::Internal {
                        reason: format!("storage open task failed: {e}"),
                    });
                    let _ = fail_tx.send(());
                }
            }
        });
    }

    // Save metadata periodically.
    let saver = {
        let state = state.clone();
        let dir = data_dir.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(METADATA_SAVE_INTERVAL);
            loop {
                tick.tick().await;
                let (st, d) = (state.clone(), dir.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = st.metadata.save_if_dirty(&d) {
                        tracing::warn!(error = %e, "cannot save metadata");
                    }
                })
                .await;
            }
        })
    };

    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutdown requested: finishing in-flight requests"),
            _ = async {
                // The sender is dropped without a message once storage is
                // open: then only a signal ends the server.
                if fail_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => tracing::error!("storage failed to open: stopping"),
        }
    };
    let app = router(state.clone())
        .nest("/otlp", otlp::otlp_router(otlp.clone()))
        .nest("/api/v1/otlp", otlp::otlp_router(otlp));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = otlp_stop.send(true);
    let _ = rules_stop.send(true);
    for t in otlp_tasks {
        let _ = t.await;
    }
    let _ = grpc_task.await;
    saver.abort();
    // A pass under way finishes (it holds storage open); no new one starts.
    let _ = maint_stop.send(true);
    let maint = maint_task.lock().take();
    if let Some(t) = maint {
        let _ = t.await;
    }
    state
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Release);

    // Close what was opened, whatever happened.
    let st = state.clone();
    let closed = tokio::task::spawn_blocking(move || -> Result<()> {
        if let Err(e) = st.metadata.save_if_dirty(&data_dir) {
            tracing::warn!(error = %e, "cannot save metadata");
        }
        match st.storage_for_close() {
            Some(storage) => storage.close(),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| Error::Internal {
        reason: format!("close task failed: {e}"),
    })?;

    if let Some(e) = fatal.lock().take() {
        return Err(e);
    }
    served.map_err(|e| Error::Internal {
        reason: format!("HTTP server failed: {e}"),
    })?;
    closed?;
    tracing::info!("storage closed: bye");
    Ok(())
}

/// Runs [`crate::storage::Storage::maintain`] now and then every
/// `storage.maintenance_interval` until `stop` turns true; a pass that
/// takes longer than the interval delays the next one.
async fn maintenance_loop(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = state.config.storage.maintenance_interval.0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok(storage) = state.storage().cloned() else {
            return;
        };
        let started = std::time::Instant::now();
        let done = tokio::task::spawn_blocking(move || storage.maintain()).await;
        let metrics = &state.metrics.blocks;
        match done {
            Ok(Ok(report)) => {
                let seconds = started.elapsed().as_secs_f64();
                metrics.record(&report, seconds);
                let changed = !report.blocks_cut.is_empty()
                    || !report.compaction.created.is_empty()
                    || !report.retention_deleted.is_empty()
                    || report.head_truncated.series_removed > 0
                    || report.head_truncated.samples_removed > 0;
                if changed {
                    tracing::info!(
                        blocks_cut = report.blocks_cut.len(),
                        compacted = report.compaction.created.len(),
                        retention_deleted = report.retention_deleted.len(),
                        head_series_removed = report.head_truncated.series_removed,
                        head_samples_removed = report.head_truncated.samples_removed,
                        wal_segments_deleted = report.wal_segments_deleted,
                        seconds,
                        "maintenance pass"
                    );
                }
            }
            Ok(Err(e)) => {
                metrics.failures.inc();
                tracing::error!(error = %e, "maintenance pass failed; retrying at the next interval");
            }
            Err(e) => {
                metrics.failures.inc();
                tracing::error!(error = %e, "maintenance task failed");
            }
        }
    }
}

/// The PromQL engine rules evaluate with: the configured query limits.
pub(crate) fn rules_engine(config: &Config) -> cairn_query::Engine {
    let qc = &config.query;
    cairn_query::Engine::new(cairn_query::EngineOptions {
        lookback_delta_ms: qc.lookback_delta.as_millis_i64(),
        max_samples: usize::try_from(qc.max_samples).unwrap_or(usize::MAX),
        timeout: Some(qc.timeout.0),
        max_points_per_series: qc.max_points_per_series as i64,
        threads: qc.threads,
        ..Default::default()
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
