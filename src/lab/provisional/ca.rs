//! PROVISIONAL: the lab's certificate authority, until `src/servers/ca.rs` (`LabCa`) lands.
//!
//! A CA made when the lab comes up; its certificate is the file the probe gets with `--ca`.
//! Leaf certificates are issued on demand by the Internet-side servers.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::lab::error::{LabError, LabResult};

/// The lab CA: certificate and key, able to issue server certificates.
pub struct LabCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa").finish_non_exhaustive()
    }
}

fn ca_error(e: impl std::fmt::Display) -> LabError {
    LabError::Ca(e.to_string())
}

impl LabCa {
    /// The CA certificate's parameters. Rebuilt identically on reload, so that the issuer
    /// name and key identifier of issued certificates match the CA certificate.
    fn params() -> LabResult<CertificateParams> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_error)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "censorprobe lab CA");
        name.push(DnType::OrganizationName, "censorprobe lab");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(params)
    }

    /// Make a fresh CA.
    pub fn generate() -> LabResult<LabCa> {
        let key = KeyPair::generate().map_err(ca_error)?;
        let params = Self::params()?;
        let cert = params.self_signed(&key).map_err(ca_error)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let cert_der = cert.der().clone();
        Ok(LabCa {
            issuer: Issuer::new(params, key),
            cert_der,
            cert_pem,
            key_pem,
        })
    }

    /// Load a CA written by [`LabCa::cert_pem`] and [`LabCa::key_pem`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> LabResult<LabCa> {
        let key = KeyPair::from_pem(key_pem).map_err(ca_error)?;
        let issuer = Issuer::new(Self::params()?, key);
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| ca_error(format!("CA certificate PEM: {e}")))?;
        Ok(LabCa {
            issuer,
            cert_der: der,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A server certificate (leaf + CA chain) and key for `names`, ready for rustls.
    pub fn issue(&self, names: &[String]) -> LabResult<Arc<CertifiedKey>> {
        let key = KeyPair::generate().map_err(ca_error)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(ca_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        let cert = params.signed_by(&key, &self.issuer).map_err(ca_error)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key_der)
            .map_err(|e| ca_error(format!("signing key: {e}")))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            signing_key,
        )))
    }
}

/// A rustls certificate resolver that serves one certificate whatever the SNI.
#[derive(Debug)]
pub struct FixedCert(pub Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn a_reloaded_ca_issues_certificates_chaining_to_it() {
        let ca = LabCa::generate().unwrap();
        let again = LabCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let leaf = again.issue(&["www.lab.example".to_owned()]).unwrap();
        assert_eq!(leaf.cert.len(), 2);
        assert_eq!(&leaf.cert[1], ca.cert_der());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls_pki_types::UnixTime::now();
        let name = rustls_pki_types::ServerName::try_from("www.lab.example").unwrap();
        verifier
            .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], now)
            .expect("valid for its name, chained to the CA");
        let other = rustls_pki_types::ServerName::try_from("other.lab.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &other, &[], now)
                .is_err()
        );
    }
}
