//! OTLP/gRPC: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`
//! with tonic, gzip accepted (and used for responses when the client
//! accepts it).
//!
//! Status codes follow the OTLP specification: bad data is
//! `INVALID_ARGUMENT` (never retried); overload and storage failures are
//! `UNAVAILABLE` (retried with backoff); refused points are a successful
//! response with `partial_success` (not retried).

use std::sync::Arc;

use cairn_proto::opentelemetry::proto::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use cairn_proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{OtlpReceiver, grpc_code};

/// The tonic service implementation.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    receiver: Arc<OtlpReceiver>,
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        match self.receiver.ingest(request.into_inner()).await {
            Ok(outcome) => Ok(Response::new(outcome.response())),
            Err(e) => Err(Status::new(grpc_code(&e), e.to_string())),
        }
    }
}

/// The gRPC service, ready for `tonic::transport::Server::add_service`:
/// gzip accepted and sent, messages limited to the configured decoded size
/// (larger ones get `RESOURCE_EXHAUSTED` from tonic).
pub fn otlp_grpc_service(receiver: Arc<OtlpReceiver>) -> MetricsServiceServer<OtlpGrpc> {
    let limit = usize::try_from(receiver.config().max_decoded_bytes).unwrap_or(usize::MAX);
    MetricsServiceServer::new(OtlpGrpc { receiver })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
}

/// Serves OTLP/gRPC on its own listener until `shutdown` resolves.
pub async fn serve(
    receiver: Arc<OtlpReceiver>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .add_service(otlp_grpc_service(receiver))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
