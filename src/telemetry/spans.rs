//! Span export: a bounded-queue batch processor that counts what it drops.
//!
//! Why not the SDK's `BatchSpanProcessor`: in opentelemetry_sdk 0.33 its dropped-span count is
//! private (only logged at shutdown), its shutdown drains the whole queue with one export
//! timeout per batch (a dead collector and a 64k queue would hold `shutdown` for minutes), and
//! it polls the exporter with a bare `futures_executor`, outside any Tokio context, which the
//! hyper HTTP client cannot run in. This processor keeps the same design (a bounded channel
//! filled with `try_send` from `on_end`, one worker thread that batches) and adds: an atomic
//! drop counter read live by `/metrics`, an exported counter, per-export timeouts, a shutdown
//! deadline after which what is left is discarded and counted, and exports driven on the
//! caller's Tokio runtime through its `Handle`.

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters shared by the processor, `/metrics` and the final report.
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

enum Control {
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(Instant, SyncSender<OTelSdkResult>),
    Resource(Resource),
}

#[derive(Debug)]
pub struct QueueProcessor {
    tx: SyncSender<SpanData>,
    ctl: SyncSender<Control>,
    stats: Arc<SpanStats>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl QueueProcessor {
    pub fn new<E: SpanExporter + 'static>(
        exporter: E,
        cfg: QueueConfig,
        stats: Arc<SpanStats>,
        rt: tokio::runtime::Handle,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(cfg.max_queue.max(1));
        let (ctl, ctl_rx) = mpsc::sync_channel(16);
        let worker_stats = stats.clone();
        let worker = std::thread::Builder::new()
            .name("novaload-span-export".into())
            .spawn(move || {
                // The exporter's own telemetry must not feed back into this pipeline.
                let _guard = Context::enter_telemetry_suppressed_scope();
                Worker {
                    exporter,
                    cfg,
                    stats: worker_stats,
                    rt,
                }
                .run(rx, ctl_rx)
            })
            .ok();
        Self {
            tx,
            ctl,
            stats,
            worker: Mutex::new(worker),
        }
    }
}

struct Worker<E> {
    exporter: E,
    cfg: QueueConfig,
    stats: Arc<SpanStats>,
    rt: tokio::runtime::Handle,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self, rx: Receiver<SpanData>, ctl: Receiver<Control>) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.cfg.max_batch);
        let mut next = Instant::now() + self.cfg.delay;
        loop {
            match ctl.try_recv() {
                Ok(Control::Flush(ack)) => {
                    let r = self.drain(
                        &rx,
                        &mut batch,
                        Instant::now() + self.cfg.export_timeout * 4,
                    );
                    let _ = ack.send(r);
                }
                Ok(Control::Shutdown(deadline, ack)) => {
                    let r = self.drain(&rx, &mut batch, deadline);
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = self
                        .exporter
                        .shutdown_with_timeout(left.max(Duration::from_millis(100)));
                    let _ = ack.send(r);
                    return;
                }
                Ok(Control::Resource(r)) => self.exporter.set_resource(&r),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
            // Wake at least every 50 ms to look at the control channel.
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            match rx.recv_timeout(wait) {
                Ok(span) => {
                    batch.push(span);
                    while batch.len() < self.cfg.max_batch {
                        match rx.try_recv() {
                            Ok(s) => batch.push(s),
                            Err(_) => break,
                        }
                    }
                    if batch.len() >= self.cfg.max_batch {
                        let _ = self.export(&mut batch, Instant::now() + self.cfg.export_timeout);
                        next = Instant::now() + self.cfg.delay;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next {
                if !batch.is_empty() {
                    let _ = self.export(&mut batch, Instant::now() + self.cfg.export_timeout);
                }
                next = Instant::now() + self.cfg.delay;
            }
        }
    }

    /// Exports everything queued until `deadline`; what remains after it is dropped and counted.
    fn drain(
        &mut self,
        rx: &Receiver<SpanData>,
        batch: &mut Vec<SpanData>,
        deadline: Instant,
    ) -> OTelSdkResult {
        let mut result = Ok(());
        loop {
            while batch.len() < self.cfg.max_batch {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return result;
            }
            if Instant::now() >= deadline {
                let mut n = batch.len() as u64;
                batch.clear();
                while rx.try_recv().is_ok() {
                    n += 1;
                }
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                self.stats.errors.push(format!(
                    "trace flush deadline reached: {n} queued spans discarded"
                ));
                return Err(OTelSdkError::Timeout(Duration::ZERO));
            }
            let until = deadline.min(Instant::now() + self.cfg.export_timeout);
            if let Err(e) = self.export(batch, until) {
                result = Err(e);
            }
        }
    }

    fn export(&mut self, batch: &mut Vec<SpanData>, until: Instant) -> OTelSdkResult {
        let n = batch.len() as u64;
        let spans = std::mem::replace(batch, Vec::with_capacity(self.cfg.max_batch));
        let timeout = until.saturating_duration_since(Instant::now());
        let fut = self.exporter.export(spans);
        let r = self
            .rt
            .block_on(async move { tokio::time::timeout(timeout, fut).await })
            .unwrap_or(Err(OTelSdkError::Timeout(timeout)));
        match &r {
            Ok(()) => {
                self.stats.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.fetch_add(n, Ordering::Relaxed);
                self.stats.errors.push(format!("trace export failed: {e}"));
            }
        }
        r
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.tx.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (ack, rx) = mpsc::sync_channel(1);
        self.ctl
            .try_send(Control::Flush(ack))
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| OTelSdkError::Timeout(Duration::from_secs(30)))?
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        let (ack, rx) = mpsc::sync_channel(1);
        self.ctl
            .try_send(Control::Shutdown(deadline, ack))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        // Grace beyond the deadline for the in-flight export to notice its own timeout.
        let r = rx
            .recv_timeout(timeout + Duration::from_millis(500))
            .map_err(|_| OTelSdkError::Timeout(timeout))?;
        if let Some(h) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        r
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.ctl.try_send(Control::Resource(resource.clone()));
    }
}
