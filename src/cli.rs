//! Command-line interface: argument parsing and the glue from arguments to library calls.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hickory_proto::rr::RecordType;
use tokio::signal::unix::SignalKind;

use crate::control::{ControlSpec, DEFAULT_CONTROL};
use crate::dns::DnsProbeConfig;
use crate::error::Error;
use crate::ipclass::ForgedIpList;
use crate::pathguard::{PathGuardConfig, PortRotation};
use crate::report::human_summary;
use crate::scan::{ScanConfig, Stages, run_scan_with};
use crate::scheduler::Shard;
use crate::targets::{TargetList, TargetLoader};
use crate::web::http::HttpProbeConfig;
use crate::web::stage::{ViaConfig, WebStageConfig};
use crate::web::tls::TlsProbeConfig;
use crate::workflows::commands::{
    CheckArgs, DiffArgs, SummaryArgs, run_check, run_diff, run_summary,
};
use crate::workflows::plan::WorkflowArgs;

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
    Lab(crate::lab::LabCommand),
    /// Check expectations (TOML) against a scan or an existing report; exit 1 on failure.
    Check(Box<CheckArgs>),
    /// Compare two reports: newly blocked, newly unblocked, changed verdicts.
    Diff(DiffArgs),
    /// Summarise a report: counts per verdict, method, stage and category; blocklists.
    Summary(SummaryArgs),
}

