//! A hostile HTTP/1.1 server for `hostile.rs`: raw TCP (or rustls) on 127.0.0.1 port 0,
//! answering by request path with the malformed, endless or silent answers a load tester must
//! survive. It runs on its own small tokio runtime so the tests themselves stay plain blocking
//! `#[test]`s that wait on a novaload subprocess; dropping the server stops every task.
//!
//! Paths (mode [`Behaviour::ByPath`]):
//! - `/absurd-length`: `Content-Length: 1000000000000000000`, a few bytes, then held open.
//! - `/huge-chunk`: chunked, chunk size line `ffffffffffffffff`, a few bytes, then held open.
//! - `/endless`: chunked, 64 KiB chunks until the client closes (or [`ENDLESS_FOR`]).
//! - `/r/N` → `302 Location: /r/N-1`; `/r/0` → `302 Location: /ok`; `/loop` → `302` to itself.
//! - `/ok` → `200 ok`; `/500` → `500`; `/auth` → 200 only with Basic `user:p@ss`, else 401.
//! - `/hang`: the request is read and never answered.
//! - anything else: `404`.
//!
//! Well-formed answers carry a Content-Length and keep the connection alive.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// The `Content-Length` of `/absurd-length`: ~1 EB, far beyond any memory.
pub const ABSURD_CONTENT_LENGTH: &str = "1000000000000000000";
/// The chunk size line of `/huge-chunk`: u64::MAX, which overflows any size arithmetic.
pub const HUGE_CHUNK_SIZE_LINE: &str = "ffffffffffffffff";
/// `Authorization` value `/auth` accepts: `Basic base64("user:p@ss")`.
pub const EXPECTED_AUTHORIZATION: &str = "Basic dXNlcjpwQHNz";
/// How long `/endless` writes before giving up on a client that never closes.
pub const ENDLESS_FOR: Duration = Duration::from_secs(30);
/// How long `/absurd-length` and `/huge-chunk` hold the connection after their few bytes
/// (a correct client has closed it long before).
pub const MALFORMED_HOLD: Duration = Duration::from_secs(5);
/// Upper bound on any one connection's life: a client that never closes cannot keep a task
/// alive beyond the test's own 60 s kill bound.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// Upper bound on the accept loop's life (the whole test file is meant to take < 2 minutes).
const SERVER_LIFETIME: Duration = Duration::from_secs(180);
/// Connections accepted at most by one server (a client failing in a tight loop reconnects
/// often; this is far above what any case needs and keeps the loop bounded in count).
const MAX_CONNECTIONS: u64 = 1_000_000;
/// Requests served at most on one keep-alive connection.
const MAX_REQUESTS_PER_CONNECTION: u64 = 10_000_000;
/// A request head larger than this is refused by closing the connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A request body larger than this is not read: the connection is closed after the answer.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Size of one `/endless` chunk.
const ENDLESS_CHUNK_BYTES: usize = 64 * 1024;

/// What the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Chosen by request path (see the module docs).
    ByPath,
    /// Every request, whatever its path, gets the `/huge-chunk` answer (the api workload test:
    /// its health check and every `/api/v1/...` request meet the overflowing chunk size).
    HugeChunkEverywhere,
    /// Accept each connection and close it at once without reading (a database port that
    /// refuses to talk).
    AcceptAndClose,
}

