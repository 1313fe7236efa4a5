//! censorprobe: measure Internet censorship from a vantage point.
//!
//! Data flows one way: [`targets`] → [`scheduler`] → probes ([`dns`], [`control`])
//! producing observations ([`observation`]) → [`classify`] (verdicts with evidence,
//! [`verdict`]) → [`report`] writers. [`workflows`] reads reports back (check, diff,
//! summary) and shapes scans (resume, repeat, OONI output); [`progress`] shows a scan's
//! progress on stderr.

pub mod classify;
pub mod cli;
// Old path of `probe::control` (shim until the callers move).
pub use probe::control;
// Old path of `probe::dns` (shim until the callers move).
pub use probe::dns;
pub mod ipclass;
pub mod lab;
pub mod lines;
pub mod observation;
pub mod output;
pub mod pathguard;
pub mod probe;
pub mod progress;
pub mod record;
// Old path of `record` (shim until the callers move).
pub use record as report;
pub mod scan;
pub mod scheduler;
pub mod servers;
pub mod targets;
pub mod trust;
pub mod verdict;
pub mod vocab;
// Old path of `probe::web` (shim until the callers move).
pub use probe::web;
pub mod workflows;
