//! A certificate authority made at run time (rcgen), for lab and test TLS servers.
//!
//! The lab's "Internet" side serves `DoT`, `DoH` and HTTPS with certificates from a [`LabCa`];
//! the probe trusts that CA through `--ca FILE` ([`LabCa::write_pem`]). Servers that must
//! present a *wrong* certificate use [`self_signed`] (chains to nothing) or a second,
//! untrusted `LabCa`. A CA can be written out with its key and loaded again
//! ([`LabCa::from_pem`]) by another process of the same lab, and can serve a certificate
//! for whatever name a client asks ([`IssueOnDemand`]), as a CDN does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::ServerError;

type Result<T, E = ServerError> = std::result::Result<T, E>;

/// A leaf certificate chain (leaf first) and its private key, ready for a rustls server.
pub type CertifiedKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// How long lab certificates are valid, counted from one hour before creation (so a small
/// clock difference between namespaces or hosts does not make them "not yet valid").
const LEAF_VALIDITY: Duration = Duration::days(30);
const CA_VALIDITY: Duration = Duration::days(365);
const BACKDATE: Duration = Duration::hours(1);
const CA_ORGANIZATION: &str = "censorprobe lab";

/// A self-signed certificate authority that issues server certificates.
pub struct LabCa {
    common_name: String,
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

/// The CA certificate's parameters. Issued certificates name their issuer from these, so
/// a CA loaded again ([`LabCa::from_pem`]) rebuilds them identically from its name.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, CA_ORGANIZATION);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    params
}

impl LabCa {
    /// Creates a CA with a fresh ECDSA P-256 key and the given subject common name.
    pub fn new(common_name: &str) -> Result<Self> {
        let failed = |e: rcgen::Error| cert_error(common_name, e);
        let key = KeyPair::generate().map_err(failed)?;
        let params = ca_params(common_name);
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(Self {
            common_name: common_name.to_owned(),
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
        })
    }

    /// Loads a CA written by [`LabCa::cert_pem`] and [`LabCa::key_pem`] (or
    /// [`LabCa::write_pem`] and [`LabCa::write_key_pem`]): certificates it issues chain
    /// to the same CA certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let bad = |what: &'static str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            ServerError::BadLabCa { what, source }
        };
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad("CA certificate PEM", Some(e.into())))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| bad("CA certificate", Some(e.into())))?;
        let common_name = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| bad("the CA certificate has no common name", None))?
            .to_owned();
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad("CA key PEM", Some(e.into())))?;
        if key.public_key_raw() != parsed.public_key().subject_public_key.data.as_ref() {
            return Err(bad("the key does not belong to the certificate", None));
        }
        drop(parsed);
        Ok(Self {
            issuer: Issuer::new(ca_params(&common_name), key),
            common_name,
            cert,
            cert_pem: cert_pem.to_owned(),
        })
    }

    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The CA certificate in DER form (a trust anchor for [`crate::trust::root_store`]).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The CA certificate in PEM form, as `--ca FILE` expects it.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key in PEM form (PKCS#8), for another process of the same lab.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Writes the CA certificate (PEM) to `path`, for the probe's `--ca`.
    pub fn write_pem(&self, path: &Path) -> Result<()> {
        write_file(path, &self.cert_pem(), 0o644)
    }

    /// Writes the CA's private key (PEM) to `path`, readable by its owner only.
    pub fn write_key_pem(&self, path: &Path) -> Result<()> {
        write_file(path, &self.key_pem(), 0o600)
    }

    /// Issues a server certificate for DNS `names` and `ips` (subject alternative names).
    ///
    /// Returns the chain `[leaf, CA]` and the leaf's private key.
    pub fn issue(&self, names: &[&str], ips: &[IpAddr]) -> Result<CertifiedKey> {
        let subject = subject_of(names, ips);
        let failed = |e: rcgen::Error| cert_error(&subject, e);
        let params = leaf_params(names, ips).map_err(failed)?;
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok((vec![cert.der().clone(), self.cert_der()], private_key(&key)))
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed = |source| ServerError::FileWrite {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)
}

/// Serves, for every `ClientHello`, a certificate from the CA valid for the SNI asked
/// (issued on first use, then cached), as a CDN serving many names does. A hello
/// without SNI gets a certificate for `fallback_name`.
pub struct IssueOnDemand {
    ca: Arc<LabCa>,
    fallback_name: String,
    cache: Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>,
}

impl std::fmt::Debug for IssueOnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueOnDemand")
            .field("ca", &self.ca.common_name)
            .field("fallback_name", &self.fallback_name)
            .finish_non_exhaustive()
    }
}

