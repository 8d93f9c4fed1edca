//! A tiny real HTTP/1.1 server for engine tests, on 127.0.0.1:0: answers `200 ok`, `/status/N`
//! with status N, `/slow/MS` after MS milliseconds, and can stall every request that arrives
//! inside a window (the coordinated-omission test).

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct TestServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    /// Headers of the last request, for traceparent assertions.
    pub last_headers: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

/// A stall: requests handled inside [start, start+len) wait until start+len.
#[derive(Clone, Copy)]
pub struct Stall {
    pub after: Duration,
    pub len: Duration,
}

pub async fn start(stall: Option<Stall>) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let last_headers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let born = Instant::now();
    let (req_count, headers) = (requests.clone(), last_headers.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let req_count = req_count.clone();
            let headers = headers.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let req_count = req_count.clone();
                    let headers = headers.clone();
                    async move {
                        req_count.fetch_add(1, Ordering::Relaxed);
                        *headers.lock().unwrap() = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        if let Some(s) = stall {
                            let now = born.elapsed();
                            if now >= s.after && now < s.after + s.len {
                                tokio::time::sleep(s.after + s.len - now).await;
                            }
                        }
                        let path = req.uri().path().to_string();
                        let mut status = 200u16;
                        if let Some(code) = path.strip_prefix("/status/") {
                            status = code.parse().unwrap_or(500);
                        }
                        if let Some(ms) = path.strip_prefix("/slow/") {
                            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0)))
                                .await;
                        }
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer {
        addr,
        requests,
        last_headers,
    }
}
