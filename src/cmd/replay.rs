//! `tickcast replay`: flags → [`ReplayOptions`], then serve until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use tickcast_ingest::exchanges;
use tickcast_ingest::replay::{Faults, ReplayOptions, ReplayServer, Source, source};
use tickcast_ingest::simulator::SimConfig;

use crate::args::MAX_HISTORY_MINUTES;
use crate::signals::shutdown_on_signals;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Protocol to speak: any connector name (binance, kraken, okx, …).
    #[arg(long, default_value = "binance")]
    pub exchange: String,
    /// Address to listen on (websocket and REST on the same port).
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub listen: String,
    /// Simulator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Canonical symbols the simulator trades.
    #[arg(long, value_delimiter = ',', default_value = "BTC-USDT,ETH-USDT")]
    pub symbols: Vec<String>,
    /// Where trades come from: `simulator`, `csv:PATH` (trades CSV, .gz ok) or `frames:PATH`
    /// (raw frames, one per line, sent verbatim).
    #[arg(long, default_value = "simulator")]
    pub source: String,
    /// Stop after this many trades have happened (default: endless / whole file).
    #[arg(long)]
    pub total: Option<u64>,
    /// Trades per second; 0 = as fast as clients read.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Pace by event time: history streams at once, then trades arrive in real time. A CSV
    /// replays from its first trade, paced. Without it the simulated market's clock starts in
    /// November 2023, so ingest from it with `--max-tick-age-ms off --max-clock-skew-ms off`.
    #[arg(long)]
    pub live: bool,
    /// With --live: event time runs this many times faster than real time. Above 1 its trades
    /// are stamped ahead of the wall clock, so ingest from it with `--max-clock-skew-ms off`.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Minutes of simulated history before now (with --live).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(i64).range(0..=MAX_HISTORY_MINUTES))]
    pub history_minutes: i64,
    /// With --live: the first client to subscribe is sent the history before now at once (as
    /// `tickcast demo` does), so a fresh stack starts with candles to forecast from; later
    /// clients start at the market's end.
    #[arg(long)]
    pub send_history: bool,
    /// Heartbeat period for protocols that have one, ms.
    #[arg(long, default_value_t = 5_000)]
    pub heartbeat_ms: u64,
    /// Close each connection after every N trade frames.
    #[arg(long)]
    pub drop_every: Option<u64>,
    /// Trades that happen while a dropped client is away.
    #[arg(long, default_value_t = 0)]
    pub gap_on_drop: u64,
    /// Stall each connection after every N trade frames…
    #[arg(long)]
    pub stall_every: Option<u64>,
    /// …for this many milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub stall_ms: u64,
    /// Send every Nth trade frame twice.
    #[arg(long)]
    pub duplicate_every: Option<u64>,
    /// Send a garbage (non-JSON) frame after every N trade frames.
    #[arg(long)]
    pub garbage_every: Option<u64>,
    /// Every Nth trade happens but is not sent on the connection (REST still has it).
    #[arg(long)]
    pub skip_every: Option<u64>,
    /// Send a poison trade frame after every N trade frames: a size that overflows a window,
    /// a time in microseconds or `i64::MAX`, a zero or a negative price, in turn (each must
    /// reach the dead-letter topic).
    #[arg(long)]
    pub poison_every: Option<u64>,
}

fn options(args: &ReplayArgs) -> Result<ReplayOptions> {
    if exchanges::find(&args.exchange).is_none() {
        bail!(exchanges::unknown(&args.exchange));
    }
    let source = match args.source.split_once(':') {
        _ if args.source == "simulator" => {
            for s in &args.symbols {
                tickcast_core::codec::check_symbol(s)
                    .map_err(|e| anyhow::anyhow!("--symbols: {e}"))?;
            }
            let start_ms = if args.live {
                tickcast_core::now_ms() - args.history_minutes * 60_000
            } else {
                1_700_000_000_000
            };
            let mut sim = SimConfig::default_symbols(args.seed, start_ms);
            sim.symbols = args
                .symbols
                .iter()
                .map(|s| (s.clone(), source::start_price(s)))
                .collect();
            Source::Simulator(sim)
        }
        Some(("csv", path)) => Source::TradesCsv(PathBuf::from(path)),
        Some(("frames", path)) => Source::Frames(PathBuf::from(path)),
        _ => bail!(
            "--source `{}`: expected simulator, csv:PATH or frames:PATH",
            args.source
        ),
    };
    Ok(ReplayOptions {
        exchange: args.exchange.clone(),
        total: args.total,
        rate: args.rate,
        live: args.live,
        speed: args.speed,
        live_from_ms: match &source {
            Source::TradesCsv(_) if args.live => first_trade_ms(&source)?,
            _ => None,
        },
        heartbeat_every: Duration::from_millis(args.heartbeat_ms),
        history_to_first: args.live && args.send_history,
        faults: Faults {
            drop_every: args.drop_every,
            gap_on_drop: args.gap_on_drop,
            stall_every: args.stall_every,
            stall_for: Duration::from_millis(args.stall_ms),
            duplicate_every: args.duplicate_every,
            garbage_every: args.garbage_every,
            skip_every: args.skip_every,
            poison_every: args.poison_every,
        },
        source,
    })
}

/// Event time of a source's first trade.
fn first_trade_ms(src: &Source) -> Result<Option<i64>> {
    let (mut feed, _) = source::open(src)?;
    Ok(feed.find_map(|item| item.ts_ms()))
}

pub async fn run(args: ReplayArgs) -> Result<()> {
    let opts = options(&args)?;
    let server = ReplayServer::bind(&args.listen, opts).await?;
    println!("replay exchange ({} protocol)", args.exchange);
    println!("  websocket {}", server.url()?);
    println!("  REST      {}", server.rest_url()?);
    let (_trigger, signal) = shutdown_on_signals();
    server.run(signal).await
}