impl IssueOnDemand {
    pub fn new(ca: Arc<LabCa>, fallback_name: &str) -> Self {
        Self {
            ca,
            fallback_name: fallback_name.to_ascii_lowercase(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The certificate served for `name` (any case), issuing it if needed.
    pub fn certificate_for(&self, name: &str) -> Result<Arc<rustls::sign::CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.cache.lock().expect("certificate cache").get(&name) {
            return Ok(Arc::clone(key));
        }
        let (chain, key) = self.ca.issue(&[&name], &[])?;
        let signing_key =
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
                ServerError::SigningKey {
                    subject: name.clone(),
                    source,
                }
            })?;
        let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signing_key));
        // Two hellos for a new name may race to issue: either certificate is valid.
        self.cache
            .lock()
            .expect("certificate cache")
            .entry(name)
            .or_insert_with(|| Arc::clone(&certified));
        Ok(certified)
    }
}

impl ResolvesServerCert for IssueOnDemand {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let name = hello.server_name().unwrap_or(&self.fallback_name);
        match self.certificate_for(name) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!("cannot issue a certificate for {name:?}: {e}");
                None
            }
        }
    }
}

/// A self-signed server certificate for `names` and `ips`: the names match, but it chains
/// to no trust anchor. For "wrong certificate" servers (a false-positive trap).
pub fn self_signed(names: &[&str], ips: &[IpAddr]) -> Result<CertifiedKey> {
    let subject = subject_of(names, ips);
    let failed = |e: rcgen::Error| cert_error(&subject, e);
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

fn cert_error(subject: &str, source: rcgen::Error) -> ServerError {
    ServerError::Certificate {
        subject: subject.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_ca_keeps_the_cause() {
        let ca = super::LabCa::new("cause test CA").unwrap();
        let err = super::LabCa::from_pem(&ca.cert_pem(), "not a key").unwrap_err();
        assert!(
            matches!(
                err,
                super::ServerError::BadLabCa {
                    what: "CA key PEM",
                    ..
                }
            ),
            "{err:?}"
        );
        let source = std::error::Error::source(&err).expect("the rcgen error is kept");
        assert!(source.is::<rcgen::Error>(), "{source:?}");

        let dir = tempfile::tempdir().unwrap();
        let err = ca
            .write_pem(&dir.path().join("no/such/dir/ca.pem"))
            .unwrap_err();
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        assert!(source.is::<std::io::Error>(), "{source:?}");
    }

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

    #[test]
    fn a_ca_loaded_again_issues_certificates_that_chain_to_it() {
        let ca = LabCa::new("reload CA").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        ca.write_pem(&cert_path).unwrap();
        ca.write_key_pem(&key_path).unwrap();
        let mode = std::fs::metadata(&key_path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let again = LabCa::from_pem(
            &std::fs::read_to_string(&cert_path).unwrap(),
            &std::fs::read_to_string(&key_path).unwrap(),
        )
        .unwrap();
        assert_eq!(again.common_name(), "reload CA");
        assert_eq!(again.cert_der(), ca.cert_der());
        let (chain, _) = again.issue(&["www.lab.example"], &[]).unwrap();
        verify(&[ca.cert_der()], &chain, "www.lab.example").unwrap();

        let other = LabCa::new("other CA").unwrap();
        let err = LabCa::from_pem(&ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn on_demand_certificates_are_valid_for_the_name_asked_and_cached() {
        let ca = Arc::new(LabCa::new("on-demand CA").unwrap());
        let issuer = IssueOnDemand::new(Arc::clone(&ca), "fallback.lab.example");
        let first = issuer.certificate_for("Any.Name.example.").unwrap();
        let again = issuer.certificate_for("any.name.example").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "issued once per name");
        verify(&[ca.cert_der()], &first.cert, "any.name.example").unwrap();
        assert!(verify(&[ca.cert_der()], &first.cert, "other.example").is_err());
    }
}
