//! A server's bytes handed to the probe's TLS client as its handshake loop does (each
//! read buffered with `read_tls`, then processed), after the client's `ClientHello`.
//! The first byte sets the size of each read.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

fn config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&read_size, flight)) = data.split_first() else {
        return;
    };
    let name = "good.test".try_into().expect("valid name");
    let mut tls = ClientConnection::new(config(), name).expect("client starts");
    let mut hello = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut hello).expect("write to a Vec");
    }
    for read in flight.chunks(usize::from(read_size) * 16 + 1) {
        let mut rest = read;
        while !rest.is_empty() {
            if tls.read_tls(&mut rest).is_err() || tls.process_new_packets().is_err() {
                return;
            }
        }
        let _ = tls.protocol_version();
        let _ = tls.negotiated_cipher_suite();
    }
});
