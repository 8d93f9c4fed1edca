//! The HTTP/1.1 codec of the VU client, without I/O: [`encode_request`] writes a request into a
//! buffer, and [`ResponseDecoder`] turns the bytes read so far into a response.
//!
//! The decoder is fed the connection's read buffer after every read and consumes what it can.
//! Whatever bytes a server sends, it never panics, never reserves what a header claims, and
//! bounds what it holds: a response head of at most [`MAX_HEAD`] bytes, at most `body_limit`
//! body bytes kept (the rest is counted and dropped), and a chunk-size line or trailer line
//! of bounded length. Being synchronous, it is property-tested with arbitrary bytes split into
//! arbitrary reads (see `codec/tests.rs`).
//!
//! One file: the request encoder and the response decoder are the two halves of one wire
//! format (about 640 lines); the tests are in `codec/tests.rs`.

use super::response::Failure;
use crate::error::ErrorKind;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method};

#[cfg(test)]
mod tests;

/// The usual read size: a connection's read buffer starts with this capacity, and a read
/// makes room for at least this much.
pub(super) const READ_CHUNK: usize = 4 * 1024;
/// The most one read appends to the read buffer: the "read chunk" of the memory bound
/// `MAX_HEAD + body_limit + MAX_READ`.
pub(super) const MAX_READ: usize = 64 * 1024;
/// A response head larger than this is refused (protects the VU's memory).
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response; more is a protocol error.
const MAX_HEADERS: usize = 100;
/// A chunk-size line (size, extensions) longer than this is a protocol error.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// The largest Content-Length or chunk size accepted (1 TiB). Larger values fit in a u64 but
/// no load-test response is that long; they come from broken or hostile servers, and refusing
/// them keeps every later sum far from overflowing.
pub(super) const MAX_DECLARED_LENGTH: u64 = 1 << 40;

/// Makes room in `rbuf` for the next read: when less than half a [`READ_CHUNK`] is free,
/// reserves `hint` bytes (what the response is known to still need), clamped to
/// `READ_CHUNK..=MAX_READ`. Never reserves what a header claims beyond that, and a buffer
/// whose bytes were consumed is reused rather than grown (BytesMut moves the rest to the
/// front).
pub(super) fn prepare_read(rbuf: &mut BytesMut, hint: usize) {
    if rbuf.capacity() - rbuf.len() < READ_CHUNK / 2 {
        rbuf.reserve(hint.clamp(READ_CHUNK, MAX_READ));
    }
}

/// The read buffer as a read target: at most [`MAX_READ`] bytes per read, so one read never
/// fills a large spare capacity with bytes beyond the response.
pub(super) fn read_target(rbuf: &mut BytesMut) -> bytes::buf::Limit<&mut BytesMut> {
    rbuf.limit(MAX_READ)
}

/// A complete response.
#[derive(Debug)]
pub(super) struct Decoded {
    pub status: u16,
    /// The connection can carry the next request.
    pub keep_alive: bool,
    /// At most `body_limit` bytes of the body.
    pub body: Bytes,
    /// Body bytes were dropped because of `body_limit`.
    pub truncated: bool,
    /// The Location header of a 301/302/303/307/308 response.
    pub location: Option<String>,
}

/// Where the decoder is in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the head (1xx informational heads are skipped).
    Head,
    /// A Content-Length body within the body limit: waits until it is all buffered and takes
    /// it from the read buffer without a copy (the common case).
    Whole { len: usize },
    /// A Content-Length body over the body limit: streamed, `remaining` bytes to go.
    Counted { remaining: u64, declared: u64 },
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data.
    ChunkData { remaining: u64 },
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
    /// No length: the body runs until the server closes the connection.
    UntilClose,
}

/// The response half of the codec, one per request. See the module documentation.
pub(super) struct ResponseDecoder {
    phase: Phase,
    /// A HEAD request: the response has no body whatever its headers say.
    head_request: bool,
    body_limit: usize,
    status: u16,
    keep_alive: bool,
    location: Option<String>,
    /// Kept body bytes of a streamed body (never more than `body_limit`).
    kept: Vec<u8>,
    /// Body bytes decoded so far, kept or dropped.
    body_bytes: u64,
    truncated: bool,
    /// Bytes of trailer fields seen (bounded by MAX_HEAD like a head).
    trailer_bytes: usize,
}

impl ResponseDecoder {
    /// A decoder for the response to a request; `head_request` for HEAD.
    pub fn new(head_request: bool, body_limit: usize) -> Self {
        Self {
            phase: Phase::Head,
            head_request,
            body_limit,
            status: 0,
            keep_alive: false,
            location: None,
            kept: Vec::new(),
            body_bytes: 0,
            truncated: false,
            trailer_bytes: 0,
        }
    }

