//! The classifier: the only place that turns observations into verdicts.

pub mod blockpage;
pub mod dns;
pub mod injectors;
pub mod location;
pub mod packets;
pub mod web;
pub mod web_control;

pub use blockpage::BlockpageError;
