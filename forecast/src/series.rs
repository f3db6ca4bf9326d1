//! Maps per series, looked up from any [`SeriesRef`] (an owned key, or a candle) without
//! building a key. The forecast stage looks a series up in a dozen maps per candle (every
//! model, its calibrator, the scorer, the ensemble, the stage itself), so at thousands of
//! symbols the lookups matter: a [`SeriesKey`] holds three heap strings, and comparing a hit's
//! key meant reaching three more places in memory. Here each entry keeps its key's text inline
//! (up to [`INLINE`] bytes, which covers exchange + symbol + interval of every listed market)
//! and its hash, so a lookup touches the table's slot alone.

use std::hash::{BuildHasher as _, Hash as _, Hasher as _};

use tickcast_core::domain::Candle;

use super::{SeriesKey, SeriesRef};

/// How many candles ahead a loop over a batch prefetches its next series' slots
/// ([`SeriesMap::prefetch_ahead`]): far enough that a slot arrives from memory before the
/// loop reaches it, even where each candle's work is short.
pub const AHEAD: usize = 4;

/// Key bytes held inline.
const INLINE: usize = 30;

/// A series key's text: exchange, symbol and interval back to back, and where they split.
#[derive(Clone)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

#[derive(Clone)]
struct Key {
    /// Lengths of the exchange and the symbol.
    split: (usize, usize),
    text: Text,
}

impl Key {
    fn new((e, s, i): (&str, &str, &str)) -> Self {
        let len = e.len() + s.len() + i.len();
        let text = if len <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..e.len()].copy_from_slice(e.as_bytes());
            bytes[e.len()..e.len() + s.len()].copy_from_slice(s.as_bytes());
            bytes[e.len() + s.len()..len].copy_from_slice(i.as_bytes());
            Text::Inline {
                len: len as u8,
                bytes,
            }
        } else {
            Text::Heap([e.as_bytes(), s.as_bytes(), i.as_bytes()].concat().into())
        };
        Self {
            split: (e.len(), s.len()),
            text,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.text {
            Text::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Text::Heap(b) => b,
        }
    }

    fn eq(&self, (e, s, i): (&str, &str, &str)) -> bool {
        let b = self.bytes();
        let (a, m) = self.split;
        b.len() == e.len() + s.len() + i.len()
            && a == e.len()
            && m == s.len()
            && &b[..a] == e.as_bytes()
            && &b[a..a + m] == s.as_bytes()
            && &b[a + m..] == i.as_bytes()
    }

    fn to_key(&self) -> SeriesKey {
        let b = self.bytes();
        let (a, m) = self.split;
        let text = |r: &[u8]| String::from_utf8_lossy(r).into_owned();
        (
            text(&b[..a.min(b.len())]),
            text(&b[a.min(b.len())..(a + m).min(b.len())]),
            text(&b[(a + m).min(b.len())..]),
        )
    }
}

fn hash((e, s, i): (&str, &str, &str)) -> u64 {
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    e.hash(&mut h);
    s.hash(&mut h);
    i.hash(&mut h);
    h.finish()
}

struct Slot<V> {
    hash: u64,
    key: Key,
    value: V,
}

/// A map per series: open addressing with linear probing over a power-of-two number of
/// slots, at most half of them used, so most lookups find their series in the first slot
/// they look at. Where that slot is follows from the key alone, so [`SeriesMap::prefetch`]
/// can start loading it (key, hash and value, inline) before the lookup.
pub struct SeriesMap<V> {
    slots: Vec<Option<Slot<V>>>,
    len: usize,
}

impl<V> Default for SeriesMap<V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for SeriesMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.used().map(|s| (s.key.to_key(), &s.value)))
            .finish()
    }
}

