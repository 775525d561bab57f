//! The gRPC query service (`cairn.query.v1.QueryService`, defined in
//! `proto/proto/cairn/query/v1/query.proto`) on `--grpc-listen`, with the
//! standard health service (`grpc.health.v1.Health`) and server reflection
//! (v1 and v1alpha) beside it, so that `grpcurl` and load balancers work.
//!
//! Data path: [`service`] decodes a request, runs it through
//! [`crate::exec`] (the HTTP API's engine, limits, query slots and
//! cancellation) and encodes the result with [`convert`]; range results
//! are streamed in bounded batches. [`export`] streams raw samples as
//! Arrow IPC.
//!
//! The services are served by axum (hyper, HTTP/2 without TLS) rather than
//! tonic's own transport server, because tonic's server answers an expired
//! `grpc-timeout` with `CANCELLED`; the query service honours the deadline
//! itself and answers `DEADLINE_EXCEEDED`, as the contract says.

pub mod convert;
pub mod export;
pub mod service;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::query::v1::query_service_server::QueryServiceServer;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};
use crate::http::AppState;
pub use service::QueryGrpc;

/// The service name, as health checks and reflection know it.
pub const SERVICE_NAME: &str = "cairn.query.v1.QueryService";

/// How long open gRPC calls may run on once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the health service looks whether storage became ready.
const HEALTH_POLL: Duration = Duration::from_millis(100);

/// The query service, gzip accepted and sent.
pub fn query_service(state: Arc<AppState>) -> QueryServiceServer<QueryGrpc> {
    QueryServiceServer::new(QueryGrpc::new(state))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
}

/// Binds `addr` and serves the query, health and reflection services until
/// `stop` turns `true`. Returns the bound address and the server's task.
pub async fn spawn_listener(
    state: Arc<AppState>,
    addr: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<QueryServiceServer<QueryGrpc>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(SERVICE_NAME)
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_error = |e: tonic_reflection::server::Error| Error::Internal {
        reason: format!("gRPC reflection: {e}"),
    };
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let router = tonic::service::Routes::new(query_service(state.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .prepare()
        .into_axum_router();

    // Serving once storage is open; not serving once shutdown begins.
    let watcher = {
        let (state, health, mut stop) = (state, health.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                if state.is_ready() {
                    health.set_serving::<QueryServiceServer<QueryGrpc>>().await;
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(HEALTH_POLL) => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
            }
        })
    };
    let task = tokio::spawn(async move {
        let mut grace = stop.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|v| *v).await;
            health
                .set_not_serving::<QueryServiceServer<QueryGrpc>>()
                .await;
        };
        let serve = axum::serve(listener, router).with_graceful_shutdown(shutdown);
        // Clients may keep HTTP/2 connections (and streams) open after
        // shutdown began; they get SHUTDOWN_GRACE to finish, then the
        // server stops regardless so that `cairn serve` always exits.
        tokio::select! {
            served = serve.into_future() => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "gRPC query server failed");
                }
            }
            _ = async {
                let _ = grace.wait_for(|v| *v).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => tracing::warn!("gRPC connections still open after the shutdown grace period: closing"),
        }
        watcher.abort();
    });
    Ok((bound, task))
}

/// The client's deadline from the `grpc-timeout` header (`<digits><unit>`,
/// units `H`, `M`, `S`, `m`, `u`, `n`), if any and well formed.
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(v)
}

fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    // The specification allows at most 8 digits.
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_values() {
        let table = [
            ("1m", Some(Duration::from_millis(1))),
            ("30S", Some(Duration::from_secs(30))),
            ("2M", Some(Duration::from_secs(120))),
            ("1H", Some(Duration::from_secs(3600))),
            ("500u", Some(Duration::from_micros(500))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("123456789m", None),
            ("m", None),
            ("10x", None),
            ("-1S", None),
            ("", None),
        ];
        for (v, want) in table {
            assert_eq!(parse_grpc_timeout(v), want, "{v:?}");
        }
    }
}
