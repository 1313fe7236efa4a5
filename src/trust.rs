//! Trust anchors for every TLS client in censorprobe (the `DoH`/`DoT` control and the TLS probe):
//! the Mozilla roots shipped by `webpki-roots`, plus certificates a user adds with `--ca FILE`
//! (a private lab's CA).

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a `--ca` file gives no trust anchor. The cause is the
/// [`source`](std::error::Error::source), not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("cannot read CA file {path}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read CA file {path}: invalid PEM")]
    InvalidPem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot read CA file {path}: no PEM CERTIFICATE block found")]
    NoCertificate { path: PathBuf },
}

/// Reads every PEM `CERTIFICATE` block of `path`.
///
/// Other PEM sections (keys, CRLs) are skipped. A file that cannot be read, is not valid
/// PEM, or holds no certificate at all is a [`CaError`]: a `--ca` that silently adds
/// nothing would turn every lab certificate into a "bad certificate" finding.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let pem = std::fs::read(path).map_err(|source| CaError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CaError::InvalidPem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CaError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The Mozilla root store (`webpki-roots`) plus `extra` trust anchors.
///
/// An extra certificate that rustls cannot use as a trust anchor is skipped with a warning
/// rather than failing: the remaining anchors still work, and the TLS handshake itself will
/// report the certificate error if that anchor was the one needed.
pub fn root_store(extra: &[CertificateDer<'static>]) -> RootCertStore {
    let mut store = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let (_added, ignored) = store.add_parsable_certificates(extra.iter().cloned());
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "some extra CA certificates are not usable trust anchors"
        );
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_bad_ca_file() {
        let err = load_ca_file(Path::new("/nonexistent/censorprobe-ca.pem")).unwrap_err();
        assert!(matches!(err, CaError::Unreadable { .. }), "{err}");
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(
            !err.to_string().contains(&io.to_string()),
            "not repeated: {err}"
        );
    }

    #[test]
    fn invalid_pem_keeps_the_pem_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let err = load_ca_file(&path).unwrap_err();
        assert!(matches!(err, CaError::InvalidPem { .. }), "{err:?}");
        let source = std::error::Error::source(&err).expect("the PEM error is kept");
        assert!(source.is::<rustls_pki_types::pem::Error>(), "{source:?}");
    }

    #[test]
    fn file_without_certificate_is_bad_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "just some text\n").unwrap();
        let err = load_ca_file(&path).unwrap_err();
        assert!(err.to_string().contains("no PEM CERTIFICATE"), "{err}");
    }

    #[test]
    fn pem_blocks_are_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.pem");
        let first = crate::servers::ca::LabCa::new("first").unwrap();
        let second = crate::servers::ca::LabCa::new("second").unwrap();
        let pem = format!("comment line\n{}{}", first.cert_pem(), second.cert_pem());
        std::fs::write(&path, pem).unwrap();
        let certs = load_ca_file(&path).unwrap();
        assert_eq!(certs, vec![first.cert_der(), second.cert_der()]);
    }

    #[test]
    fn root_store_has_webpki_roots_plus_extra() {
        let base = root_store(&[]).len();
        assert_eq!(base, webpki_roots::TLS_SERVER_ROOTS.len());
        let ca = crate::servers::ca::LabCa::new("trust test CA").unwrap();
        assert_eq!(root_store(&[ca.cert_der()]).len(), base + 1);
    }
}
