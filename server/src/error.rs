//! The one error type of cairn-server, and the one place where errors
//! become HTTP status codes and Prometheus's JSON error envelope
//! ([`Error::status`], [`Error::error_type`]) and, beside it, gRPC status
//! codes of the query service ([`Error::grpc_code`]).

use std::path::PathBuf;

use axum::http::StatusCode;

/// Result alias for the server.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the server, classified by whose fault it
/// is: the client's data (`bad_data`), the query at run time (`execution`),
/// resources (`unavailable`, `timeout`, too large), or ours (`internal`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- configuration and start-up -------------------------------------
    /// The configuration file cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration does not parse (the reason names the key).
    #[error("invalid configuration in {origin}: {reason}")]
    ConfigInvalid { origin: String, reason: String },
    /// A configuration value parses but is not allowed.
    #[error("invalid configuration value for {key}: {reason}")]
    ConfigValue { key: String, reason: String },
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    // --- request errors ---------------------------------------------------
    /// A request parameter is missing or malformed.
    #[error("invalid parameter {param:?}: {reason}")]
    BadParam { param: String, reason: String },
    /// The body is not in a format we accept (remote-write 415).
    #[error("unsupported {what}: {value:?}; {expected}")]
    UnsupportedMediaType {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    /// The body is larger than the configured limit.
    #[error("request body larger than the limit of {limit_bytes} bytes{detail}")]
    BodyTooLarge { limit_bytes: u64, detail: String },
    /// The body could not be read from the connection.
    #[error("cannot read request body: {reason}")]
    BodyRead { reason: String },
    /// The body did not arrive whole within `listen.read_timeout`.
    #[error(
        "request body not received whole within {timeout_ms} ms \
         (listen.read_timeout); send it faster or raise the setting"
    )]
    BodyReadTimeout { timeout_ms: u64 },
    /// Snappy decompression failed.
    #[error("snappy decode error: {reason}")]
    Snappy { reason: String },
    /// Protobuf decoding failed.
    #[error("protobuf decode error ({message}): {reason}")]
    Protobuf {
        message: &'static str,
        reason: String,
    },
    /// Some series or samples of a write were rejected: the valid ones were
    /// written. `summary` counts by reason; `examples` names series.
    #[error("{summary}")]
    WriteRejected { summary: String },
    /// A remote-write 2.0 request that is malformed as a whole
    /// (a symbol reference out of range, `symbols[0]` not empty ...).
    #[error("invalid remote-write 2.0 request: {reason}")]
    InvalidV2 { reason: String },
    /// Cairn is overloaded and sheds this request; the sender should retry.
    #[error("too many concurrent {what} requests (limit {limit}); retry later")]
    Overloaded { what: &'static str, limit: usize },
    /// Not ready yet (WAL replay in progress) or shutting down.
    #[error("service unavailable: {reason}")]
    Unavailable { reason: String },
    /// The query failed at run time (too many samples, bad regex in a
    /// function argument, ...).
    #[error("{reason}")]
    Execution { reason: String },
    /// A range query would return more points per series than
    /// `query.max_points_per_series` (Prometheus's text and `bad_data`
    /// over HTTP; a limit, RESOURCE_EXHAUSTED, over gRPC).
    #[error(
        "invalid parameter \"step\": exceeded maximum resolution of {max_points} points per \
         timeseries. Try decreasing the query resolution (?step=XX)"
    )]
    TooManyPoints { max_points: i64 },
    /// No such resource.
    #[error("{what} not found")]
    NotFound { what: String },

    // --- lower layers -------------------------------------------------------
    /// An error from the storage engine.
    #[error(transparent)]
    Engine(#[from] cairn_engine::Error),
    /// An error from PromQL parsing or evaluation.
    #[error(transparent)]
    Query(#[from] cairn_query::Error),
    /// A blocking task panicked or was cancelled.
    #[error("internal error: {reason}")]
    Internal { reason: String },
    /// `/-/reload` failed: the previous configuration and rules keep running.
    #[error("failed to reload config: {reason}")]
    ReloadFailed { reason: String },
}

/// Prometheus's `errorType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
        }
    }
}

