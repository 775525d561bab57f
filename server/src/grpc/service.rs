//! `QueryService`'s calls: each decodes its request into the parameters
//! the HTTP API takes, runs it through [`crate::exec`], and encodes the
//! result with [`super::convert`].
//!
//! Deadlines: the client's `grpc-timeout` bounds the whole call (waiting
//! for a query slot included) and is also the engine's timeout; when it
//! passes, the query is cancelled (its memory freed once the engine sees
//! the flag) and the call ends with `DEADLINE_EXCEEDED`. A client that
//! cancels or disconnects drops the call, which cancels the query too.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::{Matcher, TimestampMs};
use cairn_proto::query::v1 as pb;
use cairn_proto::query::v1::query_service_server::QueryService;
use cairn_query::eval::CancelToken;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::Error;
use crate::exec::{self, CancelOnDrop, Executed, Kind, QuerySpec};
use crate::http::{AppState, MAX_TIME_MS, MIN_TIME_MS};
use crate::selector;

/// The query service over the server's shared state.
#[derive(Clone)]
pub struct QueryGrpc {
    state: Arc<AppState>,
}

impl std::fmt::Debug for QueryGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryGrpc").finish_non_exhaustive()
    }
}

/// The stream of a range query's messages.
pub type RangeStream = Pin<Box<dyn Stream<Item = Result<pb::RangeQueryResponse, Status>> + Send>>;

/// When a call arrived and when its client stops waiting.
#[derive(Debug, Clone, Copy)]
struct Call {
    received: Instant,
    deadline: Option<Duration>,
}

impl Call {
    fn of<T>(req: &Request<T>) -> Call {
        Call {
            received: Instant::now(),
            deadline: super::grpc_timeout(req.metadata()),
        }
    }

    fn expired(&self) -> Status {
        Status::deadline_exceeded(format!(
            "query exceeded the client's deadline of {:?}",
            self.deadline.unwrap_or_default()
        ))
    }

    /// The engine's timeout: the request's `timeout_ms` and the client's
    /// deadline, the earliest (the server's `query.timeout` caps both).
    fn timeout(&self, timeout_ms: Option<i64>) -> Option<Duration> {
        let asked = timeout_ms
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64));
        match (asked, self.deadline) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }

    /// Runs a query, bounded by the client's deadline; cancels it when the
    /// deadline passes or this future is dropped (the client went away).
    async fn execute(&self, state: &AppState, spec: QuerySpec) -> Result<Executed, Status> {
        let cancel = CancelToken::new();
        let _guard = CancelOnDrop(cancel.clone());
        let run = exec::execute(state, spec, cancel);
        let done = match self.deadline {
            Some(d) => {
                let at = tokio::time::Instant::from_std(self.received + d);
                match tokio::time::timeout_at(at, run).await {
                    Ok(r) => r,
                    Err(_) => return Err(self.expired()),
                }
            }
            None => run.await,
        };
        let done = done.map_err(|e| status(&e))?;
        // Finished, but too late for the client: say so rather than send
        // a result nobody waits for.
        if self.deadline.is_some_and(|d| self.received.elapsed() >= d) {
            return Err(self.expired());
        }
        Ok(done)
    }
}

fn status(e: &Error) -> Status {
    if e.grpc_code() == tonic::Code::Internal {
        tracing::warn!(error = %e, "gRPC query failed");
    }
    e.to_grpc_status()
}

