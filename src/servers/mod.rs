//! Real servers built from maintained crates, for the censor lab's "Internet" side and for
//! tests: a run-time certificate authority ([`ca`]) and an authoritative DNS server on
//! UDP, TCP, `DoT` and `DoH` ([`dns`]), and HTTP/TLS servers with
//! configurable behaviours ([`web`]).
//!
//! Nothing here touches process-wide state: sockets are created by the calling thread, so
//! a thread that has entered a network namespace gets servers inside that namespace.

pub mod ca;
pub mod dns;
mod error;
mod indexed_zone;
pub mod web;

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use error::ServerError;

type Result<T, E = ServerError> = std::result::Result<T, E>;

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) presenting `certs`
/// (leaf first) with `key`, and offering the ALPN protocols `alpn` (e.g. `b"dot"`, `b"h2"`,
/// `b"http/1.1"`; empty for none).
pub fn tls_server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ServerError::TlsConfig)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(ServerError::TlsConfig)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
