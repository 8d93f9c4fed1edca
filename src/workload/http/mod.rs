//! The HTTP client each VU owns: one keep-alive HTTP/1.1 connection (reconnecting as needed),
//! plain TCP or rustls TLS, with k6's timing breakdown. Its own small HTTP/1.1 codec (httparse
//! for the response head) rather than reqwest or hyper's client: reqwest hides connect/TLS/
//! first-byte times and adds a shared pool to the hot path, and hyper's client runs each
//! connection in a second task the request and response cross by channel.

use crate::error::ErrorKind;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// TLS settings shared by all VUs.
#[derive(Clone)]
pub struct TlsSettings {
    connector: tokio_rustls::TlsConnector,
    config: Arc<rustls::ClientConfig>,
}

impl TlsSettings {
    /// Web PKI roots, plus `cacert` (PEM) if given; `insecure` skips verification like k6's
    /// `--insecure-skip-tls-verify`.
    pub fn new(cacert: Option<&std::path::Path>, insecure: bool) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = cacert {
                let pem = std::fs::read(path)
                    .with_context(|| format!("--cacert {}: cannot read", path.display()))?;
                let mut added = 0;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.with_context(|| {
                        format!("--cacert {}: not a PEM certificate", path.display())
                    })?;
                    roots.add(cert).with_context(|| {
                        format!("--cacert {}: unusable certificate", path.display())
                    })?;
                    added += 1;
                }
                anyhow::ensure!(
                    added > 0,
                    "--cacert {}: no certificate found; give a PEM file with at least one CERTIFICATE block",
                    path.display()
                );
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let config = Arc::new(config);
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(config.clone()),
            config,
        })
    }
}

impl TlsSettings {
    /// The rustls configuration (the WebSocket client builds its connector from it).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Plain or TLS stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// k6's timing breakdown of one request, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub blocked: f64,
    pub connecting: f64,
    pub tls_handshaking: f64,
    pub sending: f64,
    pub waiting: f64,
    pub receiving: f64,
    /// sending + waiting + receiving
    pub duration: f64,
}

/// The outcome of one request. Transport failures have status 0 and an error.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Bytes,
    pub timings: Timings,
    pub error: Option<(ErrorKind, String)>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// When the response ended (or failed).
    pub finished_at: Instant,
}

impl HttpResponse {
    /// The body as JSON; None when it is not JSON (k6's `res.json()` with a selector gives
    /// undefined in that case).
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

/// Read buffer size for a response's first read; grown for larger bodies, and given back
/// after one (so a VU that once fetched a big list does not keep its buffer).
const READ_CHUNK: usize = 4 * 1024;
const KEEP_BUFFER: usize = 64 * 1024;
/// A response head larger than this is refused (protects the VU's memory).
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response; more is a protocol error.
const MAX_HEADERS: usize = 100;
/// An idle keep-alive connection older than this is checked for a close before reuse.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

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
    pub timeout: Duration,
    user_agent: &'static str,
    /// The serialized request, reused across requests.
    wbuf: Vec<u8>,
    /// The request timeout timer, reused: rather than registering a timer per request, it
    /// stays armed for an earlier request's deadline and, when it fires before the current
    /// request's deadline, is re-armed for that one. Deadlines only move later, so it never
    /// fires late, and re-arming happens about once per timeout period instead of per request.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How an exchange failed, and whether it is safe to retry on a new connection.
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
}

/// The parts of a response head the client acts on.
struct Head {
    status: u16,
    /// Bytes of the head in the read buffer.
    len: usize,
    framing: Framing,
    keep_alive: bool,
}

enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

