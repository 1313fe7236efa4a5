//! Library errors. The binary wraps these in `anyhow` at its edge.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors a user of censorprobe can hit. An error with a `#[source]` does not repeat
/// it in its message: print the chain with `{:#}` (anyhow) to see it once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read targets file {path}")]
    TargetsUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}:{line}: malformed target {input:?}: {reason}")]
    MalformedTarget {
        source_name: String,
        line: usize,
        input: String,
        reason: String,
    },
    #[error("cannot parse address {input:?}: {reason}")]
    BadAddress { input: String, reason: String },
    #[error("invalid option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
    #[error("cannot find a resolver in {path}: {reason}")]
    NoSystemResolver { path: PathBuf, reason: String },
    #[error("cannot open UDP socket for DNS probes")]
    Socket(#[source] std::io::Error),
    #[error("control resolver {control} is unreachable at start-up: {reason}")]
    ControlUnreachable { control: String, reason: String },
    #[error("cannot read CA file {path}: {reason}")]
    BadCaFile { path: PathBuf, reason: String },
    #[error("cannot read forged-IP list {path}: {reason}")]
    BadForgedIpList { path: PathBuf, reason: String },
    #[error("cannot write report to {path}")]
    ReportWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS message for {server} could not be built: {reason}")]
    DnsEncode { server: SocketAddr, reason: String },
    #[error("cannot create certificate {subject:?}: {reason}")]
    Certificate { subject: String, reason: String },
    #[error("cannot write {path}")]
    FileWrite {
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
    #[error("invalid DNS zone for the lab server: {reason}")]
    BadZone { reason: String },
    #[error("cannot start {service} server on {addr}: {reason}")]
    ServerStart {
        service: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("cannot load block-page fingerprints from {source_name}: {reason}")]
    BlockpageFile { source_name: String, reason: String },
    #[error("cannot set up the TLS probe: {reason}")]
    TlsSetup { reason: String },
    #[error("invalid port range {input:?}: {reason}")]
    BadPortRange { input: String, reason: String },
    #[error("expectations {path}: {reason}")]
    BadExpectations { path: PathBuf, reason: String },
    #[error("cannot resume {path}: {reason}")]
    BadResume { path: PathBuf, reason: String },
    #[error("cannot write {path}")]
    OutputWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
