//! OTLP metric export: a task on the runtime pushes the histogram families (encoded here) and
//! what the OpenTelemetry SDK's reader collected (counters, gauges, the scrape-time values
//! registered by [`register_observables`]) every interval and once more at shutdown, each
//! request bounded by the export timeout and the shutdown deadline.

use super::cutoff;
use super::instruments;
use super::names;
use super::otlp::{self, OtlpSink};
use super::process;
use super::span_export::{ErrorLog, SpanStats};
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(super) fn otlp_sink(
    t: otlp::Transport,
    url: &str,
    grpc_method: &'static str,
    timeout: Duration,
) -> anyhow::Result<Box<dyn OtlpSink>> {
    Ok(match t {
        otlp::Transport::Grpc => Box::new(otlp::GrpcSink::new(url, grpc_method, timeout)?),
        otlp::Transport::HttpProtobuf => Box::new(otlp::HttpSink::new(url, timeout)?),
    })
}

/// Sends OTLP metrics from a task on the runtime: the histogram families, encoded here every
/// interval, and the SDK's counters and gauges, which its reader thread encodes and queues
/// (see [`otlp::QueuedMetricExporter`]); once more at shutdown. Every send is bounded by the
/// export timeout and by the shutdown deadline.
pub(super) struct MetricExport {
    stop: tokio::sync::oneshot::Sender<()>,
    cutoff: cutoff::CutoffSender,
    task: tokio::task::JoinHandle<()>,
}

/// What the metric export task needs besides its sink.
pub(super) struct MetricExportParts {
    pub(super) framing: otlp::Framing,
    pub(super) families: Vec<Arc<instruments::HistFamily>>,
    /// Requests the SDK reader queued.
    pub(super) sdk: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) errors: Arc<ErrorLog>,
}

/// Requests of the SDK reader that may wait for the export task (each a few KiB); when full,
/// the reader's next collection is skipped and counted.
pub(super) const SDK_METRIC_QUEUE: usize = 2;

impl MetricExport {
    pub(super) fn start(mut sink: Box<dyn OtlpSink>, parts: MetricExportParts) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (cut, mut cutoff) = cutoff::cutoff();
        let MetricExportParts {
            framing,
            families,
            mut sdk,
            interval,
            timeout,
            errors,
        } = parts;
        let start_ns = unix_nanos();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut buf = Vec::new();
            let mut sdk_open = true;
            // Bounded: ends when stopped (shutdown, or the handle dropped).
            loop {
                let request = tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    r = sdk.recv(), if sdk_open => match r {
                        Some(r) => Some(("metric", r)),
                        None => { sdk_open = false; None }
                    },
                    _ = tick.tick() => {
                        buf.clear();
                        instruments::encode_otlp_histograms(&mut buf, &families, start_ns, unix_nanos());
                        (!buf.is_empty()).then(|| ("histogram", framing.request(&buf)))
                    }
                };
                if let Some((what, r)) = request {
                    send(&mut *sink, &mut cutoff, timeout, &errors, what, r).await;
                }
            }
            // Final values: what the SDK reader queued at its shutdown, then the histograms.
            sdk.close();
            let mut fin = Vec::new();
            while let Ok(r) = sdk.try_recv() {
                fin.push(("metric", r));
            }
            buf.clear();
            instruments::encode_otlp_histograms(&mut buf, &families, start_ns, unix_nanos());
            if !buf.is_empty() {
                fin.push(("histogram", framing.request(&buf)));
            }
            for (what, r) in fin {
                send(&mut *sink, &mut cutoff, timeout, &errors, what, r).await;
            }
        });
        Self {
            stop,
            cutoff: cut,
            task,
        }
    }

    /// Stops the task after its final export; an export still running at `deadline` is cut
    /// off, and the task is given up (and aborted) a short grace after it.
    pub(super) async fn shutdown(self, deadline: std::time::Instant) -> Result<(), String> {
        self.cutoff.cut_at(deadline);
        let _ = self.stop.send(());
        let mut task = self.task;
        let wait_until = tokio::time::Instant::from_std(deadline + STOP_GRACE);
        match tokio::time::timeout_at(wait_until, &mut task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the metric export task failed: {e}")),
            Err(_) => {
                task.abort();
                Err("the metric export task did not stop by the deadline".to_owned())
            }
        }
    }
}

