//! Old path of the DNS verdict types (kept while callers move to [`crate::vocab`] and
//! [`crate::record`]).

pub use crate::record::assessment::{DnsAssessment, Evidence, EvidenceKind};
pub use crate::vocab::{DnsVerdict, PoisoningMethod};
