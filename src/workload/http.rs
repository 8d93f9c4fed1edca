//! The HTTP client each VU owns: one keep-alive HTTP/1.1 connection (reconnecting as needed),
//! plain TCP or rustls TLS, with k6's timing breakdown. A hyper connection rather than reqwest
//! because reqwest hides connect/TLS/first-byte times and adds a shared pool to the hot path.

use crate::error::ErrorKind;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// Bytes moved and when the last request byte was written (for k6's `sending` time).
#[derive(Default)]
pub struct IoCounters {
    pub written: AtomicU64,
    pub read: AtomicU64,
    last_write_ns: AtomicU64,
    base: std::sync::OnceLock<Instant>,
}

impl IoCounters {
    fn base(&self) -> Instant {
        *self.base.get_or_init(Instant::now)
    }
    fn mark_write(&self) {
        let ns = self.base().elapsed().as_nanos() as u64;
        self.last_write_ns.store(ns, Ordering::Relaxed);
    }
    fn last_write(&self) -> Instant {
        self.base() + Duration::from_nanos(self.last_write_ns.load(Ordering::Relaxed))
    }
}

/// Plain or TLS stream, counting bytes.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

pub struct CountingIo {
    inner: Stream,
    counters: Arc<IoCounters>,
}

impl CountingIo {
    pub fn new(inner: Stream, counters: Arc<IoCounters>) -> Self {
        Self { inner, counters }
    }
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = match &mut this.inner {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let n = buf.filled().len() - before;
        if n > 0 {
            this.counters.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = match &mut this.inner {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = &r {
            this.counters
                .written
                .fetch_add(*n as u64, Ordering::Relaxed);
            this.counters.mark_write();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = match &mut this.inner {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(n)) = &r {
            this.counters
                .written
                .fetch_add(*n as u64, Ordering::Relaxed);
            this.counters.mark_write();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
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
}

struct Conn {
    origin: Origin,
    /// The Host header for this origin, built once per connection.
    host: HeaderValue,
    sender: SendRequest<Full<Bytes>>,
    counters: Arc<IoCounters>,
}

/// A VU's HTTP client.
pub struct HttpClient {
    conn: Option<Conn>,
    tls: Option<TlsSettings>,
    pub timeout: Duration,
    user_agent: HeaderValue,
}

impl HttpClient {
    pub fn new(tls: Option<TlsSettings>, timeout: Duration) -> Self {
        Self {
            conn: None,
            tls,
            timeout,
            user_agent: HeaderValue::from_static(concat!("novaload/", env!("CARGO_PKG_VERSION"))),
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
        let tcp = match tokio::time::timeout(self.timeout, TcpStream::connect(addr.as_str())).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err((ErrorKind::Connect, format!("connect {addr}: {e}"))),
            Err(_) => return Err((ErrorKind::Timeout, format!("connect {addr}: timed out"))),
        };
        let _ = tcp.set_nodelay(true);
        t.connecting = start.elapsed().as_secs_f64() * 1000.0;
        let stream = if origin.tls {
            let tls_start = Instant::now();
            let Some(tls) = &self.tls else {
                return Err((ErrorKind::Tls, "https URL but TLS is not configured".into()));
            };
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| (ErrorKind::Tls, format!("server name {}: {e}", origin.host)))?;
            let s = match tokio::time::timeout(self.timeout, tls.connector.connect(name, tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err((ErrorKind::Tls, format!("TLS handshake with {addr}: {e}")));
                }
                Err(_) => {
                    return Err((
                        ErrorKind::Timeout,
                        format!("TLS handshake with {addr}: timed out"),
                    ));
                }
            };
            t.tls_handshaking = tls_start.elapsed().as_secs_f64() * 1000.0;
            Stream::Tls(Box::new(s))
        } else {
            Stream::Plain(tcp)
        };
        let counters = Arc::new(IoCounters::default());
        let io = TokioIo::new(CountingIo::new(stream, counters.clone()));
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| {
                (
                    ErrorKind::Connect,
                    format!("HTTP handshake with {addr}: {e}"),
                )
            })?;
        tokio::spawn(async move {
            // The connection task ends when the sender is dropped or the peer closes.
            let _ = conn.await;
        });
        let host = if (origin.tls && origin.port == 443) || (!origin.tls && origin.port == 80) {
            origin.host.clone()
        } else {
            format!("{}:{}", origin.host, origin.port)
        };
        self.conn = Some(Conn {
            host: HeaderValue::from_str(&host)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            origin: origin.clone(),
            sender,
            counters,
        });
        Ok(())
    }

    /// Sends one request and reads the whole body. Never panics; transport failures come back
    /// as status 0 with an error kind.
    pub async fn send(
        &mut self,
        method: Method,
        url: &url::Url,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<Bytes>,
    ) -> HttpResponse {
        let mut t = Timings::default();
        // the common case, the same origin as the open connection, costs no allocation
        let reuse = matches!(&self.conn, Some(c) if c.origin.matches(url) && !c.sender.is_closed());
        if !reuse {
            let origin = match origin_of(url) {
                Ok(o) => o,
                Err(e) => return failed(e, t, 0, 0),
            };
            self.conn = None;
            if let Err(e) = self.connect(&origin, &mut t).await {
                return failed(e, t, 0, 0);
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        // path and query straight from the URL's buffer: no allocation per request
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(h) = builder.headers_mut() {
            h.insert(http::header::HOST, conn.host.clone());
            h.insert(http::header::USER_AGENT, self.user_agent.clone());
            for (k, v) in headers {
                h.insert(k.clone(), v.clone());
            }
        }
        let req = match builder.body(Full::new(body.unwrap_or_default())) {
            Ok(r) => r,
            Err(e) => {
                return failed(
                    (ErrorKind::Other, format!("building request: {e}")),
                    t,
                    0,
                    0,
                );
            }
        };
        let sent0 = conn.counters.written.load(Ordering::Relaxed);
        let read0 = conn.counters.read.load(Ordering::Relaxed);
        let start = Instant::now();
        let exchange = async {
            if let Err(e) = conn.sender.ready().await {
                return Err((ErrorKind::Connect, format!("connection not ready: {e}")));
            }
            let resp = conn
                .sender
                .send_request(req)
                .await
                .map_err(|e| (classify_hyper(&e), format!("request failed: {e}")))?;
            let headers_at = Instant::now();
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| (ErrorKind::Protocol, format!("reading body: {e}")))?
                .to_bytes();
            Ok((status, headers_at, body))
        };
        let result = tokio::time::timeout(self.timeout, exchange).await;
        let end = Instant::now();
        let sent = conn.counters.written.load(Ordering::Relaxed) - sent0;
        let received = conn.counters.read.load(Ordering::Relaxed) - read0;
        match result {
            Ok(Ok((status, headers_at, body))) => {
                let last_write = conn.counters.last_write().clamp(start, headers_at);
                t.sending = ms(last_write - start);
                t.waiting = ms(headers_at - last_write);
                t.receiving = ms(end - headers_at);
                t.duration = t.sending + t.waiting + t.receiving;
                HttpResponse {
                    status,
                    body,
                    timings: t,
                    error: None,
                    bytes_sent: sent,
                    bytes_received: received,
                    finished_at: end,
                }
            }
            Ok(Err(e)) => {
                self.conn = None;
                t.duration = ms(end - start);
                failed(e, t, sent, received)
            }
            Err(_) => {
                self.conn = None;
                t.duration = ms(end - start);
                failed(
                    (
                        ErrorKind::Timeout,
                        format!(
                            "no response within {}",
                            humantime::format_duration(self.timeout)
                        ),
                    ),
                    t,
                    sent,
                    received,
                )
            }
        }
    }
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

fn classify_hyper(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        ErrorKind::Connect
    } else if e.is_parse() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Other
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
