//! Researcher and CI workflows around the scan: checking reports against expectations
//! (`check`), comparing reports (`diff`), summarising them (`summary`, blocklists),
//! resuming and repeating scans, and OONI-style output.
//!
//! Everything here reads reports through [`reader`] and [`outcome`], generically:
//! each stage object (`dns`, `http`, `tls`) is a `verdict` with an optional `method` and
//! `stage`, and the target-level `blocking` and `accessible` are used when a record has
//! them (derived from the stages when it does not).

pub mod ci;
pub mod diff;
pub mod expect;
pub mod ooni;
pub mod outcome;
pub mod output;
pub mod plan;
pub mod reader;
pub mod repeat;
pub mod resume;
pub mod sanitize;
pub mod summarize;

pub use expect::CheckError;
