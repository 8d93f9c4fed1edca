//! The decoder fed valid and hostile bytes in arbitrary reads (proptest), checking the memory
//! bound after every step; then examples: absurd lengths, cut-off responses, the body limit,
//! redirect locations, and the request encoder's Basic auth.

use super::*;
use proptest::prelude::*;

/// Feeds `input` to a decoder the way the client does (prepare_read, then a read of at
/// most the spare capacity and MAX_READ), in reads of the sizes in `splits` (cycled), and
/// checks the memory bound after every step. Returns the outcome and what is left in the
/// read buffer.
fn drive(
    input: &[u8],
    splits: &[usize],
    head_request: bool,
    limit: usize,
) -> (Result<Decoded, Failure>, BytesMut) {
    let bound = MAX_HEAD + limit + MAX_READ;
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut decoder = ResponseDecoder::new(head_request, limit);
    let mut pos = 0;
    let mut reads = 0;
    // every pass reads at least one byte, so this ends after input.len() + 1 passes
    loop {
        let step = decoder.decode(&mut rbuf);
        assert!(
            rbuf.len() + decoder.kept.len() <= bound,
            "buffered {} + kept {} > {bound}",
            rbuf.len(),
            decoder.kept.len()
        );
        assert!(
            rbuf.capacity() <= 2 * bound,
            "read buffer capacity {} > 2 x {bound}",
            rbuf.capacity()
        );
        assert!(
            decoder.kept.capacity() <= limit,
            "kept capacity {} > limit {limit}",
            decoder.kept.capacity()
        );
        match step {
            Ok(Some(decoded)) => return (Ok(decoded), rbuf),
            Err(f) => return (Err(f), rbuf),
            Ok(None) => {}
        }
        if pos == input.len() {
            return (decoder.eof(&mut rbuf), rbuf);
        }
        let hint = decoder.read_hint(rbuf.len());
        prepare_read(&mut rbuf, hint);
        let spare = rbuf.capacity() - rbuf.len();
        assert!(
            spare >= READ_CHUNK / 2,
            "prepare_read left {spare} bytes free"
        );
        let piece = splits
            .get(reads % splits.len().max(1))
            .copied()
            .unwrap_or(1);
        let n = piece.clamp(1, MAX_READ).min(spare).min(input.len() - pos);
        read_target(&mut rbuf).put_slice(&input[pos..pos + n]);
        pos += n;
        reads += 1;
    }
}

fn decode_all(input: &[u8], limit: usize) -> Result<Decoded, Failure> {
    drive(input, &[usize::MAX], false, limit).0
}

fn error_of(input: &[u8]) -> Failure {
    match decode_all(input, DEFAULT_LIMIT) {
        Ok(d) => panic!(
            "expected an error, got status {} body {:?}",
            d.status, d.body
        ),
        Err(f) => f,
    }
}

const DEFAULT_LIMIT: usize = super::super::DEFAULT_BODY_LIMIT;

