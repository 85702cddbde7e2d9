//! Bodies that copy a bounded prefix of what streams through them, without buffering the rest
//! or delaying it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};

/// What was seen of a body: its size, and its first `limit` bytes when they are kept.
#[derive(Debug, Default, Clone)]
pub(crate) struct Capture {
    limit: usize,
    keep: bool,
    pub(crate) bytes: Vec<u8>,
    pub(crate) total: u64,
}

impl Capture {
    /// Counts a body; keeps its first `limit` bytes if `keep`.
    pub(crate) fn new(limit: usize, keep: bool) -> Self {
        Capture {
            limit,
            keep,
            bytes: Vec::new(),
            total: 0,
        }
    }

    fn push(&mut self, data: &Bytes) {
        self.total = self.total.saturating_add(data.len() as u64);
        if self.keep && self.bytes.len() < self.limit {
            let room = self.limit - self.bytes.len();
            self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// Whether bytes were seen that were not kept.
    pub(crate) fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }

    pub(crate) fn kept(&self) -> bool {
        self.keep
    }

    /// Keeps only the size.
    pub(crate) fn forget(&mut self) {
        self.keep = false;
        self.bytes = Vec::new();
    }
}

/// A capture shared between a body and whoever reads it when the exchange is done.
pub(crate) type SharedCapture = Arc<Mutex<Capture>>;

/// Takes what a shared capture holds.
pub(crate) fn take(capture: &SharedCapture) -> Capture {
    std::mem::take(&mut *capture.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Called once when a body ends (`true`), fails or is dropped before its end (`false`: the
/// client went away).
pub(crate) type OnEnd = Box<dyn FnOnce(bool) + Send>;

/// A body that records what streams through it into a capture, and reports its end.
pub(crate) struct Tee {
    inner: Body,
    capture: SharedCapture,
    on_end: Option<OnEnd>,
}

impl Tee {
    pub(crate) fn wrap(inner: Body, capture: SharedCapture, on_end: Option<OnEnd>) -> Body {
        let mut tee = Tee {
            inner,
            capture,
            on_end,
        };
        // An empty body may never be polled (HEAD, 204): report it now.
        if tee.inner.is_end_stream() {
            tee.finish(true);
        }
        Body::new(tee)
    }

    fn finish(&mut self, complete: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end(complete);
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.capture
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(data);
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish(false);
    }
}
