//! The probes: they send queries and connections and record what they saw
//! ([`crate::observation`]), without judging it.

pub mod control;
pub mod dns;
pub mod dns_stage;
mod error;
pub mod locate;
pub mod web;
pub mod web_control;

pub use error::ProbeError;
