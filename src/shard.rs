//! Per-thread sharding, the one way novaload keeps hot-path writes off shared cache lines: the
//! k6 recorder's shards, the live instruments' counters, histograms and series caches, and the
//! span queue all keep one [`Padded`] slot per shard of a [`Sharded`], and a thread always
//! writes the slot of its own [`thread_index`]. Readers (the summary, a scrape, the span
//! export thread) visit every slot.

use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD_INDEX: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// A small number unique to the calling thread (0, 1, 2, ... in order of first use).
#[inline]
pub(crate) fn thread_index() -> usize {
    THREAD_INDEX.with(|i| *i)
}

/// Shards per sharded value: twice the parallelism (more shards than threads keeps collisions
/// rare when tokio adds blocking threads).
pub(crate) fn shard_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(1)
        * 2
}

/// Keeps a value on its own cache lines, so threads writing neighbouring values do not
/// invalidate each other's.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

/// One `T` per thread shard ([`shard_count`] of them), each [`Padded`].
#[derive(Debug)]
pub(crate) struct Sharded<T>(Box<[Padded<T>]>);

impl<T> Sharded<T> {
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        Self((0..shard_count()).map(|_| Padded(make())).collect())
    }

    /// The calling thread's shard.
    #[inline]
    pub(crate) fn mine(&self) -> &T {
        &self.0[thread_index() % self.0.len()].0
    }

    /// Shard `i` (`i < len()`).
    pub(crate) fn get(&self, i: usize) -> &T {
        &self.0[i].0
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self::new(T::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_distinct_indexes_and_padded_slots() {
        let here = thread_index();
        assert_eq!(here, thread_index());
        let there = std::thread::spawn(thread_index).join().unwrap();
        assert_ne!(here, there);
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 128);
        let s: Sharded<u32> = Sharded::default();
        assert_eq!(s.len(), shard_count());
        assert!(std::ptr::eq(s.mine(), s.get(thread_index() % s.len())));
        assert_eq!(s.iter().count(), s.len());
    }
}
