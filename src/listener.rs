//! The HTTP serving loop of `baton serve`: accepts TCP connections and serves the router on each
//! (HTTP/1.1, and HTTP/2 with prior knowledge) so that stalled or hostile clients cannot hold
//! the server.
//!
//! - **Connection cap.** At most [`ListenerOptions::max_connections`] connections are open at
//!   once. At the cap the loop stops calling `accept`, so further clients wait in the kernel's
//!   listen backlog and cost no descriptor of ours (accepting and closing them at once would spend
//!   a descriptor and a round trip on each and invite immediate retries). While it waits, it makes
//!   room by closing connections with nothing in flight: idle keep-alive ones, and those whose
//!   request head has been arriving for over a second (a well-behaved client sends its head in
//!   one go; the backlog is first come, first served, so without this a wave of stalled clients
//!   would make everyone behind them wait the whole head deadline).
//! - **Request head deadline.** A connection must deliver a complete request head within
//!   [`ListenerOptions::header_read_timeout`] of connecting, and again within that time of the
//!   first byte of each later request; otherwise it is closed.
//! - **Idle timeout.** A connection with no request in flight and nothing received for
//!   [`ListenerOptions::idle_timeout`] is closed.
//! - **Accept errors** (out of descriptors, out of memory) are logged and retried after a short
//!   back-off that grows to 100 ms; connections already open are served meanwhile.
//! - **Shutdown.** When the shutdown future resolves the listening socket is closed, connections
//!   with no request in flight (idle, or half-way through a request head) are closed at once,
//!   those with a request in flight finish it and then close, and whatever is still open after
//!   [`ListenerOptions::shutdown_grace`] is closed regardless.
//!
//! hyper has a header read timeout of its own, but for HTTP/1 it also runs while a keep-alive
//! connection waits for its next request, so it cannot be told apart from the idle timeout, and it
//! does not cover the protocol sniffing of hyper-util's `auto` builder nor HTTP/2. So each
//! connection gets a small watchdog instead, fed by its socket reads and by the requests it serves.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// How often, while the connection cap is reached, idle connections are asked to make room.
const PRESSURE_RECHECK: Duration = Duration::from_millis(250);

/// At the connection cap, how long a request head may have been arriving before its connection
/// is closed to make room (at most the head deadline).
const PRESSURE_HEAD_PATIENCE: Duration = Duration::from_secs(1);

/// Limits of the serving loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerOptions {
    /// Longest a client may take to send a complete request head, counted from connecting (first
    /// request) or from the first byte of the head (later requests on a keep-alive connection).
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no request in flight and nothing received.
    pub idle_timeout: Duration,
    /// Most connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// After the shutdown signal, longest in-flight requests may take before every connection is
    /// closed.
    pub shutdown_grace: Duration,
}

/// Default of [`ListenerOptions::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ListenerOptions::idle_timeout`]: longer than the 60 s idle timeout common to load
/// balancers, so that the balancer, not Baton, closes a pooled connection (a server closing it as
/// the balancer sends a request makes a spurious 502). Under connection pressure idle connections
/// are closed at once anyway.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default of [`ListenerOptions::max_connections`]: far more than a load balancer or a few bots
/// need, a few tens of MB of buffers at most, and within the usual 1024-descriptor soft limit
/// once [`ListenerOptions::bounded_by_fd_limit`] has kept its reserve.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of [`ListenerOptions::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ListenerOptions {
    /// Lowers `max_connections` so that connections, plus `reserve` descriptors for everything
    /// else (database connections, log and data files, the runtime's own), fit in the process's
    /// soft `RLIMIT_NOFILE`. Without this the loop would run out of descriptors (`EMFILE`) before
    /// reaching its cap, and the database pool with it.
    pub fn bounded_by_fd_limit(mut self, reserve: u64) -> Self {
        if let Some(budget) = fd_budget(reserve)
            && budget < self.max_connections
        {
            // Info, not a warning: the common soft limit of 1024 lowers the default cap a little.
            tracing::info!(
                requested = self.max_connections,
                allowed = budget,
                reserve,
                "connection cap lowered to fit the open-file limit (raise ulimit -n to serve more)"
            );
            self.max_connections = budget;
        }
        self.max_connections = self.max_connections.max(1);
        self
    }
}

/// Descriptors left for connections under the soft `RLIMIT_NOFILE` after `reserve` (none when
/// there is no limit or it cannot be read).
pub fn fd_budget(reserve: u64) -> Option<usize> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft == RLIM_INFINITY {
        return None;
    }
    let budget = soft.saturating_sub(reserve).max(1);
    Some(usize::try_from(budget).unwrap_or(usize::MAX))
}

