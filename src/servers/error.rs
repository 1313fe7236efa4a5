//! Errors of the lab and test servers. An error with a `#[source]` does not repeat it in
//! its message: the binary prints the chain (`{:#}`) to show it once.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot create certificate {subject:?}")]
    Certificate {
        subject: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot use the signing key of certificate {subject:?}")]
    SigningKey {
        subject: String,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the TLS server configuration")]
    TlsConfig(#[source] rustls::Error),
    /// A lab CA written by another process does not load back (`what` says which part).
    #[error("cannot load the lab CA: {what}")]
    BadLabCa {
        what: &'static str,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("cannot write {path}")]
    FileWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid DNS zone for the lab server: {reason}")]
    BadZone { reason: String },
    #[error("invalid DNS zone for the lab server: {name:?} is not a domain name")]
    BadZoneName {
        name: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("cannot start {service} server on {addr}")]
    ServerStart {
        service: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot start {service} server on {addr}: no port free for both UDP and TCP after {attempts} tries"
    )]
    NoFreePort {
        service: &'static str,
        addr: SocketAddr,
        attempts: usize,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("cannot start {service} server on {addr}: not called inside a Tokio runtime")]
    NoRuntime {
        service: &'static str,
        addr: SocketAddr,
    },
    #[error("cannot start the DNS server: no listener configured (UDP/TCP, DoT or DoH)")]
    NoListener,
    #[error("DNS server on {addr} failed")]
    ServerFailed {
        addr: SocketAddr,
        #[source]
        source: hickory_server::net::NetError,
    },
}
