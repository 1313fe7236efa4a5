//! The web stage: HTTP (Host header) and TLS (SNI) probes with paired benign controls.
//!
//! [`http`] and [`tls`] observe one connection each ([`crate::observation::web`]);
//! [`stage`] runs control → test → residual control per address under the
//! [`crate::pathguard`]. The stage only observes: the scan hands its observations to
//! the web judge for verdicts.

pub mod http;
pub mod net;
pub mod proof;
pub mod stage;
mod tcpinfo;
pub mod tls;

pub use net::ConnectionBudget;
pub use stage::{WebStage, WebStageConfig};