/// Counters of the serving loop, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    peak: AtomicUsize,
    accepted: AtomicU64,
    timed_out: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Most connections that were open at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed by the head deadline or the idle timeout (not by shutdown).
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::SeqCst)
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<ConnectionStats>);

impl OpenGuard {
    fn new(stats: Arc<ConnectionStats>) -> Self {
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(open, Ordering::SeqCst);
        OpenGuard(stats)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound TCP listener and the limits to serve it with.
pub struct HttpListener {
    tcp: TcpListener,
    options: ListenerOptions,
    stats: Arc<ConnectionStats>,
}

impl HttpListener {
    /// Serves `tcp` with `options`.
    pub fn new(tcp: TcpListener, options: ListenerOptions) -> Self {
        HttpListener {
            tcp,
            options,
            stats: Arc::default(),
        }
    }

    /// The loop's counters (live).
    pub fn stats(&self) -> Arc<ConnectionStats> {
        self.stats.clone()
    }

    /// Serves `app` until `shutdown` resolves, then drains as the module docs say. Returns once
    /// every connection is closed.
    pub async fn serve(self, app: Router, shutdown: impl Future<Output = ()> + Send) {
        let HttpListener {
            tcp,
            options,
            stats,
        } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The watchdog below owns the head deadline (see the module docs).
        builder.http1().header_read_timeout(None);
        let builder = Arc::new(builder);
        let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
        let pressure = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = watch::channel(());
        let mut connections = JoinSet::new();
        let mut backoff = Backoff::default();
        let mut shutdown = std::pin::pin!(shutdown);

        loop {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    tracing::debug!(
                        max = options.max_connections,
                        "connection cap reached: new clients wait in the backlog"
                    );
                    let waiting = async {
                        loop {
                            // Again and again: connections that were busy at the first call may
                            // have gone idle since.
                            pressure.notify_waiters();
                            tokio::select! {
                                permit = slots.clone().acquire_owned() => return permit.ok(),
                                () = tokio::time::sleep(PRESSURE_RECHECK) => {}
                            }
                        }
                    };
                    tokio::select! {
                        permit = waiting => match permit {
                            Some(permit) => permit,
                            None => break, // the semaphore is never closed
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                accepted = tcp.accept() => match accepted {
                    Ok(accepted) => {
                        backoff.reset();
                        accepted
                    }
                    Err(e) if is_per_connection(&e) => {
                        tracing::debug!(error = %e, "accept: connection gone before it was accepted");
                        continue;
                    }
                    Err(e) => {
                        let pause = backoff.next(&e);
                        tokio::select! {
                            () = tokio::time::sleep(pause) => continue,
                            () = &mut shutdown => break,
                        }
                    }
                },
                () = &mut shutdown => break,
            };
            // Finished connections leave their results in the set until reaped.
            while connections.try_join_next().is_some() {}
            let conn = Connection {
                builder: builder.clone(),
                app: app.clone(),
                options,
                activity: Arc::new(Mutex::new(Activity::new())),
                pressure: pressure.clone(),
                stop: stop_rx.clone(),
                stats: stats.clone(),
            };
            let open = OpenGuard::new(stats.clone());
            connections.spawn(async move {
                let _permit = permit;
                let _open = open;
                conn.run(stream, peer).await;
            });
        }

        // Closing the listening socket refuses new clients (and those still in the backlog) at
        // once rather than leaving them to time out.
        drop(tcp);
        let _ = stop_tx.send(());
        while connections.try_join_next().is_some() {}
        let open = connections.len();
        tracing::info!(open, "stopped accepting connections");
        let drained = tokio::time::timeout(options.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                grace_secs = options.shutdown_grace.as_secs_f64(),
                "requests still in flight after the shutdown grace period: closing their connections"
            );
            connections.shutdown().await;
        }
    }
}

/// Accept errors that concern one connection only (it was reset before we took it): retry at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Pause after an accept error that may persist (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): short
/// so that the loop resumes soon after descriptors free up, growing so that it does not spin.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_millis(100);

    fn reset(&mut self) {
        self.failures = 0;
    }

    fn next(&mut self, e: &io::Error) -> Duration {
        // One warning per run of failures: a descriptor shortage can last and must not flood the log.
        if self.failures == 0 {
            tracing::warn!(error = %e, "accept failed; retrying while serving open connections");
        } else {
            tracing::debug!(error = %e, failures = self.failures, "accept failed again");
        }
        let pause = Self::FIRST
            .saturating_mul(1 << self.failures.min(5))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        pause
    }
}

/// What a connection's watchdog needs to know, updated by its socket reads and its requests.
#[derive(Debug)]
struct Activity {
    /// Requests whose handler runs or whose response is still being sent.
    in_flight: usize,
    /// When `in_flight` last fell to zero (or the connection was accepted).
    idle_since: Instant,
    /// With no request in flight: when the head of the next request began (accept time for the
    /// first request). `None` while idle with nothing received.
    head_since: Option<Instant>,
    /// The client spoke HTTP/2. Its frames between requests (pings, window updates) are not a
    /// request head, so only the idle timeout applies between its requests.
    http2: bool,
    /// Whether the first bytes were looked at.
    sniffed: bool,
}

/// Why a watchdog closed its connection.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    Head,
    Idle,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            in_flight: 0,
            idle_since: now,
            head_since: Some(now),
            http2: false,
            sniffed: false,
        }
    }

    /// When the connection must be closed unless something happens first (none while busy).
    fn deadline(&self, options: &ListenerOptions) -> Option<(Instant, Expiry)> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match self.head_since {
            Some(since) => (since + options.header_read_timeout, Expiry::Head),
            None => (self.idle_since + options.idle_timeout, Expiry::Idle),
        })
    }

    fn on_read(&mut self, bytes: &[u8]) {
        if !self.sniffed {
            self.sniffed = true;
            self.http2 = bytes.starts_with(b"PRI * HTTP/2.0");
        }
        if self.in_flight == 0 && self.head_since.is_none() && !self.http2 {
            self.head_since = Some(Instant::now());
        }
    }
}

