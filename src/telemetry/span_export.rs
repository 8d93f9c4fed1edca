//! Span export: one thread takes the encoded spans out of the [`SpanQueue`] and sends them, in
//! requests of at most `max_batch` spans, to a [`OtlpSink`] — OTLP over gRPC or HTTP/protobuf,
//! or (tests, custom pipelines) an SDK `SpanExporter` fed decoded `SpanData`.
//!
//! Every export is bounded by a timeout and driven on the caller's Tokio runtime through its
//! `Handle` (tonic and the HTTP client need its reactor). Shutdown drains the queue until a
//! deadline; an export in flight then is cut off at it (see [`super::cutoff`]) and what is
//! left is discarded and counted, so a dead collector holds shutdown for at most that long,
//! the thread has stopped using the runtime when shutdown returns, and the load is never
//! blocked: a full queue drops (and counts) new spans.

use super::cutoff::{self, Cutoff, CutoffSender};
use super::otlp::{ExportFuture, Framing, OtlpSink};
use super::span_record::{self, SpanQueue};
use bytes::Bytes;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// Counters shared by the queue, the export thread, `/metrics` and the final report.
#[derive(Debug, Default)]
pub struct SpanStats {
    /// Spans that never reached the exporter: queue full, or still queued at the shutdown deadline.
    pub dropped: AtomicU64,
    /// Spans the exporter accepted.
    pub exported: AtomicU64,
    /// Spans in batches the exporter failed (collector down, timeout).
    pub failed: AtomicU64,
    pub errors: ErrorLog,
}

/// Distinct error messages with counts (bounded: a dead collector fails every batch).
#[derive(Debug, Default)]
pub struct ErrorLog {
    inner: Mutex<Vec<(String, u64)>>,
}

impl ErrorLog {
    pub fn push(&self, msg: String) {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = v.iter_mut().find(|(m, _)| *m == msg) {
            e.1 += 1;
        } else if v.len() < 20 {
            v.push((msg, 1));
        }
    }
    pub fn render(&self) -> Vec<String> {
        let v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .map(|(m, n)| {
                if *n > 1 {
                    format!("{m} (x{n})")
                } else {
                    m.clone()
                }
            })
            .collect()
    }
}

/// Queue and batch sizing.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    pub max_queue: usize,
    pub max_batch: usize,
    pub delay: Duration,
    pub export_timeout: Duration,
}

/// OTLP receivers refuse gRPC messages over 4 MiB by default: requests stay under this.
const MAX_REQUEST_BYTES: usize = 3 << 20;

enum Control {
    /// Drain until the deadline, then say so on the channel and stop.
    Shutdown(Instant, tokio::sync::oneshot::Sender<()>),
}

/// Time the export thread gets past the shutdown deadline to notice it and answer.
const STOP_GRACE: Duration = Duration::from_millis(250);

/// The export thread's handle. Dropping it without [`SpanExport::shutdown`] (an early error
/// return) stops the thread at once, so it is not left polling a runtime that goes away.
pub struct SpanExport {
    ctl: SyncSender<Control>,
    cutoff: CutoffSender,
}

impl SpanExport {
    pub fn start(
        sink: Box<dyn OtlpSink>,
        queue: &'static SpanQueue,
        resource: &Resource,
        cfg: QueueConfig,
        rt: tokio::runtime::Handle,
    ) -> Self {
        let (ctl, ctl_rx) = mpsc::sync_channel(16);
        let (cutoff, cutoff_rx) = cutoff::cutoff();
        let framing = Framing::new(resource, "novaload", env!("CARGO_PKG_VERSION"));
        let spawned = std::thread::Builder::new()
            .name("novaload-span-export".into())
            .spawn(move || {
                Worker {
                    sink,
                    queue,
                    framing,
                    cfg,
                    rt,
                    cutoff: cutoff_rx,
                    buf: Vec::new(),
                }
                .run(ctl_rx)
            });
        if let Err(e) = spawned {
            queue
                .stats
                .errors
                .push(format!("span export thread did not start: {e}"));
        }
        Self { ctl, cutoff }
    }

    /// Drains the queue until `deadline` and stops the thread. An export in flight is cut off
    /// at the deadline; spans still queued then are counted as dropped. Returns once the thread
    /// is done with the runtime, or with an error a short grace after the deadline.
    pub async fn shutdown(&self, deadline: Instant) -> Result<(), String> {
        self.cutoff.cut_at(deadline);
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.ctl.try_send(Control::Shutdown(deadline, ack)).is_err() {
            return Err("the span export thread is not running".to_owned());
        }
        let wait_until = tokio::time::Instant::from_std(deadline + STOP_GRACE);
        match tokio::time::timeout_at(wait_until, done).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the span export thread stopped without draining".to_owned()),
            Err(_) => Err("the span export thread did not stop by the deadline".to_owned()),
        }
    }
}

