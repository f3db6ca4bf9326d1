//! The candles stage: ticks → event-time OHLCV windows per exchange, symbol and interval.
//!
//! One stage builds every configured interval (`1s`, `1m`, `1h`, …) from the same ticks; each
//! candle carries its interval label. Everything below holds per input partition: a symbol's
//! ticks live in one partition (topic keys are `EXCHANGE:BASE-QUOTE`), so a partition's state is
//! a function of its own offset-ordered ticks alone, which is what makes a restart exact.
//!
//! **Watermarks.** A symbol's own watermark is `max event time − allowed lateness` over its
//! ticks. The *exchange watermark* `E` is the largest own watermark among that exchange's
//! symbols in the same partition. A symbol's effective watermark is
//! `W = max(own, E − idle_grace)`: an idle symbol's windows close once the rest of its exchange
//! has moved `idle_grace` past them (i.e. once the exchange's newest event time is past
//! `window end + allowed lateness + idle_grace`), so a quiet symbol never holds its last window
//! (and the commit offset) forever. `E` is per partition, not per process, so that it depends on
//! the partition's tick order only and never on how fast other partitions are consumed.
//! Every window with `end ≤ W` is closed, for every interval.
//!
//! **Late ticks and duplicates.** A tick whose window of some interval has closed is late for
//! that interval: it is counted ([`telemetry::LATE_TICKS`], and per interval
//! [`telemetry::LATE_TICK_WINDOWS`]) and sent to the dead-letter topic with the closed intervals
//! in the reason; it still counts in the intervals whose windows are open. Trade ids are
//! de-duplicated while any window holding the trade's time is open, and for
//! `dedup_retention_ms` of event time after its windows closed (a duplicate carries the same
//! event time, so it lands in the same windows): a copy of an already counted trade that
//! arrives after its window closed — from a second ingester of the same feed that lagged, or
//! an exchange re-sending on reconnect — is a duplicate, not a late tick. Only copies older than
//! the retention, or re-sent after a restart (the ids of closed windows are not part of the
//! snapshot), are still counted late; they are dead-lettered, never silently dropped.
//!
//! **Empty windows.** When `W` passes windows in which a symbol had no trade, each gets an
//! explicit candle: `trades = 0`, `volume = 0`, `open = high = low = close =` the close of the
//! previous candle of that interval. A gap is filled with at most `max_empty_windows` such
//! candles; the window after that is left out, the gap is counted
//! ([`telemetry::CANDLE_GAPS`]) and nothing more is emitted until the next trade, so downstream
//! sees a real gap and restarts its state. The rule is path-independent (the first
//! `max_empty_windows` windows of a gap are always filled, whether the watermark crossed the gap
//! in one step or many), which a rule like "skip the whole gap if it is long" could not be: a
//! slowly advancing watermark has emitted the first windows before the gap's length is known.
//! Before a symbol's first trade there is no previous close and nothing is filled.
//!
//! **Offsets and restarts.** The stage commits, per partition, the offset of the oldest tick
//! still held in an open window (so a restart re-reads every open window whole), and with it,
//! as Kafka commit metadata, a compact snapshot ([`snapshot`]): the next offset after the last
//! tick processed (`n`), each exchange watermark `E`, and per symbol its own watermark (when
//! ahead of `E − idle_grace`) and, where empty windows may still follow, the previous close and
//! the length of the current gap. On assignment the runner hands that snapshot back
//! ([`Handler::assigned`]), and:
//! - ticks re-read from below `n` whose windows are all closed under the restored watermark were
//!   emitted (or dead-lettered) before the restart: skipped silently, counted in
//!   [`telemetry::REPLAYED_TICKS`]; undecodable ones were dead-lettered already and are skipped;
//! - ticks re-read from below `n` in windows still open are rebuilt: such a window was open at
//!   the snapshot, so its first tick is at or after the committed offset and it is rebuilt
//!   whole — never a partial candle under an already-used key;
//! - re-read ticks cannot move any watermark (they were all counted before), so nothing closes
//!   while a partition replays; from `n` on processing is exactly what it was before the stop,
//!   and truly late ticks are counted late.
//!
//! A snapshot is consistent with the offset it is committed with; a stale pair (a commit lost in
//! a crash) is still consistent, and only repeats identical candles. The broker bounds commit
//! metadata (`offset.metadata.max.bytes`, 4096 bytes by default): the snapshot stays under
//! `state_max_bytes` by dropping, in order, the empty-window tails and then the symbols furthest
//! behind `E`, counted in [`telemetry::CANDLE_STATE_TRUNCATED`] — a dropped symbol may re-emit a
//! partial window after a restart, so raise both limits for partitions with many symbols
//! (roughly 30–60 bytes per active symbol). Changing intervals between runs is not restored: a
//! new interval's first window after the restart may be partial.
//!
//! [`Handler::assigned`]: tickcast_core::stage::Handler::assigned

