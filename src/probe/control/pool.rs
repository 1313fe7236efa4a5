//! A bounded pool of long-lived encrypted connections to the control (`DoT` or `DoH`), each
//! carrying many queries at once, and the retry of failed exchanges on another connection.
//!
//! A lookup takes the next connection in turn (opening it if it is not open or was lost),
//! waits for one of the connection's in-flight slots (not counted against the timeout) and
//! sends; the timeout counts from the send. A timeout, a lost connection, a failed
//! connection attempt, a malformed reply or SERVFAIL is retried on the next connection, up
//! to [`ATTEMPTS`] in all, so that no verdict rests on one lost exchange.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::answer::check_reply;
use super::doh::DohConnection;
use super::dot::DotConnection;
use crate::probe::web::net::{ConnectionBudget, ConnectionPermit};

/// Exchanges tried per lookup (the first and two retries), each on another connection.
pub(super) const ATTEMPTS: usize = 3;

/// Connections kept open to the control. Several, so that one lost connection (a server
/// closing idle connections, a reset) costs the queries on it a retry and not a stall, and
/// so that a server answering each connection's queries in turn works on several at once.
const CONNECTIONS: usize = 4;

/// Queries outstanding on one connection at most; further lookups wait for a slot (without
/// their timeout running). Far below the 65,536 message ids of a `DoT` connection.
const IN_FLIGHT_PER_CONNECTION: usize = 128;

/// The id a query is encoded with: `DoH` asks with 0 (RFC 8484 §4.1); a `DoT` connection
/// gives each query an id of its own when sending it.
const QUERY_ID: u16 = 0;

/// The reply to one exchange (the message in wire form) or why there is none.
pub(super) type Reply = Result<Vec<u8>, ExchangeError>;

/// Why an exchange with the control gave no usable reply.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error("no connection to the control: {0}")]
    Connect(String),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("connection to the control lost: {0}")]
    Lost(String),
    #[error("{0}")]
    BadReply(String),
}

/// Which encrypted transport the pool speaks.
#[derive(Debug, Clone)]
pub(super) enum Protocol {
    /// DNS over TLS (RFC 7858).
    Dot,
    /// DNS over HTTPS (RFC 8484) to this URL.
    Doh { uri: http::Uri },
}

/// What every connection of the pool is opened with.
pub(super) struct Endpoint {
    pub(super) protocol: Protocol,
    /// The name (or address) the server's certificate must carry.
    pub(super) server_name: ServerName<'static>,
    pub(super) port: u16,
    /// Trust anchors and the ALPN protocol of `protocol`.
    pub(super) tls: Arc<rustls::ClientConfig>,
    /// Bounds the connection set-up and each exchange.
    pub(super) timeout: Duration,
}

enum Connection {
    Dot(DotConnection),
    Doh(DohConnection),
}

impl Connection {
    fn is_lost(&self) -> bool {
        match self {
            Self::Dot(c) => c.is_lost(),
            Self::Doh(c) => c.is_lost(),
        }
    }

    async fn exchange(&self, wire: Vec<u8>) -> Reply {
        match self {
            Self::Dot(c) => c.exchange(wire).await,
            Self::Doh(c) => c.exchange(wire).await,
        }
    }
}

/// An open connection of the pool.
struct Open {
    connection: Connection,
    in_flight: Semaphore,
    /// The connection's share of the scan's socket budget, held while it is open.
    _fd: Option<ConnectionPermit>,
}

#[derive(Default)]
struct SlotState {
    open: Option<Arc<Open>>,
    /// The last failed attempt to open this slot's connection, and when it ended.
    failed: Option<(Instant, ExchangeError)>,
    /// Index (modulo the addresses) of the address this slot connects to.
    address: usize,
}

/// A bounded set of connections to the control's addresses.
pub(super) struct Pool {
    endpoint: Endpoint,
    ips: Vec<IpAddr>,
    slots: Vec<Mutex<SlotState>>,
    next: AtomicUsize,
    fd_budget: Option<ConnectionBudget>,
}

impl Pool {
    /// A pool to `ips` (at least one); connections are opened on first use.
    pub(super) fn new(
        endpoint: Endpoint,
        ips: Vec<IpAddr>,
        fd_budget: Option<ConnectionBudget>,
    ) -> Self {
        let slots = (0..CONNECTIONS)
            .map(|i| {
                Mutex::new(SlotState {
                    address: i,
                    ..SlotState::default()
                })
            })
            .collect();
        Self {
            endpoint,
            ips,
            slots,
            next: AtomicUsize::new(0),
            fd_budget,
        }
    }

