//! Client spans recorded without the OpenTelemetry SDK and encoded straight to OTLP protobuf.
//!
//! Why not the SDK tracer: at tens of thousands of requests a second its path — a `SpanData`
//! per span with a `Vec<KeyValue>` of owned strings, a channel shared by every thread, then
//! the OTLP crate's conversion into its own prost structs, grouped by resource and scope,
//! before encoding — cost more CPU than sending the request it described. Here a span is a
//! plain struct owned by the VU; [`SpanRec::finish`] encodes it once, as the bytes of one
//! `ScopeSpans.spans` field, into the calling thread's own shard of the [`SpanQueue`]; the export
//! thread ([`super::spans`]) swaps the shards out and frames their bytes with a resource and
//! scope encoded once per run. Sampling is the SDK's ParentBased(TraceIdRatioBased): the same
//! ratio keeps the same traces, and children follow their root.
//!
//! What a sampled span costs on the VU's thread, kept small because every request has two
//! (iteration + client): attributes that repeat — a VU's test and scenario, an endpoint's
//! method, template and server — are encoded once ([`FixedAttrs`]) and copied as bytes; the
//! few that vary sit inline in the span; names are shared strings; and the queue is reached
//! through a `'static` reference, so no span touches a reference count other threads write.

use super::AttrValue;
use super::pb;
use super::span_export::SpanStats;
use crate::shard::Sharded;
use smallvec::SmallVec;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// OTLP `Span.SpanKind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Internal = 1,
    Client = 3,
}

/// `ScopeSpans.spans` is field 2 of its message: every queued span starts with this tag.
pub(crate) const SPANS_FIELD: u32 = 2;

/// Attributes encoded once as `Span.attributes` fields, for spans that all carry them.
#[derive(Clone, Debug)]
pub struct FixedAttrs(Arc<[u8]>);

impl FixedAttrs {
    pub fn new(attrs: &[(&'static str, AttrValue)]) -> Self {
        let mut buf = Vec::new();
        for (k, v) in attrs {
            pb::put_kv(&mut buf, ATTRIBUTES_FIELD, k, v);
        }
        Self(Arc::from(buf))
    }
}

/// `Span.attributes` is field 9.
const ATTRIBUTES_FIELD: u32 = 9;

/// Attributes set per span; two fit without an allocation (a request's status code and
/// error type, an iteration's VU and number). Not more: the span is moved by value a few
/// times, and every inline slot is copied with it.
pub(crate) type SpanAttrs = SmallVec<[(&'static str, AttrValue); 2]>;

/// A span's name: shared by the caller (no copy per span), or copied when the span is sampled.
#[derive(Clone, Copy)]
pub(crate) enum SpanName<'a> {
    Shared(&'a Arc<str>),
    Str(&'a str),
}

impl SpanName<'_> {
    fn to_shared(self) -> Arc<str> {
        match self {
            SpanName::Shared(a) => a.clone(),
            SpanName::Str(s) => Arc::from(s),
        }
    }
}

/// What a new span starts with besides its ids.
pub(crate) struct SpanStart<'a, F> {
    pub name: SpanName<'a>,
    pub kind: Kind,
    pub fixed: Option<&'a FixedAttrs>,
    /// Called only when the span is sampled (unsampled spans build nothing).
    pub attrs: F,
}

/// Decides sampling and owns the queue spans are encoded into.
pub(crate) struct Tracer {
    /// Leaked on purpose (one per telemetry start): every sampled span refers to it, and a
    /// shared `Arc` would cost each span two reference-count updates on a cache line all
    /// threads write. [`SpanQueue::take_shard`] frees its buffers once closed.
    pub queue: &'static SpanQueue,
    /// A root is sampled when the low 63 bits of its trace id (big-endian) are below this
    /// bound, as in the SDK's TraceIdRatioBased; `u64::MAX` samples everything.
    sample_bound: u64,
}

impl Tracer {
    pub fn new(ratio: f64, queue: &'static SpanQueue) -> Self {
        let sample_bound = if ratio >= 1.0 {
            u64::MAX
        } else if ratio > 0.0 {
            (ratio * (1u64 << 63) as f64) as u64
        } else {
            0
        };
        Self {
            queue,
            sample_bound,
        }
    }

    fn sample(&self, trace_id: &[u8; 16]) -> bool {
        if self.sample_bound == u64::MAX {
            return true;
        }
        let low = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default());
        (low >> 1) < self.sample_bound
    }

    /// A new root span (its own trace).
    pub fn root<F: FnOnce(&mut SpanAttrs)>(
        &self,
        start: SpanStart<'_, F>,
        baggage: Option<Arc<str>>,
    ) -> SpanRec {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&random_nonzero().to_be_bytes());
        trace_id[8..].copy_from_slice(&random_nonzero().to_be_bytes());
        let queue = self.sample(&trace_id).then_some(self.queue);
        SpanRec::start(queue, trace_id, [0; 8], start, baggage)
    }

    /// A child of `parent` in the same trace, sampled when its parent is.
    pub fn child<F: FnOnce(&mut SpanAttrs)>(
        &self,
        parent: &SpanRec,
        start: SpanStart<'_, F>,
    ) -> SpanRec {
        SpanRec::start(
            parent.queue,
            parent.trace_id,
            parent.span_id,
            start,
            parent.baggage.clone(),
        )
    }
}

/// One span in progress. Unsampled spans carry ids (for `traceparent`) and nothing else.
pub(crate) struct SpanRec {
    /// Where a sampled span goes when it ends; None when not sampled.
    queue: Option<&'static SpanQueue>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero for a root.
    parent_id: [u8; 8],
    pub sampled: bool,
    /// None when not sampled.
    name: Option<Arc<str>>,
    kind: Kind,
    start_ns: u64,
    fixed: Option<FixedAttrs>,
    attrs: SpanAttrs,
    events: Vec<Event>,
    pub baggage: Option<Arc<str>>,
}

struct Event {
    time_ns: u64,
    name: &'static str,
    attrs: Vec<(&'static str, AttrValue)>,
}

impl SpanRec {
    fn start<F: FnOnce(&mut SpanAttrs)>(
        queue: Option<&'static SpanQueue>,
        trace_id: [u8; 16],
        parent_id: [u8; 8],
        start: SpanStart<'_, F>,
        baggage: Option<Arc<str>>,
    ) -> Self {
        let sampled = queue.is_some();
        let mut attrs = SpanAttrs::new();
        let (name, fixed, start_ns) = if sampled {
            (start.attrs)(&mut attrs);
            (Some(start.name.to_shared()), start.fixed.cloned(), now_ns())
        } else {
            (None, None, 0)
        };
        Self {
            queue,
            trace_id,
            span_id: random_nonzero().to_be_bytes(),
            parent_id,
            sampled,
            name,
            kind: start.kind,
            start_ns,
            fixed,
            attrs,
            events: Vec::new(),
            baggage,
        }
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    pub fn set_attribute(&mut self, key: &'static str, value: AttrValue) {
        if !self.sampled {
            return;
        }
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key, value)),
        }
    }