    /// True once the final (non-1xx) response head was decoded.
    pub fn head_done(&self) -> bool {
        self.phase != Phase::Head
    }

    /// Body bytes received so far (for timeout messages), given the read buffer's length.
    pub fn body_bytes(&self, buffered: usize) -> u64 {
        match self.phase {
            Phase::Whole { .. } => buffered as u64,
            _ => self.body_bytes,
        }
    }

    /// The kept-body buffer's capacity (tests check the memory bound with it).
    #[cfg(test)]
    pub fn kept_capacity(&self) -> usize {
        self.kept.capacity()
    }

    /// How many bytes the next read should make room for (see [`prepare_read`]).
    pub fn read_hint(&self, buffered: usize) -> usize {
        let capped = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).min(MAX_READ);
        match self.phase {
            Phase::Whole { len } => len.saturating_sub(buffered),
            Phase::Counted { remaining, .. } => capped(remaining),
            Phase::ChunkData { remaining } => capped(remaining.saturating_add(2)),
            _ => READ_CHUNK,
        }
    }

    /// Consumes what it can of `rbuf` (the bytes read and not yet consumed). `Ok(None)`: the
    /// response is not complete, read more and call again (or [`Self::eof`] when the
    /// connection closed). Bytes after a complete response stay in `rbuf`.
    pub fn decode(&mut self, rbuf: &mut BytesMut) -> Result<Option<Decoded>, Failure> {
        // Every pass of this loop consumes at least one byte of rbuf or returns, so it ends
        // after at most rbuf.len() + 1 passes.
        loop {
            match self.phase {
                Phase::Head => {
                    let Some(head) = parse_head(rbuf, self.head_request)? else {
                        if rbuf.len() >= MAX_HEAD {
                            return Err(Failure::protocol(format!(
                                "response head larger than {MAX_HEAD} bytes"
                            )));
                        }
                        return Ok(None);
                    };
                    rbuf.advance(head.len);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue; // informational: the real head follows
                    }
                    self.status = head.status;
                    self.keep_alive = head.keep_alive;
                    self.location = head.location;
                    self.phase = match head.framing {
                        Framing::Empty => return Ok(Some(self.finish(Bytes::new()))),
                        Framing::Length(n) => match usize::try_from(n) {
                            Ok(len) if len <= self.body_limit => Phase::Whole { len },
                            _ => Phase::Counted {
                                remaining: n,
                                declared: n,
                            },
                        },
                        Framing::Chunked => Phase::ChunkSize,
                        Framing::UntilClose => {
                            self.keep_alive = false;
                            Phase::UntilClose
                        }
                    };
                }
                Phase::Whole { len } => {
                    if rbuf.len() < len {
                        return Ok(None);
                    }
                    self.body_bytes = len as u64;
                    let body = rbuf.split_to(len).freeze();
                    return Ok(Some(self.finish(body)));
                }
                Phase::Counted {
                    remaining,
                    declared,
                } => {
                    let remaining = self.consume(rbuf, remaining);
                    if remaining == 0 {
                        return Ok(Some(self.finish_kept()));
                    }
                    self.phase = Phase::Counted {
                        remaining,
                        declared,
                    };
                    return Ok(None);
                }
                Phase::ChunkSize => {
                    let Some(line_end) = find_crlf(rbuf, MAX_CHUNK_LINE) else {
                        if rbuf.len() > MAX_CHUNK_LINE {
                            return Err(Failure::protocol(format!(
                                "chunk size line longer than {MAX_CHUNK_LINE} bytes"
                            )));
                        }
                        return Ok(None);
                    };
                    let size = parse_chunk_size(&rbuf[..line_end])?;
                    rbuf.advance(line_end + 2);
                    self.phase = if size == 0 {
                        Phase::Trailers
                    } else {
                        Phase::ChunkData { remaining: size }
                    };
                }
                Phase::ChunkData { remaining } => {
                    let remaining = self.consume(rbuf, remaining);
                    if remaining > 0 {
                        self.phase = Phase::ChunkData { remaining };
                        return Ok(None);
                    }
                    self.phase = Phase::ChunkEnd;
                }
                Phase::ChunkEnd => {
                    if rbuf.len() < 2 {
                        return Ok(None);
                    }
                    if &rbuf[..2] != b"\r\n" {
                        return Err(Failure::protocol(
                            "chunk data not followed by CRLF (chunk shorter or longer than its size line says)".into(),
                        ));
                    }
                    rbuf.advance(2);
                    self.phase = Phase::ChunkSize;
                }
                Phase::Trailers => match find_crlf(rbuf, MAX_HEAD) {
                    Some(0) => {
                        rbuf.advance(2);
                        return Ok(Some(self.finish_kept()));
                    }
                    Some(i) => {
                        // trailer fields are read and ignored, within the head's limit
                        self.trailer_bytes += i + 2;
                        if self.trailer_bytes > MAX_HEAD {
                            return Err(Failure::protocol(format!(
                                "chunked trailer larger than {MAX_HEAD} bytes"
                            )));
                        }
                        rbuf.advance(i + 2);
                    }
                    None => {
                        if rbuf.len() > MAX_HEAD {
                            return Err(Failure::protocol(format!(
                                "chunked trailer line longer than {MAX_HEAD} bytes"
                            )));
                        }
                        return Ok(None);
                    }
                },
                Phase::UntilClose => {
                    let all = rbuf.len() as u64;
                    self.consume(rbuf, all);
                    return Ok(None);
                }
            }
        }
    }

    /// The connection closed (a read returned 0) with what `rbuf` holds: the end of an
    /// until-close body, or an error saying where the response was cut off.
    pub fn eof(&mut self, rbuf: &mut BytesMut) -> Result<Decoded, Failure> {
        match self.phase {
            Phase::UntilClose => {
                let all = rbuf.len() as u64;
                self.consume(rbuf, all);
                Ok(self.finish_kept())
            }
            Phase::Head if rbuf.is_empty() => Err(Failure {
                kind: ErrorKind::Connect,
                message: "connection closed before a response".into(),
                before_response: false,
            }),
            Phase::Head => Err(Failure::protocol(format!(
                "connection closed inside the response head (after {} bytes)",
                rbuf.len()
            ))),
            Phase::Whole { len } => Err(Failure::protocol(format!(
                "connection closed after {} of {len} body bytes (Content-Length)",
                rbuf.len()
            ))),
            Phase::Counted {
                remaining,
                declared,
            } => Err(Failure::protocol(format!(
                "connection closed after {} of {declared} body bytes (Content-Length)",
                declared - remaining
            ))),
            Phase::ChunkSize | Phase::ChunkData { .. } | Phase::ChunkEnd | Phase::Trailers => {
                Err(Failure::protocol(format!(
                    "connection closed inside a chunked body (after {} body bytes)",
                    self.body_bytes
                )))
            }
        }
    }

    /// Takes up to `remaining` body bytes from the front of `rbuf`, keeping what fits under
    /// the body limit; returns how many are still to come.
    fn consume(&mut self, rbuf: &mut BytesMut, remaining: u64) -> u64 {
        let take = usize::try_from(remaining).map_or(rbuf.len(), |r| r.min(rbuf.len()));
        self.keep(&rbuf[..take]);
        rbuf.advance(take);
        remaining - take as u64
    }

    /// Keeps body bytes up to the limit and counts all of them. The kept buffer grows by
    /// doubling but never past the limit (reserve_exact), so a dropped tail costs no memory.
    fn keep(&mut self, bytes: &[u8]) {
        self.body_bytes = self.body_bytes.saturating_add(bytes.len() as u64);
        let room = self.body_limit.saturating_sub(self.kept.len());
        let take = room.min(bytes.len());
        if take < bytes.len() {
            self.truncated = true;
        }
        if take == 0 {
            return;
        }
        let needed = self.kept.len() + take;
        if needed > self.kept.capacity() {
            let target = (self.kept.capacity() * 2)
                .max(needed)
                .max(READ_CHUNK)
                .min(self.body_limit);
            self.kept.reserve_exact(target - self.kept.len());
        }
        self.kept.extend_from_slice(&bytes[..take]);
    }

    fn finish_kept(&mut self) -> Decoded {
        let body = Bytes::from(std::mem::take(&mut self.kept));
        self.finish(body)
    }

    fn finish(&mut self, body: Bytes) -> Decoded {
        Decoded {
            status: self.status,
            keep_alive: self.keep_alive,
            body,
            truncated: self.truncated,
            location: self.location.take(),
        }
    }
}

