//! [`HttpClient`]: a VU's one keep-alive connection (opened, checked and reused per origin),
//! sending a request and reading its response through the [`codec`] within one deadline, and
//! retrying once when a reused connection turns out closed. Requests go out and responses
//! come in on the VU's own task; see [`HttpClient`] for why.

use super::codec::{self, Decoded, INLINE_BODY, READ_CHUNK, ResponseDecoder, encode_request};
use super::response::{Failure, HttpResponse, Timings, failed, ms};
use super::tls::{TlsSettings, describe_handshake_error};
use crate::error::ErrorKind;
use crate::net::stream::Stream;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method};
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[cfg(test)]
mod tests;

/// One destination: scheme + host + port. A VU keeps one connection per client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn matches(&self, url: &url::Url) -> bool {
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return false,
        };
        tls == self.tls
            && url.host_str() == Some(self.host.as_str())
            && url.port_or_known_default() == Some(self.port)
    }

    /// The Host header value: the port only when it is not the scheme's default.
    fn host_header(&self) -> String {
        if (self.tls && self.port == 443) || (!self.tls && self.port == 80) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn origin_of(url: &url::Url) -> Result<Origin, (ErrorKind, String)> {
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err((
                ErrorKind::Other,
                format!("unsupported scheme '{other}' (use http or https)"),
            ));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| (ErrorKind::Other, "URL has no host".to_string()))?
        .to_string();
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    Ok(Origin { tls, host, port })
}

/// A read buffer that grew past this for one large response is given back after it (so a VU
/// that once fetched a big list does not keep its buffer).
const KEEP_BUFFER: usize = 64 * 1024;
/// An idle keep-alive connection older than this is checked for a close before reuse.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);
/// The default of [`HttpClient::body_limit`]: 4 MiB of body kept per response.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

struct Conn {
    origin: Origin,
    stream: Stream,
    /// The Host header for this origin, built once per connection.
    host: Vec<u8>,
    /// Response bytes read and not yet consumed.
    rbuf: BytesMut,
    last_used: Instant,
}

/// A VU's HTTP/1.1 client.
///
/// Written for the load loop rather than taken from hyper: the request is serialized into one
/// reused buffer and written with one syscall, and the response is read and parsed inside the
/// VU's own task (hyper's client hands every request to a separate connection task through
/// channels, two task wake-ups per request). That roughly halves novaload's user CPU per
/// request; see bench/README.md.
pub struct HttpClient {
    conn: Option<Conn>,
    tls: Option<TlsSettings>,
    /// The deadline of a whole request, from connect to the last body byte.
    pub timeout: Duration,
    /// At most this many body bytes are kept per response (for checks and JSON); the rest is
    /// read, counted in `bytes_received` and dropped, and the response is marked
    /// `body_truncated`. 0 keeps no body at all (k6's `discardResponseBodies`).
    /// [`DEFAULT_BODY_LIMIT`] unless changed.
    pub body_limit: usize,
    user_agent: &'static str,
    /// The serialized request, reused across requests.
    wbuf: Vec<u8>,
    /// The request timeout timer, reused: rather than registering a timer per request, it
    /// stays armed for an earlier request's deadline and, when it fires before the current
    /// request's deadline, is re-armed for that one. Deadlines only move later, so it never
    /// fires late, and re-arming happens about once per timeout period instead of per request.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The largest read-buffer capacity and kept-body capacity seen after a read (tests
    /// check the memory bound against a live server with it).
    #[cfg(test)]
    peak_buffers: (usize, usize),
}

/// Byte counts and instants of one exchange (kept outside the future so a timeout keeps them).
#[derive(Default)]
struct Progress {
    sent: u64,
    received: u64,
    written_at: Option<Instant>,
    first_byte_at: Option<Instant>,
    /// The final response head arrived (for the timeout message).
    head_done: bool,
    /// Body bytes received so far (for the timeout message).
    body_bytes: u64,
    /// The read path found the deadline passed (the timer may not have had a chance to fire).
    deadline_passed: bool,
}

impl Progress {
    /// What a timed-out request had got to, for its failure message.
    fn timeout_message(&self, timeout: Duration) -> String {
        let timeout = humantime::format_duration(timeout);
        if self.written_at.is_none() {
            format!("no response within {timeout} (still connecting or sending the request)")
        } else if self.received == 0 {
            format!("no response within {timeout} (request sent, no response byte arrived)")
        } else if !self.head_done {
            format!(
                "no complete response within {timeout} (response head still arriving after {} bytes)",
                self.received
            )
        } else {
            format!(
                "no complete response within {timeout} (body still arriving after {} bytes)",
                self.body_bytes
            )
        }
    }
}

impl HttpClient {
    /// A client with no connection yet; `tls` is needed for https URLs. Keeps up to
    /// [`DEFAULT_BODY_LIMIT`] body bytes per response (see [`HttpClient::body_limit`]).
    pub fn new(tls: Option<TlsSettings>, timeout: Duration) -> Self {
        Self {
            conn: None,
            tls,
            timeout,
            body_limit: DEFAULT_BODY_LIMIT,
            user_agent: concat!("novaload/", env!("CARGO_PKG_VERSION")),
            wbuf: Vec::with_capacity(512),
            timer: None,
            #[cfg(test)]
            peak_buffers: (0, 0),
        }
    }