/// A running hostile server. Dropping it shuts its runtime down, ending every connection.
pub struct HostileServer {
    /// Where it listens (always 127.0.0.1).
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HostileServer {
    /// Plain-TCP server with the given behaviour.
    pub fn start(behaviour: Behaviour) -> Self {
        Self::start_inner(behaviour, None)
    }

    /// TLS server (rustls) answering by path, with the PEM certificate chain and key given.
    pub fn start_tls(cert_pem: &Path, key_pem: &Path) -> Self {
        let certs: Vec<_> = rustls_pemfile::certs(
            &mut &std::fs::read(cert_pem).expect("reading the test certificate")[..],
        )
        .collect::<Result<_, _>>()
        .expect("parsing the test certificate");
        let key =
            rustls_pemfile::private_key(&mut &std::fs::read(key_pem).expect("reading the key")[..])
                .expect("parsing the test key")
                .expect("the key file holds a private key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("rustls accepts the test certificate and key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_inner(Behaviour::ByPath, Some(acceptor))
    }

    fn start_inner(behaviour: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        // one worker: the server must not take both cores from the novaload under test
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hostile-server")
            .enable_all()
            .build()
            .expect("building the hostile server's runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        // the listener moves into the accept loop and lives as long as the server
        runtime.spawn(accept_loop(listener, behaviour, tls));
        Self {
            addr,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // do not wait for held connections (`/hang`, `/endless`): they end with the runtime
            rt.shutdown_background();
        }
    }
}

/// Writes the certificate a NovaCron developer makes first (self-signed, CA:TRUE by default,
/// SAN localhost and 127.0.0.1) into `dir` with the `openssl` command line, and returns
/// `(certificate, key)` paths.
pub fn self_signed_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("c.pem");
    let key = dir.join("k.pem");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .output()
        .expect("running `openssl req` (install openssl to run the TLS case)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

async fn accept_loop(
    listener: TcpListener,
    behaviour: Behaviour,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let born = Instant::now();
    for _ in 0..MAX_CONNECTIONS {
        if born.elapsed() > SERVER_LIFETIME {
            return;
        }
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // out of descriptors while a client reconnects in a tight loop: let held
                // connections end instead of spinning
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if behaviour == Behaviour::AcceptAndClose {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, async move {
                match tls {
                    Some(acceptor) => {
                        // novaload's preflight (a bare TCP connect) and refused handshakes
                        // (the untrusted-certificate case) end here
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve_connection(stream, behaviour).await;
                        }
                    }
                    None => serve_connection(tcp, behaviour).await,
                }
            })
            .await;
        });
    }
}

/// The parts of a request head the answers depend on.
struct RequestHead {
    path: String,
    authorization: Option<String>,
    content_length: usize,
    chunked: bool,
    wants_close: bool,
    head_len: usize,
}

enum HeadParse {
    Complete(RequestHead),
    Partial,
    Invalid,
}

fn parse_head(buf: &[u8]) -> HeadParse {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return HeadParse::Partial,
        Err(_) => return HeadParse::Invalid,
    };
    let mut head = RequestHead {
        path: req.path.unwrap_or("/").to_string(),
        authorization: None,
        content_length: 0,
        chunked: false,
        wants_close: req.version == Some(0),
        head_len,
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        if h.name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(n) => head.content_length = n,
                Err(_) => return HeadParse::Invalid,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.wants_close = value.eq_ignore_ascii_case("close");
        }
    }
    HeadParse::Complete(head)
}

