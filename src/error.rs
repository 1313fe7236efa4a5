//! What is left of the crate-wide error while the areas get their own: the scan's
//! output, resume and report-reading variants (their areas define `OutputError`,
//! `ScanError` and `ReadError`). Every other area has its own error type (`TargetsError`,
//! `CaError`, `ForgedIpListError`, `PortRangeError`, `ShardError`, `ProbeError`,
//! `ServerError`, `BlockpageError`, `ScanConfigError`, `CheckError`, `cli::ConfigError`).

use std::path::PathBuf;

/// Errors a user of censorprobe can hit. An error with a `#[source]` does not repeat
/// it in its message: print the chain with `{:#}` (anyhow) to see it once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
    #[error("cannot write report to {path}")]
    ReportWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // Researcher and CI workflows (src/workflows).
    #[error("cannot read report {path}")]
    ReportUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resume {path}: {reason}")]
    BadResume { path: PathBuf, reason: String },
    #[error("cannot write {path}")]
    OutputWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error of a lower area on its way out of the scan (`ProbeError`,
    /// `BlockpageError`; their `From` impls box them here), until the scan has its own
    /// error type. Kept whole: downcast it to get the area's error back.
    #[error(transparent)]
    Area(Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "{path}: no target record ({lines} non-empty line(s), {unparsed} could not be parsed): not a censorprobe report, or a scan that measured nothing"
    )]
    NoTargetRecords {
        path: PathBuf,
        lines: usize,
        unparsed: usize,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
