//! Prometheus's TSDB admin API, served only with `web.enable_admin_api`
//! (`--web.enable-admin-api`), as in Prometheus; otherwise 503
//! `unavailable` "admin APIs disabled".
//!
//! - `POST|PUT /api/v1/admin/tsdb/delete_series?match[]=...&start=&end=`:
//!   the samples of the matching series in `[start, end]` (default: all
//!   time) are gone from every read when the 204 arrives (a delete request
//!   stored with the blocks; see `cairn_engine::tombstone`).
//! - `POST|PUT /api/v1/admin/tsdb/clean_tombstones`: rewrites the blocks
//!   that still store deleted samples; 204.
//! - `POST|PUT /api/v1/admin/tsdb/snapshot?skip_head=`: copies every block
//!   (and the head, written as a block) into `<data_dir>/snapshots/<name>`;
//!   answers `{"name": ...}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::api::{match_sets, time_range};
use super::{ApiError, AppState, Params, success};
use crate::error::Error;
use crate::exec;

fn admin_enabled(state: &AppState) -> Result<(), Error> {
    if state.config.web.enable_admin_api {
        Ok(())
    } else {
        Err(Error::Unavailable {
            reason: "admin APIs disabled (start Cairn with --web.enable-admin-api)".into(),
        })
    }
}

pub(super) async fn delete_series(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    admin_enabled(&state)?;
    let sets = match_sets(&p)?;
    if sets.is_empty() {
        return Err(Error::BadParam {
            param: "match[]".into(),
            reason: "no match[] parameter provided".into(),
        }
        .into());
    }
    let (start, end) = time_range(&p)?;
    let storage = state.storage()?.clone();
    exec::blocking(move || storage.delete_series(sets, start, end)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn clean_tombstones(
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    admin_enabled(&state)?;
    let storage = state.storage()?.clone();
    let report = exec::blocking(move || storage.clean_tombstones()).await?;
    tracing::info!(
        blocks_rewritten = report.compaction.deleted.len(),
        requests_removed = report.tombstones_removed,
        "clean_tombstones"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn snapshot(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    admin_enabled(&state)?;
    let skip_head = match p.get("skip_head") {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(Error::BadParam {
                param: "skip_head".into(),
                reason: format!("cannot parse {other:?} as a boolean"),
            }
            .into());
        }
    };
    let storage = state.storage()?.clone();
    let name = exec::blocking(move || storage.snapshot(skip_head)).await?;
    tracing::info!(name = %name, skip_head, "snapshot written");
    Ok(success(serde_json::json!({ "name": name })))
}
