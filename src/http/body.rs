//! `body_timeout`: a request body must arrive within it once the request's head
//! has. Every request with a body gets its payload wrapped in a stream that
//! fails with a timed-out I/O error at the deadline; whoever reads the body
//! turns that into `408` (and the connection is closed). Bodies already in
//! the buffer never start a timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::http::header;
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// The I/O error kind a late body reads as.
const LATE: std::io::ErrorKind = std::io::ErrorKind::TimedOut;

struct Deadline {
    inner: Payload,
    at: Instant,
    /// Started at the first read that had to wait.
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        let at = self.at;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired = true;
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    LATE,
                    "the body did not arrive within body_timeout",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether the request says it has a body (a length above zero, or chunks).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
}

/// Puts the deadline on `req`'s body, counted from now.
pub fn limit(req: &mut ServiceRequest, timeout: Duration) {
    if !has_body(req) {
        return;
    }
    let inner = actix_web::HttpMessage::take_payload(req);
    let stream = Deadline {
        inner,
        at: Instant::now() + timeout,
        timer: None,
        expired: false,
    };
    req.set_payload(Payload::from(
        Box::pin(stream) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
    ));
}

/// Whether a payload error is the deadline's.
pub fn is_late(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == LATE)
}
