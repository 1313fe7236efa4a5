//! PROVISIONAL: the lab resolver (authoritative for every scenario name) on UDP, TCP and
//! `DoT`, until `src/servers/dns.rs` (hickory-server) lands. Messages are parsed and built
//! with hickory-proto.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

use crate::lab::error::{LabError, LabResult};

/// TTL of genuine records.
pub const RECORD_TTL: u32 = 300;

/// What the authoritative server knows about one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneEntry {
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
}

/// Names (lowercase, no trailing dot) and their records; absent names are NXDOMAIN.
pub type Zone = HashMap<String, ZoneEntry>;

/// Answer one query message; `None` when the input is not a query worth answering.
pub fn answer(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let Some(question) = request.queries.first().cloned() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    response.add_query(question.clone());
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response.to_vec().ok();
    }
    let qname = question.name().clone();
    let key = qname.to_lowercase().to_ascii();
    let key = key.trim_end_matches('.');
    match zone.get(key) {
        None => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(soa_for(&qname));
        }
        Some(entry) => {
            let records: Vec<Record> = match question.query_type() {
                RecordType::A => entry
                    .a
                    .iter()
                    .map(|ip| Record::from_rdata(qname.clone(), RECORD_TTL, RData::A(A(*ip))))
                    .collect(),
                RecordType::AAAA => entry
                    .aaaa
                    .iter()
                    .map(|ip| Record::from_rdata(qname.clone(), RECORD_TTL, RData::AAAA(AAAA(*ip))))
                    .collect(),
                _ => Vec::new(),
            };
            if records.is_empty() {
                response.add_authority(soa_for(&qname));
            } else {
                response.add_answers(records);
            }
        }
    }
    response.to_vec().ok()
}

/// An SOA for the name's top-level zone, in the authority section of negative answers.
fn soa_for(name: &Name) -> Record {
    let apex = name.trim_to(1);
    let mname = Name::from_ascii("ns.lab.example.").expect("static name");
    let rname = Name::from_ascii("hostmaster.lab.example.").expect("static name");
    Record::from_rdata(
        apex,
        RECORD_TTL,
        RData::SOA(SOA::new(mname, rname, 1, 3600, 600, 86400, 60)),
    )
}

/// Bound sockets of the resolver, ready to serve.
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    dot: TcpListener,
    tls: TlsAcceptor,
    zone: Arc<Zone>,
}

impl DnsServer {
    /// Bind UDP and TCP `dns_port` (53 in the lab) and `DoT` on `ip`.
    pub async fn bind(
        ip: Ipv4Addr,
        dns_port: u16,
        dot_port: u16,
        zone: Zone,
        tls: TlsAcceptor,
    ) -> LabResult<DnsServer> {
        let bind_error = |what: &str, e: std::io::Error| {
            LabError::Servers(format!("resolver cannot bind {what} on {ip}: {e}"))
        };
        let udp = UdpSocket::bind((ip, dns_port))
            .await
            .map_err(|e| bind_error("UDP", e))?;
        let tcp = TcpListener::bind((ip, udp.local_addr().map_or(dns_port, |a| a.port())))
            .await
            .map_err(|e| bind_error("TCP", e))?;
        let dot = TcpListener::bind((ip, dot_port))
            .await
            .map_err(|e| bind_error("DoT", e))?;
        Ok(DnsServer {
            udp,
            tcp,
            dot,
            tls,
            zone: Arc::new(zone),
        })
    }

    /// Serve until the task is dropped.
    pub async fn run(self) {
        let DnsServer {
            udp,
            tcp,
            dot,
            tls,
            zone,
        } = self;
        let tcp_zone = Arc::clone(&zone);
        let tcp_task = async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let zone = Arc::clone(&tcp_zone);
                tokio::spawn(async move { serve_stream(stream, &zone).await });
            }
        };
        let dot_zone = Arc::clone(&zone);
        let dot_task = async move {
            loop {
                let Ok((stream, _)) = dot.accept().await else {
                    continue;
                };
                let zone = Arc::clone(&dot_zone);
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve_stream(stream, &zone).await;
                    }
                });
            }
        };
        let udp_task = async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, from)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(reply) = answer(&zone, &buf[..len]) {
                    let _ = send_udp(&udp, &reply, from).await;
                }
            }
        };
        tokio::join!(tcp_task, dot_task, udp_task);
    }
}

async fn send_udp(socket: &UdpSocket, reply: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    socket.send_to(reply, to).await
}

/// DNS over a stream: two-byte length, message; answer each in turn.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, zone: &Zone) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = answer(zone, &query) else {
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_u16(reply_len).await.is_err()
            || stream.write_all(&reply).await.is_err()
            || stream.flush().await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message.to_vec().unwrap()
    }

    fn zone() -> Zone {
        let mut zone = Zone::new();
        zone.insert(
            "www.lab.example".to_owned(),
            ZoneEntry {
                a: vec![Ipv4Addr::new(198, 19, 1, 1)],
                aaaa: Vec::new(),
            },
        );
        zone
    }

    #[test]
    fn answers_known_names_and_nxdomains_the_rest() {
        let zone = zone();
        let reply =
            Message::from_vec(&answer(&zone, &query("WWW.lab.example.", RecordType::A)).unwrap())
                .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(
            reply.answers[0].data,
            RData::A(A(Ipv4Addr::new(198, 19, 1, 1)))
        );

        let nodata = Message::from_vec(
            &answer(&zone, &query("www.lab.example.", RecordType::AAAA)).unwrap(),
        )
        .unwrap();
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities.len(), 1, "SOA tells no-data apart");

        let nx =
            Message::from_vec(&answer(&zone, &query("gone.lab.example.", RecordType::A)).unwrap())
                .unwrap();
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    }

    #[tokio::test]
    async fn serves_udp_and_tcp_on_loopback() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = super::super::ca::LabCa::generate().unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(super::super::ca::FixedCert(
                ca.issue(&["resolver.lab.example".to_owned()]).unwrap(),
            )));
        let server = DnsServer::bind(
            Ipv4Addr::LOCALHOST,
            0,
            0,
            zone(),
            TlsAcceptor::from(Arc::new(config)),
        )
        .await
        .unwrap();
        let addr = server.udp.local_addr().unwrap();
        let tcp_addr = server.tcp.local_addr().unwrap();
        let task = tokio::spawn(server.run());
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(&query("www.lab.example.", RecordType::A), addr)
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let (len, _) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(Message::from_vec(&buf[..len]).unwrap().answers.len(), 1);

        let mut stream = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
        let q = query("gone.lab.example.", RecordType::A);
        stream.write_u16(q.len() as u16).await.unwrap();
        stream.write_all(&q).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            Message::from_vec(&reply).unwrap().metadata.response_code,
            ResponseCode::NXDomain
        );
        task.abort();
    }
}