    /// Asks the control `query` (recursion desired), retrying on other connections. Returns
    /// a reply to this very question, or the last failure, and the exchanges it took.
    pub(super) async fn ask(&self, query: &Query) -> (Result<Message, ExchangeError>, usize) {
        let wire = match encode(query, QUERY_ID) {
            Ok(wire) => wire,
            Err(e) => return (Err(e), 0),
        };
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = Err(ExchangeError::Connect("no attempt made".to_owned()));
        for attempt in 0..ATTEMPTS {
            let slot = &self.slots[(first + attempt) % self.slots.len()];
            let result = match self.open(slot).await {
                Ok(open) => exchange_on(&open, wire.clone(), self.endpoint.timeout)
                    .await
                    .and_then(|reply| decode(query, &reply)),
                Err(e) => Err(e),
            };
            match result {
                // A SERVFAIL may be the control's passing trouble with the name's servers.
                Ok(reply) if reply.metadata.response_code == ResponseCode::ServFail => {
                    last = Ok(reply);
                }
                Ok(reply) => return (Ok(reply), attempt + 1),
                Err(e) => last = Err(e),
            }
        }
        (last, ATTEMPTS)
    }

    /// One `. NS` exchange over a fresh connection to `ip`, outside the pool: whether the
    /// control answers DNS there at all (any response code counts), or why not.
    pub(super) async fn probe(&self, ip: IpAddr) -> Result<(), String> {
        let query = Query::query(Name::root(), RecordType::NS);
        let open = self.connect(ip).await?;
        let wire = encode(&query, QUERY_ID).map_err(|e| e.to_string())?;
        exchange_on(&open, wire, self.endpoint.timeout)
            .await
            .and_then(|reply| decode(&query, &reply))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The slot's connection, opened if it is not open or was lost. Lookups that waited
    /// while an attempt to open it failed share that failure instead of trying again one
    /// after another (against a dead control, each would wait for the timeout in turn).
    async fn open(&self, slot: &Mutex<SlotState>) -> Result<Arc<Open>, ExchangeError> {
        let arrived = Instant::now();
        let mut state = slot.lock().await;
        if let Some(open) = &state.open {
            if !open.connection.is_lost() {
                return Ok(Arc::clone(open));
            }
            state.open = None;
        }
        if let Some((at, failure)) = &state.failed
            && *at >= arrived
        {
            return Err(failure.clone());
        }
        let ip = self.ips[state.address % self.ips.len()];
        match self
            .connect(ip)
            .await
            .map_err(|reason| ExchangeError::Connect(format!("{ip}: {reason}")))
        {
            Ok(open) => {
                let open = Arc::new(open);
                state.open = Some(Arc::clone(&open));
                state.failed = None;
                Ok(open)
            }
            Err(e) => {
                // The next attempt tries the next address, if there is one.
                state.address += 1;
                state.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// A new connection to `ip`, or why there is none.
    async fn connect(&self, ip: IpAddr) -> Result<Open, String> {
        let fd = match &self.fd_budget {
            Some(budget) => Some(budget.acquire().await),
            None => None,
        };
        let endpoint = &self.endpoint;
        let addr = SocketAddr::new(ip, endpoint.port);
        let opening = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connection failed: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let tls = TlsConnector::from(Arc::clone(&endpoint.tls))
                .connect(endpoint.server_name.clone(), tcp)
                .await
                .map_err(|e| describe_tls_failure(&e))?;
            match &endpoint.protocol {
                Protocol::Dot => Ok(Connection::Dot(DotConnection::start(
                    tls,
                    addr,
                    endpoint.timeout,
                ))),
                Protocol::Doh { uri } => DohConnection::start(tls, uri.clone(), endpoint.timeout)
                    .await
                    .map(Connection::Doh),
            }
        };
        let connection = tokio::time::timeout(endpoint.timeout, opening)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no connection within {} ms",
                    endpoint.timeout.as_millis()
                ))
            })?;
        Ok(Open {
            connection,
            in_flight: Semaphore::new(IN_FLIGHT_PER_CONNECTION),
            _fd: fd,
        })
    }
}

/// One exchange on `open`, once one of its in-flight slots is free.
async fn exchange_on(open: &Open, wire: Vec<u8>, timeout: Duration) -> Reply {
    let Ok(_slot) = open.in_flight.acquire().await else {
        return Err(ExchangeError::Lost("the connection is closed".to_owned()));
    };
    // The connection times the exchange from its send; this only guards against a
    // connection that cannot even send (a peer that stopped reading).
    tokio::time::timeout(timeout * 2, open.connection.exchange(wire))
        .await
        .unwrap_or(Err(ExchangeError::Timeout(timeout)))
}

fn encode(query: &Query, id: u16) -> Result<Vec<u8>, ExchangeError> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(query.clone());
    message
        .to_vec()
        .map_err(|e| ExchangeError::BadReply(format!("cannot encode the query: {e}")))
}

fn decode(query: &Query, reply: &[u8]) -> Result<Message, ExchangeError> {
    let message = Message::from_vec(reply)
        .map_err(|e| ExchangeError::BadReply(format!("malformed reply from the control: {e}")))?;
    check_reply(query, &message).map_err(ExchangeError::BadReply)?;
    Ok(message)
}

/// A failed TLS handshake, naming rustls's reason (e.g. an untrusted certificate).
fn describe_tls_failure(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(tls) => format!("TLS handshake failed: {tls}"),
        None => format!("TLS handshake failed: {e}"),
    }
}
