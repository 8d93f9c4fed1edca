//! The `/metrics` endpoint: a tiny hyper server on its own listener.
//!
//! Why prometheus-client: it is the Rust client that encodes **exemplars** (OpenMetrics
//! `# {trace_id="..."} value timestamp` after a bucket sample), which is what lets Grafana jump
//! from a slow latency bucket to the trace of a request that landed in it. The `prometheus`
//! crate and OTel's Prometheus exporter do not emit exemplars.
//!
//! Format negotiation: Prometheus asks for OpenMetrics (`Accept: application/openmetrics-text`)
//! when it can store exemplars; then we serve prometheus-client's OpenMetrics encoder
//! (exemplars, `# EOF`). Any other scraper (curl, older agents) gets the classic text format
//! 0.0.4 from the same registry via `prometheus_text::encode`, which writes `_total` names on
//! counter metadata and leaves exemplars out, since that format has no syntax for them.

use super::instruments::{HistFamily, render_histograms};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the registry; `openmetrics` picks the format.
pub fn render(exposition: &Exposition, openmetrics: bool) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let r = if openmetrics {
        prometheus_client::encoding::text::encode_registry(&mut out, &exposition.registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &exposition.registry)
    };
    if r.is_err() {
        out.push_str("# encoding error\n");
    }
    render_histograms(&mut out, &exposition.histograms, openmetrics);
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Everything `/metrics` serves: the prometheus-client registry (counters, gauges,
/// collectors) and the histograms novaload renders itself.
pub struct Exposition {
    pub registry: Registry,
    pub histograms: Vec<Arc<HistFamily>>,
}

/// Whether an `Accept` header asks for OpenMetrics text.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

pub struct Server {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(listen: SocketAddr, registry: Arc<Exposition>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot serve /metrics on {listen}: {e} (pick another --metrics-listen address)"
            )
        })?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(s) => s,
                        Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(50)).await; continue }
                    },
                    _ = stopped.changed() => return,
                };
                let registry = registry.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let registry = registry.clone();
                        async move { Ok::<_, std::convert::Infallible>(respond(&registry, &req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Ok(Self { addr, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.task).await;
    }
}

fn respond<B>(
    registry: &Exposition,
    req: &http::Request<B>,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let text = |status: u16, body: &'static str| {
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                body.as_bytes(),
            )))
            .expect("static response")
    };
    if req.uri().path() != "/metrics" {
        return text(404, "not found: try /metrics\n");
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return text(405, "method not allowed\n");
    }
    let om = wants_openmetrics(
        req.headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let body = render(registry, om);
    let ct = if om {
        OPENMETRICS_CONTENT_TYPE
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, ct)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("valid response")
}
