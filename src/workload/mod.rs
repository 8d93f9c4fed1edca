//! The one workload trait and the VU context every workload runs in.
//!
//! A workload is a protocol script (api, dwcp, ws, db, or the `--url` quick mode). The runner
//! owns scheduling; the workload only says what one iteration does, using [`Vu`] helpers that
//! record k6-compatible metrics, checks and spans in one place.

pub mod api;
pub mod db;
pub mod db_direct;
pub mod dwcp;
pub mod endpoints;
pub mod failure;
mod timers;
pub mod url;
pub mod ws;

use crate::error::ErrorKind;
use crate::metrics::{HttpSample, MetricId, Recorder, Sample, Tags};
use crate::telemetry::{AttrValue, FixedAttrs, LiveSeries, RunLabels, Span, SpanKind, Telemetry};
use ::http::{HeaderName, HeaderValue, Method};
use bytes::Bytes;
use rand::SeedableRng;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub use crate::net::http::{HttpClient, HttpResponse, TlsSettings};
pub(crate) use timers::IterationTimers;

/// What one test does. Implementations are shared by all VUs (`&self`); per-VU state lives
/// in [`Vu`].
pub trait Workload: Send + Sync + 'static {
    /// Runs once before any VU (k6 `setup()`), in VU 0.
    fn setup(&self, _vu: &mut Vu) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
    /// One iteration (k6's default function). Failures are recorded, not returned.
    fn iteration(&self, vu: &mut Vu) -> impl Future<Output = ()> + Send;
    /// Runs once after all VUs (k6 `teardown()`).
    fn teardown(&self, _vu: &mut Vu) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
}

/// Settings every VU's clients share.
#[derive(Clone)]
pub struct ClientSettings {
    pub tls: Option<TlsSettings>,
    pub request_timeout: Duration,
    /// Redirects followed per request ([`DEFAULT_MAX_REDIRECTS`]; 0: never).
    pub max_redirects: u32,
    /// Body bytes kept per response ([`crate::net::http::DEFAULT_BODY_LIMIT`]; 0: none).
    pub response_body_limit: usize,
}

/// k6's default `maxRedirects`.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

impl Default for ClientSettings {
    /// k6's defaults: 60 s timeout, 10 redirects, no TLS; bodies kept up to 4 MiB.
    fn default() -> Self {
        Self {
            tls: None,
            request_timeout: Duration::from_secs(60),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            response_body_limit: crate::net::http::DEFAULT_BODY_LIMIT,
        }
    }
}

/// One HTTP request as a workload describes it.
pub struct Req<'a> {
    pub method: Method,
    pub url: ::url::Url,
    /// Low-cardinality operation name, e.g. `GET /api/v1/vms/{id}` (never the raw URL).
    pub name: &'a str,
    /// Route template for `url.template`, e.g. `/api/v1/vms/{id}`.
    pub template: &'a str,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Option<Bytes>,
}

// Built at compile time: `HeaderName::from_static` called at run time looks the name up again
// on every request.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// An endpoint's client-span attributes, found by the values they encode.
struct RequestSpanKey {
    method: Box<str>,
    template: Box<str>,
    host: Box<str>,
    port: u16,
    attrs: FixedAttrs,
}