impl Error {
    /// **The** mapping from errors to HTTP status codes (and the
    /// `errorType` beside them). Every handler goes through it.
    pub fn status_and_type(&self) -> (StatusCode, ErrorType) {
        use Error::*;
        match self {
            ConfigRead { .. } | ConfigInvalid { .. } | ConfigValue { .. } | Bind { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal)
            }
            BadParam { .. }
            | BodyRead { .. }
            | Snappy { .. }
            | Protobuf { .. }
            | WriteRejected { .. }
            | InvalidV2 { .. }
            | TooManyPoints { .. } => (StatusCode::BAD_REQUEST, ErrorType::BadData),
            UnsupportedMediaType { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorType::BadData),
            BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorType::BadData),
            BodyReadTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, ErrorType::Timeout),
            // 503, not 429: Prometheus 2.x senders retry 5xx always but 429
            // only when configured to, and shedding must never lose data.
            Overloaded { .. } | Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorType::Unavailable)
            }
            Execution { .. } => (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Execution),
            NotFound { .. } => (StatusCode::NOT_FOUND, ErrorType::NotFound),
            Engine(e) => engine_status(e),
            Query(e) => query_status(e),
            Internal { .. } | ReloadFailed { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal)
            }
        }
    }

    /// The HTTP status code of this error.
    pub fn status(&self) -> StatusCode {
        self.status_and_type().0
    }

    /// Prometheus's `errorType` of this error.
    pub fn error_type(&self) -> ErrorType {
        self.status_and_type().1
    }
}

impl Error {
    /// **The** mapping from errors to the gRPC status codes of the query
    /// service (`proto/cairn/query/v1/query.proto` documents it). OTLP's
    /// receiver has its own retry-oriented mapping (`otlp::grpc_code`).
    pub fn grpc_code(&self) -> tonic::Code {
        use Error::*;
        use tonic::Code;
        match self {
            ConfigRead { .. } | ConfigInvalid { .. } | ConfigValue { .. } | Bind { .. } => {
                Code::Internal
            }
            BadParam { .. }
            | BodyRead { .. }
            | Snappy { .. }
            | Protobuf { .. }
            | WriteRejected { .. }
            | InvalidV2 { .. }
            | UnsupportedMediaType { .. }
            // A query that cannot be evaluated on this data (duplicate
            // series, many-to-many matching): retrying will not help.
            | Execution { .. } => Code::InvalidArgument,
            BodyTooLarge { .. } | TooManyPoints { .. } => Code::ResourceExhausted,
            Overloaded { .. } | Unavailable { .. } => Code::Unavailable,
            BodyReadTimeout { .. } => Code::DeadlineExceeded,
            NotFound { .. } => Code::NotFound,
            Engine(e) => match engine_status(e).1 {
                ErrorType::BadData => Code::InvalidArgument,
                _ => Code::Internal,
            },
            Query(e) => {
                use cairn_query::Error as Q;
                match e {
                    Q::Parse { .. } | Q::BadData { .. } | Q::Execution { .. } => {
                        Code::InvalidArgument
                    }
                    Q::NotSupported { .. } => Code::Unimplemented,
                    Q::TooManySamples { .. } => Code::ResourceExhausted,
                    Q::Timeout { .. } => Code::DeadlineExceeded,
                    Q::Canceled { .. } => Code::Cancelled,
                    Q::Storage(_) | Q::Internal { .. } | Q::Script { .. } => Code::Internal,
                }
            }
            Internal { .. } | ReloadFailed { .. } => Code::Internal,
        }
    }

    /// This error as a gRPC status of the query service.
    pub fn to_grpc_status(&self) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), self.to_string())
    }
}

/// PromQL errors, classified as Prometheus's API classifies them.
fn query_status(e: &cairn_query::Error) -> (StatusCode, ErrorType) {
    use cairn_query::Error as Q;
    match e {
        Q::Parse { .. } | Q::BadData { .. } => (StatusCode::BAD_REQUEST, ErrorType::BadData),
        Q::Execution { .. } | Q::TooManySamples { .. } | Q::NotSupported { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Execution)
        }
        Q::Timeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::Timeout),
        // 499 "client closed request", as Prometheus.
        Q::Canceled { .. } => (
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorType::Canceled,
        ),
        Q::Storage(_) | Q::Internal { .. } | Q::Script { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal)
        }
    }
}

/// Engine errors: bad input from the client is 400, the rest is ours.
fn engine_status(e: &cairn_engine::Error) -> (StatusCode, ErrorType) {
    use cairn_engine::Error as E;
    match e {
        E::InvalidRegex { .. } | E::InvalidLabels { .. } => {
            (StatusCode::BAD_REQUEST, ErrorType::BadData)
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal),
    }
}
