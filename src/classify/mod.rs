//! The classifier: the only place that turns observations into verdicts.

pub mod blockpage;
pub mod dns;
pub mod web;

pub use blockpage::BlockpageError;