    pub fn add_event(&mut self, name: &'static str, attrs: &[(&'static str, AttrValue)]) {
        if self.sampled {
            self.events.push(Event {
                time_ns: now_ns(),
                name,
                attrs: attrs.to_vec(),
            });
        }
    }

    /// Ends the span: a sampled one is encoded into the queue (or counted as dropped).
    pub fn finish(self, error: Option<&str>) {
        if let Some(q) = self.queue {
            q.push(&self, now_ns(), error);
        }
    }

    /// Length of the encoded `Span` message.
    fn encoded_len(&self, end_error: Option<&str>) -> usize {
        let mut n =
            pb::bytes_len(1, 16) + pb::bytes_len(2, 8) + pb::bytes_len(5, self.name().len());
        if self.parent_id != [0; 8] {
            n += pb::bytes_len(4, 8);
        }
        n += 2 + 9 + 9 + 6; // kind, start, end, flags
        n += self.fixed.as_ref().map_or(0, |f| f.0.len());
        n += self
            .attrs
            .iter()
            .map(|(k, v)| pb::msg_len(ATTRIBUTES_FIELD, pb::kv_len(k, v)))
            .sum::<usize>();
        n += self
            .events
            .iter()
            .map(|e| pb::msg_len(11, e.encoded_len()))
            .sum::<usize>();
        if let Some(msg) = end_error {
            n += pb::msg_len(15, status_len(msg));
        }
        n
    }

    /// Appends this span as one `ScopeSpans.spans` field (tag, length, `Span` message).
    fn encode(&self, buf: &mut Vec<u8>, end_ns: u64, error: Option<&str>) {
        pb::put_tag(buf, SPANS_FIELD, pb::LEN);
        pb::put_varint(buf, self.encoded_len(error) as u64);
        pb::put_bytes(buf, 1, &self.trace_id);
        pb::put_bytes(buf, 2, &self.span_id);
        if self.parent_id != [0; 8] {
            pb::put_bytes(buf, 4, &self.parent_id);
        }
        pb::put_bytes(buf, 5, self.name().as_bytes());
        pb::put_tag(buf, 6, pb::VARINT);
        pb::put_varint(buf, self.kind as u64);
        pb::put_fixed64(buf, 7, self.start_ns);
        pb::put_fixed64(buf, 8, end_ns.max(self.start_ns));
        if let Some(f) = &self.fixed {
            buf.extend_from_slice(&f.0);
        }
        for (k, v) in &self.attrs {
            pb::put_kv(buf, ATTRIBUTES_FIELD, k, v);
        }
        for e in &self.events {
            pb::put_tag(buf, 11, pb::LEN);
            pb::put_varint(buf, e.encoded_len() as u64);
            pb::put_fixed64(buf, 1, e.time_ns);
            pb::put_bytes(buf, 2, e.name.as_bytes());
            for (k, v) in &e.attrs {
                pb::put_kv(buf, 3, k, v);
            }
        }
        if let Some(msg) = error {
            pb::put_tag(buf, 15, pb::LEN);
            pb::put_varint(buf, status_len(msg) as u64);
            pb::put_bytes(buf, 2, msg.as_bytes());
            pb::put_tag(buf, 3, pb::VARINT);
            pb::put_varint(buf, STATUS_ERROR);
        }
        // W3C trace flags in the low byte; 0x100 says the parent's remoteness is known (local).
        pb::put_tag(buf, 16, pb::I32);
        buf.extend_from_slice(&(0x100u32 | 1).to_le_bytes());
    }
}