/// The parts of a response head the client acts on.
struct Head {
    status: u16,
    /// Bytes of the head in the read buffer.
    len: usize,
    framing: Framing,
    keep_alive: bool,
    location: Option<String>,
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Parses a response head at the start of `buf`; None when it is not complete yet.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, Failure> {
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
    if len > MAX_HEAD {
        return Err(Failure::protocol(format!(
            "response head larger than {MAX_HEAD} bytes"
        )));
    }
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let mut keep_alive = http11;
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut location = None;
    let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            // "5" or a list of equal values ("5, 5", RFC 9110 §8.6)
            for v in h.value.split(|b| *b == b',') {
                let n = parse_content_length(v.trim_ascii())?;
                if length.is_some_and(|m| m != n) {
                    return Err(Failure::protocol(
                        "conflicting Content-Length headers".into(),
                    ));
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // chunked must be the final coding when present (RFC 9112 §6.1)
            transfer_encoding = true;
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
        } else if redirect && h.name.eq_ignore_ascii_case("location") {
            location = Some(String::from_utf8_lossy(h.value.trim_ascii()).into_owned());
        }
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if transfer_encoding {
        // a transfer coding other than chunked last: the body runs to the close (RFC 9112 §6.3)
        Framing::UntilClose
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
        location,
    }))
}