fn lock(activity: &Mutex<Activity>) -> std::sync::MutexGuard<'_, Activity> {
    activity.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One accepted connection and what it needs to serve it.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    options: ListenerOptions,
    activity: Arc<Mutex<Activity>>,
    pressure: Arc<Notify>,
    stop: watch::Receiver<()>,
    stats: Arc<ConnectionStats>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, peer: std::net::SocketAddr) {
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: self.activity.clone(),
        });
        let service = Service {
            app: self.app.clone(),
            activity: self.activity.clone(),
        };
        let conn = self.builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        // While busy there is no deadline; look again this often in case the connection went idle.
        let recheck = self
            .options
            .header_read_timeout
            .min(self.options.idle_timeout);
        loop {
            let deadline = lock(&self.activity).deadline(&self.options);
            let wake = deadline.map_or_else(|| Instant::now() + recheck, |(at, _)| at);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake) => {
                    if let Some((at, why)) = lock(&self.activity).deadline(&self.options)
                        && at <= Instant::now()
                    {
                        tracing::debug!(%peer, reason = ?why, "closing connection: timed out");
                        self.stats.timed_out.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
                () = self.pressure.notified() => {
                    let patience = PRESSURE_HEAD_PATIENCE.min(self.options.header_read_timeout);
                    let making_room = {
                        let a = lock(&self.activity);
                        a.in_flight == 0
                            && a.head_since.is_none_or(|since| since.elapsed() >= patience)
                    };
                    if making_room {
                        tracing::debug!(%peer, "closing connection with nothing in flight: connection cap reached");
                        return;
                    }
                }
                _ = self.stop.changed() => break,
            }
        }
        // Shutting down. Nothing in flight (idle, or half-way through a head): nothing to lose,
        // close now. Otherwise let hyper finish the requests in flight and close (HTTP/1 turns
        // keep-alive off; HTTP/2 sends GOAWAY); the serving loop cuts it at the end of the grace.
        if lock(&self.activity).in_flight == 0 {
            return;
        }
        conn.as_mut().graceful_shutdown();
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error while draining");
        }
    }
}

/// The router as a hyper service that keeps its connection's [`Activity`] up to date.
#[derive(Clone)]
struct Service {
    app: Router,
    activity: Arc<Mutex<Activity>>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send + 'static>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::begin(self.activity.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let res = app.oneshot(req.map(Body::new)).await?;
            Ok(res.map(|body| TrackedBody {
                inner: body,
                _in_flight: guard,
            }))
        })
    }
}

/// A request in flight, from its head until its response is sent (or abandoned).
struct InFlight(Arc<Mutex<Activity>>);

impl InFlight {
    fn begin(activity: Arc<Mutex<Activity>>) -> Self {
        {
            let mut a = lock(&activity);
            a.in_flight += 1;
            a.head_since = None;
        }
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = lock(&self.0);
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            a.idle_since = Instant::now();
        }
    }
}

/// A response body that keeps its request counted as in flight until hyper has sent or dropped it.
pub struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, reporting what it reads to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Mutex<Activity>>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            lock(&self.activity).on_read(&buf.filled()[before..]);
        }
        polled
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
