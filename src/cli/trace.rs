//! `censorprobe trace`: locate the censor of one name on one server by TTL-limited probing.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::classify::location::judge_trace;
use crate::probe::locate::{TraceConfig, Tracer};
use crate::record::location::{TraceProtocol, TraceRecord, TriggerOutcome};

/// Which trigger the trace sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceProtocolArg {
    /// An HTTP GET with the name as Host (default port 80).
    Http,
    /// A TLS `ClientHello` with the name as SNI (default port 443).
    Tls,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The name sent as Host (http) or SNI (tls).
    pub name: String,
    /// The server's address.
    #[arg(long)]
    pub server: IpAddr,
    /// Which trigger to send.
    #[arg(long, value_enum, default_value = "http")]
    pub protocol: TraceProtocolArg,
    /// The server's port (default: 80 for http, 443 for tls).
    #[arg(long)]
    pub port: Option<u16>,
    /// The benign name traced first for the server's hop distance.
    #[arg(long, default_value = crate::observation::web::DEFAULT_CONTROL_NAME, conflicts_with = "no_control")]
    pub control: String,
    /// Skip the benign control trace.
    #[arg(long)]
    pub no_control: bool,
    /// The largest TTL tried.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub max_ttl: u8,
    /// How long to wait for an answer after each trigger, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=30_000))]
    pub window_ms: u64,
    /// The pause between two connections, in milliseconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub pause_ms: u64,
    /// Print the trace as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the output here instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub(crate) fn run_trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let protocol = match args.protocol {
        TraceProtocolArg::Http => TraceProtocol::Http,
        TraceProtocolArg::Tls => TraceProtocol::Tls,
    };
    let port = args.port.unwrap_or(match protocol {
        TraceProtocol::Http => 80,
        TraceProtocol::Tls => 443,
    });
    let config = TraceConfig {
        max_ttl: args.max_ttl,
        window: Duration::from_millis(args.window_ms),
        pause: Duration::from_millis(args.pause_ms),
        control_name: (!args.no_control).then(|| args.control.clone()),
        ..TraceConfig::default()
    };
    let tracer = Tracer::new(args.server, config)?;
    let record =
        judge_trace(tracer.trace(SocketAddr::new(args.server, port), protocol, &args.name)?);
    let text = if args.json {
        let mut line = serde_json::to_string(&record)?;
        line.push('\n');
        line
    } else {
        describe_trace(&record)
    };
    super::write_output(args.out.as_deref(), &text)?;
    Ok(ExitCode::from(super::EXIT_OK))
}

fn describe_outcome(outcome: &TriggerOutcome) -> String {
    match outcome {
        TriggerOutcome::HandshakeFailed { reason } => format!("handshake failed: {reason}"),
        TriggerOutcome::Reset => "reset".to_owned(),
        TriggerOutcome::Closed => "closed (FIN)".to_owned(),
        TriggerOutcome::ServerData { bytes } => format!("server data ({bytes} bytes)"),
        TriggerOutcome::Silence => "nothing".to_owned(),
        TriggerOutcome::Failed { reason } => format!("error: {reason}"),
    }
}

fn describe_hops(out: &mut String, hops: &[crate::record::location::TtlObservation]) {
    for hop in hops {
        let router = hop
            .router
            .map_or_else(|| "*".to_owned(), |router| router.to_string());
        let after = hop
            .after_ms
            .map(|ms| format!(" after {ms} ms"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  ttl {:>2}  {router:<16} {}{after}",
            hop.ttl,
            describe_outcome(&hop.outcome)
        );
    }
}

/// The text form of a trace.
pub(crate) fn describe_trace(record: &TraceRecord) -> String {
    let sanitize = crate::workflows::sanitize::sanitize_text;
    let mut out = String::new();
    if let Some(control) = &record.trace.control {
        let _ = writeln!(out, "control {}:", sanitize(&control.name));
        describe_hops(&mut out, &control.hops);
    }
    let _ = writeln!(
        out,
        "trace {} to {}:{} ({:?}):",
        sanitize(&record.trace.name),
        record.trace.server,
        record.trace.port,
        record.trace.protocol
    );
    describe_hops(&mut out, &record.trace.hops);
    let location = &record.location;
    let hop = |hop: Option<u8>| hop.map_or_else(|| "unknown".to_owned(), |h| h.to_string());
    let placement = location.placement.describe();
    let _ = writeln!(
        out,
        "result: {placement}; injection hop {}; server hop {}",
        hop(location.injection_hop),
        hop(location.server_hop)
    );
    if let Some(router) = location.injection_router {
        let _ = writeln!(out, "router at the injection hop: {router}");
    }
    if let Some(residual) = &location.residual {
        let _ = writeln!(
            out,
            "residual censorship from ttl {}: {}",
            residual.from_ttl, residual.reason
        );
    }
    if let Some(reason) = &location.reason {
        let _ = writeln!(out, "why: {reason}");
    }
    out
}
