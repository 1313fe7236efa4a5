//! Command-line interface: argument parsing and the glue from arguments to library calls.
//!
//! Every clap definition and every command lives here; nothing below this module knows
//! about the command line.
//!
//! - [`scan`]: `scan` (and the scan options `check` shares);
//! - [`check`], [`diff`], [`summary`]: the report workflows;
//! - [`lab`]: `lab ...`;
//! - [`parse`]: option value parsers and bounds.

mod check;
mod diff;
mod error;
mod export;
mod helper;
mod history;
mod human;
mod lab;
mod parse;
mod pcap;
mod scan;
mod shard;
mod summary;
mod trace;

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::signal::unix::SignalKind;

use crate::report::read::LoadedReport;
use crate::workflows::sanitize::sanitize_text;

pub use check::CheckArgs;
pub use diff::DiffArgs;
pub use error::ConfigError;
pub use export::ExportArgs;
pub use helper::HelperArgs;
pub use history::HistoryArgs;
pub use lab::LabCommand;
pub use parse::*;
pub use pcap::PcapArgs;
pub use scan::{ScanArgs, WorkflowArgs, load_targets, scan_config};
pub use shard::ShardSpec;
pub use summary::SummaryArgs;
pub use trace::TraceArgs;

/// Exit status of a run that Ctrl-C interrupted (128 + SIGINT). A run stopped by
/// SIGTERM or SIGHUP exits with 128 + that signal ([`exit_status_for_signal`]).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The signals that stop a scan the way Ctrl-C does: records kept, summary written.
/// SIGTERM is what `timeout`, systemd and CI cancellation send; SIGHUP a closed terminal.
const STOP_SIGNALS: [(SignalKind, i32); 3] = [
    (SignalKind::interrupt(), libc::SIGINT),
    (SignalKind::terminate(), libc::SIGTERM),
    (SignalKind::hangup(), libc::SIGHUP),
];

/// The conventional exit status of a run ended by `signal`: 128 + its number.
pub fn exit_status_for_signal(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(EXIT_INTERRUPTED)
}

/// Which stop signal arrived (if any), shared between the stop future and the caller.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<OnceLock<i32>>);

impl StopSignal {
    /// Installs handlers for SIGINT, SIGTERM and SIGHUP (must run inside the runtime) and
    /// returns the future that resolves when the first arrives. The handlers are installed
    /// before this returns, so a signal sent from then on is never the default (fatal) one.
    pub fn install(&self) -> anyhow::Result<impl Future<Output = ()> + use<>> {
        let mut streams = Vec::new();
        for (kind, number) in STOP_SIGNALS {
            let stream = tokio::signal::unix::signal(kind)
                .with_context(|| format!("cannot install the handler of signal {number}"))?;
            streams.push((stream, number));
        }
        let received = Arc::clone(&self.0);
        Ok(async move {
            let waits = streams.into_iter().map(|(mut stream, number)| {
                Box::pin(async move {
                    stream.recv().await;
                    number
                })
            });
            let (number, _, _) = futures::future::select_all(waits).await;
            let _ = received.set(number);
        })
    }

