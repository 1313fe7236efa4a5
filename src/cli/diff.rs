//! `censorprobe diff`: compare two reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{EXIT_FAILED, EXIT_OK, load_report, write_output};
use crate::workflows::diff::diff;
use crate::workflows::sanitize::sanitize_text;

const DIFF_HELP: &str = "\
Exit status: 0 nothing changed, 1 some domain measured in both reports changed \
(newly blocked, newly unblocked, or a changed verdict or method), 2 error. Domains \
measured in only one report are listed but are not changes.";

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

/// Runs `diff`.
pub(super) fn run_diff(args: &DiffArgs) -> anyhow::Result<ExitCode> {
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
