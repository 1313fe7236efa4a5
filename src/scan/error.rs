//! Errors of a scan: bad resume or option combinations, and failures to start the
//! probes or to write the records.

use std::path::PathBuf;

use crate::classify::blockpage::BlockpageError;
use crate::classify::injectors::InjectorError;
use crate::output::OutputError;
use crate::probe::ProbeError;
use crate::report::read::ReadError;

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
    /// A probe could not be set up (sockets, the control, TLS).
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Blockpages(#[from] BlockpageError),
    /// `--capture require` and the capture cannot start.
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error(transparent)]
    Injectors(#[from] InjectorError),
    /// `--web-control` could not be set up.
    #[error(transparent)]
    WebControl(#[from] crate::probe::web_control::WebControlError),
    /// `--asn-db` could not be read.
    #[error(transparent)]
    Asn(#[from] crate::asn::AsnError),
    /// The report to resume could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}