/// Time past the shutdown deadline a cut-off export gets to return before it is given up.
const STOP_GRACE: Duration = Duration::from_millis(250);

/// One metric export request, bounded by `timeout` and the shutdown deadline; failures are
/// counted in `errors` (`what`: "metric" for the SDK's, "histogram" for novaload's own).
async fn send(
    sink: &mut dyn OtlpSink,
    cutoff: &mut cutoff::Cutoff,
    timeout: Duration,
    errors: &ErrorLog,
    what: &str,
    request: bytes::Bytes,
) {
    if cutoff
        .deadline()
        .is_some_and(|d| std::time::Instant::now() >= d)
    {
        errors.push(format!(
            "{what} export failed: not sent, the telemetry shutdown deadline had passed"
        ));
        return;
    }
    if let Err(e) = cutoff.bound(timeout, sink.export(request)).await {
        errors.push(format!("{what} export failed: {e}"));
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs a blocking SDK shutdown off the runtime's workers, giving up at `deadline` (+ grace).
/// (The SDK reader's shutdown waits for its own thread, which only collects and queues: quick.)
pub(super) async fn bounded_blocking<F>(deadline: std::time::Instant, f: F) -> Result<(), String>
where
    F: FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
{
    let task = tokio::task::spawn_blocking(f);
    let wait_until = tokio::time::Instant::from_std(deadline + STOP_GRACE);
    match tokio::time::timeout_at(wait_until, task).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(join)) => Err(format!("the SDK shutdown failed: {join}")),
        Err(_) => Err("the SDK reader did not stop by the deadline".to_owned()),
    }
}

/// `novaload_spans_dropped_total{run_id}`, read from the processor's atomic at scrape time.
#[derive(Debug)]
pub(super) struct SpansDroppedCollector {
    pub(super) run_id: String,
    pub(super) stats: Arc<SpanStats>,
}

impl prometheus_client::collector::Collector for SpansDroppedCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let c = prometheus_client::metrics::counter::ConstCounter::new(
            self.stats.dropped.load(Ordering::Relaxed),
        );
        let m = names::SPANS_DROPPED;
        let mut desc = encoder.encode_descriptor(
            m.prometheus.trim_end_matches("_total"),
            m.help.trim_end_matches('.'),
            None,
            c.metric_type(),
        )?;
        let labels = [(names::L_RUN_ID, self.run_id.as_str())];
        let fam = desc.encode_family(&labels)?;
        c.encode(fam)
    }
}

/// The scrape-time values as OTel observable instruments (for OTLP).
pub(super) fn register_observables(
    meter: &opentelemetry::metrics::Meter,
    run_id: &str,
    stats: &Arc<SpanStats>,
) {
    let m = names::SPANS_DROPPED;
    let s = stats.clone();
    let attrs = [KeyValue::new(names::L_RUN_ID, run_id.to_owned())];
    let _ = meter
        .u64_observable_counter(m.otel)
        .with_unit(m.unit)
        .with_description(m.help)
        .with_callback(move |o| o.observe(s.dropped.load(Ordering::Relaxed), &attrs))
        .build();
    let m = names::PROCESS_CPU;
    let _ = meter
        .f64_observable_counter(m.otel)
        .with_unit(m.unit)
        .with_description(m.help)
        .with_callback(|o| {
            if let Some(v) = process::cpu_seconds() {
                o.observe(v, &[]);
            }
        })
        .build();
    let m = names::PROCESS_RSS;
    let _ = meter
        .u64_observable_gauge(m.otel)
        .with_unit(m.unit)
        .with_description(m.help)
        .with_callback(|o| {
            if let Some(v) = process::resident_bytes() {
                o.observe(v, &[]);
            }
        })
        .build();
}
