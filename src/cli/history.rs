//! `censorprobe history`: per domain and vantage over many reports (files or directories).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{ConfigError, EXIT_OK};
use crate::workflows::history::{History, HistoryFormat};
use crate::workflows::sanitize::sanitize_text;

/// `censorprobe history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Reports (`.jsonl`, `.jsonl.zst`, `.jsonl.gz`), or directories searched for them
    /// (recursively): days of scans, vantage points, the shards of one scan.
    #[arg(value_name = "REPORT|DIR", required = true)]
    pub reports: Vec<PathBuf>,
    /// Output: text (a block per domain and vantage), csv (a row per domain, vantage and
    /// day), json (an object per domain and vantage, one a line).
    #[arg(long, value_enum, default_value_t = HistoryFormatArg::Text)]
    pub format: HistoryFormatArg,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the daily censored lists: DIR/<vantage>/<YYYY-MM-DD>.txt, the domains
    /// found blocked that day, one a line.
    #[arg(long, value_name = "DIR")]
    pub daily_dir: Option<PathBuf>,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--format` of `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HistoryFormatArg {
    #[default]
    Text,
    Csv,
    Json,
}

impl From<HistoryFormatArg> for HistoryFormat {
    fn from(format: HistoryFormatArg) -> Self {
        match format {
            HistoryFormatArg::Text => HistoryFormat::Text,
            HistoryFormatArg::Csv => HistoryFormat::Csv,
            HistoryFormatArg::Json => HistoryFormat::Json,
        }
    }
}

pub(super) fn run_history(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let files =
        crate::report::read::report_files(&args.reports).map_err(|err| ConfigError::BadOption {
            option: "REPORT",
            reason: err.to_string(),
        })?;
    if files.is_empty() {
        anyhow::bail!(
            "no report found in the given directories (*.jsonl, *.jsonl.zst, *.jsonl.gz)"
        );
    }
    let mut history = History::default();
    for path in &files {
        history.add_report(path)?;
        if !args.quiet
            && let Some((_, stats)) = history.reports.last()
            && let Some(warning) = stats.warning()
        {
            eprintln!(
                "censorprobe: warning: {}: {}",
                path.display(),
                sanitize_text(&warning)
            );
        }
    }
    if !args.quiet && history.untimed_records > 0 {
        eprintln!(
            "censorprobe: warning: {} target record(s) without a time left out",
            history.untimed_records
        );
    }
    if let Some(dir) = &args.daily_dir {
        let written = history.write_daily_lists(dir)?;
        if !args.quiet {
            eprintln!(
                "censorprobe: {} daily list(s) written under {}",
                written.len(),
                dir.display()
            );
        }
    }
    let format = args.format.into();
    match args.out.as_deref() {
        Some(path) if path != Path::new("-") => {
            let file = std::fs::File::create(path).map_err(|source| ConfigError::OutputWrite {
                path: path.to_owned(),
                source,
            })?;
            let mut out = std::io::BufWriter::new(file);
            history
                .write(format, &mut out)
                .and_then(|()| out.flush())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        _ => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            history
                .write(format, &mut out)
                .and_then(|()| out.flush())
                .context("cannot write to stdout")?;
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}
