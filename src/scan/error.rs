//! Errors of a scan: bad resume or option combinations, and failures to start the
//! probes or to write the records.

use std::path::PathBuf;

use crate::output::OutputError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("invalid option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
    #[error("cannot resume {path}: {reason}")]
    BadResume { path: PathBuf, reason: String },
    /// The thread writing the records panicked or was cancelled.
    #[error("the report writer stopped")]
    WriterStopped(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A probe, the block pages or a resumed report could not be set up (the errors of
    /// those areas).
    #[error(transparent)]
    Start(#[from] crate::error::Error),
}
