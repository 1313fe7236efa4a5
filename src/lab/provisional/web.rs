//! PROVISIONAL: the lab's HTTP and TLS servers with behaviours, until `src/servers/web.rs`
//! lands. Requests are parsed with httparse; TLS is tokio-rustls.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::ca::{FixedCert, LabCa};
use crate::lab::error::{LabError, LabResult};
use crate::lab::scenario::Behaviour;

/// The most a server reads of a request before giving up on it.
const MAX_REQUEST: usize = 16 * 1024;
/// How long a server waits for a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves a certificate valid for whatever name the client asks (issued on first use),
/// as a CDN does.
#[derive(Debug)]
pub struct AnyNameCert {
    ca: Arc<LabCa>,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl AnyNameCert {
    pub fn new(ca: Arc<LabCa>) -> AnyNameCert {
        AnyNameCert {
            ca,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl ResolvesServerCert for AnyNameCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()
            .unwrap_or("no-sni.lab.example")
            .to_ascii_lowercase();
        let mut cache = self.cache.lock().ok()?;
        if let Some(key) = cache.get(&name) {
            return Some(Arc::clone(key));
        }
        let key = self.ca.issue(std::slice::from_ref(&name)).ok()?;
        cache.insert(name, Arc::clone(&key));
        Some(key)
    }
}

/// One Internet-side web host: its addresses, ports and behaviour.
#[derive(Debug, Clone)]
pub struct WebHost {
    pub id: String,
    pub ips: Vec<Ipv4Addr>,
    pub behaviour: Behaviour,
    pub http_port: u16,
    pub tls_port: u16,
    pub delay: Duration,
    /// The certificate name of `wrong_cert` and `decoy` hosts.
    pub cert_name: String,
}

/// Bound listeners of one host.
pub struct WebServer {
    host: Arc<WebHost>,
    http: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    acceptor: TlsAcceptor,
}

impl WebServer {
    /// Bind the host's listeners (none for `closed`); call within a tokio runtime.
    pub fn bind(host: WebHost, ca: &Arc<LabCa>) -> LabResult<WebServer> {
        let resolver: Arc<dyn ResolvesServerCert> = match host.behaviour {
            Behaviour::WrongCert | Behaviour::Decoy => {
                Arc::new(FixedCert(ca.issue(std::slice::from_ref(&host.cert_name))?))
            }
            _ => Arc::new(AnyNameCert::new(Arc::clone(ca))),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LabError::Servers(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = Vec::new();
        let mut tls = Vec::new();
        if host.behaviour != Behaviour::Closed {
            for ip in &host.ips {
                http.push(listen(*ip, host.http_port, &host.id)?);
                tls.push(listen(*ip, host.tls_port, &host.id)?);
            }
        }
        Ok(WebServer {
            host: Arc::new(host),
            http,
            tls,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The bound HTTP and TLS addresses (ports resolved when 0 was asked).
    pub fn local_addrs(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let addrs = |ls: &[TcpListener]| ls.iter().filter_map(|l| l.local_addr().ok()).collect();
        (addrs(&self.http), addrs(&self.tls))
    }

    /// Serve until the task is dropped.
    pub async fn run(self) {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.http {
            let host = Arc::clone(&self.host);
            tasks.spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let host = Arc::clone(&host);
                    tokio::spawn(async move { serve_http(stream, &host).await });
                }
            });
        }
        for listener in self.tls {
            let host = Arc::clone(&self.host);
            let acceptor = self.acceptor.clone();
            tasks.spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let host = Arc::clone(&host);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move { serve_tls(stream, &host, acceptor).await });
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn listen(ip: Ipv4Addr, port: u16, id: &str) -> LabResult<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()
        .map_err(|e| LabError::Servers(format!("server {id}: socket: {e}")))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| LabError::Servers(format!("server {id}: SO_REUSEADDR: {e}")))?;
    socket
        .bind(SocketAddr::from((ip, port)))
        .map_err(|e| LabError::Servers(format!("server {id} cannot bind {ip}:{port}: {e}")))?;
    socket
        .listen(1024)
        .map_err(|e| LabError::Servers(format!("server {id} cannot listen on {ip}:{port}: {e}")))
}

/// Close with an RST (`SO_LINGER` 0), as a server that resets connections itself does.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn serve_http(stream: TcpStream, host: &WebHost) {
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    let request = read_request(&mut stream).await;
    if host.behaviour == Behaviour::Reset {
        reset(stream);
        return;
    }
    let Some(request_host) = request else {
        return;
    };
    respond(&mut stream, host, &request_host).await;
}

async fn serve_tls(mut stream: TcpStream, host: &WebHost, acceptor: TlsAcceptor) {
    let _ = stream.set_nodelay(true);
    if host.behaviour == Behaviour::Reset {
        // Wait for the ClientHello, then reset: the server itself refuses the handshake.
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut buf)).await;
        reset(stream);
        return;
    }
    if host.behaviour == Behaviour::Slow {
        tokio::time::sleep(host.delay).await;
    }
    let Ok(Ok(mut tls)) = tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(stream)).await
    else {
        return;
    };
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    if let Some(request_host) = read_request(&mut tls).await {
        respond(&mut tls, host, sni.as_deref().unwrap_or(&request_host)).await;
    }
}

/// Read one request head; its Host header (or an empty string without one).
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let host = request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("host"))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                        .unwrap_or_default();
                    return Some(host);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, host: &WebHost, request_host: &str) {
    if host.behaviour == Behaviour::Slow {
        tokio::time::sleep(host.delay).await;
    }
    let body = match host.behaviour {
        Behaviour::Decoy => "<html><head><title>Unrelated decoy host</title></head>\
             <body>This host has nothing to do with the name asked.</body></html>\n"
            .to_owned(),
        _ => format!(
            "<html><head><title>lab: {request_host}</title></head>\
             <body>censorprobe lab server {} ({}) answering for {request_host}</body></html>\n",
            host.id, host.behaviour
        ),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: censorprobe-lab\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(behaviour: Behaviour) -> (SocketAddr, SocketAddr, tokio::task::JoinHandle<()>) {
        let ca = Arc::new(LabCa::generate().unwrap());
        let host = WebHost {
            id: "t".to_owned(),
            ips: vec![Ipv4Addr::LOCALHOST],
            behaviour,
            http_port: 0,
            tls_port: 0,
            delay: Duration::from_millis(10),
            cert_name: "wrong-name.lab.example".to_owned(),
        };
        let server = WebServer::bind(host, &ca).unwrap();
        let (http, tls) = server.local_addrs();
        (http[0], tls[0], tokio::spawn(server.run()))
    }

    async fn get(addr: SocketAddr, host: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn normal_server_answers_with_the_host_asked() {
        let (http, _, task) = start(Behaviour::Normal);
        let page = get(http, "www.lab.example").await.unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        assert!(page.contains("lab: www.lab.example"), "{page}");
        task.abort();
    }

    #[tokio::test]
    async fn reset_server_resets_after_the_request() {
        let (http, _, task) = start(Behaviour::Reset);
        let err = get(http, "www.lab.example").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        task.abort();
    }
}
