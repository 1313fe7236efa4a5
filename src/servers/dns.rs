//! An authoritative DNS server (hickory-server) for a zone built in code.
//!
//! The zone answers like a real authority: a name with records of the asked type gets them
//! (a CNAME is followed inside the zone); a name that exists without that type gets
//! NOERROR with no answer and the zone's SOA (no data); a name the zone does not hold gets
//! NXDOMAIN with the SOA; a name outside the zone gets REFUSED. The server listens on UDP
//! and TCP (one port), and optionally on DNS-over-TLS and DNS-over-HTTPS.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ServerError;
use super::ca::CertifiedKey;

type Result<T, E = ServerError> = std::result::Result<T, E>;

/// Default TTL of the zone's records, in seconds.
pub const DEFAULT_TTL: u32 = 300;
/// TTL of negative answers (the SOA minimum), in seconds.
pub const NEGATIVE_TTL: u32 = 60;
/// Default `DoH` request path (RFC 8484).
pub const DOH_PATH: &str = "/dns-query";

/// How long a TCP or `DoT` client may stay idle before the server closes the connection.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 64;
/// Listen backlog for TCP, `DoT` and `DoH`: large scans open many connections at once.
const LISTEN_BACKLOG: u32 = 1024;
/// UDP receive buffer requested from the kernel, so bursts of queries are not dropped.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Attempts at finding a port free for both UDP and TCP when port 0 is asked for.
const PORT_PICK_ATTEMPTS: usize = 32;

/// The data of one zone record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Alias to another name (inside or outside the zone).
    Cname(String),
}

impl From<IpAddr> for ZoneData {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::A(v4),
            IpAddr::V6(v6) => Self::Aaaa(v6),
        }
    }
}

/// One record of the zone; `name` is absolute (a trailing dot is optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    pub name: String,
    pub data: ZoneData,
    pub ttl: u32,
}

/// A zone described in code.
///
/// Every name must lie inside `origin` (`"."` makes a root zone holding any name). The
/// origin automatically gets an SOA and an NS record (`ns.<origin>`). Names listed in
/// `nxdomain` are checked to really be absent, so a scenario that says "this name is
/// NXDOMAIN" cannot silently contradict its own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub origin: String,
    pub records: Vec<ZoneRecord>,
    pub nxdomain: Vec<String>,
    /// TTL for records added with the `add_*` helpers.
    pub default_ttl: u32,
    /// SOA minimum: how long resolvers may cache negative answers.
    pub negative_ttl: u32,
}

