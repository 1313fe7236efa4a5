//! `censorprobe scan`: the scan options, and the glue from them to a scan.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use rustls_pki_types::CertificateDer;

use super::human::human_summary;
use super::parse::{
    MAX_CONCURRENCY, MAX_DNS_SOCKETS, MAX_DNS_WAIT, MAX_IPS_PER_TARGET, MAX_RESIDUAL_WAIT,
    MAX_RETRIES, MIN_TIMEOUT, parse_count, parse_duration, parse_duration_in, parse_rate,
    parse_server, parse_timeout, system_resolver,
};
use super::shard::ShardSpec;
use super::{ConfigError, StopSignal, runtime};
use crate::ipclass::ForgedIpList;
use crate::output::{
    ConsensusSink, Fanout, JsonlSink, OoniSink, OpenReport, OutputFormat, ProgressSink, RecordSink,
};
use crate::probe::control::{ControlSpec, DEFAULT_CONTROL};
use crate::progress::ProgressMode;
use crate::record::{Observations, ScanOptions, SummaryRecord};
use crate::scan::{
    Passes, ScanConfig, ScanInputs, ScanPlan, check_control_name, parse_qtypes, run_scan,
};
use crate::targets::{TargetList, TargetLoader};

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
    /// How long an attempt waits for a first reply; a question is given up after this
    /// times its attempts. Attempts are sent again sooner once the server's round trips
    /// are known (twice their 99th percentile, at least 250 ms).
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
    /// Measure only part I of N (0-based) of the shuffled list, as `ZMap` shards do;
    /// `auto`: I from `JOB_COMPLETION_INDEX` (a Kubernetes Indexed Job), N from
    /// --shard-count.
    #[arg(long, value_name = "I/N|auto", requires = "seed")]
    pub shard: Option<ShardSpec>,
    /// With --shard auto: the number of shards (the Indexed Job's completions).
    #[arg(long, value_name = "N", env = "CENSORPROBE_SHARD_COUNT")]
    pub shard_count: Option<u32>,
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
    #[arg(long, default_value = crate::observation::web::DEFAULT_CONTROL_NAME)]
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
    /// For names whose HTTP or TLS test failed in a way injection explains (reset, close
    /// or timeout after the request / ClientHello): locate the censor by TTL-limited
    /// probing (needs root or `CAP_NET_RAW`; one trace at a time).
    #[arg(long)]
    pub locate: bool,
    /// Block-page fingerprints (TOML; default: the built-in set, targets/blockpages.toml).
    #[arg(long, value_name = "FILE")]
    pub blockpages: Option<PathBuf>,
    /// Injector fingerprints (TOML) used to name the injector of captured injected
    /// packets; extends the built-in set (targets/injectors.toml), see README "Injectors".
    #[arg(long, value_name = "FILE")]
    pub injectors: Option<PathBuf>,
    /// Sockets the DNS probe's pool starts with (default: 8, or as many as the names in
    /// flight need for their query ids; the pool grows when they run short).
    #[arg(long, hide = true, value_parser = |t: &str| parse_count(t, 1, MAX_DNS_SOCKETS))]
    pub dns_sockets: Option<usize>,
    /// Which target records keep every raw observation: by default only those whose
    /// outcome is not entirely `ok` (an `ok` record is written lean: verdicts and
    /// structured evidence); `full` keeps everything for every target.
    #[arg(long, value_enum, default_value_t = ObservationsArg::Default)]
    pub observations: ObservationsArg,
    /// Capture the probe's own HTTP/TLS connections (needs root or `CAP_NET_RAW`): `auto`
    /// when permitted (otherwise each observation says why not), `require` or fail,
    /// `off`.
    #[arg(long, value_enum, default_value_t = CaptureArg::Auto)]
    pub capture: CaptureArg,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Resume, repeat, output format, progress (src/workflows).
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    /// The web control (`--web-control`, a `censorprobe helper`).
    #[command(flatten)]
    pub helper: WebControlArgs,
}