impl HttpClient {
    pub fn new(tls: Option<TlsSettings>, timeout: Duration) -> Self {
        Self {
            conn: None,
            tls,
            timeout,
            user_agent: concat!("novaload/", env!("CARGO_PKG_VERSION")),
            wbuf: Vec::with_capacity(512),
            timer: None,
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
            let s = tls
                .connector
                .connect(name, tcp)
                .await
                .map_err(|e| (ErrorKind::Tls, format!("TLS handshake with {addr}: {e}")))?;
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

    /// Sends one request and reads the whole body. Never panics; transport failures come back
    /// as status 0 with an error kind. The timeout covers connect, TLS, send and receive.
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
        let deadline = tokio::time::Instant::from_std(started) + timeout;
        let mut timer = match self.timer.take() {
            Some(mut t) => {
                if t.deadline() > deadline {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let outcome = {
            let exchange = self.send_with_retry(&method, url, headers, &body, &mut t, &mut p);
            tokio::pin!(exchange);
            loop {
                tokio::select! {
                    biased;
                    r = &mut exchange => break Ok(r),
                    _ = timer.as_mut() => {
                        if tokio::time::Instant::now() >= deadline {
                            break Err(());
                        }
                        timer.as_mut().reset(deadline);
                    }
                }
            }
        };
        self.timer = Some(timer);
        let end = Instant::now();
        match outcome {
            Ok(Ok((status, body, start))) => {
                let written = p.written_at.unwrap_or(start).max(start);
                let first = p.first_byte_at.unwrap_or(end).clamp(written, end);
                t.sending = ms(written - start);
                t.waiting = ms(first - written);
                t.receiving = ms(end - first);
                t.duration = t.sending + t.waiting + t.receiving;
                HttpResponse {
                    status,
                    body,
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
                failed((kind, message), t, p.sent, p.received)
            }
            Err(_) => {
                self.conn = None;
                t.duration = ms(end - started);
                let message = format!("no response within {}", humantime::format_duration(timeout));
                failed((ErrorKind::Timeout, message), t, p.sent, p.received)
            }
        }
    }

    /// One exchange, repeated once on a new connection when a reused keep-alive connection
    /// turns out closed before any response byte (the server's idle timeout raced us) and the
    /// method is idempotent, as browsers and Go's client do. Returns the start of the exchange
    /// that answered.
    async fn send_with_retry(
        &mut self,
        method: &Method,
        url: &url::Url,
        headers: &[(HeaderName, HeaderValue)],
        body: &Bytes,
        t: &mut Timings,
        p: &mut Progress,
    ) -> Result<(u16, Bytes, Instant), (ErrorKind, String)> {
        let mut retried = false;
        loop {
            let reused = self.ensure_connected(url, t).await?;
            let start = Instant::now();
            match self.exchange(method, url, headers, body, p).await {
                Ok((status, body)) => return Ok((status, body, start)),
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
        p: &mut Progress,
    ) -> Result<(u16, Bytes), Failure> {
        let conn = self.conn.as_mut().expect("connected by ensure_connected");
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

        // Response head; 1xx informational heads are skipped.
        let head = loop {
            match parse_head(&conn.rbuf, method)? {
                Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                    conn.rbuf.advance(h.len);
                }
                Some(h) => break h,
                None => {
                    if conn.rbuf.len() >= MAX_HEAD {
                        return Err(Failure::protocol(format!(
                            "response head larger than {MAX_HEAD} bytes"
                        )));
                    }
                    let n = read_more(conn, p).await?;
                    if n == 0 {
                        return Err(Failure {
                            kind: ErrorKind::Connect,
                            message: "connection closed before a response".into(),
                            before_response: p.received == 0,
                        });
                    }
                }
            }
        };
        conn.rbuf.advance(head.len);

        let body = match head.framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(n) => {
                while conn.rbuf.len() < n {
                    conn.rbuf.reserve(n - conn.rbuf.len());
                    if read_more(conn, p).await? == 0 {
                        return Err(Failure::protocol(format!(
                            "connection closed after {} of {n} body bytes",
                            conn.rbuf.len()
                        )));
                    }
                }
                conn.rbuf.split_to(n).freeze()
            }
            Framing::Chunked => read_chunked(conn, p).await?,
            Framing::UntilClose => {
                while read_more(conn, p).await? > 0 {}
                conn.rbuf.split().freeze()
            }
        };
        let keep = head.keep_alive && !matches!(head.framing, Framing::UntilClose);
        if keep {
            conn.last_used = Instant::now();
            if conn.rbuf.capacity() > KEEP_BUFFER {
                conn.rbuf = BytesMut::with_capacity(READ_CHUNK);
            }
        } else {
            self.conn = None;
        }
        Ok((head.status, body))
    }
}

/// True when an idle connection has neither data nor a close pending: an idle HTTP/1.1
/// connection that became readable was closed (or sent garbage) by the server.
fn still_open(tcp: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Reads what is available into the connection's buffer; 0 at end of stream.
async fn read_more(conn: &mut Conn, p: &mut Progress) -> Result<usize, Failure> {
    if conn.rbuf.capacity() - conn.rbuf.len() < READ_CHUNK / 2 {
        conn.rbuf.reserve(READ_CHUNK);
    }
    let before = p.received == 0;
    match conn.stream.read_buf(&mut conn.rbuf).await {
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

/// Bodies up to this size are copied behind the request head and sent with it in one write.
const INLINE_BODY: usize = 16 * 1024;

/// Serializes a request head (and the body when `body_inline`) into `buf`. Workload headers
/// win over the defaults (Host, User-Agent); framing headers are always novaload's own
/// (Content-Length of `body`).
#[allow(clippy::too_many_arguments)]
fn encode_request(
    buf: &mut Vec<u8>,
    method: &Method,
    url: &url::Url,
    host: &[u8],
    user_agent: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: &Bytes,
    body_inline: bool,
) {
    use std::io::Write as _;
    // path and query straight from the URL's buffer
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let path = if path.is_empty() { "/" } else { path };
    buf.clear();
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(path.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &HeaderName| headers.iter().any(|(k, _)| k == name);
    if !has(&http::header::HOST) {
        buf.extend_from_slice(b"host: ");
        buf.extend_from_slice(host);
        buf.extend_from_slice(b"\r\n");
    }
    if !has(&http::header::USER_AGENT) {
        buf.extend_from_slice(b"user-agent: ");
        buf.extend_from_slice(user_agent.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    for (k, v) in headers {
        if k == http::header::CONTENT_LENGTH || k == http::header::TRANSFER_ENCODING {
            continue;
        }
        buf.extend_from_slice(k.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(v.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    let body_expected = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if !body.is_empty() || body_expected {
        let _ = write!(buf, "content-length: {}\r\n", body.len());
    }
    buf.extend_from_slice(b"\r\n");
    if body_inline {
        buf.extend_from_slice(body);
    }
}

/// Parses a response head at the start of `buf`; None when it is not complete yet.
fn parse_head(buf: &[u8], method: &Method) -> Result<Option<Head>, Failure> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Failure::protocol(format!("malformed response head: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let mut keep_alive = http11;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
            let n = v
                .parse::<usize>()
                .map_err(|_| Failure::protocol(format!("bad Content-Length '{v}'")))?;
            if length.is_some_and(|m| m != n) {
                return Err(Failure::protocol(
                    "conflicting Content-Length headers".into(),
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // chunked must be the final coding when present (RFC 9112 §6.1)
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let no_body =
        *method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive,
    }))
}

/// Decodes a chunked body from the connection's buffer, reading more as needed. Chunk
/// extensions and trailers are read and ignored.
async fn read_chunked(conn: &mut Conn, p: &mut Progress) -> Result<Bytes, Failure> {
    let mut body = BytesMut::new();
    let closed = || Failure::protocol("connection closed inside a chunked body".into());
    loop {
        // chunk-size [; ext] CRLF
        let line_end = loop {
            if let Some(i) = find_crlf(&conn.rbuf) {
                break i;
            }
            if conn.rbuf.len() > 4096 {
                return Err(Failure::protocol("chunk size line too long".into()));
            }
            if read_more(conn, p).await? == 0 {
                return Err(closed());
            }
        };
        let line = &conn.rbuf[..line_end];
        let size_hex = line
            .split(|b| *b == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        let size = std::str::from_utf8(size_hex)
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| {
                Failure::protocol(format!(
                    "bad chunk size '{}'",
                    String::from_utf8_lossy(size_hex)
                ))
            })?;
        conn.rbuf.advance(line_end + 2);
        if size == 0 {
            // trailer fields, then the empty line
            loop {
                match find_crlf(&conn.rbuf) {
                    Some(0) => {
                        conn.rbuf.advance(2);
                        return Ok(body.freeze());
                    }
                    Some(i) => conn.rbuf.advance(i + 2),
                    None => {
                        if read_more(conn, p).await? == 0 {
                            return Err(closed());
                        }
                    }
                }
            }
        }
        while conn.rbuf.len() < size + 2 {
            conn.rbuf.reserve(size + 2 - conn.rbuf.len());
            if read_more(conn, p).await? == 0 {
                return Err(closed());
            }
        }
        if &conn.rbuf[size..size + 2] != b"\r\n" {
            return Err(Failure::protocol("chunk not followed by CRLF".into()));
        }
        body.extend_from_slice(&conn.rbuf[..size]);
        conn.rbuf.advance(size + 2);
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn failed(e: (ErrorKind, String), timings: Timings, sent: u64, received: u64) -> HttpResponse {
    HttpResponse {
        status: 0,
        body: Bytes::new(),
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

        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let url: url::Url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let r = client().send(Method::GET, &url, &[], None).await;
        assert_eq!(r.error.unwrap().0, ErrorKind::Connect);
    }
}
