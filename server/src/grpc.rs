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
//!
//! Shutdown: the listener stops accepting and every connection gets a
//! GOAWAY; calls in flight (a response body not yet sent whole counts)
//! may finish for up to [`SHUTDOWN_GRACE`]. Once none is left, the server
//! stops without waiting for clients to close idle connections, which a
//! client that does not read its socket would never do.

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

/// How long calls in flight may run on once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long, once no call is in flight, connections get to close after
/// their GOAWAY (and to flush the last call's final frames) before the
/// server stops regardless.
const CLOSE_LINGER: Duration = Duration::from_millis(100);

/// How often the health service looks whether storage became ready.
const HEALTH_POLL: Duration = Duration::from_millis(100);

/// The query service, gzip accepted and sent.
pub fn query_service(state: Arc<AppState>) -> QueryServiceServer<QueryGrpc> {
    QueryServiceServer::new(QueryGrpc::new(state))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
}

/// Counts the calls in flight: a call enters when its request arrives
/// and leaves when its response body is finished or dropped, so that a
/// streamed response counts until its last message.
#[derive(Clone)]
struct InFlightCalls(Arc<tokio::sync::watch::Sender<usize>>);

/// One call in flight; leaves the count when dropped.
struct CallGuard(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl InFlightCalls {
    fn new() -> InFlightCalls {
        InFlightCalls(Arc::new(tokio::sync::watch::channel(0).0))
    }

    fn enter(&self) -> CallGuard {
        self.0.send_modify(|n| *n += 1);
        CallGuard(self.0.clone())
    }

    /// Resolves once no call is in flight.
    async fn none(&self) {
        let _ = self.0.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Wraps every call of `router` so that it is counted until its
    /// response body ends.
    fn track(&self, router: axum::Router) -> axum::Router {
        use http_body_util::BodyExt;
        let calls = self.clone();
        router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let guard = calls.enter();
                async move {
                    let response = next.run(req).await;
                    response.map(|body| {
                        axum::body::Body::new(body.map_frame(move |frame| {
                            // The closure owns the guard: it leaves the
                            // count when the body is dropped.
                            let _held = &guard;
                            frame
                        }))
                    })
                }
            },
        ))
    }
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
    let calls = InFlightCalls::new();
    let router = calls.track(
        tonic::service::Routes::new(query_service(state.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .prepare()
            .into_axum_router(),
    );

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
        // The graceful shutdown above ends only once every client closed
        // its connection; the server does not wait for that, only for
        // the calls in flight (SHUTDOWN_GRACE at most), so that an idle
        // client cannot hold `cairn serve` up.
        tokio::select! {
            served = serve.into_future() => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "gRPC query server failed");
                }
            }
            _ = async {
                let _ = grace.wait_for(|v| *v).await;
                if tokio::time::timeout(SHUTDOWN_GRACE, calls.none()).await.is_err() {
                    tracing::warn!("gRPC calls still in flight after the shutdown grace period: closing");
                }
                tokio::time::sleep(CLOSE_LINGER).await;
            } => tracing::debug!("gRPC query server stopped"),
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