/// Options of a scan (shared by every command that measures).
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Domains or URLs to measure (in addition to --targets files).
    #[arg(value_name = "DOMAIN|URL")]
    pub targets: Vec<String>,
    /// Target list: plain (one domain or URL a line, `#` comments) or a Citizen Lab CSV; `-` reads stdin.
    #[arg(long = "targets", value_name = "FILE")]
    pub target_files: Vec<PathBuf>,
    /// Make a malformed input line fatal instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Resolver under test (default: the first nameserver in /etc/resolv.conf).
    #[arg(long, value_name = "IP[:PORT]")]
    pub resolver: Option<String>,
    /// Query types, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "A,AAAA")]
    pub qtype: Vec<String>,
    /// How long to keep listening after the first reply, for late (genuine) replies.
    #[arg(long, default_value = "1s", value_parser = |t: &str| parse_duration_in(t, Duration::ZERO, MAX_DNS_WAIT))]
    pub dns_wait: Duration,
    /// How long to wait for a first reply to one attempt.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub dns_timeout: Duration,
    /// Attempts after the first when an attempt gets no reply.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=MAX_RETRIES))]
    pub retries: u32,
    /// Also query this address, which runs no DNS service: any reply from it is injected.
    #[arg(long, value_name = "IP[:PORT]")]
    pub dns_sink: Option<String>,
    /// Control resolution path: doh:URL, dot:IP[:PORT]#NAME, udp:IP[:PORT] or none.
    #[arg(long, default_value = DEFAULT_CONTROL)]
    pub control: String,
    /// Timeout of one control lookup.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub control_timeout: Duration,
    /// Extra trust anchors (PEM) for DoT/DoH controls and TLS probes, e.g. a lab CA.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Addresses (or CIDR prefixes) known to be handed out by an injector, one a line.
    #[arg(long, value_name = "FILE")]
    pub forged_ips: Option<PathBuf>,
    /// Targets measured at once.
    #[arg(long, default_value_t = 500, value_parser = |t: &str| parse_count(t, 1, MAX_CONCURRENCY))]
    pub concurrency: usize,
    /// Most DNS queries a second, spaced evenly; the probe backs off below it when the
    /// resolver drops queries (0: unpaced, no back-off). The default is gentle enough
    /// for public resolvers.
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Seed of the shuffled order (random when absent; required with --shard).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Measure only part I of N (0-based) of the shuffled list, as `ZMap` shards do.
    #[arg(long, value_name = "I/N", requires = "seed")]
    pub shard: Option<Shard>,
    /// Write the JSONL report here (default: stdout).
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// A label for the vantage point, recorded in the report header.
    #[arg(long)]
    pub vantage: Option<String>,
    /// Stages to run, comma-separated: dns, http, tls.
    #[arg(long, value_delimiter = ',', default_value = "dns,http,tls")]
    pub tests: Vec<String>,
    /// Addresses probed per target by the HTTP and TLS stages.
    #[arg(long, default_value_t = 2, value_parser = |t: &str| parse_count(t, 1, MAX_IPS_PER_TARGET))]
    pub max_ips: usize,
    /// Harmless Host/SNI for the benign control connections.
    #[arg(long, default_value = crate::web::stage::DEFAULT_CONTROL_NAME)]
    pub control_name: String,
    /// Longest wait for a penalised (server IP, port) to work again (residual censorship).
    #[arg(long, default_value = "180s", value_parser = |t: &str| parse_duration_in(t, Duration::ZERO, MAX_RESIDUAL_WAIT))]
    pub residual_wait: Duration,
    /// First re-check of a penalised (server IP, port); later ones back off, doubling up
    /// to 30 s. Shorten it when residual blocking is known to be short (a lab).
    #[arg(long, default_value = "5s", value_parser = |t: &str| parse_duration_in(t, MIN_TIMEOUT, MAX_RESIDUAL_WAIT))]
    pub residual_recheck: Duration,
    /// Send every HTTP and TLS probe to this server, with each target's Host/SNI.
    #[arg(long, value_name = "IP")]
    pub via: Option<IpAddr>,
    /// With --via: rotate the destination port over A-B so that no two tests share a
    /// (server IP, port) inside the residual window.
    #[arg(long, value_name = "A-B", requires = "via")]
    pub via_ports: Option<String>,
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
    pub http_port: u16,
    #[arg(long, default_value_t = 443, value_parser = clap::value_parser!(u16).range(1..))]
    pub tls_port: u16,
    /// TCP connect timeout of the HTTP and TLS probes.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub connect_timeout: Duration,
    /// Deadline for an HTTP response or a TLS handshake after the connect.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub web_timeout: Duration,
    /// Block-page fingerprints (TOML; default: the built-in set, targets/blockpages.toml).
    #[arg(long, value_name = "FILE")]
    pub blockpages: Option<PathBuf>,
    /// Sockets in the DNS probe's pool.
    #[arg(long, default_value_t = 8, hide = true, value_parser = |t: &str| parse_count(t, 1, MAX_DNS_SOCKETS))]
    pub dns_sockets: usize,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Resume, repeat, output format, progress (src/workflows).
    #[command(flatten)]
    pub workflow: WorkflowArgs,
}

// Bounds of the options: values past them are typing mistakes, and some would overflow
// a deadline (`Instant + Duration`) or a pacing interval deep inside a scan.
/// The longest duration any option takes (a week: `--repeat-interval` over days).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest timeout of one connection, handshake or lookup.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest timeout: below a millisecond nothing can answer.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest `--dns-wait` (lingering after the first reply, per target).
pub const MAX_DNS_WAIT: Duration = Duration::from_secs(60);
/// The longest `--residual-wait` / `--residual-recheck`.
pub const MAX_RESIDUAL_WAIT: Duration = Duration::from_secs(3600);
pub const MAX_CONCURRENCY: usize = 100_000;
pub const MAX_IPS_PER_TARGET: usize = 64;
pub const MAX_DNS_SOCKETS: usize = 1024;
pub const MAX_RETRIES: i64 = 10;
/// Highest `--rate` (DNS queries a second); the lowest non-zero one is [`MIN_RATE`].
pub const MAX_RATE: f64 = 1_000_000.0;
/// Lowest non-zero `--rate`: one query a day would already be a mistake.
pub const MIN_RATE: f64 = 0.001;

