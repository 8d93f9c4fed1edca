//! The span API workloads use: [`Span`] handles (W3C propagation headers, the sampled trace
//! id an exemplar points at, attributes, events, status) and [`Telemetry`]'s span starts. The
//! spans themselves are recorded and queued by `span_record.rs` and exported by
//! `span_export.rs`.

use super::span_record as rec;
use super::{RunLabels, Telemetry};
use std::cell::RefCell;
use std::sync::Arc;

pub use rec::FixedAttrs;

/// Kind of client span, for semconv attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Client,
}

impl From<SpanKind> for rec::Kind {
    fn from(k: SpanKind) -> Self {
        match k {
            SpanKind::Internal => rec::Kind::Internal,
            SpanKind::Client => rec::Kind::Client,
        }
    }
}

/// A span in progress. Dropping it without `end` ends it with status unset.
#[derive(Default)]
pub struct Span {
    inner: Option<rec::SpanRec>,
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(r) = self.inner.take() {
            r.finish(None);
        }
    }
}

/// A trace id in lower-case hex, kept on the stack (one per request when exemplars are on).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceHex([u8; 32]);

impl std::fmt::Debug for TraceHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Display for TraceHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl TraceHex {
    fn new(id: &[u8; 16]) -> Self {
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(id) {
            pair.copy_from_slice(&rec::hex_pair(*b));
        }
        Self(out)
    }
}

impl std::ops::Deref for TraceHex {
    type Target = str;
    fn deref(&self) -> &str {
        // only ASCII hex digits are ever written
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Span {
    /// W3C `traceparent` header value of this span (None when tracing is off).
    pub fn traceparent(&self) -> Option<String> {
        let r = self.inner.as_ref()?;
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        rec::hex_into(&mut s, &r.trace_id);
        s.push('-');
        rec::hex_into(&mut s, &r.span_id);
        s.push_str(if r.sampled { "-01" } else { "-00" });
        Some(s)
    }
    /// W3C `tracestate` header value, if any. novaload starts every trace itself, so no
    /// vendor has put state in it yet: always None, kept so callers propagate it if that changes.
    pub fn tracestate(&self) -> Option<String> {
        None
    }
    /// W3C `baggage` header value carrying run id, test and scenario.
    pub fn baggage(&self) -> Option<&str> {
        self.inner.as_ref()?.baggage.as_deref()
    }
    /// The shared `baggage` value itself, for callers that cache what they derive from it.
    pub(crate) fn baggage_shared(&self) -> Option<&Arc<str>> {
        self.inner.as_ref()?.baggage.as_ref()
    }
    /// Hex trace id when this span is sampled (what an exemplar may point at).
    pub fn sampled_trace_id(&self) -> Option<TraceHex> {
        let r = self.inner.as_ref().filter(|r| r.sampled)?;
        Some(TraceHex::new(&r.trace_id))
    }
    pub fn set_attribute(&mut self, key: &'static str, value: AttrValue) {
        if let Some(r) = &mut self.inner {
            r.set_attribute(key, value);
        }
    }
    pub fn add_event(&mut self, name: &'static str, attrs: &[(&'static str, AttrValue)]) {
        if let Some(r) = &mut self.inner {
            r.add_event(name, attrs);
        }
    }
    /// Ends the span; `error` sets status Error with the message (never a secret or full URL).
    pub fn end(mut self, error: Option<&str>) {
        if let Some(r) = self.inner.take() {
            r.finish(error);
        }
    }
}

/// What every iteration span of a label set shares: its name, the attributes that do not
/// change (encoded once) and the `baggage` value.
#[derive(Clone)]
struct IterationShared {
    name: Arc<str>,
    fixed: rec::FixedAttrs,
    baggage: Option<Arc<str>>,
}

