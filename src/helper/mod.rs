//! `censorprobe helper`: the web control. A server, run from an uncensored vantage (a
//! VPS, the lab's Internet side), that measures the names a probe asks about from its
//! own network and returns what it saw, so that the classifier can tell IP blocking from
//! a dead host, geo-DNS from poisoning, and an unknown block page from the real site.
//!
//! The protocol is [`crate::observation::web_control`]: JSON over HTTPS (HTTP/2 or
//! HTTP/1.1), `POST /v1/web-control` with a bearer token. The server ([`server`])
//! authenticates (constant-time), rate-limits per client address, bounds the request
//! size, the names per request, the requests measured at once and the time per name and
//! per request, and answers errors as JSON ([`server::ErrorReply`]). Measuring
//! ([`measure`]) uses the probe's own HTTP and TLS probes; [`policy`] keeps it from
//! connecting to private, loopback and other special-purpose addresses unless the
//! operator allows them (labs).

pub mod identity;
pub mod measure;
pub mod policy;
pub mod server;

use std::path::{Path, PathBuf};

pub use measure::Measurer;
pub use policy::AddressPolicy;
pub use server::{ErrorCode, ErrorReply, HEALTH_PATH, HelperLimits, HelperServer, RunningHelper};

/// Shortest bearer token accepted: a short secret could be guessed through the rate limit.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// Why the helper cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the token file {path}")]
    TokenUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the token in {path} is too short: at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)"
    )]
    TokenTooShort { path: PathBuf },
    #[error("the token in {path} is not one line of visible ASCII")]
    TokenInvalid { path: PathBuf },
    #[error("cannot read the {what} {path}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    #[error("cannot make the helper's certificate")]
    Certificate(#[source] crate::servers::ServerError),
    #[error("the helper's TLS configuration is invalid")]
    Tls(#[source] rustls::Error),
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),
}

/// Reads the bearer token: the file's first line, surrounding whitespace removed.
pub fn load_token(path: &Path) -> Result<String, HelperError> {
    let text = std::fs::read_to_string(path).map_err(|source| HelperError::TokenUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HelperError::TokenInvalid {
            path: path.to_owned(),
        });
    }
    if token.len() < MIN_TOKEN_LENGTH {
        return Err(HelperError::TokenTooShort {
            path: path.to_owned(),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_long_enough_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  0123456789abcdef0123  \n").unwrap();
        assert_eq!(load_token(&path).unwrap(), "0123456789abcdef0123");
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            load_token(&path),
            Err(HelperError::TokenTooShort { .. })
        ));
        std::fs::write(&path, "0123456789 abcdef0123\n").unwrap();
        assert!(matches!(
            load_token(&path),
            Err(HelperError::TokenInvalid { .. })
        ));
        assert!(matches!(
            load_token(&dir.path().join("missing")),
            Err(HelperError::TokenUnreadable { .. })
        ));
    }
}
