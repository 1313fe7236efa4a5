//! `censorprobe check`: evaluate expectations against a scan or a report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::ConfigError;
use super::scan::{FormatArg, run_planned_scan};
use super::{
    EXIT_FAILED, EXIT_OK, ScanArgs, StopSignal, load_report, load_targets, scan_config, write_file,
};
use crate::workflows::ci::{junit_xml, markdown};
use crate::workflows::expect::Expectations;
use crate::workflows::sanitize::sanitize_text;

const CHECK_HELP: &str = "\
Exit status: 0 every expectation holds, 1 at least one does not, 2 usage or input error \
(unreadable or invalid expectations, unreadable report, scan start-up error), 128 + the \
signal when interrupted (130 Ctrl-C/SIGINT, 143 SIGTERM, 129 SIGHUP).";

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

/// Runs `check`: scan (or read `--report`), evaluate, print failures, write the CI files.
pub(super) fn run_check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let expectations = Expectations::load(&args.expect)?;
    let quiet = args.scan.quiet;
    let scan = &args.scan;
    let mut _temporary = None;
    let report_path = if let Some(report) = &args.report {
        if !scan.targets.is_empty() || !scan.target_files.is_empty() {
            bail!(ConfigError::BadOption {
                option: "--report",
                reason: "checks an existing report: name no targets to scan".to_owned(),
            });
        }
        report.clone()
    } else {
        if scan.workflow.format != FormatArg::Jsonl {
            bail!(ConfigError::BadOption {
                option: "--format",
                reason: "check reads the JSONL report; --format ooni is for scan".to_owned(),
            });
        }
        let plan = scan.workflow.plan();
        let progress = scan.workflow.progress(quiet);
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
        let summary = run_planned_scan(config, list, &plan, progress, &signal)?;
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
