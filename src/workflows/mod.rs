//! Researcher and CI workflows over reports: checking them against expectations
//! (`check`, with JUnit and Markdown output), comparing two (`diff`) and summarising
//! them (`summary`, blocklists). Everything here reads reports through
//! [`crate::report`] (typed records, the tolerant outcome view); it never imports the
//! scan, the outputs or the command line.

pub mod ci;
pub mod diff;
pub mod expect;
pub mod export;
pub mod history;
pub mod pcap;
pub mod sanitize;
pub mod summarize;

pub use expect::CheckError;
