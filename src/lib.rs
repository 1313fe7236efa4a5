//! censorprobe: measure Internet censorship from a vantage point.
//!
//! Data flows one way: [`targets`] → [`scheduler`] → probes ([`dns`], [`control`])
//! producing observations ([`observation`]) → [`classify`] (verdicts with evidence,
//! [`verdict`]) → [`report`] writers. [`workflows`] reads reports back (check, diff,
//! summary) and shapes scans (resume, repeat, OONI output); [`progress`] shows a scan's
//! progress on stderr.

pub mod classify;
pub mod cli;
pub mod ipclass;
pub mod lab;
pub mod lines;
pub mod observation;
pub mod output;
pub mod pathguard;
pub mod probe;
pub mod progress;
pub mod record;
pub mod report;
pub mod scan;
pub mod scheduler;
pub mod servers;
pub mod targets;
pub mod trust;
pub mod vocab;
pub mod workflows;
