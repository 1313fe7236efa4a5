//! A certificate as the TLS probe describes it for the report.
#![no_main]

use censorprobe::probe::web::tls::describe_certificate;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

fuzz_target!(|data: &[u8]| {
    let info = describe_certificate(&CertificateDer::from(data));
    assert_eq!(info.sha256.len(), 64);
});
