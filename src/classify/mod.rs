//! The classifier: the only place that turns observations into verdicts.

pub mod dns;
