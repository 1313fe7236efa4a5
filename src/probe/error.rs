//! What can stop a probe from starting. An error with a `#[source]` does not repeat it in
//! its message: the binary prints the chain (`{:#}`) to show it once.

use crate::pathguard::PortRangeError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    #[error("cannot open UDP socket for DNS probes")]
    Socket(#[source] std::io::Error),
    /// `reason` names every address tried and why it failed (one hickory error each,
    /// described: hickory's own errors are not kept past the exchange).
    #[error("control resolver {control} is unreachable at start-up: {reason}")]
    ControlUnreachable { control: String, reason: String },
    #[error("cannot set up the TLS probe")]
    TlsSetup(#[source] rustls::Error),
    #[error("cannot set up the TLS probe's certificate validator")]
    CertificateValidator(#[source] rustls::client::VerifierBuilderError),
    #[error("cannot set up TLS for the control resolver")]
    ControlTlsSetup(#[source] rustls::Error),
    #[error("cannot parse address {input:?}: {reason}")]
    BadAddress { input: String, reason: String },
    #[error("cannot parse address {input:?}")]
    BadUrl {
        input: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{input:?} is not usable as a TLS server name")]
    BadServerName {
        input: String,
        #[source]
        source: rustls_pki_types::InvalidDnsNameError,
    },
    #[error("invalid option --control-name: {name:?} is not a DNS name")]
    ControlNameNotDns {
        name: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("invalid option --control-name: {name:?} is not usable as a TLS server name")]
    ControlNameNotTls {
        name: String,
        #[source]
        source: rustls_pki_types::InvalidDnsNameError,
    },
    #[error("invalid option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
    #[error(transparent)]
    PortRange(#[from] PortRangeError),
}
