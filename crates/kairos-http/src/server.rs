//! The accept loop: HTTP/1 connections served by hyper, with the limits a
//! public endpoint needs so that slow or idle clients cannot exhaust the
//! process's file descriptors or starve normal requests.
//!
//! - at most `connections_max` connections are served at once; a new one
//!   over the cap first evicts the connection that has waited longest for a
//!   request head (idle keep-alive or a half-sent head, see
//!   [`EVICTABLE_AFTER`]), else it is answered a short `503` problem with
//!   `Retry-After` and closed, without its request being read;
//! - a request head must arrive within `header_read_timeout` of the
//!   connection opening (or of its first byte after an idle period);
//! - a connection with no request in flight is closed after `idle_timeout`;
//! - a request body that sends nothing for `body_read_timeout` fails with
//!   [`BodyReadTimeout`] (answered `408` by [`crate::body::read_body`]);
//! - at shutdown, requests in flight finish, event streams (SSE) end, and
//!   whatever is still open after [`SHUTDOWN_DRAIN_MAX`] is dropped.
//!
//! Timeouts are enforced here rather than by hyper's own header timer
//! because hyper's timer also runs while a keep-alive connection is idle, so
//! it cannot tell "idle" from "slowly sending a head".

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response, header};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::problem::Problem;

/// The server's connection limits (`[server]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLimits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    /// Generous for real clients (an SDK sends a whole head in one packet),
    /// short enough that a slow client holds a connection for seconds, not
    /// minutes. nginx uses 60 s / 60 s / 75 s; Kairos' clients are SDKs and
    /// servers on fast networks, so it can afford less.
    fn default() -> ServerLimits {
        ServerLimits {
            connections_max: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// How long a connection must have waited for a request head before a new
/// connection at the cap may evict it: long enough that a real client's
/// head (one packet, milliseconds) is never cut, short enough that holding
/// the cap with half-open connections does not keep others out.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// Over-cap connections being answered `503` at once; beyond this they are
/// closed without an answer (each one holds a descriptor while it lingers).
const REJECTING_MAX: usize = 256;

/// How long an over-cap connection lingers after its `503`, reading and
/// discarding what the client sends, so that closing does not reset the
/// connection before the client has read the answer.
const REJECT_LINGER: Duration = Duration::from_secs(1);

/// At most this much is discarded from an over-cap connection.
const REJECT_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// At shutdown, connections still open after this long are dropped, so a
/// stuck client cannot keep the process from stopping.
pub const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(10);

/// A connection's read buffer at most, which bounds a request head: a
/// bigger head is answered `431`. hyper's default (~400 KB) times
/// `connections_max` slow senders would be gigabytes; real heads are a few
/// KB (nginx allows 32 KB by default).
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// After an accept error (usually EMFILE: out of descriptors) the loop
/// pauses this long instead of spinning; connections close meanwhile.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Connection metrics, registered by [`crate::Metrics`].
pub struct ConnectionMetrics {
    /// `kairos_http_connections_open`.
    pub open: Gauge,
    /// `kairos_http_connections_closed_total{reason}`: closed by the server
    /// for a limit (`over_cap` answered 503, `dropped` over the cap without
    /// an answer, `evicted`, `header_timeout`, `idle_timeout`).
    pub closed: Family<Vec<(&'static str, String)>, Counter>,
}

/// The process's connection metrics.
pub fn connection_metrics() -> &'static ConnectionMetrics {
    static METRICS: std::sync::OnceLock<ConnectionMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| ConnectionMetrics {
        open: Gauge::default(),
        closed: Family::default(),
    })
}

fn closed_for(reason: &'static str) {
    connection_metrics()
        .closed
        .get_or_create(&vec![("reason", reason.to_string())])
        .inc();
}

/// A request body sent nothing for `server.body_read_timeout`.
#[derive(Debug)]
pub struct BodyReadTimeout(pub Duration);

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body sent nothing for {:?} (server.body_read_timeout)",
            self.0
        )
    }
}