impl<V> SeriesMap<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot a hash starts its probe at (Fibonacci hashing: the product's top bits).
    fn home(&self, h: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        if bits == 0 {
            return 0;
        }
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// The slot holding `parts` (hashed `h`), if any.
    fn find(&self, h: u64, parts: (&str, &str, &str)) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        // Never full (at most half), so the probe ends at an empty slot.
        loop {
            match &self.slots[i] {
                None => return None,
                Some(s) if s.hash == h && s.key.eq(parts) => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The entry of `parts`, placed (its value made by `make`) when absent.
    fn find_or_place(
        &mut self,
        h: u64,
        parts: (&str, &str, &str),
        make: impl FnOnce() -> V,
    ) -> &mut Slot<V> {
        match self.find(h, parts) {
            // Slot i is used, so this only returns its entry.
            Some(i) => self.slots[i].get_or_insert_with(|| Slot {
                hash: h,
                key: Key::new(parts),
                value: make(),
            }),
            None => self.place(h, parts, make()),
        }
    }

    /// Adds an entry for `parts`, known to be absent (growing first when the slots would be
    /// more than half full).
    fn place(&mut self, h: u64, parts: (&str, &str, &str), value: V) -> &mut Slot<V> {
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        self.len += 1;
        let i = self.vacant(h);
        self.slots[i].insert(Slot {
            hash: h,
            key: Key::new(parts),
            value,
        })
    }

    /// Doubles the slots (16 at first) and places every entry again.
    fn grow(&mut self) {
        let size = (2 * self.slots.len()).max(16);
        let old = std::mem::replace(&mut self.slots, (0..size).map(|_| None).collect());
        for s in old.into_iter().flatten() {
            let i = self.vacant(s.hash);
            self.slots[i] = Some(s);
        }
    }

    /// The first empty slot of hash `h`'s probe, where a new entry goes (slots allocated).
    fn vacant(&self, h: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        i
    }

    /// Empties slot `i` and moves later entries of its probe run back, so that every entry
    /// stays reachable from its home slot without passing an empty one.
    fn take(&mut self, mut i: usize) -> Option<V> {
        let out = self.slots[i].take()?;
        self.len -= 1;
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let Some(s) = &self.slots[j] else {
                break;
            };
            let home = self.home(s.hash);
            // The entry at j may move to the hole at i when i lies on its probe path,
            // i.e. between its home and j (cyclically).
            if (i.wrapping_sub(home) & mask) < (j.wrapping_sub(home) & mask) {
                self.slots[i] = self.slots[j].take();
                i = j;
            }
        }
        Some(out.value)
    }

    fn used(&self) -> impl Iterator<Item = &Slot<V>> {
        self.slots.iter().flatten()
    }

    /// Starts loading the slot where `key` is most likely kept (its home slot; a few cache
    /// lines of it), so that a lookup a little later finds it in cache. Only a hint to the
    /// CPU; changes nothing. A model that works through a batch of candles calls it a few
    /// candles ahead.
    pub fn prefetch<K: SeriesRef + ?Sized>(&self, key: &K) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.home(hash(key.parts()));
        prefetch_all(&self.slots[i..=i], 4);
    }

    /// [`SeriesMap::prefetch`] of the series of `candles[i + AHEAD]`: what a loop over a
    /// batch calls at its `i`-th candle, so the slot is in cache when the loop gets there.
    pub fn prefetch_ahead(&self, candles: &[&Candle], i: usize) {
        if let Some(c) = candles.get(i + AHEAD) {
            self.prefetch(*c);
        }
    }

    pub fn get<K: SeriesRef + ?Sized>(&self, key: &K) -> Option<&V> {
        let parts = key.parts();
        let i = self.find(hash(parts), parts)?;
        self.slots[i].as_ref().map(|s| &s.value)
    }

    pub fn get_mut<K: SeriesRef + ?Sized>(&mut self, key: &K) -> Option<&mut V> {
        let parts = key.parts();
        let i = self.find(hash(parts), parts)?;
        self.slots[i].as_mut().map(|s| &mut s.value)
    }

    pub fn contains_key<K: SeriesRef + ?Sized>(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key`, made by `make` when absent (one lookup either way).
    pub fn get_or_insert_with<K: SeriesRef + ?Sized>(
        &mut self,
        key: &K,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let parts = key.parts();
        &mut self.find_or_place(hash(parts), parts, make).value
    }

    /// The value of `key`, the default when absent.
    pub fn get_or_default<K: SeriesRef + ?Sized>(&mut self, key: &K) -> &mut V
    where
        V: Default,
    {
        self.get_or_insert_with(key, V::default)
    }

    /// Sets the value of `key`; returns the one it replaces.
    pub fn insert<K: SeriesRef + ?Sized>(&mut self, key: &K, value: V) -> Option<V> {
        let parts = key.parts();
        let h = hash(parts);
        match self.find(h, parts) {
            Some(i) => self.slots[i]
                .as_mut()
                .map(|s| std::mem::replace(&mut s.value, value)),
            None => {
                self.place(h, parts, value);
                None
            }
        }
    }

    pub fn remove<K: SeriesRef + ?Sized>(&mut self, key: &K) -> Option<V> {
        let parts = key.parts();
        let i = self.find(hash(parts), parts)?;
        self.take(i)
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.len = 0;
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.used().map(|s| &s.value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut().flatten().map(|s| &mut s.value)
    }

    /// The keys, built (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = SeriesKey> + '_ {
        self.used().map(|s| s.key.to_key())
    }

    /// (key, value) pairs, the keys built (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (SeriesKey, &V)> {
        self.used().map(|s| (s.key.to_key(), &s.value))
    }
}

/// A set of series.
#[derive(Debug, Default)]
pub struct SeriesSet {
    map: SeriesMap<()>,
}

impl SeriesSet {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains<K: SeriesRef + ?Sized>(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Adds `key`; whether it was new.
    pub fn insert<K: SeriesRef + ?Sized>(&mut self, key: &K) -> bool {
        self.map.insert(key, ()).is_none()
    }

    /// Removes `key`; whether it was there.
    pub fn remove<K: SeriesRef + ?Sized>(&mut self, key: &K) -> bool {
        self.map.remove(key).is_some()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// The keys, built (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = SeriesKey> + '_ {
        self.map.keys()
    }
}

/// Asks the CPU to start loading the cache line holding `p` (into every cache level) without
/// waiting for it. Per-series state is cold at every bar once there are thousands of series;
/// the forecast stage prefetches the next series' while it works on the current one.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: a prefetch is only a hint: it reads nothing into the program and never faults,
    // whatever the address (dangling or past an allocation included); SSE, which it needs, is
    // part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] of every cache line of `items`, up to `max` of them.
#[inline]
pub(crate) fn prefetch_all<T>(items: &[T], max: usize) {
    let bytes = std::mem::size_of_val(items).min(max * 64);
    let base = items.as_ptr().cast::<u8>();
    for off in (0..bytes).step_by(64) {
        prefetch(base.wrapping_add(off));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series_of;
    use crate::testing::synthetic_candles;

    #[test]
    fn looks_up_from_owned_keys_and_candles_alike() {
        let cs = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 1, 1);
        let mut m: SeriesMap<u32> = SeriesMap::default();
        assert_eq!(m.insert(series_of(&cs[0]), 1), None);
        *m.get_or_default(series_of(&cs[1])) += 5;
        let k0 = crate::series_key(&cs[0]);
        assert_eq!(m.get(&k0), Some(&1));
        assert_eq!(m.insert(&k0, 2), Some(1), "replaced");
        assert_eq!(m.get(series_of(&cs[0])), Some(&2));
        assert_eq!(m.get(series_of(&cs[1])), Some(&5));
        assert_eq!(m.len(), 2);
        let mut keys: Vec<SeriesKey> = m.keys().collect();
        keys.sort();
        assert_eq!(keys[0], k0);
        assert_eq!(m.remove(&k0), Some(2));
        assert_eq!(m.get(&k0), None);
        assert_eq!(m.remove(&k0), None);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn parts_are_told_apart_and_long_keys_spill_to_the_heap() {
        let mut m: SeriesMap<u8> = SeriesMap::default();
        // The same bytes split differently are different series.
        let a: SeriesKey = ("ab".into(), "c".into(), "1m".into());
        let b: SeriesKey = ("a".into(), "bc".into(), "1m".into());
        m.insert(&a, 1);
        m.insert(&b, 2);
        assert_eq!((m.get(&a), m.get(&b)), (Some(&1), Some(&2)));
        let long: SeriesKey = ("x".repeat(20), "é".repeat(20), "1m".into());
        m.insert(&long, 3);
        assert_eq!(m.get(&long), Some(&3));
        assert!(m.keys().any(|k| k == long), "{long:?} rebuilt exactly");
        let mut set = SeriesSet::default();
        assert!(set.insert(&a) && !set.insert(&a) && set.contains(&a) && !set.contains(&b));
        assert!(set.remove(&a) && set.is_empty());
        // Many series: the table grows and keeps every value.
        let mut big: SeriesMap<usize> = SeriesMap::default();
        for i in 0..5_000 {
            big.insert(&("ex".to_string(), format!("S{i}"), "1m".to_string()), i);
        }
        for i in (0..5_000).step_by(97) {
            let k = ("ex".to_string(), format!("S{i}"), "1m".to_string());
            assert_eq!(big.get(&k), Some(&i));
        }
    }

    #[test]
    fn agrees_with_a_std_map_over_random_inserts_lookups_and_removals() {
        use std::collections::HashMap;
        use tickcast_core::rng::Rng;
        let mut rng = Rng::new(11);
        let keys: Vec<SeriesKey> = (0..300)
            .map(|i| (format!("ex{}", i % 3), format!("S{i}"), "1m".to_string()))
            .collect();
        let mut m: SeriesMap<u64> = SeriesMap::default();
        let mut want: HashMap<SeriesKey, u64> = HashMap::new();
        for step in 0..40_000u64 {
            // Skewed towards a few dozen keys, so runs of probes collide and removals shift.
            let k = &keys[(rng.unit().powi(2) * keys.len() as f64) as usize % keys.len()];
            match (rng.unit() * 5.0) as u32 {
                0 => assert_eq!(m.insert(k, step), want.insert(k.clone(), step)),
                1 | 2 => assert_eq!(m.remove(k), want.remove(k), "remove {k:?}"),
                3 => {
                    *m.get_or_insert_with(k, || step) += 1;
                    *want.entry(k.clone()).or_insert(step) += 1;
                }
                _ => assert_eq!(m.get(k), want.get(k)),
            }
            assert_eq!(m.len(), want.len());
            if step % 997 == 0 {
                for k in &keys {
                    assert_eq!(m.get(k), want.get(k), "{k:?} after step {step}");
                }
                let mut got: Vec<(SeriesKey, u64)> = m.iter().map(|(k, v)| (k, *v)).collect();
                got.sort();
                let mut all: Vec<(SeriesKey, u64)> =
                    want.iter().map(|(k, v)| (k.clone(), *v)).collect();
                all.sort();
                assert_eq!(got, all);
            }
        }
        m.clear();
        assert!(m.is_empty() && m.get(&keys[0]).is_none());
    }
}
