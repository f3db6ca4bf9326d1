//! `tickcast decode`: raw exchange frames (one per line) → normalised ticks (JSON lines), with a
//! summary of what each frame was on stderr. For checking a connector against a recording.
//!
//! Exit status: 0 when every frame decoded, 1 when any frame was undecodable, 2 for usage
//! errors (unknown exchange, unreadable file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use clap::Args;
use tickcast_core::codec::{self, Message as _};
use tickcast_core::domain::EventWindow;
use tickcast_ingest::connectors::{Connector, Decoded};

use crate::args::EventWindowArgs;

/// Errors listed in the summary (the count covers all of them).
const ERRORS_SHOWN: usize = 5;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Exchange connector (e.g. binance, coinbase-exchange, okx).
    #[arg(long)]
    pub exchange: String,
    /// File of raw frames, one per line; `-` or absent: stdin.
    pub file: Option<PathBuf>,
    /// Receive time written into every tick's `ingested_ms`, for reproducible output. When
    /// given, every trade's time is also checked against it as `tickcast ingest` checks it
    /// (`--max-clock-skew-ms`, `--max-tick-age-ms`); default: now, with no such check (a
    /// recording is older than any sensible age limit).
    #[arg(long)]
    pub received_ms: Option<i64>,
    #[command(flatten)]
    pub window: EventWindowArgs,
}

/// What happened to the frames of one input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub frames: u64,
    pub ticks: u64,
    pub acks: u64,
    pub reconnects: u64,
    /// Skipped frames by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    pub errors: u64,
    /// The first few errors: (line number, reason).
    pub first_errors: Vec<(u64, String)>,
}

impl Summary {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn error(&mut self, line: u64, reason: String) {
        self.errors += 1;
        if self.first_errors.len() < ERRORS_SHOWN {
            self.first_errors.push((line, reason));
        }
    }

    /// The stderr report: one `key: value` line each, skip reasons and errors indented.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "frames: {}", self.frames);
        let _ = writeln!(s, "ticks: {}", self.ticks);
        let _ = writeln!(s, "acks: {}", self.acks);
        let _ = writeln!(s, "reconnects: {}", self.reconnects);
        let _ = writeln!(s, "skipped: {}", self.skipped_total());
        for (reason, n) in &self.skipped {
            let _ = writeln!(s, "  {n}  {reason}");
        }
        let _ = writeln!(s, "errors: {}", self.errors);
        for (line, reason) in &self.first_errors {
            let _ = writeln!(s, "  line {line}: {reason}");
        }
        s
    }
}

/// Decodes every line of `input` with `connector`, writing ticks as JSON lines to `out`.
pub fn decode_stream(
    connector: &dyn Connector,
    input: impl BufRead,
    out: &mut impl Write,
    received_ms: i64,
    window: Option<EventWindow>,
) -> std::io::Result<Summary> {
    let mut input = input;
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(4096);
    let mut ticks = Vec::with_capacity(64);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.frames += 1;
        let Ok(frame) = std::str::from_utf8(raw) else {
            summary.error(line_no, "frame is not valid UTF-8".into());
            continue;
        };
        ticks.clear();
        match connector.decode(frame, received_ms, &mut ticks) {
            Ok(Decoded::Trades(_)) => {
                for t in &ticks {
                    // The checks ingest makes before it publishes.
                    let problem = match t.check() {
                        Ok(()) => window
                            .and_then(|w| w.problem(t.ts_ms, t.ingested_ms))
                            .map(|why| format!("invalid field `ts_ms`: {why}")),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(why) = problem {
                        summary.error(line_no, format!("invalid tick {}: {why}", t.trade_id));
                        continue;
                    }
                    out.write_all(&codec::encode(t))?;
                    out.write_all(b"\n")?;
                    summary.ticks += 1;
                }
            }
            Ok(Decoded::Ack) => summary.acks += 1,
            Ok(Decoded::Reconnect) => summary.reconnects += 1,
            Ok(Decoded::Skipped(reason)) => *summary.skipped.entry(reason).or_default() += 1,
            Err(e) => summary.error(line_no, e.to_string()),
        }
    }
    Ok(summary)
}

/// Runs the subcommand and exits with its status.
pub fn run(args: DecodeArgs) -> ! {
    std::process::exit(match run_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tickcast decode: {e}");
            2
        }
    })
}

fn run_inner(args: &DecodeArgs) -> Result<i32, String> {
    let connector = tickcast_ingest::exchanges::lookup(&args.exchange)?;
    let received_ms = args.received_ms.unwrap_or_else(tickcast_core::now_ms);
    let input: Box<dyn Read> = match &args.file {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(
            std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?,
        ),
    };
    let reader = BufReader::with_capacity(1 << 16, input);
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let summary = match decode_stream(
        connector.as_ref(),
        reader,
        &mut out,
        received_ms,
        args.received_ms.map(|_| args.window.window()),
    )
    .and_then(|s| out.flush().map(|()| s))
    {
        Ok(s) => s,
        // `tickcast decode … | head` closing the pipe early is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
        Err(e) => return Err(format!("i/o error: {e}")),
    };
    eprint!("{}", summary.render());
    Ok(if summary.errors > 0 { 1 } else { 0 })
}
