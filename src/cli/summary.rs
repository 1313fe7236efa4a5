//! `censorprobe summary`: counts and blocklists of a report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{EXIT_OK, load_report, write_output};
use crate::workflows::summarize::{ReportSummary, SummaryFormat};

/// `censorprobe summary`.
#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// The report to summarise.
    #[arg(value_name = "REPORT.jsonl")]
    pub report: PathBuf,
    /// Output: text, markdown, csv (long format), json, or blocklist (censored domains
    /// and forged addresses, tab-separated).
    #[arg(long, value_enum, default_value_t = SummaryFormatArg::Text)]
    pub format: SummaryFormatArg,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `summary`.
pub(super) fn run_summary(args: &SummaryArgs) -> anyhow::Result<ExitCode> {
    let report = load_report(&args.report, args.quiet)?;
    let summary = ReportSummary::of(&report);
    write_output(args.out.as_deref(), &summary.render(args.format.into()))?;
    Ok(ExitCode::from(EXIT_OK))
}

/// `--format` of `summary` (the command line's face of [`SummaryFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SummaryFormatArg {
    #[default]
    Text,
    Markdown,
    Csv,
    Json,
    Blocklist,
}

impl From<SummaryFormatArg> for SummaryFormat {
    fn from(format: SummaryFormatArg) -> Self {
        match format {
            SummaryFormatArg::Text => SummaryFormat::Text,
            SummaryFormatArg::Markdown => SummaryFormat::Markdown,
            SummaryFormatArg::Csv => SummaryFormat::Csv,
            SummaryFormatArg::Json => SummaryFormat::Json,
            SummaryFormatArg::Blocklist => SummaryFormat::Blocklist,
        }
    }
}
