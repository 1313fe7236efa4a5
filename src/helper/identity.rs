//! The helper's TLS identity: a certificate and key given by the operator (`--cert`,
//! `--key`: e.g. a Let's Encrypt certificate, which clients trust through the webpki
//! roots), or one made at start-up: a fresh CA whose certificate is written to
//! `--cert-out` (what clients pass as `--web-control-ca`) and a leaf it issues for the
//! listen address (every local address when listening on an unspecified one) and the
//! `--cert-name` names.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::probe::web::tls::TlsProber;
use crate::servers::ca::{CertifiedKey, LabCa};

use super::HelperError;

/// Common name of a generated CA.
const GENERATED_CA_NAME: &str = "censorprobe helper CA";

/// Reads a PEM certificate chain (leaf first) and its PEM private key.
pub fn load_identity(cert: &Path, key: &Path) -> Result<CertifiedKey, HelperError> {
    let bad = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| HelperError::Pem { what, path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(bad("certificate", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad("certificate", cert))?;
    if chain.is_empty() {
        return Err(HelperError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(bad("private key", key))?;
    Ok((chain, key))
}

/// Makes a CA and a leaf for `names` and `ips`, and writes the CA certificate (PEM) to
/// `ca_out`, for the clients' `--web-control-ca`.
pub fn generate_identity(
    names: &[String],
    ips: &[IpAddr],
    ca_out: &Path,
) -> Result<CertifiedKey, HelperError> {
    let ca = LabCa::new(GENERATED_CA_NAME).map_err(HelperError::Certificate)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let identity = ca.issue(&names, ips).map_err(HelperError::Certificate)?;
    ca.write_pem(ca_out).map_err(HelperError::Certificate)?;
    Ok(identity)
}

/// The addresses a generated certificate names for a listen address: that address, or
/// every address of the host's interfaces when it is unspecified (`0.0.0.0`, `::`).
pub fn certificate_addresses(listen: IpAddr) -> Vec<IpAddr> {
    if !listen.is_unspecified() {
        return vec![listen];
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
        for interface in interfaces {
            let Some(address) = interface.address else {
                continue;
            };
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = address.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

/// The rustls server configuration of the helper (HTTP/2 and HTTP/1.1 by ALPN).
pub fn server_config((chain, key): CertifiedKey) -> Result<Arc<rustls::ServerConfig>, HelperError> {
    let mut config = rustls::ServerConfig::builder_with_provider(TlsProber::provider())
        .with_safe_default_protocol_versions()
        .map_err(HelperError::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(HelperError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