/// Parses `1s`, `500ms`, `2.5s`, `3m`, `1e3s` or a bare number of seconds, up to
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::ZERO, MAX_DURATION)
}

/// A timeout: [`parse_duration`] between [`MIN_TIMEOUT`] and [`MAX_TIMEOUT`].
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, MIN_TIMEOUT, MAX_TIMEOUT)
}

/// [`parse_duration`] with bounds: `min..=max`.
pub fn parse_duration_in(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let text = text.trim();
    // The unit is the trailing run of letters, so that `1e3s` is 1000 seconds.
    let number_end = text
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .len();
    let (number, unit) = text.split_at(number_end);
    let unit = if unit.is_empty() { "s" } else { unit };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 1s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "{text:?}: a duration is a finite number, 0 or more"
        ));
    }
    if seconds > max.as_secs_f64() {
        return Err(format!(
            "{text:?} is too long: at most {}",
            describe_duration(max)
        ));
    }
    let duration = Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))?;
    if duration < min {
        return Err(format!(
            "{text:?} is too short: at least {}",
            describe_duration(min)
        ));
    }
    Ok(duration)
}

fn describe_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A count option between `min` and `max`.
pub fn parse_count(text: &str, min: usize, max: usize) -> Result<usize, String> {
    let value: u128 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    usize::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| format!("{value} is out of range: {min} to {max}"))
}

/// `--rate`: 0 (unpaced), or between [`MIN_RATE`] and [`MAX_RATE`] queries a second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "{text:?} is out of range: 0 (unpaced) or {MIN_RATE} to {MAX_RATE} queries a second"
        ))
    }
}

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_server(text: &str, default_port: u16) -> Result<SocketAddr, Error> {
    if let Ok(addr) = SocketAddr::from_str(text) {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    IpAddr::from_str(bare)
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| Error::BadAddress {
            input: text.to_owned(),
            reason: "expected IP, IP:PORT or [IPv6]:PORT".to_owned(),
        })
}

