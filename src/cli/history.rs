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

/// Whether a file in a searched directory is a report: `*.jsonl`, `*.jsonl.zst`,
/// `*.jsonl.gz` (an OONI export, `*.ooni.jsonl`, is not).
fn is_report_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    let name = name
        .strip_suffix(".zst")
        .or_else(|| name.strip_suffix(".gz"))
        .unwrap_or(&name);
    let extension = Path::new(name).extension();
    extension.is_some_and(|e| e == "jsonl") && !name.ends_with(".ooni.jsonl")
}

/// The report files named by `inputs`: files as given, directories searched
/// recursively (in name order).
pub(super) fn report_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(input.clone());
            continue;
        }
        let mut found = Vec::new();
        stack.push(input.clone());
        while let Some(dir) = stack.pop() {
            let unreadable = |source| ConfigError::BadOption {
                option: "REPORT",
                reason: format!("cannot read directory {}: {source}", dir.display()),
            };
            let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(unreadable)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(unreadable)?;
            for entry in entries {
                if entry.is_dir() {
                    stack.push(entry);
                } else if is_report_name(&entry) {
                    found.push(entry);
                }
            }
        }
        // In path order, so that runs are reproducible (the history itself does not
        // depend on the order).
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Runs `history`.
pub(super) fn run_history(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let files = report_files(&args.reports)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_searched_for_reports_of_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("2026-11-01");
        std::fs::create_dir(&nested).unwrap();
        for name in [
            "b.jsonl",
            "a.jsonl.zst",
            "c.jsonl.gz",
            "x.ooni.jsonl",
            "notes.txt",
        ] {
            std::fs::write(nested.join(name), "").unwrap();
        }
        std::fs::write(dir.path().join("top.jsonl"), "").unwrap();
        let files = report_files(&[dir.path().to_owned()]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "2026-11-01/a.jsonl.zst",
                "2026-11-01/b.jsonl",
                "2026-11-01/c.jsonl.gz",
                "top.jsonl"
            ]
        );
    }
}