mod handler;
mod series;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tickcast_core::domain::{Candle, Tick};
use tickcast_core::interval::Interval;
use tickcast_core::telemetry;

use series::{Emit, Series, Spec};

/// "No watermark yet": far below any event time, far enough above `i64::MIN` that window
/// arithmetic cannot overflow.
pub const NEVER: i64 = i64::MIN / 4;

/// Windowing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleOptions {
    /// Intervals built side by side; sorted and de-duplicated by [`CandleOptions::new`].
    pub intervals: Vec<Interval>,
    /// How far behind the newest event time a tick may arrive and still count.
    pub allowed_lateness_ms: i64,
    /// Most explicit empty candles per gap and interval; 0 never emits any.
    pub max_empty_windows: u32,
    /// How far the exchange watermark must pass an idle symbol's window before it closes;
    /// `None`: only a symbol's own ticks close its windows.
    pub idle_grace_ms: Option<i64>,
    /// Budget for the state committed with each offset (bytes of commit metadata).
    pub state_max_bytes: usize,
    /// How long (event time past a window's end) the trade ids of a closed window are kept, so
    /// that a late copy of a counted trade is a duplicate rather than a late tick.
    pub dedup_retention_ms: i64,
}

impl CandleOptions {
    pub const DEFAULT_MAX_EMPTY_WINDOWS: u32 = 1_440;
    pub const DEFAULT_IDLE_GRACE_MS: i64 = 60_000;
    /// Under the broker's default `offset.metadata.max.bytes` (4096).
    pub const DEFAULT_STATE_MAX_BYTES: usize = 4_000;
    /// Five minutes: covers a lagging duplicate ingester or a reconnect's re-sent trades.
    pub const DEFAULT_DEDUP_RETENTION_MS: i64 = 300_000;

    /// The given intervals (sorted, duplicates removed; `1m` when empty) with default policies
    /// and no allowed lateness.
    pub fn new(intervals: impl IntoIterator<Item = Interval>) -> Self {
        let mut intervals: Vec<Interval> = intervals.into_iter().collect();
        intervals.sort_by_key(|i| i.ms());
        intervals.dedup();
        if intervals.is_empty() {
            intervals.push(Interval::from_ms(60_000));
        }
        Self {
            intervals,
            allowed_lateness_ms: 0,
            max_empty_windows: Self::DEFAULT_MAX_EMPTY_WINDOWS,
            idle_grace_ms: Some(Self::DEFAULT_IDLE_GRACE_MS),
            state_max_bytes: Self::DEFAULT_STATE_MAX_BYTES,
            dedup_retention_ms: Self::DEFAULT_DEDUP_RETENTION_MS,
        }
    }
}

impl Default for CandleOptions {
    fn default() -> Self {
        Self::new([Interval::from_ms(60_000)])
    }
}