    /// Drops the connection (after a cancelled request its state is unknown).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    async fn connect(
        &mut self,
        origin: &Origin,
        t: &mut Timings,
    ) -> Result<(), (ErrorKind, String)> {
        let start = Instant::now();
        let addr = format!(
            "{}:{}",
            origin.host.trim_start_matches('[').trim_end_matches(']'),
            origin.port
        );
        let tcp = match TcpStream::connect(addr.as_str()).await {
            Ok(s) => s,
            Err(e) => return Err((ErrorKind::Connect, format!("connect {addr}: {e}"))),
        };
        let _ = tcp.set_nodelay(true);
        t.connecting = ms(start.elapsed());
        let stream = if origin.tls {
            let tls_start = Instant::now();
            let Some(tls) = &self.tls else {
                return Err((ErrorKind::Tls, "https URL but TLS is not configured".into()));
            };
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| (ErrorKind::Tls, format!("server name {}: {e}", origin.host)))?;
            let s = tls.connector.connect(name, tcp).await.map_err(|e| {
                let why = describe_handshake_error(&e);
                (ErrorKind::Tls, format!("TLS handshake with {addr}: {why}"))
            })?;
            t.tls_handshaking = ms(tls_start.elapsed());
            Stream::Tls(Box::new(s))
        } else {
            Stream::Plain(tcp)
        };
        self.conn = Some(Conn {
            host: origin.host_header().into_bytes(),
            origin: origin.clone(),
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            last_used: Instant::now(),
        });
        Ok(())
    }

    /// Sends one request and reads the body (keeping at most `body_limit` bytes of it). Never
    /// panics; transport failures come back as status 0 with an error kind. The timeout is a
    /// deadline for the whole request: connect, TLS, send and the last body byte.
    pub async fn send(
        &mut self,
        method: Method,
        url: &url::Url,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<Bytes>,
    ) -> HttpResponse {
        let mut t = Timings::default();
        let mut p = Progress::default();
        let body = body.unwrap_or_default();
        let started = Instant::now();
        let timeout = self.timeout;
        let deadline = started + timeout;
        let timer_deadline = tokio::time::Instant::from_std(deadline);
        let mut timer = match self.timer.take() {
            Some(mut t) => {
                if t.deadline() > timer_deadline {
                    t.as_mut().reset(timer_deadline);
                }
                t
            }
            None => Box::pin(tokio::time::sleep_until(timer_deadline)),
        };
        let outcome = {
            let exchange =
                self.send_with_retry(&method, url, headers, &body, deadline, &mut t, &mut p);
            tokio::pin!(exchange);
            // The timer ends a request that waits (nothing to read); a request whose reads keep
            // succeeding can use up tokio's cooperative budget so that the timer is never
            // polled with budget left, which is why the read path checks the deadline too.
            loop {
                tokio::select! {
                    biased;
                    r = &mut exchange => break Ok(r),
                    _ = timer.as_mut() => {
                        if tokio::time::Instant::now() >= timer_deadline {
                            break Err(());
                        }
                        timer.as_mut().reset(timer_deadline);
                    }
                }
            }
        };
        self.timer = Some(timer);
        let end = Instant::now();
        match outcome {
            Ok(Ok((response, start))) => {
                let written = p.written_at.unwrap_or(start).max(start);
                let first = p.first_byte_at.unwrap_or(end).clamp(written, end);
                t.sending = ms(written - start);
                t.waiting = ms(first - written);
                t.receiving = ms(end - first);
                t.duration = t.sending + t.waiting + t.receiving;
                HttpResponse {
                    status: response.status,
                    body: response.body,
                    body_truncated: response.truncated,
                    location: response.location,
                    timings: t,
                    error: None,
                    bytes_sent: p.sent,
                    bytes_received: p.received,
                    finished_at: end,
                }
            }
            Ok(Err((kind, message))) => {
                self.conn = None;
                t.duration = ms(end - started);
                let error = if p.deadline_passed {
                    (ErrorKind::Timeout, p.timeout_message(timeout))
                } else {
                    (kind, message)
                };
                failed(error, t, p.sent, p.received)
            }
            Err(()) => {
                self.conn = None;
                t.duration = ms(end - started);
                let message = p.timeout_message(timeout);
                failed((ErrorKind::Timeout, message), t, p.sent, p.received)
            }
        }
    }

    /// One exchange, repeated once on a new connection when a reused keep-alive connection
    /// turns out closed before any response byte (the server's idle timeout raced us) and the
    /// method is idempotent, as browsers and Go's client do. Returns the start of the exchange
    /// that answered.
    #[allow(clippy::too_many_arguments)]
    async fn send_with_retry(
        &mut self,
        method: &Method,
        url: &url::Url,
        headers: &[(HeaderName, HeaderValue)],
        body: &Bytes,
        deadline: Instant,
        t: &mut Timings,
        p: &mut Progress,
    ) -> Result<(Decoded, Instant), (ErrorKind, String)> {
        let mut retried = false;
        loop {
            let reused = self.ensure_connected(url, t).await?;
            let start = Instant::now();
            match self.exchange(method, url, headers, body, deadline, p).await {
                Ok(response) => return Ok((response, start)),
                Err(f) if f.before_response && reused && !retried && method.is_idempotent() => {
                    self.conn = None;
                    retried = true;
                    *p = Progress::default();
                }
                Err(f) => return Err((f.kind, f.message)),
            }
        }
    }

    /// Makes sure a live connection to `url`'s origin is open; true when an existing one is
    /// reused.
    async fn ensure_connected(
        &mut self,
        url: &url::Url,
        t: &mut Timings,
    ) -> Result<bool, (ErrorKind, String)> {
        if let Some(c) = &self.conn
            && c.origin.matches(url)
            && (c.last_used.elapsed() < IDLE_CHECK_AFTER || still_open(c.stream.tcp()))
        {
            return Ok(true);
        }
        let origin = origin_of(url)?;
        self.conn = None;
        self.connect(&origin, t).await?;
        Ok(false)
    }

    async fn exchange(
        &mut self,
        method: &Method,
        url: &url::Url,
        headers: &[(HeaderName, HeaderValue)],
        body: &Bytes,
        deadline: Instant,
        p: &mut Progress,
    ) -> Result<Decoded, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            // ensure_connected just opened it; kept as an error rather than a panic
            return Err(Failure {
                kind: ErrorKind::Connect,
                message: "no connection to send on".into(),
                before_response: false,
            });
        };
        // A small body rides in the head's buffer (one write); a large one (an OTLP export,
        // an uploaded file) is written from where it is rather than copied.
        let body_inline = body.len() <= INLINE_BODY;
        encode_request(
            &mut self.wbuf,
            method,
            url,
            &conn.host,
            self.user_agent,
            headers,
            body,
            body_inline,
        );
        conn.rbuf.clear();
        let mut written = conn.stream.write_all(&self.wbuf).await;
        if !body_inline && written.is_ok() {
            written = conn.stream.write_all(body).await;
        }
        if let Err(e) = written {
            return Err(Failure::io("sending request", e, true));
        }
        if let Err(e) = conn.stream.flush().await {
            return Err(Failure::io("sending request", e, true));
        }
        p.sent = (self.wbuf.len() + if body_inline { 0 } else { body.len() }) as u64;
        p.written_at = Some(Instant::now());

        let mut decoder = ResponseDecoder::new(*method == Method::HEAD, self.body_limit);
        let mut reads = 0u32;
        let response = loop {
            if let Some(response) = decoder.decode(&mut conn.rbuf)? {
                break response;
            }
            // Not complete after a read: check the deadline here, because reads that keep
            // succeeding can starve the timer (see `send`). The first read needs no check:
            // the timer had its chance while the request was sent.
            if reads > 0 {
                p.head_done = decoder.head_done();
                p.body_bytes = decoder.body_bytes(conn.rbuf.len());
                if Instant::now() >= deadline {
                    p.deadline_passed = true;
                    return Err(Failure {
                        kind: ErrorKind::Timeout,
                        message: String::new(), // replaced by Progress::timeout_message
                        before_response: false,
                    });
                }
            }
            reads = reads.saturating_add(1);
            let hint = decoder.read_hint(conn.rbuf.len());
            codec::prepare_read(&mut conn.rbuf, hint);
            let n = read_more(conn, p).await?;
            #[cfg(test)]
            {
                let (rbuf, kept) = self.peak_buffers;
                self.peak_buffers = (
                    rbuf.max(conn.rbuf.capacity()),
                    kept.max(decoder.kept_capacity()),
                );
            }
            if n == 0 {
                break decoder.eof(&mut conn.rbuf).map_err(|mut f| {
                    f.before_response = p.received == 0;
                    f
                })?;
            }
        };
        if response.keep_alive {
            conn.last_used = Instant::now();
            if conn.rbuf.capacity() > KEEP_BUFFER {
                conn.rbuf = BytesMut::with_capacity(READ_CHUNK);
            }
        } else {
            self.conn = None;
        }
        Ok(response)
    }
}

/// True when an idle connection has neither data nor a close pending: an idle HTTP/1.1
/// connection that became readable was closed (or sent garbage) by the server.
fn still_open(tcp: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Reads what is available (at most [`codec::MAX_READ`] bytes) into the connection's buffer,
/// which [`codec::prepare_read`] made room in; 0 at end of stream.
async fn read_more(conn: &mut Conn, p: &mut Progress) -> Result<usize, Failure> {
    let before = p.received == 0;
    match conn
        .stream
        .read_buf(&mut codec::read_target(&mut conn.rbuf))
        .await
    {
        Ok(n) => {
            if n > 0 {
                p.received += n as u64;
                p.first_byte_at.get_or_insert_with(Instant::now);
            }
            Ok(n)
        }
        Err(e) => Err(Failure::io("reading response", e, before)),
    }
}
