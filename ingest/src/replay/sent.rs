//! What the replay exchange sent, across all connections: the oracle for fault tests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A shared handle; clones see the same log.
#[derive(Debug, Clone, Default)]
pub struct SentLog {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ids: Mutex<BTreeSet<(String, String)>>,
    frames: AtomicU64,
    garbage: AtomicU64,
    poison: Mutex<Vec<String>>,
    poison_made: AtomicU64,
    connections: AtomicU64,
    drops: AtomicU64,
}

impl SentLog {
    /// A trade frame for `(symbol, trade id)` was sent (duplicates count again in
    /// `frames_sent`).
    pub(crate) fn trade(&self, symbol: &str, id: String) {
        self.inner.frames.fetch_add(1, Ordering::Relaxed);
        self.inner
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((symbol.to_string(), id));
    }
    /// A raw frame (from a frames source) was sent.
    pub(crate) fn raw_frame(&self) {
        self.inner.frames.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn garbage(&self) {
        self.inner.garbage.fetch_add(1, Ordering::Relaxed);
    }
    /// The number of the next poison trade (from 0).
    pub(crate) fn next_poison(&self) -> u64 {
        self.inner.poison_made.fetch_add(1, Ordering::Relaxed)
    }
    pub(crate) fn poison(&self, frame: String) {
        self.inner
            .poison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
    }
    /// Every poison frame sent ([`super::Faults::poison_every`]), in order.
    pub fn poison_sent(&self) -> Vec<String> {
        self.inner
            .poison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub(crate) fn connection(&self) {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dropped(&self) {
        self.inner.drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Every `(canonical symbol, exchange trade id)` sent in a trade frame on any connection.
    pub fn ids(&self) -> BTreeSet<(String, String)> {
        self.inner
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Trade (or raw) frames sent, duplicates included, garbage not.
    pub fn frames_sent(&self) -> u64 {
        self.inner.frames.load(Ordering::Relaxed)
    }
    /// Garbage frames sent.
    pub fn garbage_sent(&self) -> u64 {
        self.inner.garbage.load(Ordering::Relaxed)
    }
    /// Websocket connections accepted.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }
    /// Connections closed by the `drop_every` fault.
    pub fn drops(&self) -> u64 {
        self.inner.drops.load(Ordering::Relaxed)
    }
}