/// Reads one request head into `buf` (which may already hold bytes of it). None: the client
/// closed, sent garbage, or sent a head larger than [`MAX_HEAD_BYTES`].
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<RequestHead> {
    let mut chunk = [0u8; 8192];
    // each pass reads at least one byte or returns: bounded by MAX_HEAD_BYTES passes
    for _ in 0..=MAX_HEAD_BYTES {
        match parse_head(buf) {
            HeadParse::Complete(head) => return Some(head),
            HeadParse::Invalid => return None,
            HeadParse::Partial if buf.len() > MAX_HEAD_BYTES => return None,
            HeadParse::Partial => {}
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    None
}

/// Drops the request's head and Content-Length body from `buf`, reading what is missing.
/// False: the body could not be consumed (too large, chunked, or the client went away), so
/// the connection must close after the answer.
async fn consume_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    head: &RequestHead,
) -> bool {
    buf.drain(..head.head_len.min(buf.len()));
    if head.chunked || head.content_length > MAX_BODY_BYTES {
        return false;
    }
    let mut chunk = [0u8; 8192];
    // each pass reads at least one byte: bounded by the body size
    for _ in 0..=MAX_BODY_BYTES {
        if buf.len() >= head.content_length {
            buf.drain(..head.content_length);
            return true;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    false
}

/// Reads (and discards) until the client closes the connection or `max` has passed.
async fn hold_until_closed<S: AsyncRead + Unpin>(stream: &mut S, max: Duration) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(max, async {
        // a client that keeps sending is still bounded by `max`; the count bounds the loop too
        for _ in 0..1_000_000u32 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// One well-formed answer with a Content-Length body.
fn simple(status: u16, reason: &str, extra_headers: &str, body: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra_headers}{connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn redirect(location: &str, close: bool) -> Vec<u8> {
    simple(
        302,
        "Found",
        &format!("Location: {location}\r\n"),
        "",
        close,
    )
}

/// Serves requests on one connection until it closes, an answer ends it, or the bound.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, behaviour: Behaviour) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let body_consumed = consume_request(&mut stream, &mut buf, &head).await;
        let close = head.wants_close || !body_consumed;
        if behaviour == Behaviour::HugeChunkEverywhere {
            huge_chunk(&mut stream).await;
            return;
        }
        let path = head.path.split('?').next().unwrap_or("");
        let answer = match path {
            "/absurd-length" => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {ABSURD_CONTENT_LENGTH}\r\n\r\nsome bytes"
                );
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    let _ = stream.flush().await;
                    hold_until_closed(&mut stream, MALFORMED_HOLD).await;
                }
                return;
            }
            "/huge-chunk" => {
                huge_chunk(&mut stream).await;
                return;
            }
            "/endless" => {
                endless(&mut stream).await;
                return;
            }
            "/hang" => {
                hold_until_closed(&mut stream, CONNECTION_DEADLINE).await;
                return;
            }
            "/ok" => simple(200, "OK", "", "ok", close),
            "/500" => simple(500, "Internal Server Error", "", "internal error", close),
            "/loop" => redirect("/loop", close),
            "/auth" => {
                if head.authorization.as_deref() == Some(EXPECTED_AUTHORIZATION) {
                    simple(200, "OK", "", "welcome", close)
                } else {
                    simple(
                        401,
                        "Unauthorized",
                        "WWW-Authenticate: Basic realm=\"hostile\"\r\n",
                        "unauthorized",
                        close,
                    )
                }
            }
            p => match p.strip_prefix("/r/").map(str::parse::<u64>) {
                Some(Ok(0)) => redirect("/ok", close),
                Some(Ok(n)) => redirect(&format!("/r/{}", n - 1), close),
                _ => simple(404, "Not Found", "", "not found", close),
            },
        };
        if stream.write_all(&answer).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// `200` chunked whose first chunk claims u64::MAX bytes, then a few bytes, then held.
async fn huge_chunk<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{HUGE_CHUNK_SIZE_LINE}\r\nsome bytes"
    );
    if stream.write_all(answer.as_bytes()).await.is_ok() && stream.flush().await.is_ok() {
        hold_until_closed(stream, MALFORMED_HOLD).await;
    }
}

/// `200` chunked, 64 KiB chunks until the client stops reading or [`ENDLESS_FOR`] passes.
async fn endless<S: AsyncWrite + Unpin>(stream: &mut S) {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    if stream.write_all(head).await.is_err() {
        return;
    }
    let mut chunk = format!("{ENDLESS_CHUNK_BYTES:x}\r\n").into_bytes();
    chunk.extend(std::iter::repeat_n(b'x', ENDLESS_CHUNK_BYTES));
    chunk.extend_from_slice(b"\r\n");
    let _ = tokio::time::timeout(ENDLESS_FOR, async {
        // bounded by ENDLESS_FOR; the count bound is far above what loopback can carry in it
        for _ in 0..100_000_000u64 {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await;
}
