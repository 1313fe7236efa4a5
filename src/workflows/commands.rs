//! The `check`, `diff` and `summary` commands: arguments and glue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::ci::{junit_xml, markdown};
use super::diff::diff;
use super::expect::Expectations;
use super::output::OutputFormat;
use super::reader::LoadedReport;
use super::sanitize::sanitize_text;
use super::summarize::{ReportSummary, SummaryFormat};
use crate::cli::{ScanArgs, StopSignal, load_targets, runtime, scan_config};
use crate::error::Error;
use crate::scan::run_scan_with;

/// Exit status: everything holds / nothing changed.
pub const EXIT_OK: u8 = 0;
/// Exit status: an expectation does not hold / something changed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: usage or input error (also what `main` returns for any error).
pub const EXIT_ERROR: u8 = 2;

const CHECK_HELP: &str = "\
Exit status: 0 every expectation holds, 1 at least one does not, 2 usage or input error \
(unreadable or invalid expectations, unreadable report, scan start-up error), 128 + the \
signal when interrupted (130 Ctrl-C/SIGINT, 143 SIGTERM, 129 SIGHUP).";

const DIFF_HELP: &str = "\
Exit status: 0 nothing changed, 1 some domain measured in both reports changed \
(newly blocked, newly unblocked, or a changed verdict or method), 2 error. Domains \
measured in only one report are listed but are not changes.";

/// `censorprobe check`.
#[derive(Debug, Clone, Args)]
#[command(after_help = CHECK_HELP)]
pub struct CheckArgs {
    /// Expectations (TOML): what must hold per domain or pattern.
    #[arg(long, value_name = "FILE")]
    pub expect: PathBuf,
    /// Check an existing report instead of scanning.
    #[arg(long, value_name = "REPORT.jsonl")]
    pub report: Option<PathBuf>,
    /// Also write the results as `JUnit` XML (one test case per expectation).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the results as a Markdown table (e.g. `$GITHUB_STEP_SUMMARY`).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Scan options; the domains the expectations name are always measured.
    #[command(flatten)]
    pub scan: ScanArgs,
}

/// `censorprobe diff`.
#[derive(Debug, Clone, Args)]
#[command(after_help = DIFF_HELP)]
pub struct DiffArgs {
    /// The earlier report.
    #[arg(value_name = "OLD.jsonl")]
    pub old: PathBuf,
    /// The later report.
    #[arg(value_name = "NEW.jsonl")]
    pub new: PathBuf,
    /// Write the differences as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `censorprobe summary`.
#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// The report to summarise.
    #[arg(value_name = "REPORT.jsonl")]
    pub report: PathBuf,
    /// Output: text, markdown, csv (long format), json, or blocklist (censored domains
    /// and forged addresses, tab-separated).
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

fn load_report(path: &Path, quiet: bool) -> anyhow::Result<LoadedReport> {
    let report = LoadedReport::load(path)?;
    report.require_targets()?;
    if !quiet && let Some(warning) = report.warning() {
        eprintln!("censorprobe: warning: {}", sanitize_text(&warning));
    }
    Ok(report)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|source| {
        Error::OutputWrite {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

fn write_output(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
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

/// Runs `check`: scan (or read `--report`), evaluate, print failures, write the CI files.
pub fn run_check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let expectations = Expectations::load(&args.expect)?;
    let quiet = args.scan.quiet;
    let scan = &args.scan;
    let mut _temporary = None;
    let report_path = if let Some(report) = &args.report {
        if !scan.targets.is_empty() || !scan.target_files.is_empty() {
            bail!(Error::BadOption {
                option: "--report",
                reason: "checks an existing report: name no targets to scan".to_owned(),
            });
        }
        report.clone()
    } else {
        if scan.workflow.format != OutputFormat::Jsonl {
            bail!(Error::BadOption {
                option: "--format",
                reason: "check reads the JSONL report; --format ooni is for scan".to_owned(),
            });
        }
        let plan = scan.workflow.plan(quiet);
        plan.validate(scan.out.as_deref().filter(|p| *p != Path::new("-")))?;
        let mut scan = scan.clone();
        let named = expectations.domains();
        if scan.targets.is_empty() && scan.target_files.is_empty() && named.is_empty() {
            bail!(
                "no targets: the expectations name no domain (only patterns); name domains or give --targets FILE"
            );
        }
        scan.targets.extend(named);
        // The report goes to --out, the resumed report, or a file removed at the end:
        // stdout carries the failures.
        let path = if let Some(resume) = &scan.workflow.resume {
            resume.clone()
        } else if let Some(out) = scan.out.clone().filter(|p| p != Path::new("-")) {
            out
        } else {
            let file = tempfile::Builder::new()
                .prefix("censorprobe-check-")
                .suffix(".jsonl")
                .tempfile()
                .context("cannot create a temporary report file")?;
            let path = file.path().to_owned();
            _temporary = Some(file);
            path
        };
        if scan.workflow.resume.is_none() {
            scan.out = Some(path.clone());
        }
        let list = load_targets(&scan)?;
        let config = scan_config(&scan)?;
        let signal = StopSignal::default();
        let summary = runtime()?.block_on(async {
            let stop = signal.install()?;
            anyhow::Ok(run_scan_with(config, list, &plan, stop).await?)
        })?;
        if summary.interrupted {
            if !quiet {
                eprintln!("censorprobe: check interrupted; expectations not evaluated");
            }
            return Ok(ExitCode::from(signal.exit_status()));
        }
        path
    };
    let report = load_report(&report_path, quiet)?;
    let outcome = expectations.evaluate(&report);
    for line in outcome.failure_lines() {
        println!("{}", sanitize_text(&line));
    }
    let title = format!("censorprobe check ({})", args.expect.display());
    if let Some(path) = &args.junit {
        let xml = junit_xml(&outcome, &title, started.elapsed().as_secs_f64())
            .context("cannot build the JUnit XML")?;
        write_file(path, &xml)?;
    }
    if let Some(path) = &args.markdown {
        write_file(path, markdown(&outcome, &title).as_bytes())?;
    }
    if !quiet {
        eprintln!(
            "censorprobe: check: {} of {} expectation(s) hold",
            outcome.results.len() - outcome.failures(),
            outcome.results.len()
        );
    }
    Ok(ExitCode::from(if outcome.passed() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }))
}

/// Runs `diff`.
pub fn run_diff(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let old = load_report(&args.old, args.quiet)?;
    let new = load_report(&args.new, args.quiet)?;
    let result = diff(&old, &new);
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&result).context("cannot encode the diff")?;
        text.push('\n');
        text
    } else {
        sanitize_text(&result.text()).into_owned()
    };
    write_output(None, &text)?;
    Ok(ExitCode::from(if result.changed {
        EXIT_FAILED
    } else {
        EXIT_OK
    }))
}

/// Runs `summary`.
pub fn run_summary(args: &SummaryArgs) -> anyhow::Result<ExitCode> {
    let report = load_report(&args.report, args.quiet)?;
    let summary = ReportSummary::of(&report);
    write_output(args.out.as_deref(), &summary.render(args.format))?;
    Ok(ExitCode::from(EXIT_OK))
}
