//! The control resolution path (DoH, DoT or plain UDP to an uncensored resolver).
//! (API fixed; implementation being written.)

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};
use crate::observation::ControlObservation;

/// The documented default control: Cloudflare's public DoH service, by address so that
/// no bootstrap lookup through a possibly-censored resolver is needed.
pub const DEFAULT_CONTROL: &str = "doh:https://1.1.1.1/dns-query";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlSpec {
    Doh {
        url: String,
    },
    Dot {
        addr: std::net::SocketAddr,
        name: String,
    },
    Udp {
        addr: std::net::SocketAddr,
    },
    None,
}

impl FromStr for ControlSpec {
    type Err = Error;
    fn from_str(_s: &str) -> Result<Self> {
        unimplemented!()
    }
}

impl fmt::Display for ControlSpec {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        unimplemented!()
    }
}

pub struct ControlResolver {}

impl ControlResolver {
    pub fn new(
        _spec: &ControlSpec,
        _extra_roots: &[CertificateDer<'static>],
        _timeout: Duration,
    ) -> Result<Option<Self>> {
        unimplemented!()
    }

    pub async fn check_reachable(&self) -> Result<()> {
        unimplemented!()
    }

    pub async fn resolve(&self, _name: &str, _qtypes: &[RecordType]) -> ControlObservation {
        unimplemented!()
    }
}
