//! The per-thread sharded recorder. Each tokio worker thread writes to its own shard (the
//! shard's mutex is uncontended except for the once-a-second time-series sweep), and the run
//! merges all shards once at the end.

use super::{Agg, ErrorReasons, MetricId, MetricKind, Registry, Tags};
use crate::error::ErrorKind;
use crate::shard::Sharded;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// FxHash (rustc's): the tag sets hashed on every sample are short, trusted, in-process
/// keys, so SipHash's DoS resistance only costs time here.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

struct Shard {
    /// Run-long aggregates: per tag set, one slot per metric (so a request's dozen samples
    /// cost one lock and one hash).
    series: HashMap<Tags, Vec<Option<Agg>>, FxBuild>,
    /// Aggregates of the current second, per metric (tags ignored), swapped out by the sweep.
    second: Vec<Option<Agg>>,
    /// Failure messages by error kind (bounded; see [`ErrorReasons`]).
    reasons: ErrorReasons,
}

impl Shard {
    fn new(n: usize) -> Self {
        Self {
            series: HashMap::default(),
            second: (0..n).map(|_| None).collect(),
            reasons: ErrorReasons::default(),
        }
    }
}

/// Records samples for one run.
pub struct Recorder {
    registry: Arc<Registry>,
    kinds: Vec<MetricKind>,
    shards: Sharded<Mutex<Shard>>,
    start: Instant,
}

/// Per-metric aggregates of one second (tags merged), for the time series and live progress.
pub struct SecondSnapshot {
    pub elapsed_s: f64,
    pub metrics: Vec<(MetricId, Agg)>,
}

/// Receives each second's aggregates (time-series file, live progress); the runner calls it
/// once a second with the VU counts of that moment.
pub trait SecondSink: Send {
    fn second(&mut self, snap: &SecondSnapshot, registry: &Registry, vus: i64, vus_max: u64);
}

impl Recorder {
    pub fn new(registry: Arc<Registry>) -> Self {
        let kinds = registry.defs().map(|(_, d)| d.kind).collect::<Vec<_>>();
        let shards = Sharded::new(|| Mutex::new(Shard::new(kinds.len())));
        Self {
            registry,
            kinds,
            shards,
            start: Instant::now(),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    #[inline]
    fn shard(&self) -> std::sync::MutexGuard<'_, Shard> {
        // A poisoned shard only means a panic elsewhere; the data is still valid counts.
        self.shards.mine().lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one value on a series.
    #[inline]
    pub fn record(&self, metric: MetricId, value: f64, tags: &Tags) {
        self.record_many(tags, &[(metric, value)]);
    }

    /// Records several values with the same tags under one lock and one hash.
    pub fn record_many(&self, tags: &Tags, values: &[(MetricId, f64)]) {
        // only gauges need the time (newest value wins when shards merge)
        let needs_time = values
            .iter()
            .any(|(m, _)| self.kinds[m.0 as usize] == MetricKind::Gauge);
        let at = if needs_time {
            self.start.elapsed().as_nanos() as u64
        } else {
            0
        };
        let n = self.kinds.len();
        let mut guard = self.shard();
        let shard = &mut *guard;
        let slots = match shard.series.get_mut(tags) {
            Some(s) => s,
            None => shard
                .series
                .entry(tags.clone())
                .or_insert_with(|| (0..n).map(|_| None).collect()),
        };
        for &(metric, value) in values {
            let idx = metric.0 as usize;
            let kind = self.kinds[idx];
            slots[idx]
                .get_or_insert_with(|| Agg::new(kind))
                .record(value, at);
            shard.second[idx]
                .get_or_insert_with(|| Agg::with_sigfig(kind, 2))
                .record(value, at);
        }
    }

    /// Counts one failure message under its kind (the summary's "why it failed"). Call it
    /// once per failed operation, next to the sample that carries the operation's `error_kind`.
    pub fn record_reason(&self, kind: ErrorKind, message: &str) {
        self.shard().reasons.add(kind, message);
    }

    /// Takes the per-second aggregates accumulated since the last call (the time-series sweep).
    pub fn take_second(&self) -> SecondSnapshot {
        let mut merged: Vec<Option<Agg>> = (0..self.kinds.len()).map(|_| None).collect();
        for shard in self.shards.iter() {
            let taken: Vec<Option<Agg>> = {
                let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
                s.second.iter_mut().map(Option::take).collect()
            };
            for (i, agg) in taken.into_iter().enumerate() {
                if let Some(agg) = agg {
                    match &mut merged[i] {
                        Some(m) => m.merge(&agg),
                        slot @ None => *slot = Some(agg),
                    }
                }
            }
        }
        SecondSnapshot {
            elapsed_s: self.start.elapsed().as_secs_f64(),
            metrics: merged
                .into_iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|a| (MetricId(i as u16), a)))
                .collect(),
        }
    }