impl std::error::Error for BodyReadTimeout {}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let rejecting = Arc::new(Semaphore::new(REJECTING_MAX));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` ends when all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let alive = alive_tx.clone();
        match registry.admit(limits.connections_max) {
            Some((id, conn)) => {
                let task = ConnectionTask {
                    id,
                    conn,
                    registry: registry.clone(),
                    router: router.clone(),
                    limits,
                    stop: stop_rx.clone(),
                };
                connection_metrics().open.inc();
                tokio::spawn(async move {
                    task.run(stream).await;
                    connection_metrics().open.dec();
                    drop(alive);
                });
            }
            None => match rejecting.clone().try_acquire_owned() {
                Ok(permit) => {
                    closed_for("over_cap");
                    tokio::spawn(async move {
                        reject(stream).await;
                        drop((permit, alive));
                    });
                }
                Err(_) => {
                    closed_for("dropped");
                    drop(stream);
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(SHUTDOWN_DRAIN_MAX, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            open = registry.len(),
            "connections still open after {SHUTDOWN_DRAIN_MAX:?}; closing them"
        );
    }
    Ok(())
}

/// The connections being served, to count them and to find one to evict.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    /// Registers a new connection if there is room, making room by evicting
    /// the longest-waiting evictable connection when at the cap.
    fn admit(&self, connections_max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= connections_max {
            let now = Instant::now();
            let victim = conns
                .iter()
                .filter_map(|(id, conn)| conn.waiting_since().map(|since| (since, *id)))
                .filter(|(since, _)| now.duration_since(*since) >= EVICTABLE_AFTER)
                .min()
                .map(|(_, id)| id)?;
            if let Some(conn) = conns.remove(&victim) {
                conn.evict();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(Instant::now()));
        conns.insert(id, conn.clone());
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Where a connection is in its life, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// No request in flight: waiting for the next request head.
    Waiting {
        since: Instant,
        /// When the first byte of the next head arrived, if it did.
        first_byte: Option<Instant>,
        /// Nothing was served yet (the header timeout runs from `since`).
        fresh: bool,
    },
    /// This many requests are being handled or answered.
    Busy { requests: usize },
}

impl Phase {
    /// When the connection must be closed, if ever.
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        match *self {
            Phase::Waiting {
                since, fresh: true, ..
            } => Some(since + limits.header_read_timeout),
            Phase::Waiting {
                first_byte: Some(first),
                ..
            } => Some(first + limits.header_read_timeout),
            Phase::Waiting { since, .. } => Some(since + limits.idle_timeout),
            Phase::Busy { .. } => None,
        }
    }

    /// Which limit its deadline is.
    fn timeout_reason(&self) -> &'static str {
        match *self {
            Phase::Waiting {
                fresh: false,
                first_byte: None,
                ..
            } => "idle_timeout",
            _ => "header_timeout",
        }
    }
}

/// One connection's state, shared by its I/O, its requests and its task.
struct Conn {
    phase: Mutex<Phase>,
    /// Set while waiting for the first byte of a head (read on every read,
    /// so the lock is only taken once per head).
    awaiting_first_byte: AtomicBool,
    evicted: AtomicBool,
    /// Wakes the connection task: the deadline moved, or it was evicted.
    changed: Notify,
}

impl Conn {
    fn new(now: Instant) -> Conn {
        Conn {
            phase: Mutex::new(Phase::Waiting {
                since: now,
                first_byte: None,
                fresh: true,
            }),
            awaiting_first_byte: AtomicBool::new(true),
            evicted: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiting_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Waiting { since, .. } => Some(since),
            Phase::Busy { .. } => None,
        }
    }

    fn bytes_read(&self) {
        if !self.awaiting_first_byte.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Phase::Waiting { first_byte, .. } = &mut *self.phase() {
            first_byte.get_or_insert_with(Instant::now);
        }
        self.changed.notify_one();
    }

    fn request_started(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::Waiting { .. } => Phase::Busy { requests: 1 },
        };
        drop(phase);
        self.changed.notify_one();
    }

    fn request_finished(&self) {
        let mut phase = self.phase();
        if let Phase::Busy { requests } = *phase {
            *phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                self.awaiting_first_byte.store(true, Ordering::Relaxed);
                Phase::Waiting {
                    since: Instant::now(),
                    first_byte: None,
                    fresh: false,
                }
            };
        }
        drop(phase);
        self.changed.notify_one();
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

/// Marks a request in flight until its response is fully sent (or dropped).
struct InFlight(Arc<Conn>);

impl InFlight {
    fn new(conn: Arc<Conn>) -> InFlight {
        conn.request_started();
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

struct ConnectionTask {
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    router: Router,
    limits: ServerLimits,
    stop: watch::Receiver<bool>,
}

impl ConnectionTask {
    async fn run(mut self, stream: TcpStream) {
        // Handlers read the peer as axum's `ConnectInfo` (forwarding
        // headers are believed only from trusted proxies).
        let peer = stream.peer_addr().ok();
        let io = TokioIo::new(Watched {
            inner: stream,
            conn: self.conn.clone(),
        });
        let (conn, router, limits, stop) = (
            self.conn.clone(),
            self.router.clone(),
            self.limits,
            self.stop.clone(),
        );
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(
                request,
                peer,
                router.clone(),
                InFlight::new(conn.clone()),
                limits.body_read_timeout,
                stop.clone(),
            )
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Header and idle timeouts are this task's (see the module doc).
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(HEAD_BYTES_MAX);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = *self.stop.borrow();
        if stopping {
            connection.as_mut().graceful_shutdown();
        }
        loop {
            let deadline = self.conn.phase().deadline(&self.limits);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    break;
                }
                _ = sleep_until(deadline) => {
                    let phase = *self.conn.phase();
                    if phase.deadline(&self.limits).is_some_and(|d| d <= Instant::now()) {
                        let reason = phase.timeout_reason();
                        tracing::debug!(reason, "closing a connection");
                        closed_for(reason);
                        break;
                    }
                }
                _ = self.conn.changed.notified() => {
                    if self.conn.evicted.load(Ordering::Relaxed) {
                        tracing::debug!("closing a connection waiting for a request: evicted at the connection cap");
                        closed_for("evicted");
                        break;
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        self.registry.remove(self.id);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One request through the router, its body read under the body timeout,
/// its response ending at shutdown if it is an event stream.
async fn handle(
    mut request: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
    router: Router,
    in_flight: InFlight,
    body_read_timeout: Duration,
    stop: watch::Receiver<bool>,
) -> Result<Response<Tracked>, std::convert::Infallible> {
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
    }
    let request = request.map(|body| Body::new(TimedBody::new(body, body_read_timeout)));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let stop = streaming.then(|| {
        let mut stop = stop;
        Box::pin(async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        }) as Pin<Box<dyn Future<Output = ()> + Send>>
    });
    Ok(response.map(|body| Tracked {
        inner: body,
        _in_flight: in_flight,
        stop,
    }))
}

/// A response body that keeps its request counted in flight until it is
/// sent, and ends an event stream when the server stops.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(stop) = self.stop.as_mut()
            && stop.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body whose every read must make progress within `timeout`.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    /// Runs while a read waits; reset by every frame.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> TimedBody {
        TimedBody {
            inner,
            timeout,
            waiting: None,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.waiting = None;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(waiting.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyReadTimeout(timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, telling its [`Conn`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.conn.bytes_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The answer to a connection over the cap, written without reading its
/// request.
fn overloaded_response() -> Vec<u8> {
    let problem = Problem::overloaded(
        "the server is at its connection limit (server.connections_max); retry after a second",
    );
    let body = problem.to_json();
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

async fn reject(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(&overloaded_response()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < REJECT_DRAIN_BYTES_MAX {
            match stream.read(&mut sink).await? {
                0 => break,
                read => drained += read,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REJECT_LINGER, answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            connections_max: 2,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_fresh_connection_has_the_header_timeout_from_its_start() {
        let now = Instant::now();
        let conn = Conn::new(now);
        assert_eq!(
            conn.phase().deadline(&limits()),
            Some(now + Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_has_the_idle_timeout_until_a_head_starts() {
        let conn = Conn::new(Instant::now());
        conn.request_started();
        assert_eq!(conn.phase().deadline(&limits()), None);
        conn.request_finished();
        let idle_since = Instant::now();
        assert_eq!(
            conn.phase().deadline(&limits()),
            Some(idle_since + Duration::from_secs(60))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        conn.bytes_read();
        assert_eq!(
            conn.phase().deadline(&limits()),
            Some(idle_since + Duration::from_secs(15))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_waiting_connection_is_evicted_after_its_grace() {
        let registry = Registry::default();
        let (_, first) = registry.admit(2).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_, second) = registry.admit(2).unwrap();
        assert!(registry.admit(2).is_none(), "nobody waited long enough");
        tokio::time::advance(EVICTABLE_AFTER).await;
        assert!(registry.admit(2).is_some());
        assert!(first.evicted.load(Ordering::Relaxed));
        assert!(!second.evicted.load(Ordering::Relaxed));
        assert_eq!(registry.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_are_never_evicted() {
        let registry = Registry::default();
        let (_, first) = registry.admit(1).unwrap();
        first.request_started();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(registry.admit(1).is_none());
        assert!(!first.evicted.load(Ordering::Relaxed));
    }

    #[test]
    fn the_over_cap_answer_is_a_problem_with_retry_after() {
        let text = String::from_utf8(overloaded_response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "));
        assert!(text.contains("retry-after: 1\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], 503);
        assert!(json["detail"].as_str().unwrap().contains("connections_max"));
    }
}
