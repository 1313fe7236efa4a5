//! The built-in censor lab: a GFW-like censor between a vantage point and a small
//! "Internet", in network namespaces, driven by a scenario file (`targets/lab/*.toml`).
//!
//! - [`scenario`]: the TOML format (names, records, servers, censor rules, expectations).
//! - [`topology`]: namespaces, links, routes, the host's `prohibit` route.
//! - [`censor`]: the censor process (pnet capture, DNS/HTTP/TLS matching, injection).
//! - [`internet`]: the Internet-side servers, built from [`crate::servers`] (resolver on
//!   UDP/TCP, `DoT` and `DoH`; HTTP and TLS hosts with behaviours; the lab CA).
//! - [`instance`]: a lab with its roles on threads ([`Lab`]), used by tests and `lab demo`.
//! - [`daemon`]: `lab up` / `lab down` / `lab status` with roles as processes.
//! - [`state`], [`stale`]: what a lab records (owner, roles, files), the registry of labs,
//!   and the removal of labs whose processes are all gone.
//! - [`helper`]: the web-control helper (`censorprobe helper`) in a namespace of its own
//!   behind the Internet side, out of the censor's reach, for `scan --web-control`.
//! - [`signals`]: teardown on stop signals; a scan child that dies with `lab demo`.
//! - [`generate`]: large synthetic scenarios with a known mix of behaviours.
//! - [`expect`], [`demo`]: scan a lab and compare the report with the expectations.

pub mod censor;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod expect;
pub mod generate;
pub mod helper;
pub mod instance;
pub mod internet;
pub mod netns;
pub mod nft;
pub mod plan;
pub mod scenario;
pub mod signals;
pub mod stale;
pub mod state;
pub mod topology;

pub use error::{LabError, LabResult};
pub use instance::{Lab, LabOptions};
pub use scenario::Scenario;
pub use state::LabInfo;