impl ZoneSpec {
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            records: Vec::new(),
            nxdomain: Vec::new(),
            default_ttl: DEFAULT_TTL,
            negative_ttl: NEGATIVE_TTL,
        }
    }

    pub fn add(&mut self, name: &str, data: ZoneData) -> &mut Self {
        self.records.push(ZoneRecord {
            name: name.to_owned(),
            data,
            ttl: self.default_ttl,
        });
        self
    }

    /// An A or AAAA record, by the address family of `ip`.
    pub fn add_address(&mut self, name: &str, ip: IpAddr) -> &mut Self {
        self.add(name, ZoneData::from(ip))
    }

    pub fn add_cname(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(name, ZoneData::Cname(target.to_owned()))
    }

    /// Declares that `name` must not exist (it gets NXDOMAIN; checked when the zone is built).
    pub fn add_nxdomain(&mut self, name: &str) -> &mut Self {
        self.nxdomain.push(name.to_owned());
        self
    }

    /// The hickory zone handler for this spec, after checking it for contradictions.
    /// Checks that the zone is consistent (what [`AuthoritativeDns::serve`] would
    /// refuse), without serving it.
    pub fn check(&self) -> Result<()> {
        self.build().map(drop)
    }

    /// Every owner name of the zone with the type of each of its records (the apex's SOA
    /// and NS included), for [`super::indexed_zone::IndexedZone`].
    fn owner_names(&self) -> Result<Vec<(Name, RecordType)>> {
        let origin = parse_name(&self.origin)?;
        let mut owners = vec![(origin.clone(), RecordType::SOA), (origin, RecordType::NS)];
        for spec_record in &self.records {
            let record_type = match spec_record.data {
                ZoneData::A(_) => RecordType::A,
                ZoneData::Aaaa(_) => RecordType::AAAA,
                ZoneData::Cname(_) => RecordType::CNAME,
            };
            owners.push((parse_name(&spec_record.name)?, record_type));
        }
        Ok(owners)
    }

    fn build(&self) -> Result<(LowerName, InMemoryZoneHandler<TokioRuntimeProvider>)> {
        let origin = parse_name(&self.origin)?;
        let serial = 1;
        let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let ns_name = Name::from_ascii("ns")
            .and_then(|ns| ns.append_domain(&origin))
            .map_err(|source| ServerError::BadZoneName {
                name: format!("ns.{origin}"),
                source,
            })?;
        let hostmaster = Name::from_ascii("hostmaster")
            .and_then(|h| h.append_domain(&origin))
            .map_err(|source| ServerError::BadZoneName {
                name: format!("hostmaster.{origin}"),
                source,
            })?;
        let soa = SOA::new(
            ns_name.clone(),
            hostmaster,
            serial,
            3600,
            600,
            86400,
            self.negative_ttl,
        );
        let apex = [
            Record::from_rdata(origin.clone(), self.default_ttl, RData::SOA(soa)),
            Record::from_rdata(origin.clone(), self.default_ttl, RData::NS(NS(ns_name))),
        ];
        for record in apex {
            insert(&mut handler, record, serial)?;
        }

        // name -> (has CNAME, number of records)
        let mut kinds: BTreeMap<Name, (bool, usize)> = BTreeMap::new();
        for spec_record in &self.records {
            let name = parse_name(&spec_record.name)?;
            if !origin.zone_of(&name) {
                return Err(bad_zone(format!(
                    "{} is outside the zone {}",
                    spec_record.name, self.origin
                )));
            }
            let rdata = match &spec_record.data {
                ZoneData::A(ip) => RData::A(A(*ip)),
                ZoneData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
                ZoneData::Cname(target) => {
                    if name == origin {
                        return Err(bad_zone(format!(
                            "a CNAME cannot sit at the zone apex {}",
                            self.origin
                        )));
                    }
                    RData::CNAME(CNAME(parse_name(target)?))
                }
            };
            let kind = kinds.entry(name.clone()).or_default();
            kind.0 |= matches!(spec_record.data, ZoneData::Cname(_));
            kind.1 += 1;
            if kind.0 && kind.1 > 1 {
                return Err(bad_zone(format!(
                    "{} has a CNAME and other records (DNS allows a CNAME only alone)",
                    spec_record.name
                )));
            }
            insert(
                &mut handler,
                Record::from_rdata(name, spec_record.ttl, rdata),
                serial,
            )?;
        }

        let mut owners: BTreeSet<Name> = kinds.into_keys().collect();
        owners.insert(origin.clone());
        for absent in &self.nxdomain {
            let name = parse_name(absent)?;
            if !origin.zone_of(&name) {
                return Err(bad_zone(format!(
                    "NXDOMAIN name {absent} is outside the zone {}",
                    self.origin
                )));
            }
            if let Some(owner) = owners.iter().find(|owner| name.zone_of(owner)) {
                return Err(bad_zone(format!(
                    "{absent} is declared NXDOMAIN but the zone holds {owner}, so it exists"
                )));
            }
        }
        Ok((LowerName::new(&origin), handler))
    }
}

fn insert(
    handler: &mut InMemoryZoneHandler<TokioRuntimeProvider>,
    record: Record,
    serial: u32,
) -> Result<()> {
    let text = format!("{} {}", record.name, record.record_type());
    if handler.upsert_mut(record, serial) {
        Ok(())
    } else {
        Err(bad_zone(format!("hickory refused the record {text}")))
    }
}