impl Drop for SpanExport {
    fn drop(&mut self) {
        // After a shutdown the thread is gone and this does nothing.
        let now = Instant::now();
        self.cutoff.cut_at(now);
        let (ack, _) = tokio::sync::oneshot::channel();
        let _ = self.ctl.try_send(Control::Shutdown(now, ack));
    }
}

struct Worker {
    sink: Box<dyn OtlpSink>,
    queue: &'static SpanQueue,
    framing: Framing,
    cfg: QueueConfig,
    rt: tokio::runtime::Handle,
    /// The shutdown deadline, which also ends an export already in flight.
    cutoff: Cutoff,
    buf: Vec<u8>,
}

impl Worker {
    fn run(mut self, ctl: Receiver<Control>) {
        let mut next = Instant::now() + self.cfg.delay;
        loop {
            // Sleep on the control channel: shutdown wakes the thread at once.
            match ctl.recv_timeout(Duration::from_millis(20)) {
                Ok(Control::Shutdown(deadline, ack)) => {
                    self.queue.close();
                    self.drain(deadline);
                    let _ = ack.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next || self.queue.pending() >= self.cfg.max_batch {
                self.export_queued(now + self.cfg.export_timeout * 4);
                next = Instant::now() + self.cfg.delay;
            }
        }
    }

    /// Exports what is queued, one pass over the shards, in requests of at most `max_batch`
    /// spans; what is not sent by `deadline` is dropped and counted.
    fn export_queued(&mut self, deadline: Instant) -> usize {
        (0..self.queue.shard_count())
            .map(|shard| self.export_shard(shard, deadline))
            .sum()
    }

    /// At shutdown (the queue closed): exports until the queue is empty; what is left at
    /// `deadline` is dropped and counted.
    fn drain(&mut self, deadline: Instant) {
        while self.export_queued(deadline) > 0 {
            if Instant::now() >= deadline {
                // Whatever arrived meanwhile is counted as dropped.
                let mut n = 0;
                for shard in 0..self.queue.shard_count() {
                    self.buf.clear();
                    n += self.queue.take_shard(shard, &mut self.buf);
                }
                self.buf.clear();
                let stats = &self.queue.stats;
                stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Exports one shard's spans (its buffer swapped out, not copied); returns how many it had.
    fn export_shard(&mut self, shard: usize, deadline: Instant) -> usize {
        self.buf.clear();
        let mut buf = std::mem::take(&mut self.buf);
        let taken = self.queue.take_shard(shard, &mut buf);
        if taken > 0 {
            self.export_bytes(&buf, taken, deadline);
        }
        self.buf = buf;
        taken
    }

    /// Sends `taken` encoded spans in requests of at most `max_batch` spans and
    /// [`MAX_REQUEST_BYTES`]; what is not sent by `deadline` is dropped and counted.
    fn export_bytes(&mut self, buf: &[u8], taken: usize, deadline: Instant) {
        let stats = self.queue.stats.clone();
        let deadline = self.cutoff.deadline().map_or(deadline, |d| d.min(deadline));
        // Usually one request's worth: only a bigger take is walked to split it.
        let parts = if taken <= self.cfg.max_batch && buf.len() <= MAX_REQUEST_BYTES {
            vec![(0, buf.len(), taken)]
        } else {
            span_record::chunks(buf, self.cfg.max_batch, MAX_REQUEST_BYTES)
        };
        for (start, end, count) in parts {
            let now = Instant::now();
            if now >= deadline {
                stats.dropped.fetch_add(count as u64, Ordering::Relaxed);
                stats
                    .errors
                    .push("trace flush deadline reached: queued spans discarded".to_owned());
                continue;
            }
            let timeout = self.cfg.export_timeout.min(deadline - now);
            let request = self.framing.request(&buf[start..end]);
            let (sink, cutoff) = (&mut self.sink, &mut self.cutoff);
            let r = self
                .rt
                .block_on(cutoff.bound(timeout, sink.export(request)));
            match r {
                Ok(()) => stats.exported.fetch_add(count as u64, Ordering::Relaxed),
                Err(e) => {
                    stats.errors.push(format!("trace export failed: {e}"));
                    stats.failed.fetch_add(count as u64, Ordering::Relaxed)
                }
            };
        }
    }
}

/// Feeds an SDK `SpanExporter` (e.g. the in-memory one in tests): each request is decoded back
/// into `SpanData`, so whoever reads them sees exactly what an OTLP receiver would.
pub struct SdkSink<E> {
    exporter: E,
}

impl<E: SpanExporter + 'static> SdkSink<E> {
    pub fn new(mut exporter: E, resource: &Resource) -> Self {
        exporter.set_resource(resource);
        Self { exporter }
    }
}

impl<E: SpanExporter + 'static> OtlpSink for SdkSink<E> {
    fn export(&mut self, request: Bytes) -> ExportFuture<'_> {
        Box::pin(async move {
            let spans = decode::span_data(&request)?;
            self.exporter.export(spans).await.map_err(|e| e.to_string())
        })
    }
}

/// OTLP protobuf → SDK `SpanData`.
mod decode {
    use super::SpanData;
    use opentelemetry::trace::{
        Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{KeyValue as PbKeyValue, any_value};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub fn span_data(request: &[u8]) -> Result<Vec<SpanData>, String> {
        let req = ExportTraceServiceRequest::decode(request)
            .map_err(|e| format!("undecodable OTLP request: {e}"))?;
        let mut out = Vec::new();
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                let scope = ss.scope.unwrap_or_default();
                let scope = InstrumentationScope::builder(scope.name)
                    .with_version(scope.version)
                    .build();
                for s in ss.spans {
                    let id16: [u8; 16] = s.trace_id.as_slice().try_into().unwrap_or_default();
                    let id8 = |b: &[u8]| -> [u8; 8] { b.try_into().unwrap_or_default() };
                    let status = match s.status {
                        Some(st) if st.code == 2 => Status::error(st.message),
                        Some(st) if st.code == 1 => Status::Ok,
                        _ => Status::Unset,
                    };
                    let mut events = SpanEvents::default();
                    events.dropped_count = s.dropped_events_count;
                    events.events = s
                        .events
                        .into_iter()
                        .map(|e| Event::new(e.name, time(e.time_unix_nano), attrs(e.attributes), 0))
                        .collect();
                    out.push(SpanData {
                        span_context: SpanContext::new(
                            TraceId::from_bytes(id16),
                            SpanId::from_bytes(id8(&s.span_id)),
                            TraceFlags::new(s.flags as u8),
                            false,
                            TraceState::default(),
                        ),
                        parent_span_id: SpanId::from_bytes(id8(&s.parent_span_id)),
                        parent_span_is_remote: s.flags & 0x200 != 0,
                        span_kind: match s.kind {
                            2 => SpanKind::Server,
                            3 => SpanKind::Client,
                            4 => SpanKind::Producer,
                            5 => SpanKind::Consumer,
                            _ => SpanKind::Internal,
                        },
                        name: Cow::Owned(s.name),
                        start_time: time(s.start_time_unix_nano),
                        end_time: time(s.end_time_unix_nano),
                        attributes: attrs(s.attributes),
                        dropped_attributes_count: s.dropped_attributes_count,
                        events,
                        links: SpanLinks::default(),
                        status,
                        instrumentation_scope: scope.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn time(ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(ns)
    }

    fn attrs(kvs: Vec<PbKeyValue>) -> Vec<KeyValue> {
        kvs.into_iter()
            .map(|kv| {
                let v = match kv.value.and_then(|v| v.value) {
                    Some(any_value::Value::StringValue(s)) => Value::from(s),
                    Some(any_value::Value::BoolValue(b)) => Value::from(b),
                    Some(any_value::Value::IntValue(i)) => Value::from(i),
                    Some(any_value::Value::DoubleValue(f)) => Value::from(f),
                    other => Value::from(format!("{other:?}")),
                };
                KeyValue::new(kv.key, v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::span_record::{Kind, SpanAttrs, SpanName, SpanStart, Tracer};
    use std::sync::Arc;

    /// Records how many spans each export request carried.
    struct Counting(Arc<Mutex<Vec<usize>>>);

    impl OtlpSink for Counting {
        fn export(&mut self, request: Bytes) -> ExportFuture<'_> {
            let spans = decode::span_data(&request).map_or(usize::MAX, |s| s.len());
            self.0.lock().unwrap().push(spans);
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn idle_shards_send_no_requests_and_every_span_is_sent_once() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stats = Arc::new(SpanStats::default());
        let queue = SpanQueue::leak(1_000, stats.clone());
        let tracer = Tracer::new(1.0, queue);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let export = SpanExport::start(
            Box::new(Counting(requests.clone())),
            queue,
            &Resource::builder().build(),
            QueueConfig {
                max_queue: 1_000,
                max_batch: 100,
                delay: Duration::from_millis(30),
                export_timeout: Duration::from_secs(2),
            },
            rt.handle().clone(),
        );
        for _ in 0..3 {
            let start = SpanStart {
                name: SpanName::Str("iteration"),
                kind: Kind::Internal,
                fixed: None,
                attrs: |_: &mut SpanAttrs| {},
            };
            tracer.root(start, None).finish(None);
        }
        // several export periods, all but the first with every shard empty
        std::thread::sleep(Duration::from_millis(300));
        rt.block_on(export.shutdown(Instant::now() + Duration::from_secs(2)))
            .unwrap();
        assert_eq!(*requests.lock().unwrap(), vec![3]);
        assert_eq!(stats.exported.load(Ordering::Relaxed), 3);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    }
}
