//! The client against raw servers on 127.0.0.1 that answer byte for byte what each test
//! scripts: keep-alive and request heads, chunked and close-delimited bodies, the stale
//! connection retry, timeouts as deadlines, bounded memory, truncation and credentials.

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
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
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
        message.starts_with(&format!("connect 127.0.0.1:{port}: ")) && message.contains("refused"),
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
    let mut by_length = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes();
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