/// What happened, counted since the builder was made. The same events also go to the
/// Prometheus counters in [`telemetry`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandleStats {
    /// Ticks applied to at least one window.
    pub accepted: u64,
    pub duplicates: u64,
    /// Ticks late for at least one interval (each is dead-lettered once).
    pub late_ticks: u64,
    /// (late tick, interval) pairs.
    pub late_windows: u64,
    /// Re-read ticks skipped because their windows were emitted before a restart.
    pub replayed: u64,
    /// Candles with trades, and explicit empty ones.
    pub candles: u64,
    pub empty_candles: u64,
    /// Gaps longer than `max_empty_windows`.
    pub unfilled_gaps: u64,
    /// Windows with trades closed by the idle rule.
    pub idle_closed: u64,
    /// Snapshot entries dropped to fit `state_max_bytes`.
    pub state_truncated: u64,
    /// Ticks that could not count without an overflow ([`Pushed::Rejected`]).
    pub rejected: u64,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// In the open window of every interval.
    Accepted,
    /// Its trade id was counted already (in an open window, or in one closed less than
    /// `dedup_retention_ms` ago): dropped.
    Duplicate,
    /// The windows of these intervals had closed: counted late (and dead-lettered by the stage);
    /// the tick still counts in the intervals not listed.
    Late(Vec<Interval>),
    /// Re-read after a restart, and every window it belongs to was emitted before: skipped.
    Replayed,
    /// It cannot count without an overflow (a window's volume, its end): it changed nothing,
    /// and the stage dead-letters it with this reason.
    Rejected(String),
}

/// One exchange within a partition: its watermark and its symbols.
#[derive(Debug)]
struct Group {
    /// Largest own watermark among the symbols.
    wm: i64,
    /// The idle floor at which the next window boundary of any interval is crossed.
    next_due: i64,
    symbols: BTreeMap<String, Symbol>,
}

impl Group {
    fn new(wm: i64) -> Self {
        Self {
            wm,
            next_due: NEVER,
            symbols: BTreeMap::new(),
        }
    }
}

/// One symbol: watermarks, a series per interval, and the trade ids of open and recently
/// closed windows.
#[derive(Debug)]
struct Symbol {
    /// `max event time − allowed lateness` over its accepted ticks.
    own_wm: i64,
    /// Effective watermark: every window ending at or before it is closed.
    wm: i64,
    series: Vec<Series>,
    /// Trade ids by the start of the smallest interval's window holding their time; kept until
    /// every window holding that time has closed and the bucket ended at least
    /// `dedup_retention_ms` before the watermark.
    ids: BTreeMap<i64, HashSet<String>>,
}

impl Symbol {
    fn new(own_wm: i64, wm: i64, specs: &[Spec]) -> Self {
        Self {
            own_wm,
            wm,
            series: specs
                .iter()
                .map(|s| Series::new(s.interval.window_start(wm)))
                .collect(),
            ids: BTreeMap::new(),
        }
    }

    /// Moves the effective watermark to `wm` (if ahead), closes what it passes and forgets the
    /// trade ids of buckets closed more than `retention_ms` before it.
    fn advance(&mut self, wm: i64, specs: &[Spec], retention_ms: i64, emit: &mut Emit<'_>) {
        if wm <= self.wm {
            return;
        }
        self.wm = wm;
        for (series, spec) in self.series.iter_mut().zip(specs) {
            series.close_until(spec.interval.window_start(wm), spec, self.own_wm, emit);
        }
        let Some(first) = specs.first() else { return };
        let keep_from = wm.saturating_sub(retention_ms.max(0));
        while let Some((&bucket, _)) = self.ids.first_key_value() {
            if bucket + first.interval.ms() > keep_from {
                break;
            }
            let last_ms = bucket + first.interval.ms() - 1;
            let all_closed = self
                .series
                .iter()
                .zip(specs)
                .all(|(s, spec)| spec.interval.window_start(last_ms) < s.closed_until);
            if !all_closed {
                break;
            }
            self.ids.pop_first();
        }
    }
}

/// State of one input partition.
#[derive(Debug, Default)]
struct Part {
    /// One past the last offset seen.
    next_offset: i64,
    /// Offsets below this were processed before a restart (from the restored snapshot).
    replay_until: i64,
    groups: BTreeMap<String, Group>,
}