/// A deterministic body of `len` bytes (cheaper than a proptest vector of that size).
fn body_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `body` as a chunked encoding with chunk sizes from `sizes` (cycled), upper or lower case
/// hex, optionally with an extension and a trailer.
fn chunked(body: &[u8], sizes: &[usize], upper: bool, extras: bool) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let size = if upper {
            format!("{n:X}")
        } else {
            format!("{n:x}")
        };
        out.extend_from_slice(size.as_bytes());
        if extras {
            out.extend_from_slice(b" ; name=value");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n");
    if extras {
        out.extend_from_slice(b"X-Checksum: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The next response on the connection, which must be left in the buffer untouched.
const NEXT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Valid encodings (Content-Length, chunked, until close), split into arbitrary
    /// reads: the kept body is the body's first `limit` bytes, truncation is reported
    /// exactly, and a keep-alive response leaves the next one's bytes in the buffer.
    #[test]
    fn valid_responses_decode_to_their_body(
        len in prop_oneof![0usize..300, 0usize..200_000],
        seed in any::<u8>(),
        encoding in 0u8..3,
        sizes in prop::collection::vec(prop_oneof![1usize..20, 1usize..100_000], 1..6),
        limit in prop_oneof![Just(0usize), 0usize..400, 0usize..300_000, Just(DEFAULT_LIMIT)],
        splits in prop::collection::vec(prop_oneof![1usize..16, 1usize..100_000], 1..8),
        informational in any::<bool>(),
        upper in any::<bool>(),
    ) {
        let body = body_of(len, seed);
        let mut input = Vec::new();
        if informational {
            input.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        match encoding {
            0 => {
                input.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
                );
                input.extend_from_slice(&body);
            }
            1 => input.extend_from_slice(&chunked(&body, &sizes, upper, upper)),
            _ => {
                input.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
                input.extend_from_slice(&body);
            }
        }
        let until_close = encoding == 2;
        if !until_close {
            input.extend_from_slice(NEXT);
        }
        let (decoded, rest) = drive(&input, &splits, false, limit);
        let decoded = decoded.map_err(|f| format!("{:?}: {}", f.kind, f.message));
        let decoded = decoded.map_err(TestCaseError::fail)?;
        prop_assert_eq!(decoded.status, 200);
        prop_assert_eq!(decoded.keep_alive, !until_close);
        prop_assert_eq!(&decoded.body[..], &body[..len.min(limit)]);
        prop_assert_eq!(decoded.truncated, len > limit);
        prop_assert!(decoded.location.is_none());
        if !until_close {
            // the next response's bytes that were read are the start of NEXT, unconsumed
            prop_assert!(NEXT.starts_with(&rest), "left over: {:?}", rest);
        }
    }

    /// Hostile input: arbitrary bytes, arbitrary declared lengths and chunk sizes, and
    /// mutated valid responses. Never a panic (drive also checks the memory bound after
    /// every step), and a body never longer than the limit.
    #[test]
    fn hostile_responses_never_panic_and_stay_bounded(
        kind in 0u8..5,
        declared in prop_oneof![any::<u64>(), 0u64..100_000],
        noise in prop::collection::vec(any::<u8>(), 0..3_000),
        alphabet_line in prop::collection::vec(
            prop::sample::select(b"0123456789abcdefABCDEFxX ;=\r\n\t-+".to_vec()), 0..40),
        tail_len in 0usize..150_000,
        mutations in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        limit in prop_oneof![Just(0usize), 0usize..5_000, Just(DEFAULT_LIMIT)],
        splits in prop::collection::vec(prop_oneof![1usize..16, 1usize..100_000], 1..8),
        head_request in any::<bool>(),
    ) {
        let tail = body_of(tail_len, 7);
        let mut input: Vec<u8> = match kind {
            0 => noise.clone(),
            1 => format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n").into_bytes(),
            2 => format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{declared:x}\r\n")
                .into_bytes(),
            3 => {
                let mut v = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                v.extend_from_slice(&alphabet_line);
                v
            }
            _ => chunked(&tail, &[declared.max(1) as usize % 70_000 + 1], false, true),
        };
        if kind != 0 {
            input.extend_from_slice(&tail);
            input.extend_from_slice(&noise);
        }
        for (at, byte) in &mutations {
            if !input.is_empty() && kind == 4 {
                let i = at % input.len();
                input[i] = *byte;
            }
        }
        let (decoded, _) = drive(&input, &splits, head_request, limit);
        if let Ok(d) = decoded {
            prop_assert!(d.body.len() <= limit);
        }
    }
}

#[test]
fn absurd_lengths_are_protocol_errors_that_say_what_was_wrong() {
    let f = error_of(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\nx");
    assert_eq!(f.kind, ErrorKind::Protocol);
    assert!(
        f.message
            .contains("Content-Length 1000000000000000000 exceeds"),
        "{}",
        f.message
    );
    let f = error_of(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    assert!(f.message.contains("exceeds"), "{}", f.message);
    let f = error_of(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello");
    assert!(
        f.message.contains("bad Content-Length '+5'"),
        "{}",
        f.message
    );
    let f = error_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    assert!(f.message.contains("conflicting"), "{}", f.message);

    let f =
        error_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc");
    assert_eq!(f.kind, ErrorKind::Protocol);
    assert!(
        f.message
            .contains("chunk size 'ffffffffffffffff' too large"),
        "{}",
        f.message
    );
    let f = error_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert!(f.message.contains("bad chunk size 'zz'"), "{}", f.message);
    let mut long_line = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;".to_vec();
    long_line.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE + 10));
    let f = error_of(&long_line);
    assert!(
        f.message.contains("chunk size line longer"),
        "{}",
        f.message
    );
    let f = error_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n");
    assert!(f.message.contains("not followed by CRLF"), "{}", f.message);

    // one header whose value alone is over the limit (many headers hit MAX_HEADERS first)
    let mut big_head = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
    big_head.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    big_head.extend_from_slice(b"\r\n\r\n");
    let f = error_of(&big_head);
    assert!(f.message.contains("response head larger"), "{}", f.message);
    let f = error_of(b"HTTP/1.1 2000 OK\r\n\r\n");
    assert!(
        f.message.starts_with("malformed response head: "),
        "{}",
        f.message
    );
    // a hostile value is shown shortened
    let f = error_of(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            "9x".repeat(500)
        )
        .as_bytes(),
    );
    assert!(f.message.len() < 120, "{}", f.message);
}

#[test]
fn cut_off_responses_say_where() {
    let f = error_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
    assert!(f.message.contains("5 of 10"), "{}", f.message);
    match drive(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        &[3],
        false,
        4,
    )
    .0
    {
        Err(f) => assert!(f.message.contains("5 of 10"), "{}", f.message),
        Ok(d) => panic!("cut off body accepted: {:?}", d.body),
    }
    let f = error_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    assert!(
        f.message
            .contains("inside a chunked body (after 3 body bytes)"),
        "{}",
        f.message
    );
    let f = error_of(b"HTTP/1.1 200 OK\r\nContent-");
    assert!(
        f.message.contains("inside the response head"),
        "{}",
        f.message
    );
    let f = error_of(b"");
    assert_eq!(f.kind, ErrorKind::Connect, "{}", f.message);
}

#[test]
fn body_limit_keeps_the_front_and_reports_truncation() {
    let d = decode_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        4,
    )
    .unwrap();
    assert_eq!((&d.body[..], d.truncated), (&b"0123"[..], true));
    let d = decode_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        10,
    )
    .unwrap();
    assert_eq!((&d.body[..], d.truncated), (&b"0123456789"[..], false));
    let d = decode_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        0,
    )
    .unwrap();
    assert_eq!((d.body.len(), d.truncated), (0, true));
    let d = decode_all(b"HTTP/1.1 200 OK\r\n\r\n0123456789", 3).unwrap();
    assert_eq!(
        (&d.body[..], d.truncated, d.keep_alive),
        (&b"012"[..], true, false)
    );
}