/// The first `nameserver` of a resolv.conf.
pub fn system_resolver(path: &Path) -> Result<SocketAddr, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::NoSystemResolver {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .find_map(|ip| {
            ip.split('%')
                .next()
                .and_then(|ip| IpAddr::from_str(ip).ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| Error::NoSystemResolver {
            path: path.to_owned(),
            reason: "no nameserver line".to_owned(),
        })
}

/// Loads every target the arguments name.
pub fn load_targets(args: &ScanArgs) -> anyhow::Result<TargetList> {
    let mut loader = TargetLoader::new(args.strict);
    for target in &args.targets {
        loader.add_cli(target)?;
    }
    for file in &args.target_files {
        loader.add_file(file)?;
    }
    let list = loader.finish();
    if list.targets.is_empty() {
        match list.rejection_summary() {
            Some(why) => bail!("no targets: {why}"),
            None => bail!("no targets: name domains or URLs, or give --targets FILE"),
        }
    }
    Ok(list)
}

/// Turns the arguments into a scan configuration (everything that can fail at start-up).
pub fn scan_config(args: &ScanArgs) -> anyhow::Result<ScanConfig> {
    let resolver = match &args.resolver {
        Some(text) => parse_server(text, 53)?,
        None => system_resolver(Path::new("/etc/resolv.conf"))?,
    };
    let sink = args
        .dns_sink
        .as_deref()
        .map(|s| parse_server(s, 53))
        .transpose()?;
    let mut qtypes = Vec::new();
    for text in &args.qtype {
        let qtype =
            RecordType::from_str(&text.to_ascii_uppercase()).map_err(|_| Error::BadOption {
                option: "--qtype",
                reason: format!("unknown query type {text:?}"),
            })?;
        if !qtypes.contains(&qtype) {
            qtypes.push(qtype);
        }
    }
    let control = ControlSpec::from_str(&args.control)?;
    if let Err(reason) = crate::targets::validate_dns_name(&args.control_name) {
        bail!(Error::BadOption {
            option: "--control-name",
            reason: format!("{:?}: {reason}", args.control_name),
        });
    }
    let mut extra_roots = Vec::new();
    for path in &args.ca {
        extra_roots.extend(crate::trust::load_ca_file(path)?);
    }
    let forged_ips = match &args.forged_ips {
        Some(path) => ForgedIpList::load(path)?,
        None => ForgedIpList::default(),
    };
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!(Error::BadOption {
            option: "--rate",
            reason: "must be 0 (unpaced) or more".to_owned()
        });
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut stages = Stages {
        dns: false,
        http: false,
        tls: false,
    };
    for stage in &args.tests {
        match stage.trim().to_ascii_lowercase().as_str() {
            "dns" => stages.dns = true,
            "http" => stages.http = true,
            "tls" => stages.tls = true,
            other => bail!(Error::BadOption {
                option: "--tests",
                reason: format!("unknown stage {other:?} (dns, http, tls)")
            }),
        }
    }
    let via = match args.via {
        Some(ip) => Some(ViaConfig {
            ip,
            ports: args
                .via_ports
                .as_deref()
                .map(PortRotation::parse_range)
                .transpose()?,
            window: args.residual_wait,
        }),
        None => None,
    };
    let web = WebStageConfig {
        run_http: stages.http,
        run_tls: stages.tls,
        http_port: args.http_port,
        tls_port: args.tls_port,
        control_name: args.control_name.clone(),
        max_ips: args.max_ips.max(1),
        via,
        http: HttpProbeConfig {
            connect_timeout: args.connect_timeout,
            response_timeout: args.web_timeout,
            ..HttpProbeConfig::default()
        },
        tls: TlsProbeConfig {
            connect_timeout: args.connect_timeout,
            handshake_timeout: args.web_timeout,
            ..TlsProbeConfig::default()
        },
        ..WebStageConfig::default()
    };
    let options_record = serde_json::json!({
        "qtypes": qtypes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dns_wait_ms": args.dns_wait.as_millis(),
        "dns_timeout_ms": args.dns_timeout.as_millis(),
        "retries": args.retries,
        "control_timeout_ms": args.control_timeout.as_millis(),
        "forged_ips": forged_ips.len(),
        "concurrency": args.concurrency,
        "rate": args.rate,
        "seed": seed,
        "shard": args.shard.map(|s| s.to_string()),
        "strict": args.strict,
        "ca_files": args.ca,
        "tests": args.tests,
        "max_ips": args.max_ips,
        "control_name": args.control_name,
        "residual_wait_ms": args.residual_wait.as_millis(),
        "residual_recheck_ms": args.residual_recheck.as_millis(),
        "via": args.via,
        "via_ports": args.via_ports,
        "http_port": args.http_port,
        "tls_port": args.tls_port,
        "connect_timeout_ms": args.connect_timeout.as_millis(),
        "web_timeout_ms": args.web_timeout.as_millis(),
        "blockpages": args.blockpages,
    });
    Ok(ScanConfig {
        resolver,
        sink,
        qtypes,
        dns: DnsProbeConfig {
            timeout: args.dns_timeout,
            retries: args.retries,
            wait_after_first: args.dns_wait,
            sockets: args.dns_sockets.max(1),
            ..DnsProbeConfig::default()
        },
        control,
        control_timeout: args.control_timeout,
        extra_roots,
        forged_ips,
        concurrency: args.concurrency.max(1),
        rate: args.rate,
        seed,
        shard: args.shard,
        vantage: args.vantage.clone(),
        out: args.out.clone(),
        options_record,
        stages,
        web,
        residual: PathGuardConfig {
            residual_wait: args.residual_wait,
            recheck_initial: args.residual_recheck,
            ..PathGuardConfig::default()
        },
        blockpages: args.blockpages.clone(),
    })
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
            Command::Lab(_) => false,
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
        Command::Scan(args) => run_scan_command(&args),
        Command::Lab(command) => crate::lab::run_lab(command),
        Command::Check(args) => run_check(&args),
        Command::Diff(args) => run_diff(&args),
        Command::Summary(args) => run_summary(&args),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Skipped input lines shown on stderr; the header of the report keeps more.
const SKIPPED_SHOWN: usize = 20;

fn print_skipped(list: &TargetList) {
    for skipped in list.skipped.iter().take(SKIPPED_SHOWN) {
        eprintln!(
            "censorprobe: skipped {}:{}: {:?}: {}",
            skipped.source, skipped.line, skipped.input, skipped.reason
        );
    }
    let more = list.skipped_total().saturating_sub(SKIPPED_SHOWN);
    if more > 0 {
        eprintln!(
            "censorprobe: skipped {more} more input line(s); the report header lists the first {}",
            crate::targets::MAX_SKIPPED_KEPT
        );
    }
}

fn run_scan_command(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let plan = args.workflow.plan(args.quiet);
    plan.validate(args.out.as_deref())?;
    let list = load_targets(args)?;
    if !args.quiet {
        print_skipped(&list);
    }
    let config = scan_config(args)?;
    let signal = StopSignal::default();
    let summary = runtime()?.block_on(async {
        let stop = signal.install()?;
        anyhow::Ok(run_scan_with(config, list, &plan, stop).await?)
    })?;
    if !args.quiet {
        eprint!("{}", human_summary(&summary));
    }
    Ok(if summary.interrupted {
        ExitCode::from(signal.exit_status())
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert_eq!(parse_duration("1e3s").unwrap(), Duration::from_secs(1000));
        assert_eq!(parse_duration("1e3").unwrap(), Duration::from_secs(1000));
        assert_eq!(
            parse_duration("2.5e2ms").unwrap(),
            Duration::from_millis(250)
        );
        for refused in ["inf", "NaN", "-1s", "1e16s", "1e400", "", "s"] {
            assert!(parse_duration(refused).is_err(), "{refused:?}");
        }
        assert_eq!(parse_duration("10080m").unwrap(), MAX_DURATION);
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("601s").is_err());
        assert_eq!(parse_timeout("1ms").unwrap(), MIN_TIMEOUT);
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(parse_count("500", 1, MAX_CONCURRENCY), Ok(500));
        assert!(parse_count("0", 1, MAX_CONCURRENCY).is_err());
        assert!(parse_count("18446744073709551616", 1, MAX_CONCURRENCY).is_err());
        assert!(parse_count("-1", 1, MAX_CONCURRENCY).is_err());
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        for refused in ["1e-19", "-5", "NaN", "inf", "1e7"] {
            assert!(parse_rate(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn signal_exit_statuses() {
        assert_eq!(exit_status_for_signal(libc::SIGINT), EXIT_INTERRUPTED);
        assert_eq!(exit_status_for_signal(libc::SIGTERM), 143);
        assert_eq!(exit_status_for_signal(libc::SIGHUP), 129);
        assert_eq!(StopSignal::default().exit_status(), EXIT_INTERRUPTED);
    }

    #[test]
    fn servers() {
        assert_eq!(
            parse_server("198.18.0.53", 53).unwrap(),
            "198.18.0.53:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("127.0.0.1:5353", 53).unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]:54", 53).unwrap(),
            "[::1]:54".parse().unwrap()
        );
        assert_eq!(
            parse_server("::1", 53).unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(parse_server("resolver.example", 53).is_err());
    }

    #[test]
    fn resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch lan\nnameserver fe80::1%eth0\nnameserver 10.0.0.1\n",
        )
        .unwrap();
        assert_eq!(
            system_resolver(&path).unwrap(),
            "[fe80::1]:53".parse().unwrap()
        );
        std::fs::write(&path, "search lan\n").unwrap();
        assert!(system_resolver(&path).is_err());
    }
}
