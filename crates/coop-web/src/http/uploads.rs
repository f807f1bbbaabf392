//! Document uploads: which requests they are (their bodies stream to
//! storage, so the layers that would buffer or bound them, idempotency and
//! the request timeout, treat them apart), and the pacing of their bodies.
//!
//! Pacing: the multipart parser (multer, under axum's `Multipart`) reads
//! every chunk the connection has ready before it hands out a piece of a
//! field (multer's `StreamBuffer::poll_stream` loops until `Pending`), so a
//! client faster than the store could fill that buffer without bound.
//! Handing it one chunk per poll keeps it at about one read of the
//! connection (measured: pieces of at most ~500 KiB in a 200 MB upload).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::Method;
use futures_util::Stream;

pub fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/') == "/api/v1/documents"
}

/// The request with its body handed out one chunk per poll.
pub async fn pace(request: Request) -> Request {
    request.map(|body| Body::from_stream(Paced::new(body.into_data_stream())))
}

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// After each chunk, one `Pending` (with the task woken at once): the
/// reader gets to use what it has before it reads more.
struct Paced {
    inner: Chunks,
    just_yielded: bool,
}

impl Paced {
    fn new(inner: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(inner),
            just_yielded: false,
        }
    }
}

impl Stream for Paced {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.just_yielded {
            self.just_yielded = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = self.inner.as_mut().poll_next(cx);
        if matches!(next, Poll::Ready(Some(_))) {
            self.just_yielded = true;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn every_chunk_arrives_in_order_with_a_pause_between() {
        let chunks = (0..5u8).map(|i| Ok(Bytes::from(vec![i; 3])));
        let mut paced = Paced::new(futures_util::stream::iter(chunks));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            paced.poll_next_unpin(&mut cx),
            Poll::Ready(Some(_))
        ));
        assert!(paced.poll_next_unpin(&mut cx).is_pending());
        let rest: Vec<_> = paced.map(|chunk| chunk.unwrap()[0]).collect().await;
        assert_eq!(rest, [1, 2, 3, 4]);
    }
}