fn usize_limit(limit: u64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Parses series selectors (`up{job="x"}`) into matcher sets.
fn match_sets(selectors: &[String]) -> Result<Vec<Vec<Matcher>>, Status> {
    selectors
        .iter()
        .map(|s| selector::parse("matchers", s).map_err(|e| status(&e)))
        .collect()
}

/// An optional inclusive time range, all time by default.
fn time_range(start: Option<i64>, end: Option<i64>) -> Result<(TimestampMs, TimestampMs), Status> {
    let (start, end) = (start.unwrap_or(MIN_TIME_MS), end.unwrap_or(MAX_TIME_MS));
    if end < start {
        return Err(status(&Error::BadParam {
            param: "end".into(),
            reason: "end timestamp must not be before start time".into(),
        }));
    }
    Ok((start, end))
}

impl QueryGrpc {
    pub fn new(state: Arc<AppState>) -> QueryGrpc {
        QueryGrpc { state }
    }

    /// Parses the query, timing the parse.
    fn parse(query: &str) -> Result<(cairn_query::Expr, Duration), Status> {
        let started = Instant::now();
        let expr = exec::parse_query(query).map_err(|e| status(&e))?;
        Ok((expr, started.elapsed()))
    }
}

#[tonic::async_trait]
impl QueryService for QueryGrpc {
    async fn instant_query(
        &self,
        request: Request<pb::InstantQueryRequest>,
    ) -> Result<Response<pb::InstantQueryResponse>, Status> {
        let call = Call::of(&request);
        let r = request.into_inner();
        let (expr, parse) = Self::parse(&r.query)?;
        let t = r
            .time_ms
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let spec = QuerySpec {
            expr,
            query: r.query,
            kind: Kind::Instant { t },
            timeout: call.timeout(r.timeout_ms),
            lookback_delta_ms: r.lookback_delta_ms,
        };
        let mut done = call.execute(&self.state, spec).await?;
        exec::limit_result(&mut done.result, usize_limit(r.limit));
        let stats = convert::stats(&done, parse, call.received.elapsed());
        let result = done.result;
        Ok(Response::new(pb::InstantQueryResponse {
            result: Some(convert::instant_result(result.value)),
            warnings: result.warnings,
            infos: result.infos,
            stats: Some(stats),
        }))
    }

    type RangeQueryStream = RangeStream;

    async fn range_query(
        &self,
        request: Request<pb::RangeQueryRequest>,
    ) -> Result<Response<RangeStream>, Status> {
        let call = Call::of(&request);
        let r = request.into_inner();
        let (expr, parse) = Self::parse(&r.query)?;
        exec::check_range(&self.state.config, r.start_ms, r.end_ms, r.step_ms)
            .map_err(|e| status(&e))?;
        let spec = QuerySpec {
            expr,
            query: r.query,
            kind: Kind::Range {
                start: r.start_ms,
                end: r.end_ms,
                step: r.step_ms,
            },
            timeout: call.timeout(r.timeout_ms),
            lookback_delta_ms: r.lookback_delta_ms,
        };
        let mut done = call.execute(&self.state, spec).await?;
        exec::limit_result(&mut done.result, usize_limit(r.limit));
        let stats = convert::stats(&done, parse, call.received.elapsed());
        let series = convert::range_series(&mut done.result).ok_or_else(|| {
            Status::invalid_argument(
                "invalid expression type \"string\" for range query, \
                 must be Scalar or instant Vector",
            )
        })?;
        let summary = pb::RangeQuerySummary {
            warnings: std::mem::take(&mut done.result.warnings),
            infos: std::mem::take(&mut done.result.infos),
            stats: Some(stats),
            series_count: 0,
        };
        let batches = convert::Batches::new(series, r.max_series_per_message as usize, summary);
        Ok(Response::new(Box::pin(tokio_stream::iter(batches.map(Ok)))))
    }

    async fn series(
        &self,
        request: Request<pb::SeriesRequest>,
    ) -> Result<Response<pb::SeriesResponse>, Status> {
        let r = request.into_inner();
        let sets = match_sets(&r.matchers)?;
        let (start, end) = time_range(r.start_ms, r.end_ms)?;
        let mut all = exec::series(&self.state, sets, start, end)
            .await
            .map_err(|e| status(&e))?;
        let mut warnings = Vec::new();
        exec::apply_limit(&mut all, usize_limit(r.limit), &mut warnings);
        Ok(Response::new(pb::SeriesResponse {
            series: all
                .iter()
                .map(|l| pb::LabelSet {
                    labels: convert::labels(l),
                })
                .collect(),
            warnings,
        }))
    }

    async fn label_names(
        &self,
        request: Request<pb::LabelNamesRequest>,
    ) -> Result<Response<pb::LabelNamesResponse>, Status> {
        let r = request.into_inner();
        let sets = match_sets(&r.matchers)?;
        let (start, end) = time_range(r.start_ms, r.end_ms)?;
        let mut names = exec::label_names(&self.state, sets, start, end)
            .await
            .map_err(|e| status(&e))?;
        let mut warnings = Vec::new();
        exec::apply_limit(&mut names, usize_limit(r.limit), &mut warnings);
        Ok(Response::new(pb::LabelNamesResponse { names, warnings }))
    }

    async fn label_values(
        &self,
        request: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelValuesResponse>, Status> {
        let r = request.into_inner();
        let sets = match_sets(&r.matchers)?;
        let (start, end) = time_range(r.start_ms, r.end_ms)?;
        let mut values = exec::label_values(&self.state, r.name, sets, start, end)
            .await
            .map_err(|e| status(&e))?;
        let mut warnings = Vec::new();
        exec::apply_limit(&mut values, usize_limit(r.limit), &mut warnings);
        Ok(Response::new(pb::LabelValuesResponse { values, warnings }))
    }

    type ExportStream = super::export::ExportStream;

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let call = Call::of(&request);
        let r = request.into_inner();
        let sets = match_sets(&r.matchers)?;
        let deadline = call.deadline.map(|d| call.received + d);
        let stream = super::export::start(
            self.state.clone(),
            sets,
            r.start_ms,
            r.end_ms,
            r.max_rows_per_batch as usize,
            deadline,
        )
        .await
        .map_err(|e| status(&e))?;
        Ok(Response::new(stream))
    }

    async fn metadata(
        &self,
        request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let r = request.into_inner();
        let metric = Some(r.metric.as_str()).filter(|m| !m.is_empty());
        let families = self.state.metadata.query(
            metric,
            usize_limit(r.limit),
            usize_limit(r.limit_per_metric),
        );
        let metadata = families
            .into_iter()
            .flat_map(|(metric, entries)| {
                entries.into_iter().map(move |e| pb::MetricMetadata {
                    metric: metric.clone(),
                    r#type: e.kind,
                    help: e.help,
                    unit: e.unit,
                })
            })
            .collect();
        Ok(Response::new(pb::MetadataResponse { metadata }))
    }
}
