//! The candle state committed with each offset as Kafka commit metadata, and read back when a
//! partition is assigned. One line of space-separated tokens:
//!
//! ```text
//! c1 n1043 ebinance=1723075259000 sBTC-USDT=0 sETH-USDT=_,1m:3000.5:3
//! ```
//!
//! - `c1` — format version;
//! - `n<offset>` — one past the last offset processed: ticks below it were handled before;
//! - `e<exchange>=<E>` — that exchange's watermark (ms); the `s` tokens after it are its symbols;
//! - `s<symbol>=<d>` — the symbol's own watermark is `E − d`; `_` when it is not ahead of the
//!   idle floor `E − idle_grace` (it is then that floor, so it need not be stored);
//! - `,<interval>:<close>:<k>` after it — the close that the interval's empty windows repeat,
//!   and `k`, the empty candles already emitted in the current gap.
//!
//! Symbols with neither are left out: they restore to the idle floor. Open windows are not
//! stored: they are rebuilt from the ticks re-read from the committed offset.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::series::{Series, Spec, Tail};
use super::{Group, NEVER, Part, Symbol, idle_floor as floor, next_boundary};
use tickcast_core::domain::decimal_text;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a candle state snapshot (starts `{0}`)")]
    Version(String),
    #[error("bad token `{token}`: {reason}")]
    Token { token: String, reason: String },
}

fn bad(token: &str, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Token {
        token: token.chars().take(80).collect(),
        reason: reason.into(),
    }
}

/// One symbol's line items, before the budget is applied.
struct Entry<'a> {
    group: usize,
    name: &'a str,
    /// `E − own`, when the own watermark is ahead of the idle floor.
    behind: Option<i64>,
    tails: Vec<String>,
}

impl Entry<'_> {
    fn token(&self, with_tails: bool) -> String {
        let mut s = format!(" s{}=", self.name);
        match self.behind {
            Some(d) => {
                let _ = write!(s, "{d}");
            }
            None => s.push('_'),
        }
        if with_tails {
            for t in &self.tails {
                s.push(',');
                s.push_str(t);
            }
        }
        s
    }
}

/// Encodes `part` within `budget` bytes; returns the text and how many entries (a symbol's
/// tails, or a symbol) were dropped to fit.
pub(super) fn encode(
    part: &Part,
    specs: &[Spec],
    grace: Option<i64>,
    budget: usize,
) -> (String, u64) {
    let mut head = format!("c1 n{}", part.next_offset);
    let groups: Vec<(&String, &Group)> = part.groups.iter().filter(|(_, g)| g.wm > NEVER).collect();
    let mut entries = Vec::new();
    for (gi, (_, g)) in groups.iter().enumerate() {
        let floor = floor(g.wm, grace);
        for (name, sym) in &g.symbols {
            let behind = (sym.own_wm > floor).then(|| g.wm - sym.own_wm);
            let tails: Vec<String> = sym
                .series
                .iter()
                .zip(specs)
                .filter_map(|(s, spec)| tail_token(s, spec))
                .collect();
            if behind.is_some() || !tails.is_empty() {
                entries.push(Entry {
                    group: gi,
                    name,
                    behind,
                    tails,
                });
            }
        }
    }
    // Drop order: the symbols furthest behind their exchange first.
    let rank = |e: &Entry<'_>| std::cmp::Reverse(e.behind.unwrap_or(i64::MAX));
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| rank(&entries[i]));
    let mut with_tails = vec![true; entries.len()];
    let mut kept = vec![true; entries.len()];
    let group_tokens: Vec<String> = groups
        .iter()
        .map(|(name, g)| format!(" e{name}={}", g.wm))
        .collect();
    let size = |with_tails: &[bool], kept: &[bool]| {
        head.len()
            + group_tokens.iter().map(String::len).sum::<usize>()
            + entries
                .iter()
                .enumerate()
                .filter(|(i, _)| kept[*i])
                .map(|(i, e)| e.token(with_tails[i]).len())
                .sum::<usize>()
    };
    let mut dropped = 0;
    let mut total = size(&with_tails, &kept);
    for &i in &order {
        if total <= budget {
            break;
        }
        if !entries[i].tails.is_empty() {
            with_tails[i] = false;
            dropped += 1;
            total = size(&with_tails, &kept);
        }
    }
    for &i in &order {
        if total <= budget {
            break;
        }
        kept[i] = false;
        dropped += 1;
        total = size(&with_tails, &kept);
    }
    for (gi, token) in group_tokens.iter().enumerate() {
        head.push_str(token);
        for (i, e) in entries.iter().enumerate() {
            if e.group == gi && kept[i] && (e.behind.is_some() || with_tails[i]) {
                head.push_str(&e.token(with_tails[i]));
            }
        }
    }
    (head, dropped)
}

