//! censorprobe: measure Internet censorship from a vantage point.
//!
//! Data flows one way, and the modules are layered the same way (an import only ever
//! goes down this list; `scripts/check-layers.py` checks it, and the test suite runs it):
//!
//! 1. [`vocab`]: the one vocabulary (verdicts, methods, stages, blocking) every layer
//!    speaks; [`targets`], [`scheduler`], [`ipclass`], [`pathguard`], [`trust`],
//!    [`progress`]: the leaves.
//! 2. [`observation`]: what the probes saw, stated as facts.
//! 3. [`record`]: the contract: the typed records a scan writes and every reader reads
//!    (header, target with its assessments, consensus, summary).
//! 4. [`probe`] (DNS, control, web stages: they only observe) and [`classify`] (the only
//!    place that judges observations into verdicts with evidence).
//! 5. [`report`]: the read side: typed line reader and the outcome view of a record.
//! 6. [`output`]: [`output::RecordSink`] and its writers (JSONL, OONI, consensus,
//!    progress).
//! 7. [`scan`] (targets → scheduler → probes → classifier → records → sink) and
//!    [`workflows`] (check, diff, summary over reports).
//! 8. [`cli`]: every command-line definition and command; nothing imports it.
//!
//! [`lab`] (the built-in censored network) and [`servers`] (its DNS and web servers)
//! are public for the integration tests and the demo, not as a library API.

pub mod asn;
pub mod capture;
pub mod classify;
pub mod cli;
pub mod helper;
pub mod ipclass;
#[doc(hidden)]
pub mod lab;
mod lines;
pub mod observation;
pub mod output;
pub mod packet;
pub mod pathguard;
pub mod probe;
pub mod progress;
pub mod record;
pub mod report;
pub mod scan;
pub mod scheduler;
#[doc(hidden)]
pub mod servers;
pub mod sniff;
pub mod targets;
pub mod trust;
pub mod vocab;
pub mod workflows;
