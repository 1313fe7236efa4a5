//! A certificate authority made at run time (rcgen), for lab and test TLS servers.
//!
//! The lab's "Internet" side serves `DoT`, `DoH` and HTTPS with certificates from a [`LabCa`];
//! the probe trusts that CA through `--ca FILE` ([`LabCa::write_pem`]). Servers that must
//! present a *wrong* certificate use [`self_signed`] (chains to nothing) or a second,
//! untrusted `LabCa`.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// A leaf certificate chain (leaf first) and its private key, ready for a rustls server.
pub type CertifiedKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// How long lab certificates are valid, counted from one hour before creation (so a small
/// clock difference between namespaces or hosts does not make them "not yet valid").
const LEAF_VALIDITY: Duration = Duration::days(30);
const CA_VALIDITY: Duration = Duration::days(365);
const BACKDATE: Duration = Duration::hours(1);

/// A self-signed certificate authority that issues server certificates.
pub struct LabCa {
    common_name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

impl LabCa {
    /// Creates a CA with a fresh ECDSA P-256 key and the given subject common name.
    pub fn new(common_name: &str) -> Result<Self> {
        let failed = |e: rcgen::Error| cert_error(common_name, &e);
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "censorprobe lab");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(failed)?;
        Ok(Self {
            common_name: common_name.to_owned(),
            issuer,
        })
    }

    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The CA certificate in DER form (a trust anchor for [`crate::trust::root_store`]).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA certificate in PEM form, as `--ca FILE` expects it.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate (PEM) to `path`, for the probe's `--ca`.
    pub fn write_pem(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.cert_pem()).map_err(|source| Error::FileWrite {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Issues a server certificate for DNS `names` and `ips` (subject alternative names).
    ///
    /// Returns the chain `[leaf, CA]` and the leaf's private key.
    pub fn issue(&self, names: &[&str], ips: &[IpAddr]) -> Result<CertifiedKey> {
        let subject = subject_of(names, ips);
        let failed = |e: rcgen::Error| cert_error(&subject, &e);
        let params = leaf_params(names, ips).map_err(failed)?;
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok((vec![cert.der().clone(), self.cert_der()], private_key(&key)))
    }
}

/// A self-signed server certificate for `names` and `ips`: the names match, but it chains
/// to no trust anchor. For "wrong certificate" servers (a false-positive trap).
pub fn self_signed(names: &[&str], ips: &[IpAddr]) -> Result<CertifiedKey> {
    let subject = subject_of(names, ips);
    let failed = |e: rcgen::Error| cert_error(&subject, &e);
    let params = leaf_params(names, ips).map_err(failed)?;
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((vec![cert.der().clone()], private_key(&key)))
}

fn leaf_params(
    names: &[&str],
    ips: &[IpAddr],
) -> std::result::Result<CertificateParams, rcgen::Error> {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params
        .subject_alt_names
        .extend(ips.iter().copied().map(SanType::IpAddress));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, subject_of(names, ips));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_VALIDITY);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

fn subject_of(names: &[&str], ips: &[IpAddr]) -> String {
    names
        .first()
        .map(|n| (*n).to_owned())
        .or_else(|| ips.first().map(ToString::to_string))
        .unwrap_or_else(|| "censorprobe lab server".to_owned())
}

fn private_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

fn cert_error(subject: &str, e: &rcgen::Error) -> Error {
    Error::Certificate {
        subject: subject.to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};

    use super::*;

    fn verify(
        roots: &[CertificateDer<'static>],
        chain: &[CertificateDer<'static>],
        name: &str,
    ) -> std::result::Result<(), rustls::Error> {
        let mut store = rustls::RootCertStore::empty();
        store.add_parsable_certificates(roots.iter().cloned());
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn issued_certificate_verifies_for_its_names_and_ips_only() {
        let ca = LabCa::new("unit test CA").unwrap();
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));
        let (chain, _key) = ca
            .issue(&["dot.lab.example", "www.lab.example"], &[ip])
            .unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca.cert_der());
        let roots = [ca.cert_der()];
        verify(&roots, &chain, "dot.lab.example").unwrap();
        verify(&roots, &chain, "www.lab.example").unwrap();
        verify(&roots, &chain, "198.18.0.10").unwrap();
        let wrong_name = verify(&roots, &chain, "other.lab.example").unwrap_err();
        assert!(
            matches!(wrong_name, rustls::Error::InvalidCertificate(_)),
            "{wrong_name:?}"
        );
    }

    #[test]
    fn another_ca_and_self_signed_certificates_do_not_verify() {
        let ca = LabCa::new("trusted CA").unwrap();
        let rogue = LabCa::new("rogue CA").unwrap();
        let (rogue_chain, _) = rogue.issue(&["www.lab.example"], &[]).unwrap();
        let (self_chain, _) = self_signed(&["www.lab.example"], &[]).unwrap();
        assert_eq!(self_chain.len(), 1);
        for chain in [&rogue_chain, &self_chain] {
            let err = verify(&[ca.cert_der()], chain, "www.lab.example").unwrap_err();
            assert!(
                matches!(err, rustls::Error::InvalidCertificate(_)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn pem_written_to_file_loads_back_as_trust_anchor() {
        let ca = LabCa::new("pem CA").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        ca.write_pem(&path).unwrap();
        let loaded = crate::trust::load_ca_file(&path).unwrap();
        assert_eq!(loaded, vec![ca.cert_der()]);
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