/// An absolute, lowercase name (`"."` is the root).
fn parse_name(text: &str) -> Result<Name> {
    let mut name = Name::from_ascii(text).map_err(|source| ServerError::BadZoneName {
        name: text.to_owned(),
        source,
    })?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

fn bad_zone(reason: String) -> ServerError {
    ServerError::BadZone { reason }
}

/// An address with the certificate chain and key a TLS listener presents there.
pub struct TlsEndpoint {
    pub addr: SocketAddr,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TlsEndpoint {
    pub fn new(addr: SocketAddr, (certs, key): CertifiedKey) -> Self {
        Self { addr, certs, key }
    }
}

impl std::fmt::Debug for TlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsEndpoint")
            .field("addr", &self.addr)
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

/// An authoritative server for one [`ZoneSpec`], to be started with [`Self::serve`].
#[derive(Debug)]
pub struct AuthoritativeDns {
    zone: ZoneSpec,
    udp_tcp: Option<SocketAddr>,
    dot: Option<TlsEndpoint>,
    doh: Option<(TlsEndpoint, String)>,
}

impl AuthoritativeDns {
    /// A server for `zone`, with no listener yet.
    pub fn new(zone: ZoneSpec) -> Self {
        Self {
            zone,
            udp_tcp: None,
            dot: None,
            doh: None,
        }
    }

    /// Plain DNS on UDP and TCP, both on `addr` (port 0: one free port for both).
    #[must_use]
    pub fn udp_tcp(mut self, addr: SocketAddr) -> Self {
        self.udp_tcp = Some(addr);
        self
    }

    /// DNS over TLS (RFC 7858, ALPN `dot`).
    #[must_use]
    pub fn dot(mut self, endpoint: TlsEndpoint) -> Self {
        self.dot = Some(endpoint);
        self
    }

    /// DNS over HTTPS (RFC 8484, HTTP/2, POST) at `path` (usually [`DOH_PATH`]).
    #[must_use]
    pub fn doh(mut self, endpoint: TlsEndpoint, path: &str) -> Self {
        self.doh = Some((endpoint, path.to_owned()));
        self
    }

    /// Shorthand: `zone` on UDP+TCP at `udp_tcp_addr`, and on `DoT` if `dot` is given.
    pub fn start(
        zone: ZoneSpec,
        udp_tcp_addr: SocketAddr,
        dot: Option<TlsEndpoint>,
    ) -> Result<RunningDns> {
        let mut server = Self::new(zone).udp_tcp(udp_tcp_addr);
        server.dot = dot;
        server.serve()
    }

    /// Binds every listener and starts serving.
    ///
    /// Must be called from inside a Tokio runtime (the server's tasks are spawned on it).
    /// Sockets are created synchronously by the calling thread, which matters when that
    /// thread has entered a network namespace: call this from that thread (e.g. inside its
    /// own current-thread runtime's `block_on`).
    pub fn serve(self) -> Result<RunningDns> {
        let first_addr = self
            .udp_tcp
            .or_else(|| self.dot.as_ref().map(|d| d.addr))
            .or_else(|| self.doh.as_ref().map(|(d, _)| d.addr));
        let Some(first_addr) = first_addr else {
            return Err(ServerError::NoListener);
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ServerError::NoRuntime {
                service: "DNS",
                addr: first_addr,
            });
        }

        let (origin, handler) = self.zone.build()?;
        let mut catalog = Catalog::new();
        let handler = super::indexed_zone::IndexedZone::new(handler, self.zone.owner_names()?);
        catalog.upsert(origin, vec![Arc::new(handler) as Arc<dyn ZoneHandler>]);
        let mut server = Server::new(catalog);
        let mut running = RunningDns {
            udp_addr: None,
            tcp_addr: None,
            dot_addr: None,
            doh_addr: None,
            server: None,
        };

        if let Some(addr) = self.udp_tcp {
            let (udp, tcp) = bind_udp_and_tcp(addr)?;
            running.udp_addr = Some(local_addr("DNS/UDP", addr, udp.local_addr())?);
            running.tcp_addr = Some(local_addr("DNS/TCP", addr, tcp.local_addr())?);
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        }
        if let Some(endpoint) = self.dot {
            let config = super::tls_server_config(endpoint.certs, endpoint.key, &[b"dot"])?;
            let listener = bind_tcp("DoT", endpoint.addr)?;
            running.dot_addr = Some(local_addr("DoT", endpoint.addr, listener.local_addr())?);
            server
                .register_tls_listener_with_tls_config(listener, TLS_HANDSHAKE_TIMEOUT, config)
                .map_err(|e| start_error("DoT", endpoint.addr, e))?;
        }
        if let Some((endpoint, path)) = self.doh {
            let config = super::tls_server_config(endpoint.certs, endpoint.key, &[b"h2"])?;
            let listener = bind_tcp("DoH", endpoint.addr)?;
            running.doh_addr = Some(local_addr("DoH", endpoint.addr, listener.local_addr())?);
            server
                .register_https_listener_with_tls_config(
                    listener,
                    TLS_HANDSHAKE_TIMEOUT,
                    config,
                    None,
                    path,
                )
                .map_err(|e| start_error("DoH", endpoint.addr, e))?;
        }
        running.server = Some(server);
        Ok(running)
    }
}

/// A started server. Dropping it stops every listener at once (its tasks are aborted);
/// [`Self::shutdown`] stops gracefully and reports a listener that failed.
pub struct RunningDns {
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    dot_addr: Option<SocketAddr>,
    doh_addr: Option<SocketAddr>,
    server: Option<Server<Catalog>>,
}

impl std::fmt::Debug for RunningDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningDns")
            .field("udp_addr", &self.udp_addr)
            .field("tcp_addr", &self.tcp_addr)
            .field("dot_addr", &self.dot_addr)
            .field("doh_addr", &self.doh_addr)
            .finish_non_exhaustive()
    }
}

