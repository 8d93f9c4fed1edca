//! The target's listening socket and HTTP/1.1 accept loop: one task per connection, graceful
//! shutdown, and the two timeouts that keep slowloris clients from holding connections forever.
//!
//! - **Header read** (`--header-read-timeout`): a request head must arrive completely within
//!   this long of its first byte. A new connection's clock starts at accept, so a client that
//!   connects and sends nothing is closed after it too.
//! - **Idle** (`--idle-timeout`): a keep-alive connection with no request for this long after
//!   its last response is closed.
//!
//! hyper's own `http1::Builder::header_read_timeout` is not used: its clock starts whenever the
//! connection waits for a head, which includes the idle time between keep-alive requests, so a
//! 10 s head timeout would also close every keep-alive connection idle for 10 s, and a longer
//! idle timeout could not exist. Instead the socket wrapper [`TimedStream`] and the service
//! wrapper note where the connection is ([`Phase`]) and a per-connection watchdog, polled in
//! the connection's own task, closes it when the phase's deadline passes.
//!
//! A request being served (from its parsed head until its response is ready) has no deadline:
//! injected latency and stalls may hold it legitimately. After a WebSocket upgrade (101) the
//! connection leaves this loop's hands entirely (the session has its own lifetime and
//! keepalive), so neither timeout applies to it.
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// The two connection timeouts (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Longest time from a request head's first byte (or from accept) to its last.
    pub header_read: Duration,
    /// Longest quiet time between a response and the next request's first byte.
    pub idle: Duration,
}

/// Where a connection is in its request cycle. Stored as a `u8` in [`ConnClock::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// A request head is arriving (or, on a new connection, awaited): the header deadline runs.
    Head = 0,
    /// A request is being served: no deadline.
    Busy = 1,
    /// Between a response and the next request: the idle deadline runs.
    Idle = 2,
    /// Answered 101: the connection is handed to a WebSocket session; no deadline.
    Upgraded = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Head,
            1 => Phase::Busy,
            2 => Phase::Idle,
            _ => Phase::Upgraded,
        }
    }
}

/// Why the watchdog closed a connection (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    HeaderRead,
    Idle,
}

/// Per-connection phase and the time it began, shared by the socket wrapper, the service and
/// the watchdog. All three run in the connection's one task, so the atomics never contend;
/// they are atomics only so the connection future is `Send`. The clock is read on phase
/// changes (a few times per request), never per byte.
struct ConnClock {
    /// When the connection was accepted; `since_ms` counts from here.
    base: Instant,
    phase: AtomicU8,
    /// Milliseconds from `base` to the start of the current phase (or, when idle, to the last
    /// write: a slow reader still taking its response is not idle).
    since_ms: AtomicU64,
}

impl ConnClock {
    fn new() -> ConnClock {
        ConnClock {
            base: Instant::now(),
            // The first head is awaited from accept: a silent new connection times out too.
            phase: AtomicU8::new(Phase::Head as u8),
            since_ms: AtomicU64::new(0),
        }
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn now_ms(&self) -> u64 {
        // u64 milliseconds last 584 million years; saturate rather than wrap regardless.
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self, phase: Phase) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Bytes arrived: on an idle connection they are the next request's head.
    fn on_read(&self) {
        if self.phase() == Phase::Idle {
            self.enter(Phase::Head);
        }
    }

    /// Bytes left: while idle that is the previous response still going out, so the idle
    /// clock restarts from the last progress.
    fn on_write(&self) {
        if self.phase() == Phase::Idle {
            self.enter(Phase::Idle);
        }
    }

    /// hyper parsed a complete head and called the service.
    fn on_request(&self) {
        // No timestamp: the busy phase has no deadline.
        self.phase.store(Phase::Busy as u8, Ordering::Relaxed);
    }

    /// The service produced its response.
    fn on_response(&self, status: StatusCode) {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            self.phase.store(Phase::Upgraded as u8, Ordering::Relaxed);
        } else {
            self.enter(Phase::Idle);
        }
    }

