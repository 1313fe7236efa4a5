//! The name a client's first bytes ask for: the Host of an HTTP request or the SNI of a
//! TLS `ClientHello`. Shared by the lab censor (which matches its rules on it) and the
//! offline capture analysis (which names the trigger of a flow).

/// What a client's first bytes say about the name it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// Need more bytes.
    Incomplete,
    /// Not HTTP nor TLS, or no name in it.
    Nothing,
    HttpHost(String),
    TlsSni(String),
}

/// Find the Host of an HTTP request or the SNI of a TLS `ClientHello` in a client's first
/// bytes.
pub fn sniff(bytes: &[u8]) -> Sniffed {
    if bytes.first() == Some(&0x16) {
        return sniff_tls(bytes);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map_or(Sniffed::Nothing, |host| {
                Sniffed::HttpHost(strip_port(host.trim()).to_ascii_lowercase())
            }),
        Ok(httparse::Status::Partial) => Sniffed::Incomplete,
        Err(_) => Sniffed::Nothing,
    }
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn sniff_tls(bytes: &[u8]) -> Sniffed {
    use tls_parser::{
        TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions, parse_tls_plaintext,
    };
    let record = match parse_tls_plaintext(bytes) {
        Ok((_, record)) => record,
        Err(tls_parser::nom::Err::Incomplete(_)) => return Sniffed::Incomplete,
        Err(_) => return Sniffed::Nothing,
    };
    for message in &record.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = message {
            let Some(ext) = hello.ext else {
                return Sniffed::Nothing;
            };
            let Ok((_, extensions)) = parse_tls_extensions(ext) else {
                return Sniffed::Nothing;
            };
            for extension in extensions {
                if let TlsExtension::SNI(names) = extension
                    && let Some((_, name)) = names.first()
                    && let Ok(name) = std::str::from_utf8(name)
                {
                    return Sniffed::TlsSni(name.to_ascii_lowercase());
                }
            }
            return Sniffed::Nothing;
        }
    }
    Sniffed::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_host_loses_its_port_and_case() {
        let request = b"GET / HTTP/1.1\r\nHost: WWW.Example.org:8080\r\n\r\n";
        assert_eq!(sniff(request), Sniffed::HttpHost("www.example.org".into()));
        assert_eq!(sniff(b"GET / HTTP/1.1\r\nHo"), Sniffed::Incomplete);
        assert_eq!(sniff(b"\x00\x01garbage"), Sniffed::Nothing);
    }
}
