//! `censorprobe export`: reports as a columnar table (Parquet).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::EXIT_OK;
use crate::workflows::export::{DEFAULT_ROW_GROUP_ROWS, ExportOptions, export_parquet};
use crate::workflows::sanitize::sanitize_text;

/// `censorprobe export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Reports to export (`.jsonl`, or compressed where the reader supports it), or
    /// directories of reports; shard and vantage reports go into one table.
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,
    /// Output format: parquet (one row per target × stage × address; reports/sql/ has
    /// the table definitions and example queries for SQL engines).
    #[arg(long, value_enum, default_value_t = ExportFormat::Parquet)]
    pub format: ExportFormat,
    /// The file to write (replaced at the end, never left half-written).
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
    /// Rows per Parquet row group.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROW_GROUP_ROWS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub row_group_rows: usize,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--format` of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    #[default]
    Parquet,
}

/// Runs `export`.
pub(super) fn run_export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportFormat::Parquet = args.format;
    let options = ExportOptions {
        row_group_rows: args.row_group_rows,
    };
    let totals = export_parquet(&args.reports, &args.out, options)?;
    if !args.quiet {
        for report in &totals.reports {
            if let Some(warning) = report.stats.warning() {
                let text = format!("{}: {warning}", report.path.display());
                eprintln!("censorprobe: warning: {}", sanitize_text(&text));
            }
        }
        eprintln!(
            "censorprobe: wrote {} rows ({} target records from {} reports, {} row groups) to {}",
            totals.rows,
            totals.target_records(),
            totals.reports.len(),
            totals.row_groups,
            sanitize_text(&args.out.display().to_string())
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}
