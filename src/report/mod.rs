//! The read side of the record contract: reports read back line by line into typed
//! records ([`read`], tolerant of unknown fields and truncated lines), each target seen
//! through the typed outcome view ([`outcome`]: per-stage verdicts, blocking and
//! accessibility, derived for records that lack them), and the majority of repeated
//! attempts ([`consensus`]). Used by the workflows, resume, the consensus and progress
//! outputs, the lab expectations and the tests.

pub mod consensus;
pub mod outcome;
pub mod read;