    /// Resolves when the current phase has outlasted its timeout. Sleeps on one timer, re-armed
    /// in place. The other parties never wake it, so it looks again at least once per header
    /// timeout: a head that starts while the watchdog sleeps towards a (longer) idle deadline
    /// is still caught on time.
    async fn watchdog(&self, timeouts: HttpTimeouts) -> Expired {
        let header_ms = duration_ms(timeouts.header_read);
        let idle_ms = duration_ms(timeouts.idle);
        let sleep = tokio::time::sleep_until(self.base);
        tokio::pin!(sleep);
        loop {
            let now = self.now_ms();
            let since = self.since_ms.load(Ordering::Relaxed);
            let wake_ms = match self.phase() {
                Phase::Head => {
                    let deadline = since.saturating_add(header_ms);
                    if now >= deadline {
                        return Expired::HeaderRead;
                    }
                    deadline
                }
                Phase::Idle => {
                    let deadline = since.saturating_add(idle_ms);
                    if now >= deadline {
                        return Expired::Idle;
                    }
                    deadline.min(now.saturating_add(header_ms))
                }
                Phase::Busy | Phase::Upgraded => now.saturating_add(header_ms),
            };
            // Bounded: the timeouts are validated to at most a day (TargetArgs::validate).
            sleep
                .as_mut()
                .reset(self.base + Duration::from_millis(wake_ms));
            sleep.as_mut().await;
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The accepted socket, reporting reads and writes to the connection's [`ConnClock`].
struct TimedStream {
    tcp: TcpStream,
    clock: Arc<ConnClock>,
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.on_read();
        }
        polled
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The target's TCP socket on `addr`, non-blocking for tokio. `reuse_port` lets the workers of
/// `--workers N` bind one port; `listen` is false for the parent's reservation of that port,
/// which must hold it (port 0 resolved once) without taking connections away from the workers.
pub(super) fn bind_listener(
    addr: SocketAddr,
    reuse_port: bool,
    listen: bool,
) -> anyhow::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .context("creating the listening socket")?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket
            .set_reuse_port(true)
            .context("SO_REUSEPORT (needed by --workers)")?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr} (--listen): is the port in use?"))?;
    if listen {
        socket.listen(4096)?;
    }
    Ok(socket)
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// requests in flight finish, closes idle connections and returns once every connection task
/// has ended (WebSocket sessions, already handed off, watch `shutdown` themselves).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: HttpTimeouts,
    shutdown: CancellationToken,
) {
    // Each connection task holds a sender; `recv` returns None once all of them are gone.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<Infallible>(1);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve_connection(
                    tcp,
                    router.clone(),
                    timeouts,
                    shutdown.clone(),
                    alive.clone(),
                ));
            }
            // The peer gave up before we accepted: nothing to do.
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Most likely EMFILE (out of file descriptors): accepting again at once would
                // spin; connections closing within a second free descriptors (as axum does).
                tracing::error!(error = %e, "target: accept failed; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    drop(alive);
    let _ = all_closed.recv().await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: HTTP/1.1 with upgrades, its watchdog and graceful shutdown.
async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    timeouts: HttpTimeouts,
    shutdown: CancellationToken,
    _alive: tokio::sync::mpsc::Sender<Infallible>,
) {
    let clock = Arc::new(ConnClock::new());
    let io = TokioIo::new(TimedStream {
        tcp,
        clock: clock.clone(),
    });
    let service_clock = clock.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // Per request: two reference-count increments, no allocation (axum::serve clones the
        // router per request the same way).
        let router = router.clone();
        let clock = service_clock.clone();
        clock.on_request();
        async move {
            let response = match router.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            clock.on_response(response.status());
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Replaced by the watchdog (see the module docs); hyper would otherwise default to 30 s
        // once a timer is set, and warn without one.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let watchdog = clock.watchdog(timeouts);
    tokio::pin!(watchdog);
    let mut shutting_down = false;
    // At most two iterations: the shutdown branch is disabled once taken.
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "target: connection ended with an error");
                }
                return;
            }
            expired = &mut watchdog => {
                tracing::debug!(?expired, "target: closing a connection past its timeout");
                return;
            }
            _ = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                // A head still arriving is not a request yet: close now rather than wait up
                // to a header timeout for it. Otherwise hyper finishes the response in hand
                // (or closes at once when idle).
                if clock.phase() == Phase::Head {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_request_cycle() {
        let c = ConnClock::new();
        assert_eq!(
            c.phase(),
            Phase::Head,
            "a new connection awaits its first head"
        );
        c.on_read();
        assert_eq!(c.phase(), Phase::Head);
        c.on_request();
        c.on_read(); // body bytes of the request being served
        assert_eq!(c.phase(), Phase::Busy);
        c.on_response(StatusCode::OK);
        assert_eq!(c.phase(), Phase::Idle);
        c.on_write();
        assert_eq!(c.phase(), Phase::Idle, "writing the response keeps it idle");
        c.on_read();
        assert_eq!(c.phase(), Phase::Head, "the next request's first byte");
        c.on_request();
        c.on_response(StatusCode::SWITCHING_PROTOCOLS);
        c.on_read();
        c.on_write();
        assert_eq!(
            c.phase(),
            Phase::Upgraded,
            "WebSocket traffic changes nothing"
        );
    }

    /// Real time (tokio's test-util clock is not enabled): short timeouts, loose upper bounds.
    #[tokio::test]
    async fn watchdog_fires_per_phase_deadline() {
        let t = HttpTimeouts {
            header_read: Duration::from_millis(100),
            idle: Duration::from_millis(2000),
        };
        let margin = Duration::from_millis(900);
        let c = ConnClock::new();
        let start = Instant::now();
        assert_eq!(c.watchdog(t).await, Expired::HeaderRead);
        let took = start.elapsed();
        assert!(
            took >= t.header_read && took < t.header_read + margin,
            "{took:?}"
        );

        let c = ConnClock::new();
        c.on_request();
        c.on_response(StatusCode::OK);
        let start = Instant::now();
        assert_eq!(c.watchdog(t).await, Expired::Idle);
        let took = start.elapsed();
        assert!(took >= t.idle && took < t.idle + margin, "{took:?}");

        // A head starting 300 ms into an idle period gets its own 100 ms, not the 2 s left of
        // the idle deadline.
        let c = Arc::new(ConnClock::new());
        c.on_request();
        c.on_response(StatusCode::OK);
        let start = Instant::now();
        let c2 = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c2.on_read();
        });
        assert_eq!(c.watchdog(t).await, Expired::HeaderRead);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(400) + margin,
            "{took:?}"
        );

        // Busy never expires.
        let c = ConnClock::new();
        c.on_request();
        let w = tokio::time::timeout(Duration::from_millis(800), c.watchdog(t)).await;
        assert!(w.is_err(), "a request being served has no deadline");
    }
}