/// A Content-Length value: decimal digits only, at most [`MAX_DECLARED_LENGTH`].
fn parse_content_length(v: &[u8]) -> Result<u64, Failure> {
    let n = decimal(v).ok_or_else(|| {
        Failure::protocol(format!(
            "bad Content-Length '{}' (not a decimal number)",
            shown(v)
        ))
    })?;
    match n {
        Some(n) if n <= MAX_DECLARED_LENGTH => Ok(n),
        _ => Err(Failure::protocol(format!(
            "Content-Length {} exceeds the {MAX_DECLARED_LENGTH} bytes (1 TiB) a response may declare",
            shown(v)
        ))),
    }
}

/// Decimal digits as a number: None when not all digits (or empty), Some(None) when the value
/// does not fit in a u64.
fn decimal(v: &[u8]) -> Option<Option<u64>> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    }))
}

/// The size of a chunk from its `chunk-size [; ext]` line: hex digits only, at most
/// [`MAX_DECLARED_LENGTH`].
fn parse_chunk_size(line: &[u8]) -> Result<u64, Failure> {
    let size = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(Failure::protocol(format!(
            "bad chunk size '{}' (not a hexadecimal number)",
            shown(size)
        )));
    }
    size.iter()
        .try_fold(0u64, |n, d| {
            let digit = char::from(*d).to_digit(16).map(u64::from)?;
            n.checked_mul(16)?
                .checked_add(digit)
                .filter(|n| *n <= MAX_DECLARED_LENGTH)
        })
        .ok_or_else(|| {
            Failure::protocol(format!(
                "chunk size '{}' too large (over the {MAX_DECLARED_LENGTH} bytes (1 TiB) a chunk may declare)",
                shown(size)
            ))
        })
}

/// Server-sent bytes for an error message: lossy UTF-8, at most 40 characters, so a hostile
/// header cannot make a failure message (kept per distinct text) large.
fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        format!("{text}…")
    } else {
        text
    }
}

/// The position of the first CRLF in the first `within + 2` bytes of `buf`.
fn find_crlf(buf: &[u8], within: usize) -> Option<usize> {
    let window = &buf[..buf.len().min(within.saturating_add(2))];
    window.windows(2).position(|w| w == b"\r\n")
}

/// Bodies up to this size are copied behind the request head and sent with it in one write.
pub(super) const INLINE_BODY: usize = 16 * 1024;

/// Serializes a request head (and the body when `body_inline`) into `buf`. Workload headers
/// win over the defaults (Host, User-Agent, and the Basic authorization of credentials in the
/// URL); framing headers are always novaload's own (Content-Length of `body`).
#[allow(clippy::too_many_arguments)]
pub(super) fn encode_request(
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
    // path and query straight from the URL's buffer (never the user info)
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
    if (!url.username().is_empty() || url.password().is_some())
        && !has(&http::header::AUTHORIZATION)
    {
        basic_auth(buf, url);
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

/// `authorization: Basic base64(user:password)` from the URL's user info, percent-decoded,
/// as k6 (and curl, browsers) send for `http://user:pass@host/`.
fn basic_auth(buf: &mut Vec<u8>, url: &url::Url) {
    use base64::Engine as _;
    let mut credentials = Vec::with_capacity(url.username().len() + 16);
    percent_decode_into(url.username().as_bytes(), &mut credentials);
    credentials.push(b':');
    percent_decode_into(url.password().unwrap_or("").as_bytes(), &mut credentials);
    let mut encoded = String::new();
    base64::engine::general_purpose::STANDARD.encode_string(&credentials, &mut encoded);
    buf.extend_from_slice(b"authorization: Basic ");
    buf.extend_from_slice(encoded.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Appends `input` with `%XX` escapes decoded; a `%` not followed by two hex digits is kept
/// as it is (as browsers do).
pub(crate) fn percent_decode_into(input: &[u8], out: &mut Vec<u8>) {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let Some(&[h, l]) = input.get(i + 1..i + 3)
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            // two hex digits: at most 0xff
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
}