#[test]
fn location_only_on_redirect_statuses() {
    for status in [301, 302, 303, 307, 308] {
        let head =
            format!("HTTP/1.1 {status} X\r\nLocation: /next?a=1 \r\nContent-Length: 0\r\n\r\n");
        let d = decode_all(head.as_bytes(), 10).unwrap();
        assert_eq!(d.location.as_deref(), Some("/next?a=1"), "{status}");
    }
    for status in [200, 201, 300, 304, 404] {
        let head = format!("HTTP/1.1 {status} X\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n");
        let d = decode_all(head.as_bytes(), 10).unwrap();
        assert_eq!(d.location, None, "{status}");
    }
}

fn encoded(url: &str, headers: &[(HeaderName, HeaderValue)]) -> String {
    let mut buf = Vec::new();
    let url: url::Url = url.parse().unwrap();
    encode_request(
        &mut buf,
        &Method::GET,
        &url,
        b"h",
        "ua",
        headers,
        &Bytes::new(),
        true,
    );
    String::from_utf8(buf).unwrap()
}

#[test]
fn url_credentials_become_basic_auth_unless_the_caller_sets_authorization() {
    use base64::Engine as _;
    let head = encoded("http://us%40er:p%3Ass%zz@host/path?q=1", &[]);
    let want = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss%zz");
    assert!(
        head.contains(&format!("\r\nauthorization: Basic {want}\r\n")),
        "{head}"
    );
    assert!(head.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{head}");
    assert!(!head.contains("p%3Ass") && !head.contains("p:ss"), "{head}");

    let head = encoded("http://user@host/", &[]);
    let want = base64::engine::general_purpose::STANDARD.encode("user:");
    assert!(
        head.contains(&format!("authorization: Basic {want}\r\n")),
        "{head}"
    );

    let own = [(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer t"),
    )];
    let head = encoded("http://user:pass@host/", &own);
    assert_eq!(head.matches("authorization:").count(), 1, "{head}");
    assert!(head.contains("authorization: Bearer t\r\n"), "{head}");

    assert!(!encoded("http://host/", &[]).contains("authorization"));
}