/// OTLP `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;

fn status_len(msg: &str) -> usize {
    pb::bytes_len(2, msg.len()) + 2
}

impl Event {
    fn encoded_len(&self) -> usize {
        9 + pb::bytes_len(2, self.name.len())
            + self
                .attrs
                .iter()
                .map(|(k, v)| pb::msg_len(3, pb::kv_len(k, v)))
                .sum::<usize>()
    }
}

/// Spans waiting for export: one byte buffer per thread shard, bounded in span count (each
/// shard holds its share of the bound, so a span's push touches only its own shard).
pub(crate) struct SpanQueue {
    shards: Sharded<Mutex<Shard>>,
    max_per_shard: usize,
    /// Set at shutdown: later spans are counted as dropped, not queued for nobody.
    closed: AtomicBool,
    pub stats: Arc<SpanStats>,
}

#[derive(Default)]
struct Shard {
    buf: Vec<u8>,
    spans: usize,
}

impl SpanQueue {
    /// A queue that lives as long as the process (see [`Tracer::queue`]).
    pub fn leak(max_queue: usize, stats: Arc<SpanStats>) -> &'static Self {
        let shards: Sharded<Mutex<Shard>> = Sharded::default();
        let max_per_shard = max_queue.div_ceil(shards.len()).max(1);
        Box::leak(Box::new(Self {
            shards,
            max_per_shard,
            closed: AtomicBool::new(false),
            stats,
        }))
    }

    /// Spans not yet taken by the export thread.
    pub fn pending(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).spans)
            .sum()
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn push(&self, span: &SpanRec, end_ns: u64, error: Option<&str>) {
        if self.closed.load(Ordering::Relaxed) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut s = self.shards.mine().lock().unwrap_or_else(|e| e.into_inner());
        if s.spans >= self.max_per_shard {
            drop(s);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        span.encode(&mut s.buf, end_ns, error);
        s.spans += 1;
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Takes shard `i`'s spans (concatenated `spans` fields) by swapping its buffer with
    /// `spare`, which must be empty: the bytes are not copied, and the shard keeps `spare`'s
    /// capacity. Returns how many spans were taken. Once closed, a shard is left with no
    /// buffer at all (the queue itself is never freed).
    pub fn take_shard(&self, i: usize, spare: &mut Vec<u8>) -> usize {
        debug_assert!(spare.is_empty());
        let mut s = self.shards.get(i).lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut s.buf, spare);
        if self.closed.load(Ordering::Relaxed) {
            s.buf = Vec::new();
        }
        std::mem::take(&mut s.spans)
    }
}

/// Splits concatenated `spans` fields into chunks of at most `max_spans` spans and
/// `max_bytes` bytes (one span larger than that is a chunk of its own). Returns the byte ranges.
pub(crate) fn chunks(buf: &[u8], max_spans: usize, max_bytes: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut pos, mut count) = (0, 0, 0);
    while pos < buf.len() {
        let Some(field_len) = pb::field_len_at(buf, pos) else {
            break; // cannot happen with our own encoder; stop rather than send garbage
        };
        if count > 0 && (count == max_spans || pos + field_len - start > max_bytes) {
            out.push((start, pos, count));
            start = pos;
            count = 0;
        }
        pos += field_len;
        count += 1;
    }
    if count > 0 {
        out.push((start, pos.min(buf.len()), count));
    }
    out
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
}

