//! Maps per series, looked up from any [`SeriesRef`] (an owned key, or a candle) without
//! building a key. The forecast stage looks a series up in a dozen maps per candle (every
//! model, its calibrator, the scorer, the ensemble, the stage itself), so at thousands of
//! symbols the lookups matter: a [`SeriesKey`] holds three heap strings, and comparing a hit's
//! key meant reaching three more places in memory. Here each entry keeps its key's text inline
//! (up to [`INLINE`] bytes, which covers exchange + symbol + interval of every listed market)
//! and its hash, so a lookup touches the table's slot alone.

use std::hash::{BuildHasher as _, Hash as _, Hasher as _};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::{SeriesKey, SeriesRef};

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

/// A map per series.
pub struct SeriesMap<V> {
    table: HashTable<Slot<V>>,
}

impl<V> Default for SeriesMap<V> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
        }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for SeriesMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.table.iter().map(|s| (s.key.to_key(), &s.value)))
            .finish()
    }
}

impl<V> SeriesMap<V> {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get<K: SeriesRef + ?Sized>(&self, key: &K) -> Option<&V> {
        let parts = key.parts();
        let h = hash(parts);
        self.table
            .find(h, |s| s.hash == h && s.key.eq(parts))
            .map(|s| &s.value)
    }

    pub fn get_mut<K: SeriesRef + ?Sized>(&mut self, key: &K) -> Option<&mut V> {
        let parts = key.parts();
        let h = hash(parts);
        self.table
            .find_mut(h, |s| s.hash == h && s.key.eq(parts))
            .map(|s| &mut s.value)
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
        let h = hash(parts);
        match self
            .table
            .entry(h, |s| s.hash == h && s.key.eq(parts), |s| s.hash)
        {
            Entry::Occupied(o) => &mut o.into_mut().value,
            Entry::Vacant(v) => {
                &mut v
                    .insert(Slot {
                        hash: h,
                        key: Key::new(parts),
                        value: make(),
                    })
                    .into_mut()
                    .value
            }
        }
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
        match self
            .table
            .entry(h, |s| s.hash == h && s.key.eq(parts), |s| s.hash)
        {
            Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().value, value)),
            Entry::Vacant(v) => {
                v.insert(Slot {
                    hash: h,
                    key: Key::new(parts),
                    value,
                });
                None
            }
        }
    }

    pub fn remove<K: SeriesRef + ?Sized>(&mut self, key: &K) -> Option<V> {
        let parts = key.parts();
        let h = hash(parts);
        match self.table.find_entry(h, |s| s.hash == h && s.key.eq(parts)) {
            Ok(o) => Some(o.remove().0.value),
            Err(_) => None,
        }
    }

    pub fn clear(&mut self) {
        self.table.clear();
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.table.iter().map(|s| &s.value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.table.iter_mut().map(|s| &mut s.value)
    }

    /// The keys, built (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = SeriesKey> + '_ {
        self.table.iter().map(|s| s.key.to_key())
    }

    /// (key, value) pairs, the keys built (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (SeriesKey, &V)> {
        self.table.iter().map(|s| (s.key.to_key(), &s.value))
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
    use crate::forecast::{of, synthetic_candles};

    #[test]
    fn looks_up_from_owned_keys_and_candles_alike() {
        let cs = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 1, 1);
        let mut m: SeriesMap<u32> = SeriesMap::default();
        assert_eq!(m.insert(of(&cs[0]), 1), None);
        *m.get_or_default(of(&cs[1])) += 5;
        let k0 = crate::forecast::series_key(&cs[0]);
        assert_eq!(m.get(&k0), Some(&1));
        assert_eq!(m.insert(&k0, 2), Some(1), "replaced");
        assert_eq!(m.get(of(&cs[0])), Some(&2));
        assert_eq!(m.get(of(&cs[1])), Some(&5));
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
}
