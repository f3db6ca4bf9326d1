//! Per-symbol trade-id bookkeeping for one feed: drops duplicates (from overlapping connections,
//! replays, or an exchange repeating itself) and, where ids are consecutive, notices gaps so
//! they can be filled from the exchange's REST endpoint.
//!
//! For sequential exchanges each symbol keeps a high-water mark and the ranges still missing
//! below it; an id at or below the mark that is not missing is a duplicate. For the others a
//! bounded window of recently seen ids does the de-duplication.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

/// Consecutive trade ids `from..=to` that have not arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub symbol: String,
    pub from: u64,
    pub to: u64,
    /// Exchange time of trade `from - 1` (for exchanges that page backfills by time).
    pub after_ms: i64,
    pub noticed: Instant,
    /// Backfill attempts so far.
    pub attempts: u32,
}

impl Gap {
    pub fn len(&self) -> u64 {
        self.to - self.from + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What to do with one trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Not seen before: publish.
    New,
    /// Not seen before, and it fills part of a known gap: publish.
    Filled,
    /// Seen already: drop.
    Duplicate,
}

#[derive(Debug, Default)]
struct SymbolState {
    hwm: Option<u64>,
    hwm_ms: i64,
    /// Missing ranges below `hwm`, in ascending order, never overlapping.
    missing: Vec<Gap>,
    recent: HashSet<String>,
    order: VecDeque<String>,
    /// A trade arrived since the last reconnect.
    live_since_reconnect: bool,
}

/// The bookkeeping for every symbol of a feed.
#[derive(Debug)]
pub struct Tracker {
    sequential: bool,
    /// Ids kept per symbol for de-duplication when ids are not sequential.
    window: usize,
    /// Gaps larger than this are clipped to their most recent `max_gap` ids.
    max_gap: u64,
    symbols: HashMap<String, SymbolState>,
    /// Ids given up on because a gap was larger than `max_gap`.
    pub clipped: u64,
}

impl Tracker {
    pub fn new(sequential: bool, window: usize, max_gap: u64) -> Self {
        Self {
            sequential,
            window: window.max(1),
            max_gap: max_gap.max(1),
            symbols: HashMap::new(),
            clipped: 0,
        }
    }

    /// Decides whether a trade is new. `now` stamps any gap it reveals.
    pub fn admit(&mut self, symbol: &str, trade_id: &str, ts_ms: i64, now: Instant) -> Admit {
        let seq_id = if self.sequential {
            trade_id.parse::<u64>().ok()
        } else {
            None
        };
        let max_gap = self.max_gap;
        let window = self.window;
        let st = self.symbols.entry(symbol.to_string()).or_default();
        st.live_since_reconnect = true;
        let Some(id) = seq_id else {
            return remember(st, trade_id, window);
        };
        match st.hwm {
            None => {
                st.hwm = Some(id);
                st.hwm_ms = ts_ms;
                Admit::New
            }
            Some(hwm) if id > hwm => {
                if id > hwm + 1 {
                    let mut from = hwm + 1;
                    let to = id - 1;
                    if to - from + 1 > max_gap {
                        self.clipped += to - from + 1 - max_gap;
                        from = to + 1 - max_gap;
                    }
                    st.missing.push(Gap {
                        symbol: symbol.to_string(),
                        from,
                        to,
                        after_ms: st.hwm_ms,
                        noticed: now,
                        attempts: 0,
                    });
                }
                st.hwm = Some(id);
                st.hwm_ms = ts_ms;
                Admit::New
            }
            Some(_) => fill(st, id, ts_ms),
        }
    }

    /// Gaps noticed at or before `due`, oldest first, taken out of the tracker for
    /// backfilling; anything still missing afterwards is handed back with [`Tracker::restore`]
    /// or given up on.
    pub fn take_due(&mut self, due: Instant) -> Vec<Gap> {
        let mut out = Vec::new();
        for st in self.symbols.values_mut() {
            let (ready, keep): (Vec<Gap>, Vec<Gap>) =
                st.missing.drain(..).partition(|g| g.noticed <= due);
            st.missing = keep;
            out.extend(ready);
        }
        out.sort_by_key(|g| g.noticed);
        out
    }

    /// Puts a gap (or what is left of one) back, to be retried.
    pub fn restore(&mut self, gap: Gap) {
        let st = self.symbols.entry(gap.symbol.clone()).or_default();
        st.missing.push(gap);
        st.missing.sort_by_key(|g| g.from);
    }

    /// While a gap is out for backfill its ids are not in `missing`; this admits a backfilled
    /// trade against the gap being filled: new when inside it and not yet seen.
    pub fn admit_fill(gap_ids: &mut HashSet<u64>, id: u64) -> Admit {
        if gap_ids.remove(&id) {
            Admit::Filled
        } else {
            Admit::Duplicate
        }
    }

    /// The earliest time a gap was noticed, if any gap is waiting.
    pub fn oldest_gap(&self) -> Option<Instant> {
        self.symbols
            .values()
            .flat_map(|s| s.missing.iter().map(|g| g.noticed))
            .min()
    }

    /// Starts a symbol from its last trade before a restart (read from the ticks topic): the
    /// next trade's id reveals the gap, and until one arrives the symbol counts as quiet, so a
    /// catch-up fetches what happened meanwhile. Ignored for non-sequential ids or a symbol
    /// already tracked.
    pub fn seed(&mut self, symbol: &str, last_id: u64, last_ms: i64) {
        if !self.sequential || self.symbols.contains_key(symbol) {
            return;
        }
        let st = self.symbols.entry(symbol.to_string()).or_default();
        st.hwm = Some(last_id);
        st.hwm_ms = last_ms;
        st.live_since_reconnect = false;
    }

