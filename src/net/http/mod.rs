//! The HTTP client each VU owns: one keep-alive HTTP/1.1 connection (reconnecting as needed),
//! plain TCP or rustls TLS, with k6's timing breakdown. Its own small HTTP/1.1 codec
//! ([`codec`]: httparse for the response head, a sans-IO body decoder) rather than reqwest or
//! hyper's client: reqwest hides connect/TLS/first-byte times and adds a shared pool to the hot
//! path, and hyper's client runs each connection in a second task the request and response
//! cross by channel.
//!
//! Owning the codec means owning its robustness against any server: no panic on any bytes,
//! no allocation of what a header claims, a timeout that is a deadline for the whole request,
//! and at most [`HttpClient::body_limit`] body bytes kept.

mod codec;
mod tls;

pub use tls::{TlsSettings, describe_handshake_error};

use crate::error::ErrorKind;
use bytes::{Bytes, BytesMut};
pub(crate) use codec::percent_decode_into;
use codec::{Decoded, INLINE_BODY, READ_CHUNK, ResponseDecoder, encode_request};
use http::{HeaderName, HeaderValue, Method};
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::stream::Stream;

/// k6's timing breakdown of one request, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Waiting for a connection (always 0: a VU owns its connection).
    pub blocked: f64,
    /// TCP connect.
    pub connecting: f64,
    /// TLS handshake.
    pub tls_handshaking: f64,
    /// Writing the request.
    pub sending: f64,
    /// From the request written to the first response byte.
    pub waiting: f64,
    /// From the first response byte to the last.
    pub receiving: f64,
    /// sending + waiting + receiving
    pub duration: f64,
}

/// The outcome of one request. Transport failures have status 0 and an error.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The HTTP status; 0 when the request failed before a complete response.
    pub status: u16,
    /// The body, or its first [`HttpClient::body_limit`] bytes (see `body_truncated`).
    pub body: Bytes,
    /// True when body bytes beyond [`HttpClient::body_limit`] were read and dropped (they
    /// are still counted in `bytes_received`).
    pub body_truncated: bool,
    /// The `Location` header of a 301, 302, 303, 307 or 308 response (as sent, possibly
    /// relative); None for any other status. The client does not follow redirects itself.
    pub location: Option<String>,
    /// k6's timing breakdown.
    pub timings: Timings,
    /// Why the request failed: the kind (a metric label) and a message for people (never
    /// containing the URL's credentials).
    pub error: Option<(ErrorKind, String)>,
    /// Request bytes written (head and body).
    pub bytes_sent: u64,
    /// Response bytes read, including body bytes dropped by the body limit.
    pub bytes_received: u64,
    /// When the response ended (or failed).
    pub finished_at: Instant,
}

