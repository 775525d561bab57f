//! The one error type of cairn-query, classified by who is at fault so
//! that the server maps it to an HTTP status and Prometheus `errorType` in
//! one place: a bad query (parse, bad data), a failed execution, exhausted
//! resources (timeout, canceled, too many samples), storage, or a bug.

/// Result alias for the query crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong parsing or evaluating a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query text does not parse; `line`/`column` are 1-based.
    #[error("{line}:{column}: parse error: {message}")]
    Parse {
        message: String,
        line: usize,
        column: usize,
    },
    /// The request is malformed (a bad step, an end before the start ...).
    #[error("{message}")]
    BadData { message: String },
    /// Evaluation failed on this data: duplicate series, a many-to-many
    /// match, an invalid regular expression argument. The text is
    /// Prometheus's, word for word.
    #[error("{message}")]
    Execution { message: String },
    /// The query ran past its deadline.
    #[error("query timed out in {phase}")]
    Timeout { phase: &'static str },
    /// The caller canceled the query (the client went away).
    #[error("query was canceled in {phase}")]
    Canceled { phase: &'static str },
    /// The query would hold more samples in memory than allowed.
    #[error("query processing would load too many samples into memory in {phase}")]
    TooManySamples { phase: &'static str },
    /// The query uses a feature Cairn does not implement (yet), such as the
    /// experimental `info()` function.
    #[error("not supported: {what}")]
    NotSupported { what: String },
    /// Reading from storage failed.
    #[error("expanding series: {0}")]
    Storage(#[from] cairn_engine::Error),
    /// A broken invariant inside the engine: a bug.
    #[error("unexpected error: {message}")]
    Internal { message: String },
    /// A promqltest script is malformed.
    #[error("{file}:{line}: {reason}")]
    Script {
        file: String,
        line: usize,
        reason: String,
    },
}

impl Error {
    pub(crate) fn exec(message: impl Into<String>) -> Self {
        Error::Execution {
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }
}

impl From<crate::parser::ParseError> for Error {
    fn from(e: crate::parser::ParseError) -> Self {
        Error::Parse {
            message: e.message,
            line: e.line,
            column: e.col,
        }
    }
}