/// A random non-zero u64 (wyrand over a per-thread state seeded from the OS): span and trace
/// ids need uniqueness and uniform low bits for sampling, not secrecy.
fn random_nonzero() -> u64 {
    RNG.with(|s| {
        loop {
            let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
            s.set(x);
            let t = (x as u128).wrapping_mul((x ^ 0xe703_7ed1_a0b4_28db) as u128);
            let v = ((t >> 64) as u64) ^ (t as u64);
            if v != 0 {
                return v;
            }
        }
    })
}

/// Lower-case hex of `bytes` into `out`.
pub(crate) fn hex_into(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.extend(hex_pair(*b).map(char::from));
    }
}

/// The two lower-case hex digits of `b`.
pub(crate) fn hex_pair(b: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(name: &str, kind: Kind) -> SpanStart<'_, impl FnOnce(&mut SpanAttrs)> {
        SpanStart {
            name: SpanName::Str(name),
            kind,
            fixed: None,
            attrs: |_: &mut SpanAttrs| {},
        }
    }

    #[test]
    fn varints_round_trip_their_lengths() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::MAX] {
            let mut b = Vec::new();
            pb::put_varint(&mut b, v);
            assert_eq!(b.len(), pb::varint_len(v), "{v}");
        }
    }

    #[test]
    fn encoded_length_matches_what_is_written_and_chunks_split_on_span_boundaries() {
        let q = SpanQueue::leak(100, Arc::default());
        let t = Tracer::new(1.0, q);
        let fixed = FixedAttrs::new(&[
            ("novaload.test", AttrValue::Static("api")),
            ("server.port", AttrValue::I64(8090)),
        ]);
        for i in 0..10 {
            let mut root = t.root(
                SpanStart {
                    name: SpanName::Str("iteration"),
                    kind: Kind::Internal,
                    fixed: Some(&fixed),
                    attrs: |a: &mut SpanAttrs| a.push(("novaload.vu", AttrValue::I64(-i))),
                },
                None,
            );
            root.add_event("phase", &[("phase", AttrValue::Static("copy"))]);
            let mut c = t.child(&root, start("GET /x", Kind::Client));
            c.set_attribute("f", AttrValue::F64(0.5));
            c.set_attribute("b", AttrValue::Bool(true));
            c.finish(Some("boom"));
            root.finish(None);
        }
        let mut buf = Vec::new();
        let mut taken = 0;
        for i in 0..q.shard_count() {
            let mut part = Vec::new();
            taken += q.take_shard(i, &mut part);
            buf.extend_from_slice(&part);
        }
        assert_eq!(taken, 20);
        assert_eq!(q.pending(), 0);
        let parts = chunks(&buf, 3, usize::MAX);
        assert_eq!(parts.len(), 7);
        assert_eq!(parts.iter().map(|p| p.2).sum::<usize>(), 20);
        assert_eq!(parts.last().map(|p| p.1), Some(buf.len()));
        let by_bytes = chunks(&buf, usize::MAX, 1);
        assert_eq!(
            by_bytes.len(),
            20,
            "a span over the byte limit travels alone"
        );
    }

    #[test]
    fn ratio_sampling_keeps_about_the_ratio_and_children_follow() {
        let q = SpanQueue::leak(1_000_000, Arc::default());
        let t = Tracer::new(0.25, q);
        let mut kept = 0;
        for _ in 0..20_000 {
            let r = t.root(start("r", Kind::Internal), None);
            let c = t.child(&r, start("c", Kind::Client));
            assert_eq!(r.sampled, c.sampled);
            assert_eq!(r.trace_id, c.trace_id);
            kept += usize::from(r.sampled);
        }
        assert!((4_000..6_000).contains(&kept), "{kept}");
        let none = Tracer::new(0.0, q);
        assert!(!none.root(start("r", Kind::Internal), None).sampled);
    }

    #[test]
    fn full_queue_counts_drops() {
        let stats = Arc::new(SpanStats::default());
        // one shard per two threads of parallelism: a bound of 1 per shard
        let q = SpanQueue::leak(1, stats.clone());
        let t = Tracer::new(1.0, q);
        for _ in 0..5 {
            t.root(start("r", Kind::Internal), None).finish(None);
        }
        assert_eq!(q.pending(), 1);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 4);
    }
}