/// The [`IterationShared`] of a label set, built once per thread and label set (every
/// iteration of a VU asks for the same one; this thread's own copies keep their reference
/// counts off other threads' cache lines).
fn iteration_shared(l: &RunLabels) -> IterationShared {
    thread_local! {
        static LAST: RefCell<Option<(RunLabels, IterationShared)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((labels, shared)) = last.as_ref()
            && labels == l
        {
            return shared.clone();
        }
        let baggage =
            (!(l.run_id.is_empty() && l.test.is_empty() && l.scenario.is_empty())).then(|| {
                Arc::from(format!(
                    "novaload.run_id={},novaload.test={},novaload.scenario={}",
                    pct(&l.run_id),
                    pct(&l.test),
                    pct(&l.scenario)
                ))
            });
        let shared = IterationShared {
            name: Arc::from("iteration"),
            fixed: rec::FixedAttrs::new(&[
                ("novaload.test", AttrValue::Shared(l.test.clone())),
                ("novaload.scenario", AttrValue::Shared(l.scenario.clone())),
                ("novaload.run_id", AttrValue::Shared(l.run_id.clone())),
            ]),
            baggage,
        };
        *last = Some((l.clone(), shared.clone()));
        shared
    })
}

/// Percent-encodes a W3C baggage value (everything but unreserved URL characters).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A span attribute value.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Str(String),
    Static(&'static str),
    /// A string the caller already shares (labels, interned names): no copy per span.
    Shared(Arc<str>),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Telemetry {
    /// Whether spans are being created (callers skip building attributes when not).
    pub fn tracing(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.tracer.is_some())
    }

    /// The root span of one VU iteration.
    pub fn iteration_span(&self, labels: &RunLabels, vu: u64, iteration: u64) -> Span {
        let Some(tracer) = self.inner.as_ref().and_then(|i| i.tracer.as_ref()) else {
            return Span::default();
        };
        let shared = iteration_shared(labels);
        let start = rec::SpanStart {
            name: rec::SpanName::Shared(&shared.name),
            kind: rec::Kind::Internal,
            fixed: Some(&shared.fixed),
            attrs: |a: &mut rec::SpanAttrs| {
                a.extend([
                    ("novaload.vu", AttrValue::I64(vu as i64)),
                    ("novaload.iteration", AttrValue::I64(iteration as i64)),
                ])
            },
        };
        Span {
            inner: Some(tracer.root(start, shared.baggage)),
        }
    }
    /// A child span of `parent` (an iteration span or another op span); a root when `parent`
    /// is not recording.
    pub fn child_span(
        &self,
        parent: &Span,
        name: &str,
        kind: SpanKind,
        attrs: &[(&'static str, AttrValue)],
    ) -> Span {
        self.start_child(
            parent,
            rec::SpanStart {
                name: rec::SpanName::Str(name),
                kind: kind.into(),
                fixed: None,
                attrs: |a: &mut rec::SpanAttrs| a.extend(attrs.iter().cloned()),
            },
        )
    }
    /// A child span whose name and attributes the caller keeps ready for many spans (a VU's
    /// request spans of one endpoint: see [`FixedAttrs`]).
    pub(crate) fn child_span_fixed(
        &self,
        parent: &Span,
        name: &Arc<str>,
        kind: SpanKind,
        fixed: &FixedAttrs,
    ) -> Span {
        self.start_child(
            parent,
            rec::SpanStart {
                name: rec::SpanName::Shared(name),
                kind: kind.into(),
                fixed: Some(fixed),
                attrs: |_: &mut rec::SpanAttrs| {},
            },
        )
    }
    fn start_child(
        &self,
        parent: &Span,
        start: rec::SpanStart<'_, impl FnOnce(&mut rec::SpanAttrs)>,
    ) -> Span {
        let Some(tracer) = self.inner.as_ref().and_then(|i| i.tracer.as_ref()) else {
            return Span::default();
        };
        let rec = match &parent.inner {
            Some(p) => tracer.child(p, start),
            None => tracer.root(start, None),
        };
        Span { inner: Some(rec) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baggage_values_are_percent_encoded() {
        assert_eq!(pct("a b,c=d;é"), "a%20b%2Cc%3Dd%3B%C3%A9");
        assert_eq!(pct("run-1.x_y~"), "run-1.x_y~");
    }
}