/// Scan options of the web control: a `censorprobe helper` on an uncensored vantage,
/// asked to measure every target too (README "Web control").
#[derive(Debug, Clone, Args)]
pub struct WebControlArgs {
    /// The helper's base URL (`https://HOST:PORT`); needs --web-control-token.
    #[arg(long, value_name = "URL", requires = "web_control_token")]
    pub web_control: Option<String>,
    /// File holding the helper's bearer token (never written to the report).
    #[arg(long, value_name = "FILE", requires = "web_control")]
    pub web_control_token: Option<PathBuf>,
    /// The helper's certificate or CA (PEM), e.g. its generated self-signed one
    /// (default: the Mozilla roots).
    #[arg(long, value_name = "FILE", requires = "web_control")]
    pub web_control_ca: Option<PathBuf>,
    /// Names sent to the helper in one request.
    #[arg(long, value_name = "N", default_value_t = crate::probe::web_control::DEFAULT_BATCH, value_parser = |t: &str| parse_count(t, 1, MAX_WEB_CONTROL_BATCH))]
    pub web_control_batch: usize,
    /// Deadline of one request to the helper; past it, its names record the helper as failed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub web_control_timeout: Duration,
    /// AS table (iptoasn.com `ip2asn-v4.tsv` / `ip2asn-combined.tsv`): with a web control,
    /// a resolver answer in the helper's AS is consistent (geo-DNS, not poisoning).
    #[arg(long, value_name = "FILE")]
    pub asn_db: Option<PathBuf>,
}

/// The most names in one web control request.
const MAX_WEB_CONTROL_BATCH: usize = 1000;

impl WebControlArgs {
    /// The header's record of the web control (without the token).
    fn options(&self) -> Option<crate::record::WebControlOptions> {
        self.web_control
            .as_ref()
            .map(|url| crate::record::WebControlOptions {
                batch: self.web_control_batch,
                ca_file: self.web_control_ca.clone(),
                timeout: self.web_control_timeout,
                url: url.clone(),
            })
    }
}

/// Scan options of the workflows (flattened into the scan options).
#[derive(Debug, Clone, Args)]
pub struct WorkflowArgs {
    /// Continue an interrupted scan: targets already in REPORT are not measured again,
    /// new records are appended to it, and the summary covers both runs.
    #[arg(long, value_name = "REPORT.jsonl")]
    pub resume: Option<PathBuf>,
    /// Measure every target N times, in N passes over the list, and report each attempt
    /// plus a consensus record (majority verdict and consistency ratio).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    /// Least time between the starts of two passes of --repeat.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub repeat_interval: Duration,
    /// Report format: censorprobe's JSONL, or one OONI-style measurement per target.
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    pub format: FormatArg,
    /// Least time between two plain progress lines (when stderr is not a terminal).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub progress_interval: Duration,
}

impl WorkflowArgs {
    pub fn plan(&self) -> ScanPlan {
        ScanPlan {
            resume: self.resume.clone(),
            repeat: self.repeat.max(1),
            repeat_interval: self.repeat_interval,
            format: self.format.into(),
        }
    }

    /// The progress display (none with `--quiet`).
    pub fn progress(&self, quiet: bool) -> ProgressMode {
        if quiet {
            ProgressMode::Off
        } else {
            ProgressMode::Auto {
                every: self.progress_interval,
            }
        }
    }
}

/// `--format` of `scan` and `check` (the command line's face of [`OutputFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FormatArg {
    /// censorprobe's JSONL report (header, targets, summary).
    #[default]
    Jsonl,
    /// One OONI-style measurement per target (reports/ooni-mapping.md).
    Ooni,
}

impl From<FormatArg> for OutputFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Jsonl => OutputFormat::Jsonl,
            FormatArg::Ooni => OutputFormat::Ooni,
        }
    }
}