    /// The exit status of an interrupted run: 128 + the signal that stopped it.
    pub fn exit_status(&self) -> u8 {
        self.0
            .get()
            .map_or(EXIT_INTERRUPTED, |&signal| exit_status_for_signal(signal))
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "censorprobe",
    version,
    about = "Measure Internet censorship from a vantage point: DNS poisoning, RST injection and timeouts, with the evidence behind every verdict"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure targets and write a JSONL report.
    Scan(Box<ScanArgs>),
    /// The built-in censor lab: a GFW-like censor in network namespaces (needs root).
    #[command(subcommand)]
    Lab(LabCommand),
    /// Check expectations (TOML) against a scan or an existing report; exit 1 on failure.
    Check(Box<CheckArgs>),
    /// Compare two reports: newly blocked, newly unblocked, changed verdicts.
    Diff(DiffArgs),
    /// Summarise a report: counts per verdict, method, stage and category; blocklists.
    Summary(SummaryArgs),
    /// Per domain and vantage over many reports: days blocked, first and last seen
    /// blocked, changes of state; daily censored lists.
    History(HistoryArgs),
    /// Locate the censor of one name on one server by TTL-limited probing (needs root).
    Trace(Box<TraceArgs>),
    /// Analyse capture files (pcap, pcapng) offline: flows, triggers, injected packets,
    /// and the censor's hop in TTL-limited (CenTrace) captures.
    Pcap(PcapArgs),
    /// Export reports as one columnar table (Parquet) for SQL engines and dataframes.
    Export(ExportArgs),
    /// The web control: a server, run from an uncensored vantage, that measures the names
    /// a scan asks about (`scan --web-control`) from its own network.
    Helper(Box<HelperArgs>),
}

/// Log output on stderr: warnings (errors only with `--quiet`) unless `RUST_LOG` says
/// otherwise; colours only on a terminal, so that logs and CI files stay plain text.
fn init_tracing(quiet: bool) {
    use std::io::IsTerminal;
    let default_level = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: lab daemons and scripts log to files.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

impl Command {
    /// Whether the command was asked to print nothing on stderr but errors.
    fn quiet(&self) -> bool {
        match self {
            Command::Scan(args) => args.quiet,
            Command::Check(args) => args.scan.quiet,
            Command::Diff(args) => args.quiet,
            Command::Summary(args) => args.quiet,
            Command::History(args) => args.quiet,
            Command::Pcap(args) => args.quiet,
            Command::Export(args) => args.quiet,
            Command::Lab(_) | Command::Trace(_) | Command::Helper(_) => false,
        }
    }
}

/// Parses the command line. A value out of range is one line and status 2 (the usual
/// clap usage text follows other mistakes; `--help` and `--version` print as usual).
fn parse_command_line() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            ) =>
        {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("censorprobe: error: {first}");
            Err(ExitCode::from(2))
        }
        Err(error) => {
            let _ = error.print();
            Err(ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2)))
        }
    }
}

/// Runs the command line; the binary's `main` only reports what this returns.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = match parse_command_line() {
        Ok(cli) => cli,
        Err(status) => return Ok(status),
    };
    init_tracing(cli.command.quiet());
    match cli.command {
        Command::Scan(args) => scan::run_scan_command(&args),
        Command::Lab(command) => lab::run_lab(command),
        Command::Check(args) => check::run_check(&args),
        Command::Diff(args) => diff::run_diff(&args),
        Command::Summary(args) => summary::run_summary(&args),
        Command::History(args) => history::run_history(&args),
        Command::Trace(args) => trace::run_trace(&args),
        Command::Pcap(args) => pcap::run_pcap(&args),
        Command::Export(args) => export::run_export(&args),
        Command::Helper(args) => helper::run_helper(&args),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Exit status: everything holds / nothing changed.
pub const EXIT_OK: u8 = 0;
/// Exit status: an expectation does not hold / something changed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: usage or input error (also what `main` returns for any error).
pub const EXIT_ERROR: u8 = 2;

pub(crate) fn load_report(path: &Path, quiet: bool) -> anyhow::Result<LoadedReport> {
    let report = LoadedReport::load(path)?;
    report.require_targets()?;
    if !quiet && let Some(warning) = report.warning() {
        eprintln!("censorprobe: warning: {}", sanitize_text(&warning));
    }
    Ok(report)
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|source| {
        ConfigError::OutputWrite {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

pub(crate) fn write_output(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) if path != Path::new("-") => write_file(path, text.as_bytes()),
        _ => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write to stdout")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_exit_statuses() {
        assert_eq!(exit_status_for_signal(libc::SIGINT), EXIT_INTERRUPTED);
        assert_eq!(exit_status_for_signal(libc::SIGTERM), 143);
        assert_eq!(exit_status_for_signal(libc::SIGHUP), 129);
        assert_eq!(StopSignal::default().exit_status(), EXIT_INTERRUPTED);
    }
}
