//! Start-up and reload of rule evaluation and alert notification.
//!
//! [`start`] loads the configured rule files (a broken file stops
//! start-up), starts the [`Notifier`] task and listens for SIGHUP.
//! [`reload`] (SIGHUP, `POST` or `PUT /-/reload`, as Prometheus) reads the
//! configuration file again with the same flags and swaps in the new rule
//! files, external labels, external URL and Alertmanagers only when all of
//! it is valid; otherwise the previous rules keep running, the error is
//! logged, `cairn_config_last_reload_successful` turns 0 and the request
//! answers 500 with the error. Other settings (listen addresses, storage)
//! need a restart.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::{Config, ServeArgs};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::rules::manager::{RuleManager, RuleSettings};
use crate::rules::notifier::{Notifier, NotifierSettings};

/// Loads rules, starts the notifier and the SIGHUP listener. Evaluation
/// itself starts once storage is open ([`RuleManager::spawn`]).
pub fn start(
    state: &Arc<AppState>,
    args: Option<ServeArgs>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<RuleManager>> {
    let config = &state.config;
    let notifier = Arc::new(Notifier::new(
        NotifierSettings::from_config(config),
        config.rules.notification_queue_capacity,
        state.metrics.notifications.clone(),
    ));
    let mgr = RuleManager::load(
        RuleSettings::from_config(config),
        &base_dir(),
        Some(notifier.clone()),
    )
    .map(|m| m.with_reload_args(args))
    .map_err(|errors| Error::ConfigInvalid {
        origin: "rule_files".into(),
        reason: errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    if !config.rule_files.is_empty() {
        tracing::info!(groups = mgr.groups().len(), "rule files loaded");
    }
    let metrics = &state.metrics.notifications;
    metrics.reload_successful.set(1);
    metrics
        .reload_success_timestamp_seconds
        .set(chrono::Utc::now().timestamp());
    tokio::spawn(notifier.run(stop.clone()));
    spawn_sighup(state.clone(), stop);
    Ok(Arc::new(mgr))
}

/// Relative `rule_files` entries given as flags resolve against the
/// working directory (the file's own are already absolute).
fn base_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}

/// Reads the configuration again and applies its rule and alerting parts.
pub fn reload(state: &AppState) -> std::result::Result<(), String> {
    let Some(mgr) = state.rules.get() else {
        return Err("rule evaluation is not running".into());
    };
    let args = mgr.reload_args();
    let config: std::result::Result<Config, String> = match args {
        Some(a) => Config::load(&a).map_err(|e| e.to_string()),
        None => Ok(state.config.clone()),
    };
    let result = config.and_then(|c| mgr.reload(&c, &base_dir()));
    let metrics = &state.metrics.notifications;
    match &result {
        Ok(()) => {
            metrics.reload_successful.set(1);
            metrics
                .reload_success_timestamp_seconds
                .set(chrono::Utc::now().timestamp());
        }
        Err(e) => {
            metrics.reload_successful.set(0);
            tracing::error!(error = %e, "configuration reload failed: the previous rules keep running");
        }
    }
    result
}

/// `POST` / `PUT /-/reload`: 200 with an empty body, or the error as
/// text with its status (500), as Prometheus answers.
pub async fn reload_handler(State(state): State<Arc<AppState>>) -> Response {
    let st = state.clone();
    let done = match tokio::task::spawn_blocking(move || reload(&st)).await {
        Ok(Ok(())) => return (StatusCode::OK, "").into_response(),
        Ok(Err(reason)) => Error::ReloadFailed { reason },
        Err(e) => Error::Internal {
            reason: format!("reload task failed: {e}"),
        },
    };
    (done.status(), format!("{done}\n")).into_response()
}

#[cfg(unix)]
fn spawn_sighup(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: reload with POST /-/reload");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the configuration");
                    let st = state.clone();
                    let _ = tokio::task::spawn_blocking(move || reload(&st)).await;
                }
                _ = stop.changed() => return,
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_sighup(_state: Arc<AppState>, _stop: tokio::sync::watch::Receiver<bool>) {}
