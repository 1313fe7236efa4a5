//! Errors of the command line's start-up: options that cannot run, and what the other
//! areas refuse while the configuration is built. An error with a `#[source]` does not
//! repeat it in its message: the binary prints the chain (`{:#}`).

use std::path::PathBuf;

use crate::ipclass::ForgedIpListError;
use crate::pathguard::PortRangeError;
use crate::probe::ProbeError;
use crate::scan::ScanConfigError;
use crate::targets::TargetsError;
use crate::trust::CaError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
    #[error("cannot find a resolver in {path}")]
    NoSystemResolver {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find a resolver in {path}: no nameserver line")]
    NoNameserver { path: PathBuf },
    #[error("cannot parse address {input:?}: expected IP, IP:PORT or [IPv6]:PORT")]
    BadAddress { input: String },
    /// A file the command writes (a Markdown summary, a JUnit report, `--output`).
    #[error("cannot write {path}")]
    OutputWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Targets(#[from] TargetsError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    ForgedIps(#[from] ForgedIpListError),
    #[error(transparent)]
    PortRange(#[from] PortRangeError),
    #[error(transparent)]
    ScanConfig(#[from] ScanConfigError),
    /// `--web-control-token` (read by the web control client).
    #[error(transparent)]
    WebControl(#[from] crate::probe::web_control::WebControlError),
    /// `--control` (its parser is the probe's).
    #[error(transparent)]
    Control(#[from] ProbeError),
}
