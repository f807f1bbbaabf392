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
//!
//! **Idle connections hold no buffers.** hyper gives every HTTP/1 connection
//! an 8 KiB read buffer and an 8 KiB write buffer for as long as it serves
//! it, idle or not: 21 KB per idle keep-alive connection at 10,000 of them
//! (bench/users.sh, issue 19), 5 KB once parked. Like nginx, which frees an
//! idle keep-alive connection's buffers, a connection quiet for `PARK_AFTER`
//! (no request running, no byte moving, no request head begun) is *parked*:
//! hyper finishes with it
//! (`graceful_shutdown` + `poll_without_shutdown`, which hand the socket back
//! without closing it, with any bytes read ahead) and the task waits for the
//! socket to become readable holding only the socket and a few words of
//! state; the next request gets a fresh hyper connection. hyper's buffer
//! sizes cannot go below 8 KiB (`max_buf_size` has that floor), so smaller
//! buffers were not an option. Parking only ever happens after a response's
//! head is written, so it never adds `Connection: close` to a response.
//!
//! HTTP/2 with prior knowledge (a connection opening with `PRI `) is served
//! by hyper's HTTP/2 connection as before, without parking.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
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
    /// Park idle keep-alive connections (always, but for a benchmark's
    /// comparison: the `COOP_KEEP_IDLE_BUFFERS` knob).
    pub park_idle: bool,
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

/// How long a keep-alive connection stays quiet before it is parked (see the
/// module's doc): long enough that a client sending requests back to back
/// (a proxy's upstream connection, a benchmark) keeps its hyper connection,
/// short next to a person's think time between two requests.
const PARK_AFTER: Duration = Duration::from_millis(25);

/// What an HTTP/2 connection with prior knowledge starts with (RFC 9113 §3.4):
/// no HTTP/1 method is called `PRI`.
const HTTP2_PREFACE_START: &[u8; 4] = b"PRI ";

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
    let handler = Handler {
        router,
        peer,
        activity: activity.clone(),
    };
    let mut io = Watched {
        inner: stream,
        unread: Bytes::new(),
        activity: activity.clone(),
    };
    let mut first = true;
    loop {
        // Parked: until a byte arrives, holding no buffers.
        if io.unread.is_empty() {
            let ready = guarded(io.inner.readable(), &activity, limits, &mut stop, peer).await;
            if !matches!(ready, Some(Ok(()))) {
                break;
            }
        }
        if std::mem::take(&mut first) {
            match guarded(speaks_http2(&io.inner), &activity, limits, &mut stop, peer).await {
                Some(Ok(true)) => {
                    serve_http2(io, handler, limits, stop, peer).await;
                    break;
                }
                Some(Ok(false)) => {}
                Some(Err(_)) | None => break,
            }
        }
        match serve_http1(io, &handler, limits, &mut stop, peer).await {
            Some(parked) => io = parked,
            None => break,
        }
    }
    open.decrement(1.0);
}

/// Whether the client opened with HTTP/2's preface (it sent nothing else yet:
/// this only peeks).
async fn speaks_http2(stream: &TcpStream) -> std::io::Result<bool> {
    let mut start = [0u8; 4];
    loop {
        let n = stream.peek(&mut start).await?;
        if n == 0 || start[..n] != HTTP2_PREFACE_START[..n] {
            return Ok(false);
        }
        if n == start.len() {
            return Ok(true);
        }
        // A client trickling its first bytes (the header timeout bounds it).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `work`, unless the server stops or the connection breaks a limit first
/// (then None, and the connection is to be closed: nothing is running).
async fn guarded<T>(
    work: impl Future<Output = T>,
    activity: &Activity,
    limits: ConnectionLimits,
    stop: &mut watch::Receiver<bool>,
    peer: SocketAddr,
) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        _ = stop.wait_for(|stop| *stop) => None,
        reason = activity.expired(limits) => {
            timed_out(peer, reason);
            None
        }
    }
}

fn timed_out(peer: SocketAddr, reason: &'static str) {
    // Dropping the connection closes the socket; no request is running.
    metrics::counter!("http_connections_timed_out_total", "reason" => reason).increment(1);
    tracing::debug!(%peer, reason, "closing connection");
}