    /// Merges every shard into one snapshot (end of run, or a live summary).
    pub fn snapshot(&self) -> Snapshot {
        let mut series: BTreeMap<(MetricId, Tags), Agg> = BTreeMap::new();
        let mut reasons = ErrorReasons::default();
        for shard in self.shards.iter() {
            let s = shard.lock().unwrap_or_else(|e| e.into_inner());
            reasons.merge(&s.reasons);
            for (tags, slots) in &s.series {
                for (i, agg) in slots.iter().enumerate() {
                    let Some(agg) = agg else { continue };
                    let key = (MetricId(i as u16), tags.clone());
                    match series.get_mut(&key) {
                        Some(m) => m.merge(agg),
                        None => {
                            series.insert(key, agg.clone());
                        }
                    }
                }
            }
        }
        Snapshot {
            registry: self.registry.clone(),
            series,
            reasons,
        }
    }
}

/// All series of a run, merged.
#[derive(Clone)]
pub struct Snapshot {
    pub registry: Arc<Registry>,
    pub series: BTreeMap<(MetricId, Tags), Agg>,
    /// Failure messages by error kind, merged over the shards.
    pub reasons: ErrorReasons,
}

impl Snapshot {
    /// The metric over all its series.
    pub fn metric(&self, id: MetricId) -> Agg {
        self.filtered(id, |_| true)
    }

    /// The metric over the series whose tags match every `key:value` pair.
    pub fn submetric(&self, id: MetricId, filter: &[(String, String)]) -> Agg {
        self.filtered(id, |tags| {
            filter
                .iter()
                .all(|(k, v)| tags.get(k).as_deref() == Some(v.as_str()))
        })
    }

    fn filtered(&self, id: MetricId, keep: impl Fn(&Tags) -> bool) -> Agg {
        let mut out = Agg::new(self.registry.def(id).kind);
        for ((m, tags), agg) in self.series.range((id, Tags::default())..) {
            if *m != id {
                break;
            }
            if keep(tags) {
                out.merge(agg);
            }
        }
        out
    }

    /// Series of one metric (for per-check and per-error-kind tables).
    pub fn series_of(&self, id: MetricId) -> impl Iterator<Item = (&Tags, &Agg)> {
        self.series
            .range((id, Tags::default())..)
            .take_while(move |((m, _), _)| *m == id)
            .map(|((_, t), a)| (t, a))
    }

    pub fn has_samples(&self, id: MetricId) -> bool {
        self.series_of(id).any(|(_, a)| a.samples() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::builtin;

    #[test]
    fn submetrics_merge_matching_series_only() {
        let reg = Arc::new(Registry::new());
        let rec = Recorder::new(reg);
        let ok = Tags {
            status: Some(200),
            ..Tags::default()
        };
        let missing = Tags {
            status: Some(404),
            ..Tags::default()
        };
        for _ in 0..3 {
            rec.record(builtin::HTTP_REQ_DURATION, 10.0, &ok);
        }
        rec.record(builtin::HTTP_REQ_DURATION, 500.0, &missing);
        let snap = rec.snapshot();
        let all = snap.metric(builtin::HTTP_REQ_DURATION).values(1.0);
        assert_eq!(all.get("count"), Some(4.0));
        let only_ok = snap
            .submetric(
                builtin::HTTP_REQ_DURATION,
                &[("status".into(), "200".into())],
            )
            .values(1.0);
        assert_eq!(only_ok.get("count"), Some(3.0));
        assert_eq!(only_ok.get("max"), Some(10.0));
    }

    #[test]
    fn second_sweep_takes_and_resets() {
        let rec = Recorder::new(Arc::new(Registry::new()));
        rec.record(builtin::HTTP_REQS, 1.0, &Tags::default());
        rec.record(builtin::HTTP_REQS, 1.0, &Tags::default());
        let s = rec.take_second();
        assert_eq!(s.metrics.len(), 1);
        assert!(rec.take_second().metrics.is_empty());
        // the run-long series keeps everything
        assert_eq!(
            rec.snapshot()
                .metric(builtin::HTTP_REQS)
                .values(1.0)
                .get("count"),
            Some(2.0)
        );
    }
}
