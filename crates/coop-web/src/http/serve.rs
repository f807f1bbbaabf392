//! The listener: accepts connections and serves each one with hyper, with the
//! three limits `axum::serve` does not have.
//!
//! - **Header-read timeout.** A connection must deliver a complete request head
//!   within `header_read_timeout` of its first byte (of opening, for a new
//!   connection). Without it, a client trickling one header byte every few
//!   seconds holds a connection, a task and its buffers for as long as it likes.
//! - **Idle timeout.** A keep-alive connection with no request running and no
//!   byte moving for `idle_timeout` is closed. It also bounds a client that
//!   stops reading a response.
//! - **Connection cap.** At most `max_connections` are served at once; past it
//!   the listener stops accepting (the kernel's backlog holds the rest) rather
//!   than running out of file descriptors or memory.
//!
//! Why a watchdog of our own and not hyper's `header_read_timeout`: hyper
//! starts that timer as soon as it waits for a request head, which on a
//! keep-alive connection is the whole idle period, so the two limits could not
//! differ; and it does not run while hyper-util sniffs HTTP/1 from HTTP/2, so
//! a connection that never sends a byte was never timed out at all. Here one
//! small state per connection, updated as bytes move and requests start and
//! end, covers both phases. A running request is bounded by
//! `COOP_REQUEST_TIMEOUT` instead (see `timeout`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// The listener's limits (COOP_HEADER_READ_TIMEOUT, COOP_IDLE_TIMEOUT,
/// COOP_MAX_CONNECTIONS).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, lets every connection finish its running request (idle ones
/// close at once), and returns when all are gone. The caller bounds that wait.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first, then accept: at the cap, connections wait in the backlog.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                handle_accept_error(err).await;
                continue;
            }
        };
        // Small JSON answers suffer badly from Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends.
    let _ = slots.acquire_many(max as u32).await;
}

async fn handle_accept_error(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    // Most likely out of file descriptors: give connections time to close.
    tracing::error!(error = %err, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let open = metrics::gauge!("http_connections_open");
    open.increment(1.0);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let running = requests.request_started();
        // What `into_make_service_with_connect_info` would add: the peer,
        // for the rate limits' client address.
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(running);
            response
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            reason = activity.expired(limits) => {
                // Dropping the connection closes the socket; no request is running.
                metrics::counter!("http_connections_timed_out_total", "reason" => reason)
                    .increment(1);
                tracing::debug!(%peer, reason, "closing connection");
                break;
            }
        }
    }
    open.decrement(1.0);
}

/// What the watchdog knows about one connection. Times are milliseconds since
/// the connection opened; `head_started` is 0 when no request head is awaited
/// since a byte arrived (else that moment + 1).
struct Activity {
    opened: Instant,
    running: AtomicUsize,
    last_io: AtomicU64,
    head_started: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            running: AtomicUsize::new(0),
            last_io: AtomicU64::new(0),
            // A new connection owes its first request head at once.
            head_started: AtomicU64::new(1),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn bytes_read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.running.load(Ordering::Acquire) == 0 {
            // The first byte of the next request head starts its clock.
            let _ =
                self.head_started
                    .compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn bytes_written(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        Running(self.clone())
    }

    /// Resolves with the reason once the connection has broken a limit.
    async fn expired(&self, limits: ConnectionLimits) -> &'static str {
        let header = limits.header_read_timeout.as_millis() as u64;
        let idle = limits.idle_timeout.as_millis() as u64;
        loop {
            let now = self.now();
            let wait = if self.running.load(Ordering::Acquire) > 0 {
                header.min(idle)
            } else {
                let (since, limit, reason) = match self.head_started.load(Ordering::Acquire) {
                    0 => (self.last_io.load(Ordering::Relaxed), idle, "idle"),
                    started => (started - 1, header, "header_read"),
                };
                let deadline = since + limit;
                if now >= deadline {
                    return reason;
                }
                deadline - now
            };
            tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
        }
    }
}

/// A request being served on the connection: no timeout applies meanwhile.
struct Running(Arc<Activity>);

impl Drop for Running {
    fn drop(&mut self) {
        // The idle period starts when the response is handed over.
        self.0.bytes_written();
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, telling `Activity` when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            max_connections: 1,
        }
    }

    #[tokio::test]
    async fn a_new_connection_owes_a_head_within_the_header_timeout() {
        let activity = Activity::new();
        let started = Instant::now();
        assert_eq!(activity.expired(limits()).await, "header_read");
        assert!(started.elapsed() < Duration::from_millis(250));
    }

    #[tokio::test]
    async fn after_a_request_the_idle_timeout_applies_until_bytes_arrive() {
        let activity = Arc::new(Activity::new());
        drop(activity.request_started());
        let started = Instant::now();
        assert_eq!(activity.expired(limits()).await, "idle");
        assert!(started.elapsed() >= Duration::from_millis(250));
        activity.bytes_read();
        let started = Instant::now();
        assert_eq!(activity.expired(limits()).await, "header_read");
        assert!(started.elapsed() < Duration::from_millis(250));
    }

    #[tokio::test]
    async fn no_limit_applies_while_a_request_runs() {
        let activity = Arc::new(Activity::new());
        let running = activity.request_started();
        let expired = tokio::time::timeout(Duration::from_millis(500), activity.expired(limits()));
        assert!(expired.await.is_err());
        drop(running);
    }
}