impl RunningDns {
    /// Bound UDP address (the real port when port 0 was asked for).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// Bound TCP address (same port as UDP).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn dot_addr(&self) -> Option<SocketAddr> {
        self.dot_addr
    }

    pub fn doh_addr(&self) -> Option<SocketAddr> {
        self.doh_addr
    }

    /// Stops accepting queries, closes every listener and waits for the server's tasks.
    pub async fn shutdown(mut self) -> Result<()> {
        let addr = self.first_addr();
        if let Some(mut server) = self.server.take() {
            server
                .shutdown_gracefully()
                .await
                .map_err(|source| ServerError::ServerFailed { addr, source })?;
        }
        Ok(())
    }

    fn first_addr(&self) -> SocketAddr {
        self.udp_addr
            .or(self.dot_addr)
            .or(self.doh_addr)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

fn start_error(service: &'static str, addr: SocketAddr, source: std::io::Error) -> ServerError {
    ServerError::ServerStart {
        service,
        addr,
        source,
    }
}

fn local_addr(
    service: &'static str,
    asked: SocketAddr,
    got: std::io::Result<SocketAddr>,
) -> Result<SocketAddr> {
    got.map_err(|e| start_error(service, asked, e))
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer only means drops under bursts.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

fn try_bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn bind_tcp(service: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    try_bind_tcp(addr).map_err(|e| start_error(service, addr, e))
}

/// UDP and TCP sockets on the same port. With port 0 the UDP socket picks a free port and
/// TCP follows; if TCP finds that port taken, another one is tried.
fn bind_udp_and_tcp(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut last_error = None;
    for _ in 0..PORT_PICK_ATTEMPTS {
        let udp = bind_udp(addr).map_err(|e| start_error("DNS/UDP", addr, e))?;
        let udp_addr = local_addr("DNS/UDP", addr, udp.local_addr())?;
        match try_bind_tcp(udp_addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                last_error = Some(e);
            }
            Err(e) => return Err(start_error("DNS/TCP", udp_addr, e)),
        }
    }
    Err(ServerError::NoFreePort {
        service: "DNS/TCP",
        addr,
        attempts: PORT_PICK_ATTEMPTS,
        source: last_error,
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::RecordType;
    use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

    use super::*;

    fn lab_zone() -> ZoneSpec {
        let mut zone = ZoneSpec::new("lab.example");
        zone.add_address("www.lab.example", "198.18.1.10".parse().unwrap())
            .add_address("www.lab.example", "198.18.1.11".parse().unwrap())
            .add_address("v6.lab.example", "2001:db8::10".parse().unwrap())
            .add_cname("alias.lab.example", "www.lab.example")
            .add_nxdomain("gone.lab.example");
        zone
    }

    /// One query over UDP, answered within a second or the test fails.
    async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut query = Message::new(0x4242, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        socket
            .send_to(&query.to_bytes().unwrap(), server)
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let (len, from) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
            .await
            .expect("server did not answer")
            .unwrap();
        assert_eq!(from, server);
        let reply = Message::from_bytes(&buf[..len]).unwrap();
        assert_eq!(reply.metadata.id, 0x4242);
        reply
    }

    fn answer_ips(reply: &Message) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        ips.sort();
        ips
    }

    fn has_soa(reply: &Message) -> bool {
        reply
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA)
    }

    #[tokio::test]
    async fn answers_records_nodata_nxdomain_and_refused() {
        let dns = AuthoritativeDns::new(lab_zone())
            .udp_tcp("127.0.0.1:0".parse().unwrap())
            .serve()
            .unwrap();
        let addr = dns.udp_addr().unwrap();
        assert_eq!(dns.tcp_addr().unwrap().port(), addr.port());
        assert_ne!(addr.port(), 0);

        let a = ask(addr, "WWW.lab.example.", RecordType::A).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative);
        assert_eq!(
            answer_ips(&a),
            vec![
                "198.18.1.10".parse::<IpAddr>().unwrap(),
                "198.18.1.11".parse().unwrap()
            ]
        );

        let aaaa = ask(addr, "v6.lab.example.", RecordType::AAAA).await;
        assert_eq!(
            answer_ips(&aaaa),
            vec!["2001:db8::10".parse::<IpAddr>().unwrap()]
        );

        let nodata = ask(addr, "v6.lab.example.", RecordType::A).await;
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert!(has_soa(&nodata), "no-data answer carries the SOA");

        let nx = ask(addr, "gone.lab.example.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(has_soa(&nx));
        let unlisted = ask(addr, "never-mentioned.lab.example.", RecordType::A).await;
        assert_eq!(unlisted.metadata.response_code, ResponseCode::NXDomain);

        let alias = ask(addr, "alias.lab.example.", RecordType::A).await;
        assert!(
            alias
                .answers
                .iter()
                .any(|r| r.record_type() == RecordType::CNAME)
        );

        let outside = ask(addr, "example.org.", RecordType::A).await;
        assert_eq!(outside.metadata.response_code, ResponseCode::Refused);

        dns.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_the_port() {
        let dns =
            AuthoritativeDns::start(lab_zone(), "127.0.0.1:0".parse().unwrap(), None).unwrap();
        let tcp = dns.tcp_addr().unwrap();
        tokio::net::TcpStream::connect(tcp).await.unwrap();
        dns.shutdown().await.unwrap();
        assert!(tokio::net::TcpStream::connect(tcp).await.is_err());
    }

    #[test]
    fn contradictory_zones_are_rejected() {
        let cases: Vec<(ZoneSpec, &str)> = vec![
            (
                {
                    let mut z = ZoneSpec::new("lab.example");
                    z.add_address("www.other.example", "198.18.0.1".parse().unwrap());
                    z
                },
                "outside the zone",
            ),
            (
                {
                    let mut z = ZoneSpec::new("lab.example");
                    z.add_cname("x.lab.example", "www.lab.example")
                        .add_address("x.lab.example", "198.18.0.1".parse().unwrap());
                    z
                },
                "CNAME and other records",
            ),
            (
                {
                    let mut z = ZoneSpec::new("lab.example");
                    z.add_address("a.b.lab.example", "198.18.0.1".parse().unwrap())
                        .add_nxdomain("b.lab.example");
                    z
                },
                "declared NXDOMAIN",
            ),
            (
                {
                    let mut z = ZoneSpec::new("lab.example");
                    z.add_cname("lab.example", "www.lab.example");
                    z
                },
                "zone apex",
            ),
            (
                {
                    let mut z = ZoneSpec::new("lab.example");
                    z.add_address("bad name.lab.example", "198.18.0.1".parse().unwrap());
                    z
                },
                "not a domain name",
            ),
        ];
        for (zone, reason) in cases {
            let err = zone.build().map(|_| ()).unwrap_err();
            assert!(err.to_string().contains(reason), "{reason}: {err}");
        }
    }

    #[test]
    fn serve_outside_a_runtime_is_an_error_not_a_panic() {
        let err =
            AuthoritativeDns::start(lab_zone(), "127.0.0.1:0".parse().unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }

    fn outcome(
        flow: hickory_server::zone_handler::LookupControlFlow<
            hickory_server::zone_handler::AuthLookup,
        >,
    ) -> String {
        use hickory_server::zone_handler::LookupControlFlow;
        let result = |r: std::result::Result<_, hickory_server::zone_handler::LookupError>| match r
        {
            Ok(lookup) => format!(
                "{:?}",
                hickory_server::zone_handler::AuthLookup::iter(&lookup)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
            Err(e) => format!("{e:?}"),
        };
        match flow {
            LookupControlFlow::Continue(r) => format!("continue {}", result(r)),
            LookupControlFlow::Break(r) => format!("break {}", result(r)),
            LookupControlFlow::Skip => "skip".to_owned(),
        }
    }

    /// The index that answers negative lookups gives hickory's own answer for every kind
    /// of name (owner, empty non-terminal, CNAME, NXDOMAIN, apex, any case) and type.
    #[tokio::test]
    async fn indexed_zone_answers_as_hickorys_zone() {
        use hickory_server::zone_handler::LookupOptions;
        for zone in [lab_zone(), {
            let mut root = lab_zone();
            root.origin = ".".to_owned();
            root
        }] {
            let (_, plain) = zone.build().unwrap();
            let (_, inner) = zone.build().unwrap();
            let indexed =
                super::super::indexed_zone::IndexedZone::new(inner, zone.owner_names().unwrap());
            for name in [
                "www.lab.example.",
                "WWW.Lab.Example.",
                "v6.lab.example.",
                "alias.lab.example.",
                "gone.lab.example.",
                "lab.example.",
                "example.",
                ".",
                "x.www.lab.example.",
                "other.example.",
            ] {
                let name = LowerName::from(Name::from_ascii(name).unwrap());
                for rtype in [
                    RecordType::A,
                    RecordType::AAAA,
                    RecordType::CNAME,
                    RecordType::MX,
                    RecordType::NS,
                    RecordType::SOA,
                    RecordType::TXT,
                    RecordType::ANY,
                ] {
                    let options = LookupOptions::default();
                    assert_eq!(
                        outcome(indexed.lookup(&name, rtype, None, options).await),
                        outcome(plain.lookup(&name, rtype, None, options).await),
                        "{} {name} {rtype}",
                        zone.origin
                    );
                }
            }
        }
    }
}