    /// Marks a reconnect: from now on, symbols that have not had a live trade are candidates
    /// for a catch-up backfill.
    pub fn reconnected(&mut self) {
        for st in self.symbols.values_mut() {
            st.live_since_reconnect = false;
        }
    }

    /// Symbols with a high-water mark that have had no trade since the last reconnect: their
    /// trades may have happened while we were away with nothing since to reveal the gap.
    /// Returns `(symbol, next id, time of the last trade)`.
    pub fn quiet_since_reconnect(&self) -> Vec<(String, u64, i64)> {
        let mut out: Vec<(String, u64, i64)> = self
            .symbols
            .iter()
            .filter(|(_, s)| !s.live_since_reconnect)
            .filter_map(|(sym, s)| s.hwm.map(|h| (sym.clone(), h + 1, s.hwm_ms)))
            .collect();
        out.sort();
        out
    }

    /// Whether a symbol has ids missing that are waiting to be filled.
    pub fn has_gap(&self, symbol: &str) -> bool {
        self.symbols
            .get(symbol)
            .is_some_and(|s| !s.missing.is_empty())
    }

    /// Ids still missing, over all symbols (gaps waiting, not ones out for backfill).
    pub fn missing_ids(&self) -> u64 {
        self.symbols
            .values()
            .flat_map(|s| s.missing.iter().map(Gap::len))
            .sum()
    }
}

fn remember(st: &mut SymbolState, id: &str, window: usize) -> Admit {
    if st.recent.contains(id) {
        return Admit::Duplicate;
    }
    st.recent.insert(id.to_string());
    st.order.push_back(id.to_string());
    while st.order.len() > window {
        if let Some(old) = st.order.pop_front() {
            st.recent.remove(&old);
        }
    }
    Admit::New
}

/// An id at or below the high-water mark: new only if it is in a missing range, which it splits.
fn fill(st: &mut SymbolState, id: u64, ts_ms: i64) -> Admit {
    let Some(i) = st.missing.iter().position(|g| g.from <= id && id <= g.to) else {
        return Admit::Duplicate;
    };
    let g = st.missing.remove(i);
    let mut parts = Vec::with_capacity(2);
    if g.from < id {
        parts.push(Gap {
            to: id - 1,
            ..g.clone()
        });
    }
    if id < g.to {
        parts.push(Gap {
            from: id + 1,
            after_ms: ts_ms,
            ..g
        });
    }
    for (k, p) in parts.into_iter().enumerate() {
        st.missing.insert(i + k, p);
    }
    Admit::Filled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(t: &mut Tracker, sym: &str, seq: &[&str]) -> Vec<Admit> {
        let now = Instant::now();
        seq.iter().map(|id| t.admit(sym, id, 0, now)).collect()
    }

    #[test]
    fn sequential_ids_reveal_gaps_and_drop_duplicates() {
        use Admit::*;
        let mut t = Tracker::new(true, 10, 1_000);
        assert_eq!(
            ids(&mut t, "A", &["5", "6", "6", "9", "4", "7", "7", "10"]),
            [New, New, Duplicate, New, Duplicate, Filled, Duplicate, New]
        );
        // 8 is still missing; 7 split the 7..=8 gap.
        assert_eq!(t.missing_ids(), 1);
        let gaps = t.take_due(Instant::now());
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            (gaps[0].symbol.as_str(), gaps[0].from, gaps[0].to),
            ("A", 8, 8)
        );
        assert_eq!(t.missing_ids(), 0);
        // Symbols are independent.
        assert_eq!(ids(&mut t, "B", &["5"]), [New]);
    }

    #[test]
    fn huge_gaps_are_clipped_and_counted() {
        let mut t = Tracker::new(true, 10, 100);
        ids(&mut t, "A", &["1", "1002"]);
        assert_eq!(t.missing_ids(), 100);
        assert_eq!(t.clipped, 900);
        let g = &t.take_due(Instant::now())[0];
        assert_eq!((g.from, g.to), (902, 1001));
    }

    #[test]
    fn non_sequential_ids_use_a_bounded_window() {
        use Admit::*;
        let mut t = Tracker::new(false, 2, 100);
        assert_eq!(
            ids(&mut t, "A", &["x", "y", "x", "z", "x"]),
            [New, New, Duplicate, New, New],
            "x fell out of the 2-id window"
        );
        assert_eq!(t.missing_ids(), 0);
    }

    #[test]
    fn quiet_symbols_after_reconnect_are_reported() {
        let mut t = Tracker::new(true, 10, 100);
        let now = Instant::now();
        t.admit("A", "5", 50, now);
        t.admit("B", "7", 70, now);
        t.reconnected();
        t.admit("B", "8", 80, now);
        assert_eq!(t.quiet_since_reconnect(), vec![("A".to_string(), 6, 50)]);
    }

    #[test]
    fn restored_gaps_come_back_and_fills_split_them() {
        let mut t = Tracker::new(true, 10, 100);
        ids(&mut t, "A", &["1", "10"]);
        let mut g = t.take_due(Instant::now());
        let gap = g.remove(0);
        let mut want: HashSet<u64> = (gap.from..=gap.to).collect();
        assert_eq!(Tracker::admit_fill(&mut want, 3), Admit::Filled);
        assert_eq!(Tracker::admit_fill(&mut want, 3), Admit::Duplicate);
        assert_eq!(Tracker::admit_fill(&mut want, 11), Admit::Duplicate);
        t.restore(gap);
        assert_eq!(t.missing_ids(), 8);
    }
}
