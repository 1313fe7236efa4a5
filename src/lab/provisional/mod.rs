//! PROVISIONAL servers for the lab's Internet side, to be replaced by `crate::servers`
//! (dns.rs: hickory-server; ca.rs: `LabCa`; web.rs: HTTP/TLS with behaviours) when those
//! land. Only [`super::internet`] uses them.

pub mod ca;
pub mod dns;
pub mod web;
