//! Researcher and CI workflows around the scan: checking reports against expectations
//! (`check`), comparing reports (`diff`), summarising them (`summary`, blocklists),
//! and the consensus of repeated attempts. (Resuming and repeating are in
//! `scan::passes`; the report, OONI and consensus writers in `output`.)
//!
//! Everything here reads reports through [`reader`] and [`outcome`], generically:
//! each stage object (`dns`, `http`, `tls`) is a `verdict` with an optional `method` and
//! `stage`, and the target-level `blocking` and `accessible` are used when a record has
//! them (derived from the stages when it does not).

pub mod ci;
pub mod diff;
pub mod expect;
pub mod outcome;
pub mod reader;
pub mod repeat;
pub mod sanitize;
pub mod summarize;

pub use expect::CheckError;
