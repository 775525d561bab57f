//! The request-body read deadline (`listen.read_timeout`): a body must
//! arrive whole within that time of its request reaching a handler, or
//! reading it fails with [`Error::BodyReadTimeout`] (408), so that a
//! client trickling a body (a slow-loris POST) cannot hold a connection,
//! a write slot and its buffer forever. The deadline covers the whole
//! body, not the gap between two frames: a byte every second would reset
//! a per-frame timer forever.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::AppState;
use crate::error::Error;

/// The error a [`DeadlineBody`] yields once its deadline passed;
/// `read_body` turns it into [`Error::BodyReadTimeout`].
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {timeout:?}")]
pub struct ReadTimedOut {
    pub timeout: Duration,
}

impl ReadTimedOut {
    /// The timeout behind a body read error, if that is what it is.
    pub fn find(e: &axum::Error) -> Option<Duration> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        // An axum error wraps the boxed error; a short walk finds it.
        for _ in 0..4 {
            let s = source?;
            if let Some(t) = s.downcast_ref::<ReadTimedOut>() {
                return Some(t.timeout);
            }
            source = s.source();
        }
        None
    }
}

impl From<ReadTimedOut> for Error {
    fn from(t: ReadTimedOut) -> Error {
        Error::BodyReadTimeout {
            timeout_ms: u64::try_from(t.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(ReadTimedOut {
                timeout: this.timeout,
            })))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: gives every request body the `listen.read_timeout`
/// deadline. A request without a body is not affected.
pub async fn limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let timeout = state.config.listen.read_timeout.0;
    let req = if req.body().is_end_stream() {
        req
    } else {
        req.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                timeout,
            })
        })
    };
    next.run(req).await
}