/// Serves HTTP/1.1 requests until the connection ends (None) or has been
/// quiet for `PARK_AFTER`: then hyper's state is dropped and the socket comes
/// back, with whatever hyper had read past its last request.
async fn serve_http1(
    io: Watched,
    handler: &Handler,
    limits: ConnectionLimits,
    stop: &mut watch::Receiver<bool>,
    peer: SocketAddr,
) -> Option<Watched> {
    let activity = handler.activity.clone();
    // Boxed, so a parked connection's task does not keep room for it.
    let mut connection =
        Box::new(http1::Builder::new().serve_connection(TokioIo::new(io), handler.clone()));
    let mut parking = false;
    let mut stopping = false;
    loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                    return None;
                }
                // Finished without being asked to: the client closed it, or
                // hyper did (an HTTP/1.0 client, a `Connection: close`).
                if !parking || stopping {
                    return None;
                }
                let parts = connection.into_parts();
                let mut io = parts.io.into_inner();
                // A view of hyper's read buffer, even an empty one, keeps
                // all 8 KiB of it alive: keep a copy of the bytes alone.
                io.unread = if parts.read_buf.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(&parts.read_buf)
                };
                return Some(io);
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                // The running request finishes; an idle connection closes.
                stopping = true;
                std::pin::Pin::new(&mut *connection).graceful_shutdown();
            }
            () = activity.quiet_for(PARK_AFTER), if !parking && limits.park_idle => {
                parking = true;
                std::pin::Pin::new(&mut *connection).graceful_shutdown();
            }
            reason = activity.expired(limits) => {
                timed_out(peer, reason);
                return None;
            }
        }
    }
}

/// An HTTP/2 connection, served until it ends (never parked: one connection
/// carries many streams, and browsers do not send HTTP/2 in clear text).
async fn serve_http2(
    io: Watched,
    handler: Handler,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) {
    let activity = handler.activity.clone();
    let connection =
        http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(io), handler);
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
                timed_out(peer, reason);
                break;
            }
        }
    }
}

/// The router as hyper's service for one connection. Its future is boxed so
/// hyper's `poll_without_shutdown` (which parking needs) can take it: it asks
/// for `Unpin` futures.
#[derive(Clone)]
struct Handler {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type Answer = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

impl hyper::service::Service<hyper::Request<Incoming>> for Handler {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        let running = self.activity.request_started();
        // What `into_make_service_with_connect_info` would add: the peer,
        // for the rate limits' client address.
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await;
            drop(running);
            response
        })
    }
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

    /// Resolves once the connection is quiet for `quiet`: no request running,
    /// no request head begun, no byte moved.
    async fn quiet_for(&self, quiet: Duration) {
        let quiet = quiet.as_millis() as u64;
        loop {
            let busy = self.running.load(Ordering::Acquire) > 0
                || self.head_started.load(Ordering::Acquire) != 0;
            let wait = if busy {
                quiet
            } else {
                let until = self.last_io.load(Ordering::Relaxed) + quiet;
                let now = self.now();
                if now >= until {
                    return;
                }
                until - now
            };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
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
    /// Bytes hyper had read past its last request when the connection was
    /// parked: the start of the next request, read before the socket.
    unread: Bytes,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            // Already counted by `Activity` when first read.
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread = self.unread.slice(n..);
            return Poll::Ready(Ok(()));
        }
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
            park_idle: true,
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
    async fn a_connection_is_quiet_only_with_no_request_and_no_head_begun() {
        let activity = Arc::new(Activity::new());
        // A new connection owes its first head: never quiet before it.
        let quiet = tokio::time::timeout(
            Duration::from_millis(200),
            activity.quiet_for(Duration::from_millis(20)),
        );
        assert!(quiet.await.is_err());
        let running = activity.request_started();
        let quiet = tokio::time::timeout(
            Duration::from_millis(200),
            activity.quiet_for(Duration::from_millis(20)),
        );
        assert!(quiet.await.is_err(), "quiet while a request runs");
        drop(running);
        tokio::time::timeout(
            Duration::from_secs(5),
            activity.quiet_for(Duration::from_millis(20)),
        )
        .await
        .expect("quiet once the request ended");
        // The first byte of the next head: busy again until that request ends.
        activity.bytes_read();
        let quiet = tokio::time::timeout(
            Duration::from_millis(200),
            activity.quiet_for(Duration::from_millis(20)),
        );
        assert!(quiet.await.is_err(), "quiet with a head begun");
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