/// `--observations` (the command line's face of [`Observations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ObservationsArg {
    /// Lean records for targets whose outcome is entirely `ok`; everything for the rest.
    #[default]
    Default,
    /// Every observation and evidence sentence for every target.
    Full,
}

impl From<ObservationsArg> for Observations {
    fn from(observations: ObservationsArg) -> Self {
        match observations {
            ObservationsArg::Default => Observations::Default,
            ObservationsArg::Full => Observations::Full,
        }
    }
}

/// `--capture` (the command line's face of [`crate::capture::CaptureMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CaptureArg {
    /// Capture when permitted (root or `CAP_NET_RAW`).
    #[default]
    Auto,
    /// No capture.
    Off,
    /// Capture, or exit with an error when not permitted.
    Require,
}

impl From<CaptureArg> for crate::capture::CaptureMode {
    fn from(capture: CaptureArg) -> Self {
        match capture {
            CaptureArg::Auto => crate::capture::CaptureMode::Auto,
            CaptureArg::Off => crate::capture::CaptureMode::Off,
            CaptureArg::Require => crate::capture::CaptureMode::Require,
        }
    }
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
/// The steps run in the order the checks always ran, so that of several mistakes the
/// same one is reported first.
pub fn scan_config(args: &ScanArgs) -> Result<ScanConfig, ConfigError> {
    let (resolver, sink) = resolve_servers(args)?;
    parse_qtypes(&args.qtype)?;
    let control = ControlSpec::from_str(&args.control)?;
    check_control_name(&args.control_name)?;
    let extra_roots = load_trust(&args.ca)?;
    let forged_ips = match &args.forged_ips {
        Some(path) => ForgedIpList::load(path)?,
        None => ForgedIpList::default(),
    };
    let inputs = ScanInputs {
        resolver,
        sink,
        control,
        extra_roots,
        forged_ips,
        vantage: args.vantage.clone(),
        out: args.out.clone(),
        web_control_token: args
            .helper
            .web_control_token
            .as_deref()
            .map(crate::probe::web_control::read_token)
            .transpose()?,
        web_control_roots: match &args.helper.web_control_ca {
            Some(path) => crate::trust::load_ca_file(path)?,
            None => Vec::new(),
        },
    };
    let mut options = options_from_args(args);
    if let Some(spec) = args.shard {
        options.shard = Some(spec.resolve_from_env(args.shard_count)?.to_string());
    }
    Ok(ScanConfig::from_options(options, inputs)?)
}

/// The resolver under test (`--resolver`, else the system's) and the `--dns-sink`.
fn resolve_servers(args: &ScanArgs) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
    let resolver = match &args.resolver {
        Some(text) => parse_server(text, 53)?,
        None => system_resolver(Path::new("/etc/resolv.conf"))?,
    };
    let sink = args
        .dns_sink
        .as_deref()
        .map(|s| parse_server(s, 53))
        .transpose()?;
    Ok((resolver, sink))
}

/// The trust anchors of the `--ca` files.
fn load_trust(files: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let mut extra_roots = Vec::new();
    for path in files {
        extra_roots.extend(crate::trust::load_ca_file(path)?);
    }
    Ok(extra_roots)
}