/// `<interval>:<close>:<k>` when the series may still emit empty windows from its tail: it
/// has one, and no open window starts where the closed ones end.
fn tail_token(s: &Series, spec: &Spec) -> Option<String> {
    let tail = s.tail.as_ref()?;
    if s.open.first_key_value().map(|(&k, _)| k) == Some(s.closed_until) {
        return None;
    }
    let k = (s.closed_until - tail.gap_start) / spec.interval.ms();
    Some(format!("{}:{}:{k}", spec.label, tail.close))
}

fn number(token: &str, text: &str) -> Result<i64, SnapshotError> {
    text.parse()
        .map_err(|_| bad(token, format!("`{text}` is not an integer")))
}

/// Reads a snapshot back into a partition's state (no open windows: those are re-read).
pub(super) fn decode(
    text: &str,
    specs: &[Spec],
    grace: Option<i64>,
) -> Result<Part, SnapshotError> {
    let mut tokens = text.split(' ').filter(|t| !t.is_empty());
    match tokens.next() {
        Some("c1") => {}
        other => return Err(SnapshotError::Version(other.unwrap_or("").to_string())),
    }
    let mut part = Part::default();
    let mut current: Option<String> = None;
    for token in tokens {
        let (Some(kind), Some(body)) = (token.get(..1), token.get(1..)) else {
            return Err(bad(token, "unknown token"));
        };
        match kind {
            "n" => {
                part.next_offset = number(token, body)?;
                part.replay_until = part.next_offset;
            }
            "e" => {
                let (name, wm) = body.split_once('=').ok_or_else(|| bad(token, "no `=`"))?;
                let wm = number(token, wm)?;
                let mut g = Group::new(wm);
                g.next_due = match grace {
                    Some(_) => next_boundary(floor(wm, grace), specs),
                    None => NEVER,
                };
                part.groups.insert(name.to_string(), g);
                current = Some(name.to_string());
            }
            "s" => {
                let g = current
                    .as_ref()
                    .and_then(|name| part.groups.get_mut(name))
                    .ok_or_else(|| bad(token, "symbol before any exchange"))?;
                let (name, sym) = symbol(token, body, g.wm, specs, grace)?;
                g.symbols.insert(name, sym);
            }
            _ => return Err(bad(token, "unknown token")),
        }
    }
    Ok(part)
}

/// `<symbol>=<d>[,<interval>:<close>:<k>]*` of an exchange at watermark `exchange_wm`.
fn symbol(
    token: &str,
    body: &str,
    exchange_wm: i64,
    specs: &[Spec],
    grace: Option<i64>,
) -> Result<(String, Symbol), SnapshotError> {
    let mut fields = body.split(',');
    let head = fields.next().unwrap_or("");
    let (name, behind) = head.split_once('=').ok_or_else(|| bad(token, "no `=`"))?;
    let floor = floor(exchange_wm, grace);
    let own = match behind {
        "_" => NEVER,
        d => exchange_wm - number(token, d)?,
    };
    let mut sym = Symbol::new(own, own.max(floor), specs);
    let mut tails: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for f in fields {
        let mut p = f.splitn(3, ':');
        match (p.next(), p.next(), p.next()) {
            (Some(label), Some(close), Some(k)) => {
                tails.insert(label, (close, k));
            }
            _ => return Err(bad(token, format!("bad tail `{f}`"))),
        }
    }
    for (series, spec) in sym.series.iter_mut().zip(specs) {
        // Tails of intervals no longer configured are ignored.
        let Some((close, k)) = tails.get(spec.label.as_str()) else {
            continue;
        };
        let close = decimal_text::parse(close).map_err(|e| bad(token, e))?;
        let k = number(token, k)?;
        series.tail = Some(Tail {
            close,
            gap_start: series.closed_until - k * spec.interval.ms(),
        });
    }
    Ok((name.to_string(), sym))
}
