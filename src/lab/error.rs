//! Errors of the censor lab: scenario files, namespaces, daemons.

use std::path::PathBuf;

/// What can go wrong while loading a scenario or running a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    #[error("cannot read scenario {path}: {source}")]
    ScenarioUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid TOML for a lab scenario: {message}")]
    ScenarioSyntax { path: PathBuf, message: String },
    #[error("scenario {path}: {message}")]
    ScenarioInvalid { path: PathBuf, message: String },
    #[error("the lab needs root (network namespaces, nftables): run it as root")]
    NotRoot,
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("network namespace {namespace}: {message}")]
    Namespace { namespace: String, message: String },
    #[error("no lab with id {0} is known (see `censorprobe lab status`)")]
    NoSuchLab(String),
    #[error(
        "state directory {0} is not empty and was not made by a lab: name a new or empty directory"
    )]
    StateDirInUse(PathBuf),
    #[error("interrupted by {signal}: the lab was torn down")]
    Interrupted { signal: String },
    #[error("lab state in {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("lab {role} did not start: {message}")]
    RoleStart { role: String, message: String },
    #[error("censor: {0}")]
    Censor(String),
    #[error("Internet-side servers: {0}")]
    Servers(String),
    #[error("certificate authority: {0}")]
    Ca(String),
    #[error("teardown was incomplete: {}", .failures.join("; "))]
    Teardown { failures: Vec<String> },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

/// `error` and its sources joined by ": " (what the binary prints with `{:#}`), for the
/// lab's messages that travel as text.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

pub type LabResult<T> = std::result::Result<T, LabError>;