impl HttpResponse {
    /// The body as JSON; None when it is not JSON (k6's `res.json()` with a selector gives
    /// undefined in that case). A truncated body is usually not valid JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

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

/// How an exchange failed, and whether it is safe to retry on a new connection.
#[derive(Debug)]
struct Failure {
    kind: ErrorKind,
    message: String,
    /// Nothing of a response arrived (a reused connection the server had closed).
    before_response: bool,
}

impl Failure {
    fn io(what: &str, e: io::Error, before_response: bool) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::InvalidData => ErrorKind::Protocol,
            _ => ErrorKind::Connect,
        };
        Self {
            kind,
            message: format!("{what}: {e}"),
            before_response,
        }
    }
    fn protocol(message: String) -> Self {
        Self {
            kind: ErrorKind::Protocol,
            message,
            before_response: false,
        }
    }
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
                let why = tls::describe_handshake_error(&e);
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn failed(e: (ErrorKind, String), timings: Timings, sent: u64, received: u64) -> HttpResponse {
    HttpResponse {
        status: 0,
        body: Bytes::new(),
        body_truncated: false,
        location: None,
        timings,
        error: Some(e),
        bytes_sent: sent,
        bytes_received: received,
        finished_at: Instant::now(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::net::TcpListener;

    /// What [`serve`] saw: its base URL, the request heads and how many connections it accepted.
    struct Served {
        url: url::Url,
        heads: Arc<std::sync::Mutex<Vec<String>>>,
        accepts: Arc<std::sync::atomic::AtomicUsize>,
    }

    /// A raw HTTP/1.1 server on 127.0.0.1:0: for each accepted connection, reads requests
    /// (head and Content-Length body) and writes what `answer(head, body)` returns, byte for
    /// byte, closing the connection after an answer marked `close`; `None` stops the server.
    async fn serve(
        mut answer: impl FnMut(&str, &[u8]) -> Option<(Vec<u8>, bool)> + Send + 'static,
    ) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (heads2, accepts2) = (heads.clone(), accepts.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                accepts2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.parse::<usize>().unwrap());
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
                    let reply = answer(&head, &body);
                    heads2.lock().unwrap().push(head);
                    let Some((bytes, close)) = reply else {
                        return;
                    };
                    s.write_all(&bytes).await.unwrap();
                    if close {
                        break;
                    }
                }
            }
        });
        Served {
            url: format!("http://{addr}/").parse().unwrap(),
            heads,
            accepts,
        }
    }

    /// [`serve`] answering the i-th request (over all connections) with `answers[i]`. Returns
    /// the base URL and the request heads it saw.
    async fn raw_server(
        answers: Vec<(&'static [u8], bool)>,
    ) -> (url::Url, Arc<std::sync::Mutex<Vec<String>>>) {
        let mut next = answers.into_iter();
        let served = serve(move |_, _| next.next().map(|(a, close)| (a.to_vec(), close))).await;
        (served.url, served.heads)
    }

    fn client() -> HttpClient {
        HttpClient::new(None, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn content_length_keep_alive_and_request_head() {
        let (url, seen) = raw_server(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
            (
                b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
                false,
            ),
        ])
        .await;
        let mut c = client();
        let r = c
            .send(Method::GET, &url.join("a?x=1").unwrap(), &[], None)
            .await;
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        let hdr = [(
            HeaderName::from_static("x-test"),
            HeaderValue::from_static("1"),
        )];
        let r = c
            .send(Method::POST, &url, &hdr, Some(Bytes::from_static(b"{}")))
            .await;
        assert_eq!((r.status, &r.body[..]), (201, &b"ok"[..]));
        assert_eq!(r.bytes_received, 45);
        let seen = seen.lock().unwrap();
        assert!(
            seen[0].starts_with("GET /a?x=1 HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains(&format!("host: 127.0.0.1:{}", url.port().unwrap())));
        assert!(
            !seen[0].contains("content-length"),
            "GET without body: {}",
            seen[0]
        );
        assert!(seen[1].contains("x-test: 1") && seen[1].contains("content-length: 2"));
        assert_eq!(r.bytes_sent as usize, seen[1].len() + 4 + 2);
    }

    #[tokio::test]
    async fn large_bodies_are_sent_whole_after_the_head_and_the_connection_stays_usable() {
        // answers each request with its body's length and byte sum
        let served = serve(|_, body| {
            let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
            let answer = format!("{} {sum}", body.len());
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            Some((resp.into_bytes(), false))
        })
        .await;
        let url = served.url.join("v1/traces").unwrap();
        let mut c = client();
        for size in [3 * 1024 * 1024 + 7, INLINE_BODY, INLINE_BODY + 1, 2] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
            let r = c
                .send(Method::POST, &url, &[], Some(Bytes::from(body)))
                .await;
            assert!(r.error.is_none(), "{size}: {:?}", r.error);
            assert_eq!(
                String::from_utf8_lossy(&r.body),
                format!("{size} {sum}"),
                "{size}"
            );
            assert!(r.bytes_sent as usize > size, "{size}: {}", r.bytes_sent);
        }
        assert_eq!(served.accepts.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let (url, _) = raw_server(vec![
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!", false),
        ])
        .await;
        let mut c = client();
        let r = c.send(Method::GET, &url, &[], None).await;
        assert_eq!(&r.body[..], b"hello, world", "{:?}", r.error);
        // the connection is still usable: the trailer was consumed exactly
        let r = c.send(Method::GET, &url, &[], None).await;
        assert_eq!(&r.body[..], b"!", "{:?}", r.error);
    }

    #[tokio::test]
    async fn informational_head_skipped_and_no_body_statuses() {
        let (url, _) = raw_server(vec![
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false),
        ])
        .await;
        let mut c = client();
        let r = c.send(Method::DELETE, &url, &[], None).await;
        assert_eq!((r.status, r.body.len()), (204, 0), "{:?}", r.error);
        // HEAD: Content-Length describes a body that is not sent
        let r = c.send(Method::HEAD, &url, &[], None).await;
        assert_eq!((r.status, r.body.len()), (200, 0), "{:?}", r.error);
    }

    #[tokio::test]
    async fn body_until_close_and_connection_close_reconnect() {
        let (url, _) = raw_server(vec![
            (b"HTTP/1.1 200 OK\r\n\r\nstreamed", true),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                true,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold", true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast", false),
        ])
        .await;
        let mut c = client();
        for want in [&b"streamed"[..], b"ok", b"old", b"last"] {
            let r = c.send(Method::GET, &url, &[], None).await;
            assert_eq!(&r.body[..], want, "{:?}", r.error);
            assert!(r.error.is_none());
        }
    }

    #[tokio::test]
    async fn stale_keep_alive_connection_is_retried_for_idempotent_methods() {
        // The first answer claims keep-alive but the server closes right after it.
        let (url, seen) = raw_server(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb", false),
        ])
        .await;
        let mut c = client();
        assert_eq!(&c.send(Method::GET, &url, &[], None).await.body[..], b"a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = c.send(Method::GET, &url, &[], None).await;
        assert_eq!(&r.body[..], b"b", "{:?}", r.error);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn malformed_and_truncated_responses_are_protocol_errors() {
        let (url, _) = raw_server(vec![(b"NOT HTTP\r\n\r\n", true)]).await;
        let r = client().send(Method::GET, &url, &[], None).await;
        assert_eq!(r.status, 0);
        assert_eq!(r.error.unwrap().0, ErrorKind::Protocol);

        let (url, _) = raw_server(vec![(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            true,
        )])
        .await;
        let r = client().send(Method::GET, &url, &[], None).await;
        let (kind, msg) = r.error.unwrap();
        assert_eq!(kind, ErrorKind::Protocol, "{msg}");
        assert!(msg.contains("5 of 10"), "{msg}");
    }

    #[tokio::test]
    async fn timeout_and_refused_connection() {
        // a server that accepts and never answers
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut c = HttpClient::new(None, Duration::from_millis(200));
        // a quick answer first, so the reused timer is armed for an earlier deadline and must
        // be re-armed for the hanging request's own
        let (quick, _) = raw_server(vec![(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
        )])
        .await;
        assert!(c.send(Method::GET, &quick, &[], None).await.error.is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let url: url::Url = format!("http://{addr}/").parse().unwrap();
        let r = c.send(Method::GET, &url, &[], None).await;
        assert_eq!(r.error.unwrap().0, ErrorKind::Timeout);
        assert!(
            (190.0..400.0).contains(&r.timings.duration),
            "times out after the timeout, not the earlier deadline: {}",
            r.timings.duration
        );
        hold.abort();

        // a bound socket that does not listen refuses connections, and holding it keeps the
        // port from being reused meanwhile
        let closed =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        closed
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let port = closed.local_addr().unwrap().as_socket().unwrap().port();
        let url: url::Url = format!("http://user:hunter2@127.0.0.1:{port}/")
            .parse()
            .unwrap();
        let r = client().send(Method::GET, &url, &[], None).await;
        let (kind, message) = r.error.unwrap();
        assert_eq!(kind, ErrorKind::Connect, "{message}");
        assert!(
            message.starts_with(&format!("connect 127.0.0.1:{port}: "))
                && message.contains("refused"),
            "the errno text: {message}"
        );
        assert!(
            !message.contains("hunter2"),
            "no password in messages: {message}"
        );
    }

    #[tokio::test]
    async fn absurd_lengths_fail_the_request_with_a_reason_and_the_client_recovers() {
        let (url, _) = raw_server(vec![
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\nabc",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
        ])
        .await;
        let mut c = client();
        let r = c.send(Method::GET, &url, &[], None).await;
        let (kind, message) = r.error.unwrap();
        assert_eq!((r.status, kind), (0, ErrorKind::Protocol), "{message}");
        assert!(
            message.contains("Content-Length 1000000000000000000 exceeds"),
            "{message}"
        );
        let r = c.send(Method::GET, &url, &[], None).await;
        let (kind, message) = r.error.unwrap();
        assert_eq!(kind, ErrorKind::Protocol, "{message}");
        assert!(
            message.contains("chunk size 'ffffffffffffffff' too large"),
            "{message}"
        );
        // the failed connections were dropped; a new one works
        let r = c.send(Method::GET, &url, &[], None).await;
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]), "{:?}", r.error);
    }

    /// A server on 127.0.0.1:0 (on its own thread, so it writes while the client's runtime
    /// is busy) that answers the first request on each connection with `head` and then body
    /// bytes as fast as the client takes them, for at most 10 s.
    fn endless_server(head: &'static [u8], chunked: bool) -> url::Url {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let mut piece = Vec::new();
            if chunked {
                piece.extend_from_slice(b"4000\r\n");
            }
            piece.extend(std::iter::repeat_n(b'x', 0x4000));
            if chunked {
                piece.extend_from_slice(b"\r\n");
            }
            let until = Instant::now() + Duration::from_secs(10);
            if s.write_all(head).is_err() {
                return;
            }
            while Instant::now() < until && s.write_all(&piece).is_ok() {}
        });
        url
    }

    /// The timeout is a deadline even while body bytes keep arriving (reads that always
    /// succeed must not starve the timer), and streaming never buffers more than the bound.
    async fn endless_body_times_out_on_time(head: &'static [u8], chunked: bool) {
        let url = endless_server(head, chunked);
        let mut c = HttpClient::new(None, Duration::from_secs(1));
        let started = Instant::now();
        let r = c.send(Method::GET, &url, &[], None).await;
        let took = started.elapsed();
        let (kind, message) = r.error.unwrap();
        assert_eq!(kind, ErrorKind::Timeout, "{message}");
        assert!(
            took < Duration::from_millis(1100),
            "a 1 s timeout took {took:?}: {message}"
        );
        assert!(
            message.starts_with("no complete response within 1s (body still arriving after "),
            "{message}"
        );
        assert!(
            r.bytes_received > DEFAULT_BODY_LIMIT as u64,
            "{}",
            r.bytes_received
        );
        let (rbuf, kept) = c.peak_buffers;
        assert!(
            rbuf <= 2 * (codec::MAX_HEAD + codec::MAX_READ),
            "read buffer grew to {rbuf}"
        );
        assert!(kept <= DEFAULT_BODY_LIMIT, "kept {kept} body bytes");
    }

    #[tokio::test]
    async fn endless_chunked_body_times_out_on_time_with_bounded_memory() {
        endless_body_times_out_on_time(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        )
        .await;
    }

    #[tokio::test]
    async fn endless_body_of_a_huge_length_times_out_on_time_with_bounded_memory() {
        endless_body_times_out_on_time(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n",
            false,
        )
        .await;
    }

    #[tokio::test]
    async fn endless_body_until_close_times_out_on_time_with_bounded_memory() {
        endless_body_times_out_on_time(b"HTTP/1.1 200 OK\r\n\r\n", false).await;
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_truncated_and_the_connection_stays_usable() {
        const LEN: usize = 300_000;
        let body: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let mut by_length =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes();
        by_length.extend_from_slice(&body);
        let mut by_chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(70_000) {
            by_chunks.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            by_chunks.extend_from_slice(piece);
            by_chunks.extend_from_slice(b"\r\n");
        }
        by_chunks.extend_from_slice(b"0\r\n\r\n");
        let mut answers = vec![
            by_length.clone(),
            by_chunks.clone(),
            by_length.clone(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast".to_vec(),
        ]
        .into_iter();
        let served = serve(move |_, _| answers.next().map(|a| (a, false))).await;
        let mut c = client();
        c.body_limit = 1000;
        for (name, wire) in [("content-length", &by_length), ("chunked", &by_chunks)] {
            let r = c.send(Method::GET, &served.url, &[], None).await;
            assert!(r.error.is_none(), "{name}: {:?}", r.error);
            assert_eq!(&r.body[..], &body[..1000], "{name}");
            assert!(r.body_truncated, "{name}");
            assert_eq!(
                r.bytes_received,
                wire.len() as u64,
                "{name}: every byte is read"
            );
        }
        // 0 keeps no body at all
        c.body_limit = 0;
        let r = c.send(Method::GET, &served.url, &[], None).await;
        assert_eq!(
            (r.status, r.body.len(), r.body_truncated),
            (200, 0, true),
            "{:?}",
            r.error
        );
        c.body_limit = DEFAULT_BODY_LIMIT;
        let r = c.send(Method::GET, &served.url, &[], None).await;
        assert_eq!(
            (&r.body[..], r.body_truncated),
            (&b"last"[..], false),
            "{:?}",
            r.error
        );
        assert_eq!(
            served.accepts.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "all four on one keep-alive connection"
        );
    }

    #[tokio::test]
    async fn url_credentials_are_sent_as_basic_auth() {
        let (url, seen) = raw_server(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        ])
        .await;
        let port = url.port().unwrap();
        let with_credentials: url::Url = format!("http://alice:s%3Acret@127.0.0.1:{port}/x")
            .parse()
            .unwrap();
        let mut c = client();
        let r = c.send(Method::GET, &with_credentials, &[], None).await;
        assert!(r.error.is_none(), "{:?}", r.error);
        let own = [(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        )];
        let r = c.send(Method::GET, &with_credentials, &own, None).await;
        assert!(r.error.is_none(), "{:?}", r.error);
        let seen = seen.lock().unwrap();
        // base64("alice:s:cret")
        assert!(
            seen[0].contains("\r\nauthorization: Basic YWxpY2U6czpjcmV0"),
            "{}",
            seen[0]
        );
        assert!(seen[0].starts_with("GET /x HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[1].contains("authorization: Bearer abc") && !seen[1].contains("Basic"));
    }

    #[tokio::test]
    async fn location_of_a_redirect() {
        let (url, _) = raw_server(vec![
            (
                b"HTTP/1.1 302 Found\r\nLocation: /elsewhere?x=1\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nLocation: /ignored\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
        ])
        .await;
        let mut c = client();
        let r = c.send(Method::GET, &url, &[], None).await;
        assert_eq!(r.status, 302, "{:?}", r.error);
        assert_eq!(r.location.as_deref(), Some("/elsewhere?x=1"));
        let r = c.send(Method::GET, &url, &[], None).await;
        assert_eq!((r.status, r.location), (200, None), "{:?}", r.error);
    }
}