/// The options as given (a random seed when none is); [`ScanConfig::from_options`]
/// normalises them to the effective values the header records.
fn options_from_args(args: &ScanArgs) -> ScanOptions {
    ScanOptions {
        asn_db: args.helper.asn_db.clone(),
        blockpages: args.blockpages.clone(),
        ca_files: args.ca.clone(),
        capture: args.capture.into(),
        concurrency: args.concurrency,
        connect_timeout: args.connect_timeout,
        control_name: args.control_name.clone(),
        control_timeout: args.control_timeout,
        dns_sockets: args.dns_sockets,
        dns_timeout: args.dns_timeout,
        dns_wait: args.dns_wait,
        // Set from the loaded list by `from_options`.
        forged_ips: 0,
        http_port: args.http_port,
        locate: args.locate,
        injectors: args.injectors.clone(),
        max_ips: args.max_ips,
        observations: args.observations.into(),
        qtypes: args.qtype.clone(),
        rate: args.rate,
        // Set by the scan from its plan.
        repeat: None,
        repeat_interval_ms: None,
        residual_recheck: args.residual_recheck,
        residual_wait: args.residual_wait,
        resume: None,
        retries: args.retries,
        seed: args.seed.unwrap_or_else(rand::random),
        // `auto` is resolved by `scan_config`.
        shard: match args.shard {
            Some(ShardSpec::Fixed(shard)) => Some(shard.to_string()),
            _ => None,
        },
        strict: args.strict,
        tests: args.tests.clone(),
        tls_port: args.tls_port,
        via: args.via,
        via_ports: args.via_ports.clone(),
        web_control: args.helper.options(),
        web_timeout: args.web_timeout,
    }
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

/// Where the records of a scan go: the report (JSONL, with a consensus after each
/// target's last attempt when repeating; or OONI), then the progress display. The
/// report is opened when the header is written: a resumed report for appending.
pub(super) fn scan_sink(
    passes: &mut Passes,
    out: Option<&Path>,
    observations: Observations,
    progress: ProgressMode,
) -> Box<dyn RecordSink> {
    let plan = &passes.plan;
    let report: Box<dyn RecordSink> = match plan.format {
        OutputFormat::Ooni => Box::new(OoniSink::create(out)),
        OutputFormat::Jsonl => {
            let jsonl = match passes.prior.appender() {
                Some(append) => {
                    let path = append.path.clone();
                    JsonlSink::new(
                        OpenReport::With(Box::new(move || {
                            Ok(Box::new(append.open()?) as Box<dyn std::io::Write + Send>)
                        })),
                        Some(path),
                    )
                }
                None => JsonlSink::create(out),
            }
            .with_observations(observations);
            if plan.repeat > 1 {
                let pending = std::mem::take(&mut passes.prior.pending);
                Box::new(ConsensusSink::new(jsonl, plan.repeat, pending))
            } else {
                Box::new(jsonl)
            }
        }
    };
    match ProgressSink::start(progress, passes.attempts() as u64) {
        Some(progress) => Box::new(Fanout::new().with(report).with(progress)),
        None => report,
    }
}

/// Schedules `list` into the passes of `plan` (after what a resumed report holds) and
/// runs them into the sinks of [`scan_sink`], until done or `signal`.
pub(super) fn run_planned_scan(
    config: ScanConfig,
    list: TargetList,
    plan: &ScanPlan,
    progress: ProgressMode,
    signal: &StopSignal,
) -> anyhow::Result<SummaryRecord> {
    let prior = plan.load_prior(config.out.as_deref())?;
    let mut passes = plan.schedule(list, config.seed, config.shard, prior);
    let sink = scan_sink(
        &mut passes,
        config.out.as_deref(),
        config.options.observations,
        progress,
    );
    runtime()?.block_on(async {
        let stop = signal.install()?;
        // On a worker thread, not the thread that blocks on the runtime: the scan's
        // dispatcher and the engine's socket tasks then wake each other within the
        // runtime's workers instead of across to a parked outside thread on every name.
        let scan = tokio::spawn(run_scan(config, passes, sink, stop));
        anyhow::Ok(scan.await.context("the scan task failed")??)
    })
}

pub(super) fn run_scan_command(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let plan = args.workflow.plan();
    plan.validate(args.out.as_deref())?;
    let list = load_targets(args)?;
    if !args.quiet {
        print_skipped(&list);
    }
    let config = scan_config(args)?;
    let signal = StopSignal::default();
    let progress = args.workflow.progress(args.quiet);
    let summary = run_planned_scan(config, list, &plan, progress, &signal)?;
    if !args.quiet {
        eprint!("{}", human_summary(&summary));
    }
    Ok(if summary.interrupted {
        ExitCode::from(signal.exit_status())
    } else {
        ExitCode::SUCCESS
    })
}