/// A virtual user: identity, clients and the recording helpers.
pub struct Vu {
    /// 1-based like k6's `__VU` (0 for setup/teardown).
    pub id: u64,
    /// Iterations this VU started so far (k6 `__ITER`).
    pub iteration: u64,
    pub labels: RunLabels,
    pub tags: Tags,
    pub rec: Arc<Recorder>,
    pub tel: Telemetry,
    /// This VU's live series, resolved once.
    pub live: LiveSeries,
    pub http: HttpClient,
    pub settings: ClientSettings,
    pub rng: rand::rngs::SmallRng,
    /// Cancelled at the hard end of the run: sleeps return at once.
    pub stop: CancellationToken,
    pub(crate) iteration_span: Option<Span>,
    /// Open-model iterations: the intended start, taken by the first request's corrected timing.
    pub(crate) intended_start: Option<Instant>,
    /// Operation names and methods seen by this VU, so tags share one allocation per name.
    interned: Vec<Arc<str>>,
    /// The `baggage` header of the last baggage value seen (the same for every iteration).
    baggage_header: Option<(Arc<str>, HeaderValue)>,
    /// Client-span attributes per endpoint this VU called (a handful; at most 64 kept).
    request_spans: Vec<RequestSpanKey>,
    /// The runner's per-VU timers (deadline, stop), reused across iterations.
    pub(crate) timers: Option<IterationTimers>,
    /// What a workload keeps for this VU between iterations (db direct mode: the VU's pool
    /// connection, held as a pgbench client holds its own); dropped with the VU.
    pub workload_state: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Vu {
    pub fn new(
        id: u64,
        labels: RunLabels,
        rec: Arc<Recorder>,
        tel: Telemetry,
        settings: ClientSettings,
        stop: CancellationToken,
    ) -> Self {
        let tags = Tags::scenario(&labels.scenario);
        let live = tel.vu_series(&labels);
        Self {
            id,
            iteration: 0,
            labels,
            tags,
            rec,
            live,
            tel,
            http: {
                let mut c = HttpClient::new(settings.tls.clone(), settings.request_timeout);
                c.body_limit = settings.response_body_limit;
                c
            },
            settings,
            rng: rand::rngs::SmallRng::from_os_rng(),
            stop,
            iteration_span: None,
            intended_start: None,
            interned: Vec::new(),
            baggage_header: None,
            request_spans: Vec::new(),
            timers: None,
            workload_state: None,
        }
    }

    /// The shared copy of a tag string (a VU sees a handful of distinct names).
    fn interned(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.iter().find(|a| &***a == s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.interned.len() < 64 {
            self.interned.push(a.clone());
        }
        a
    }

    /// The encoded attributes every client span of this request's endpoint carries (method,
    /// `url.template`, server address and port), built once per VU and endpoint.
    fn request_span_attrs(&mut self, req: &Req<'_>) -> FixedAttrs {
        let (method, template) = (req.method.as_str(), req.template);
        let host = req.url.host_str().unwrap_or("");
        let port = req.url.port_or_known_default().unwrap_or(0);
        let found = self.request_spans.iter().find(|k| {
            k.port == port && *k.template == *template && *k.method == *method && *k.host == *host
        });
        if let Some(k) = found {
            return k.attrs.clone();
        }
        let attrs = FixedAttrs::new(&[
            ("http.request.method", AttrValue::Str(method.to_owned())),
            ("url.template", AttrValue::Str(template.to_owned())),
            ("server.address", AttrValue::Str(host.to_owned())),
            ("server.port", AttrValue::I64(i64::from(port))),
        ]);
        if self.request_spans.len() < 64 {
            self.request_spans.push(RequestSpanKey {
                method: method.into(),
                template: template.into(),
                host: host.into(),
                port,
                attrs: attrs.clone(),
            });
        }
        attrs
    }

    /// A child span of the current iteration span.
    pub fn span(&self, name: &str, kind: SpanKind, attrs: &[(&'static str, AttrValue)]) -> Span {
        match &self.iteration_span {
            Some(parent) => self.tel.child_span(parent, name, kind, attrs),
            None => self.tel.child_span(&Span::default(), name, kind, attrs),
        }
    }

    /// Sleeps, but returns early when the run is stopped.
    pub async fn sleep(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Records one sample on this VU's stream: the k6 recorder (under the VU's tags unless
    /// the sample has its own) and the live instruments (on the VU's series) both consume it.
    #[inline]
    pub fn record(&self, sample: Sample<'_>) {
        record(&self.rec, &self.tags, &self.tel, &self.live, &sample);
    }

    /// Records a check (k6 `check`): one sample on `checks` tagged with the name.
    pub fn check(&self, name: &'static str, ok: bool) -> bool {
        self.record(Sample::Check { name, ok });
        ok
    }

    /// Records a latency check (e.g. `VM list response time < 500ms`) like any check, but
    /// returns true so it does not turn its group into an error: slowness is judged by the
    /// latency thresholds (WARNING), error Rates count functional failures (FAIL). Upstream
    /// counted a slow response as an error, which made every latency miss a FAIL.
    pub(crate) fn latency_check(&self, name: &'static str, ok: bool) -> bool {
        self.check(name, ok);
        true
    }

    /// Records a value on one of the workload's own k6 metrics (no live twin) under `tags`,
    /// or the VU's own when None.
    pub fn metric(&self, metric: MetricId, value: f64, tags: Option<&Tags>) {
        self.record(Sample::Metrics {
            values: &[(metric, value)],
            tags,
        });
    }

    /// Records a Rate sample: `true` counts as a pass (non-zero), `false` as a fail.
    pub fn rate(&self, metric: MetricId, nonzero: bool) {
        self.metric(metric, if nonzero { 1.0 } else { 0.0 }, None);
    }

    /// Records a Trend value (milliseconds for time trends).
    pub fn trend(&self, metric: MetricId, value: f64) {
        self.metric(metric, value, None);
    }

    /// Adds to a Counter.
    pub fn add(&self, metric: MetricId, n: f64) {
        self.metric(metric, n, None);
    }

    /// Sets a Gauge.
    pub fn gauge(&self, metric: MetricId, v: f64) {
        self.metric(metric, v, None);
    }

    /// Records a workload operation that failed with `kind` (live `novaload.operations` and
    /// `novaload.errors`; the k6 side counts it on the workload's error Rate).
    pub fn error(&self, operation: &str, kind: ErrorKind) {
        self.record(Sample::Operation {
            name: operation,
            error: Some(kind),
        });
    }

    /// Sends an HTTP request with `traceparent`/`baggage` injected, and records k6's built-in
    /// HTTP metrics, the live histogram and a client span. Statuses 200–399 are expected.
    pub async fn request(&mut self, req: Req<'_>) -> HttpResponse {
        self.request_under(None, req).await
    }

    /// [`Vu::request`] with its client span under `parent` instead of the iteration span (a
    /// DWCP migration's polls are children of the migration span).
    ///
    /// Redirects are followed as k6 follows them (up to `max_redirects`, each hop its own
    /// request in the metrics and its own span); the response of the last hop is returned. A
    /// loop, an unusable `Location` or one hop too many makes that last 3xx a failed request
    /// of kind `redirect`.
    pub(crate) async fn request_under(
        &mut self,
        parent: Option<&Span>,
        req: Req<'_>,
    ) -> HttpResponse {
        let mut chain = RedirectChain::new(self.settings.max_redirects);
        // After a redirect: where the next hop goes and with what. The first hop borrows the
        // request's own URL, method and body, so the common case clones nothing.
        let mut followed: Option<(::url::Url, Method, Option<Bytes>)> = None;
        let mut strip: Option<&'static [HeaderName]> = None;
        loop {
            let (url, method, body) = match &followed {
                None => (&req.url, &req.method, &req.body),
                Some((u, m, b)) => (u, m, b),
            };
            // The send is the only await: preparing and recording a hop are plain calls, so
            // the HTTP exchange's future sits directly in this one (no nested future to copy).
            let (span, headers) = self.prepare_hop(parent, &req, strip);
            let resp = self
                .http
                .send(method.clone(), url, &headers, body.clone())
                .await;
            let (resp, next) = self.record_hop(span, &req, method, url, resp, &mut chain);
            let Some(to) = next else {
                return resp;
            };
            // 301/302/303 turn a request into a GET without a body (browsers, Go, k6);
            // 307/308 repeat it as it was
            let (method, body) = if matches!(resp.status, 301..=303) && *method != Method::HEAD {
                (Method::GET, None)
            } else {
                (method.clone(), body.clone())
            };
            // credentials go to their own origin only (and stay off once they left it)
            if to.host_str() != url.host_str()
                || to.port_or_known_default() != url.port_or_known_default()
            {
                strip = Some(CROSS_ORIGIN_STRIPPED);
            }
            followed = Some((to, method, body));
        }
    }

    /// A hop's client span and headers: the request's own (less `strip`), with
    /// `traceparent`, `baggage` and `tracestate` when the span is traced.
    fn prepare_hop(
        &mut self,
        parent: Option<&Span>,
        req: &Req<'_>,
        strip: Option<&[HeaderName]>,
    ) -> (Span, Vec<(HeaderName, HeaderValue)>) {
        let span = if self.tel.tracing() {
            let fixed = self.request_span_attrs(req);
            let none = Span::default(); // outside an iteration the span is a root
            let name = self.interned(req.name);
            let parent = parent.or(self.iteration_span.as_ref()).unwrap_or(&none);
            self.tel
                .child_span_fixed(parent, &name, SpanKind::Client, &fixed)
        } else {
            Span::default()
        };

        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(req.headers.len() + 2);
        match strip {
            None => headers.extend_from_slice(req.headers),
            Some(strip) => headers.extend(
                req.headers
                    .iter()
                    .filter(|(k, _)| !strip.contains(k))
                    .cloned(),
            ),
        }
        if let Some(tp) = span
            .traceparent()
            .and_then(|v| HeaderValue::try_from(v).ok())
        {
            headers.push((TRACEPARENT, tp));
            if let Some(b) = span.baggage_shared() {
                let cached = match &self.baggage_header {
                    Some((v, h)) if Arc::ptr_eq(v, b) => Some(h.clone()),
                    _ => None,
                };
                let header = cached.or_else(|| {
                    let h = HeaderValue::from_str(b).ok()?;
                    self.baggage_header = Some((b.clone(), h.clone()));
                    Some(h)
                });
                if let Some(h) = header {
                    headers.push((BAGGAGE, h));
                }
            }
            if let Some(ts) = span
                .tracestate()
                .and_then(|v| HeaderValue::try_from(v).ok())
            {
                headers.push((TRACESTATE, ts));
            }
        }
        (span, headers)
    }

    /// Records one hop: k6's built-in HTTP metrics, the live histogram, the failure reason and
    /// the client span. Returns the response and, for a redirect to follow, where it leads (a
    /// loop, an unusable `Location` or one hop too many makes this 3xx a `redirect` failure).
    fn record_hop(
        &mut self,
        mut span: Span,
        req: &Req<'_>,
        http_method: &Method,
        url: &::url::Url,
        mut resp: HttpResponse,
        chain: &mut RedirectChain,
    ) -> (HttpResponse, Option<::url::Url>) {
        let method = self.interned(http_method.as_str());
        let name = self.interned(req.name);
        let next = match resp.location.take() {
            Some(location) if resp.error.is_none() => match chain.follow(url, &location) {
                Ok(next) => next,
                Err(message) => {
                    resp.error = Some((ErrorKind::Redirect, message));
                    None
                }
            },
            _ => None,
        };
        let expected = (200..400).contains(&resp.status) && resp.error.is_none();
        let error_kind = match &resp.error {
            Some((k, _)) => Some(*k),
            None if !expected => Some(ErrorKind::Status),
            None => None,
        };
        match (&resp.error, error_kind) {
            (Some((kind, msg)), _) => self.rec.record_reason(*kind, msg),
            (None, Some(kind)) => {
                let phrase = ::http::StatusCode::from_u16(resp.status)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("");
                self.rec.record_reason(
                    kind,
                    &format!("{}: HTTP {} {phrase}", req.name, resp.status),
                );
            }
            (None, None) => {}
        }
        let tags = Tags {
            name: Some(name),
            method: Some(method),
            status: Some(resp.status),
            expected_response: Some(expected),
            error_kind,
            ..self.tags.clone()
        };
        let corrected_ms = self.intended_start.take().map(|intended| {
            let corrected = resp.finished_at.saturating_duration_since(intended);
            corrected.as_secs_f64() * 1000.0
        });
        span.set_attribute(
            "http.response.status_code",
            AttrValue::I64(resp.status as i64),
        );
        let trace = span.sampled_trace_id();
        self.record(Sample::Http(&HttpSample {
            tags: &tags,
            template: req.template,
            timings: &resp.timings,
            bytes_sent: resp.bytes_sent,
            bytes_received: resp.bytes_received,
            body_truncated: resp.body_truncated,
            corrected_ms,
            trace: trace.as_deref(),
        }));
        match (&resp.error, expected) {
            (Some((kind, msg)), _) => {
                span.set_attribute("error.type", AttrValue::Static(kind.as_str()));
                span.end(Some(msg));
            }
            (None, false) => {
                span.set_attribute("error.type", AttrValue::Str(resp.status.to_string()));
                span.end(Some(&format!("HTTP {}", resp.status)));
            }
            (None, true) => span.end(None),
        }
        (resp, next)
    }
}

/// Records `sample` on a stream: the k6 recorder under `tags` and the live instruments on
/// `live` (a [`Vu`]'s, or the runner's and a workload's guards, which have no `Vu` at hand).
#[inline]
pub(crate) fn record(
    rec: &Recorder,
    tags: &Tags,
    tel: &Telemetry,
    live: &LiveSeries,
    sample: &Sample<'_>,
) {
    rec.consume(tags, sample);
    tel.consume(live, sample);
}

/// Headers not sent when a redirect leaves the origin (as Go's client and browsers do).
const CROSS_ORIGIN_STRIPPED: &[HeaderName] =
    &[::http::header::AUTHORIZATION, ::http::header::COOKIE];

/// One request's redirect chain: how many hops are left and where it has been.
struct RedirectChain {
    max: u32,
    /// URLs requested so far (empty until a redirect is followed: no allocation otherwise).
    visited: Vec<::url::Url>,
}

impl RedirectChain {
    fn new(max: u32) -> Self {
        Self {
            max,
            visited: Vec::new(),
        }
    }

    /// Where a 3xx from `from` with `location` leads: `Ok(None)` when redirects are off
    /// (`--max-redirects 0`: the 3xx is the answer), `Err` for a loop, an unusable Location or
    /// one hop more than allowed.
    fn follow(&mut self, from: &::url::Url, location: &str) -> Result<Option<::url::Url>, String> {
        if self.max == 0 {
            return Ok(None);
        }
        let next = match from.join(location) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => return Err(format!("redirect to an unusable Location '{location}'")),
        };
        if self.visited.is_empty() {
            self.visited.push(from.clone());
        }
        if self.visited.contains(&next) {
            return Err(format!(
                "redirect loop: {} leads back to {} (already requested)",
                from.path(),
                next.path()
            ));
        }
        if self.visited.len() > self.max as usize {
            return Err(format!(
                "stopped after {} redirects (--max-redirects {})",
                self.max, self.max
            ));
        }
        self.visited.push(next.clone());
        Ok(Some(next))
    }
}

/// Joins a base URL and a path the way the upstream scripts do (string concatenation, no
/// percent-encoding of ids), then parses it.
pub(crate) fn join_url(base: &str, path: &str) -> Result<::url::Url, ::url::ParseError> {
    let base = base.trim_end_matches('/');
    ::url::Url::parse(&format!("{base}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ::url::Url {
        s.parse().unwrap()
    }

    #[test]
    fn redirect_chains_follow_up_to_the_limit_and_refuse_loops() {
        let mut c = RedirectChain::new(2);
        let a = url("http://127.0.0.1:1/a");
        let b = c.follow(&a, "/b").unwrap().unwrap();
        assert_eq!(b.as_str(), "http://127.0.0.1:1/b");
        let other = c.follow(&b, "http://127.0.0.2:9/c?x=1").unwrap().unwrap();
        assert_eq!(other.as_str(), "http://127.0.0.2:9/c?x=1");
        let e = c.follow(&other, "/d").unwrap_err();
        assert!(e.contains("stopped after 2 redirects"), "{e}");

        let mut c = RedirectChain::new(10);
        let e = c.follow(&a, "/a").unwrap_err();
        assert!(e.starts_with("redirect loop"), "{e}");
        let e = RedirectChain::new(10).follow(&a, "ftp://x/").unwrap_err();
        assert!(e.contains("unusable Location"), "{e}");
        // --max-redirects 0: the 3xx is the answer
        assert_eq!(RedirectChain::new(0).follow(&a, "/b"), Ok(None));
    }
}
