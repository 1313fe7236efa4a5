//! Command-line interface: argument parsing and the glue from arguments to library calls.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hickory_proto::rr::RecordType;

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

/// Exit status of a run that Ctrl-C interrupted (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

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
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub dns_wait: Duration,
    /// How long to wait for a first reply to one attempt.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub dns_timeout: Duration,
    /// Attempts after the first when an attempt gets no reply.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Also query this address, which runs no DNS service: any reply from it is injected.
    #[arg(long, value_name = "IP[:PORT]")]
    pub dns_sink: Option<String>,
    /// Control resolution path: doh:URL, dot:IP[:PORT]#NAME, udp:IP[:PORT] or none.
    #[arg(long, default_value = DEFAULT_CONTROL)]
    pub control: String,
    /// Timeout of one control lookup.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub control_timeout: Duration,
    /// Extra trust anchors (PEM) for DoT/DoH controls and TLS probes, e.g. a lab CA.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Addresses (or CIDR prefixes) known to be handed out by an injector, one a line.
    #[arg(long, value_name = "FILE")]
    pub forged_ips: Option<PathBuf>,
    /// Targets measured at once.
    #[arg(long, default_value_t = 500)]
    pub concurrency: usize,
    /// Most DNS queries a second, spaced evenly; the probe backs off below it when the
    /// resolver drops queries (0: unpaced, no back-off). The default is gentle enough
    /// for public resolvers.
    #[arg(long, default_value_t = 100.0)]
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
    #[arg(long, default_value_t = 2)]
    pub max_ips: usize,
    /// Harmless Host/SNI for the benign control connections.
    #[arg(long, default_value = crate::web::stage::DEFAULT_CONTROL_NAME)]
    pub control_name: String,
    /// Longest wait for a penalised (server IP, port) to work again (residual censorship).
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub residual_wait: Duration,
    /// First re-check of a penalised (server IP, port); later ones back off, doubling up
    /// to 30 s. Shorten it when residual blocking is known to be short (a lab).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub residual_recheck: Duration,
    /// Send every HTTP and TLS probe to this server, with each target's Host/SNI.
    #[arg(long, value_name = "IP")]
    pub via: Option<IpAddr>,
    /// With --via: rotate the destination port over A-B so that no two tests share a
    /// (server IP, port) inside the residual window.
    #[arg(long, value_name = "A-B", requires = "via")]
    pub via_ports: Option<String>,
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    #[arg(long, default_value_t = 443)]
    pub tls_port: u16,
    /// TCP connect timeout of the HTTP and TLS probes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Deadline for an HTTP response or a TLS handshake after the connect.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub web_timeout: Duration,
    /// Block-page fingerprints (TOML; default: the built-in set, targets/blockpages.toml).
    #[arg(long, value_name = "FILE")]
    pub blockpages: Option<PathBuf>,
    /// Sockets in the DNS probe's pool.
    #[arg(long, default_value_t = 8, hide = true)]
    pub dns_sockets: usize,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Resume, repeat, output format, progress (src/workflows).
    #[command(flatten)]
    pub workflow: WorkflowArgs,
}

/// Parses `1s`, `500ms`, `2.5s`, `3m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 1s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
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
        bail!("no targets: name domains or URLs, or give --targets FILE");
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: lab daemons and scripts log to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the command line; the binary's `main` only reports what this returns.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_tracing();
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

fn run_scan_command(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let plan = args.workflow.plan(args.quiet);
    plan.validate(args.out.as_deref())?;
    let list = load_targets(args)?;
    for skipped in &list.skipped {
        if !args.quiet {
            eprintln!(
                "censorprobe: skipped {}:{}: {:?}: {}",
                skipped.source, skipped.line, skipped.input, skipped.reason
            );
        }
    }
    let config = scan_config(args)?;
    let summary = runtime()?.block_on(async {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        run_scan_with(config, list, &plan, stop).await
    })?;
    if !args.quiet {
        eprint!("{}", human_summary(&summary));
    }
    Ok(if summary.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
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