impl Part {
    /// Offset of the oldest tick held in an open window.
    fn held_offset(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|g| g.symbols.values())
            .flat_map(|s| s.series.iter())
            .filter_map(Series::first_offset)
            .min()
    }
}

/// Aggregates ticks into candles. [`tickcast_core::stage::Handler`] for the stage runner; tests call
/// [`CandleBuilder::push`] directly.
#[derive(Debug)]
pub struct CandleBuilder {
    opts: CandleOptions,
    specs: Vec<Spec>,
    output_topic: Arc<str>,
    /// Per (topic, partition); few, so a list.
    parts: Vec<((String, i32), Part)>,
    stats: CandleStats,
}

impl CandleBuilder {
    pub fn new(opts: CandleOptions, output_topic: impl Into<Arc<str>>) -> Self {
        let opts = CandleOptions {
            intervals: CandleOptions::new(opts.intervals.iter().copied()).intervals,
            ..opts
        };
        let specs = opts.intervals.iter().map(|&i| Spec::new(i)).collect();
        Self {
            opts,
            specs,
            output_topic: output_topic.into(),
            parts: Vec::new(),
            stats: CandleStats::default(),
        }
    }

    pub fn options(&self) -> &CandleOptions {
        &self.opts
    }

    pub fn stats(&self) -> &CandleStats {
        &self.stats
    }

    pub fn open_windows(&self) -> usize {
        self.parts
            .iter()
            .flat_map(|(_, p)| p.groups.values())
            .flat_map(|g| g.symbols.values())
            .flat_map(|s| s.series.iter())
            .map(Series::open_count)
            .sum()
    }

    fn part_mut(&mut self, topic: &str, partition: i32) -> &mut Part {
        let i = match self
            .parts
            .iter()
            .position(|((t, p), _)| t == topic && *p == partition)
        {
            Some(i) => i,
            None => {
                self.parts
                    .push(((topic.to_string(), partition), Part::default()));
                self.parts.len() - 1
            }
        };
        &mut self.parts[i].1
    }

    /// Notes that `offset` was read; true when it was processed before a restart.
    fn note_offset(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let part = self.part_mut(topic, partition);
        part.next_offset = part.next_offset.max(offset + 1);
        offset < part.replay_until
    }

    /// Counts a tick refused before it reached [`CandleBuilder::push`] (it failed its checks),
    /// in the stats' `rejected`.
    pub fn count_rejected(&mut self) {
        self.stats.rejected += 1;
    }

    /// Adds one tick read at `at` = (topic, partition, offset); candles closed by it are
    /// appended to `closed` (per symbol and interval in window order).
    pub fn push(&mut self, tick: &Tick, at: (&str, i32, i64), closed: &mut Vec<Candle>) -> Pushed {
        let (topic, partition, offset) = at;
        let replay = self.note_offset(topic, partition, offset);
        let lateness = self.opts.allowed_lateness_ms;
        let grace = self.opts.idle_grace_ms;
        let max_empty = self.opts.max_empty_windows;
        let retention = self.opts.dedup_retention_ms;
        let floor_of = |wm: i64| idle_floor(wm, grace);
        let Self {
            specs,
            parts,
            stats,
            ..
        } = self;
        let Some((_, part)) = parts
            .iter_mut()
            .find(|((t, p), _)| t == topic && *p == partition)
        else {
            return Pushed::Replayed; // unreachable: note_offset created it
        };
        let group = part
            .groups
            .entry(tick.exchange.clone())
            .or_insert_with(|| Group::new(NEVER));
        let floor = floor_of(group.wm);
        let sym = group
            .symbols
            .entry(tick.symbol.clone())
            .or_insert_with(|| Symbol::new(NEVER, floor, specs));
        let mut emit = Emit {
            exchange: &tick.exchange,
            symbol: &tick.symbol,
            max_empty,
            out: closed,
            stats,
        };
        let outcome = apply_tick(sym, tick, offset, specs, replay);
        match &outcome {
            Pushed::Accepted => emit.stats.accepted += 1,
            Pushed::Duplicate => emit.stats.duplicates += 1,
            Pushed::Replayed => {
                emit.stats.replayed += 1;
                telemetry::REPLAYED_TICKS
                    .with_label_values(&[&tick.exchange])
                    .inc();
            }
            Pushed::Rejected(_) => {
                emit.stats.rejected += 1;
                telemetry::REJECTED_TICKS
                    .with_label_values(&[&tick.exchange])
                    .inc();
            }
            Pushed::Late(late) => {
                if late.len() < specs.len() {
                    emit.stats.accepted += 1;
                }
                emit.stats.late_ticks += 1;
                emit.stats.late_windows += late.len() as u64;
                telemetry::LATE_TICKS
                    .with_label_values(&[&tick.exchange])
                    .inc();
                for i in late {
                    telemetry::LATE_TICK_WINDOWS
                        .with_label_values(&[&tick.exchange, &i.to_string()])
                        .inc();
                }
            }
        }
        if matches!(outcome, Pushed::Accepted | Pushed::Late(_)) {
            sym.own_wm = sym.own_wm.max(tick.ts_ms.saturating_sub(lateness));
        }
        let own = sym.own_wm;
        sym.advance(own.max(floor), specs, retention, &mut emit);
        group.wm = group.wm.max(own);
        let floor = floor_of(group.wm);
        if grace.is_some() && floor >= group.next_due {
            for (name, s) in group.symbols.iter_mut() {
                let mut emit = Emit {
                    exchange: &tick.exchange,
                    symbol: name,
                    max_empty,
                    out: emit.out,
                    stats: emit.stats,
                };
                s.advance(s.own_wm.max(floor), specs, retention, &mut emit);
            }
            group.next_due = next_boundary(floor, specs);
        }
        outcome
    }
}

/// `E − idle_grace`: windows of the exchange's symbols ending at or before it are closed.
fn idle_floor(exchange_wm: i64, grace: Option<i64>) -> i64 {
    match grace {
        Some(g) => exchange_wm.saturating_sub(g).max(NEVER),
        None => NEVER,
    }
}

/// The first window boundary of any interval after `t`.
fn next_boundary(t: i64, specs: &[Spec]) -> i64 {
    specs
        .iter()
        .map(|s| s.interval.window_start(t) + s.interval.ms())
        .min()
        .unwrap_or(i64::MAX)
}

/// Puts a tick into the open windows it belongs to and says what it was.
fn apply_tick(sym: &mut Symbol, tick: &Tick, offset: i64, specs: &[Spec], replay: bool) -> Pushed {
    let Some(first) = specs.first() else {
        return Pushed::Replayed;
    };
    let bucket = first.interval.window_start(tick.ts_ms);
    if sym
        .ids
        .get(&bucket)
        .is_some_and(|ids| ids.contains(&tick.trade_id))
    {
        return Pushed::Duplicate;
    }
    // Checked before anything changes, so that a tick that cannot count leaves no trace.
    for (series, spec) in sym.series.iter().zip(specs) {
        let start = spec.interval.window_start(tick.ts_ms);
        if start >= series.closed_until
            && let Some(why) = series.overflow(start, spec, tick)
        {
            return Pushed::Rejected(why);
        }
    }
    let mut late = Vec::new();
    for (series, spec) in sym.series.iter_mut().zip(specs) {
        let start = spec.interval.window_start(tick.ts_ms);
        if start < series.closed_until {
            late.push(spec.interval);
        } else {
            series.apply(start, spec, tick, offset);
        }
    }
    if late.len() < specs.len() {
        sym.ids
            .entry(bucket)
            .or_default()
            .insert(tick.trade_id.clone());
    }
    match (late.is_empty(), late.len() == specs.len(), replay) {
        (true, _, _) => Pushed::Accepted,
        // Re-read: its closed windows were emitted (or it was counted late) before.
        (false, true, true) => Pushed::Replayed,
        (false, false, true) => Pushed::Accepted,
        (false, _, false) => Pushed::Late(late),
    }
}
