//! The DNS probe: queries over UDP from sockets the probe owns.
//!
//! A stub resolver keeps only the first reply; an on-path injector makes sure that the
//! first reply is its forgery. So the probe keeps listening after the first reply (for
//! `wait_after_first`) and records every reply with its arrival time, IP TTL, id, flags and
//! answers. Sockets are never `connect()`ed: a connected socket would silently drop replies
//! whose source differs from the resolver's.
//!
//! Engine design (for tens of thousands of names a second on two cores): a pool of
//! sockets, each owned by one task that keeps its waiting questions in a slab found by
//! query id (a table of 65,536 slots per socket) and their deadlines in a timer wheel.
//! The questions of one name are submitted as a group, sent from one socket back to
//! back (one `sendmmsg`), and delivered together when the last one is done: a waiting
//! name costs table entries, no task, future or channel of its own. No per-query thread
//! or socket (the rate control, when paced, takes one short lock per attempt);
//! submission goes through bounded channels, so a full engine applies back-pressure.
//! The pool grows when its sockets run short of query ids (each socket keeps ids of
//! finished queries in quarantine for a while), so the id budget never caps the rate.
//!
//! Hostile networks: replies kept per query and records kept per reply are capped (the
//! rest are counted and digested); a socket task reads a bounded batch of packets per
//! wakeup, checks its deadlines against the clock and yields, so a flood cannot starve
//! timers. Queries leave at the pace of a [`rate::RateGate`] that backs off when the
//! resolver drops queries. A truncated reply (TC=1) is retried over TCP.

pub mod rate;
mod rto;
mod wheel;
mod worker;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nix::sys::socket::{SockaddrStorage, setsockopt, sockopt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::ProbeError;

type Result<T, E = ProbeError> = std::result::Result<T, E>;
use crate::observation::{
    DnsFlags, DnsQueryObservation, DnsRecord, DnsReply, DnsServerRole, DnsTcpExchange,
};
use rate::{DnsRateReport, RateGate};
use worker::{GroupJob, SocketWorker};

/// Replies kept in full per query; the rest are counted, timed and digested.
pub const MAX_REPLIES_KEPT: usize = 16;
/// Records kept per section (answer, authority) of one reply.
pub const MAX_RECORDS_KEPT: usize = 32;
/// Characters of one record's data kept.
const MAX_RECORD_DATA: usize = 256;
/// Packets one socket task reads per wakeup before it checks deadlines and yields.
const PACKETS_PER_WAKEUP: usize = 64;

/// Timing and retry policy of the DNS probe.
#[derive(Debug, Clone)]
pub struct DnsProbeConfig {
    /// How long an attempt waits for a first reply, and (times the attempts) how long a
    /// question is listened to before it is given up. An attempt that another may follow
    /// is sent again sooner once the server's round trips are known: after twice their
    /// 99th percentile, at least 250 ms (see the `rto` module).
    pub timeout: Duration,
    /// How many more attempts after the first, when an attempt gets no reply.
    pub retries: u32,
    /// How long to keep listening after the first reply, for late (genuine) replies.
    pub wait_after_first: Duration,
    /// Number of sockets (and tasks) in the pool.
    pub sockets: usize,
    /// Outstanding queries per socket before submissions wait.
    pub max_in_flight_per_socket: usize,
    /// Most queries a second (`--rate`); the engine backs off below it when the resolver
    /// drops queries. 0: unpaced, no rate control.
    pub max_rate: f64,
}

impl Default for DnsProbeConfig {
    fn default() -> Self {
        DnsProbeConfig {
            timeout: Duration::from_secs(2),
            retries: 1,
            wait_after_first: Duration::from_secs(1),
            sockets: 8,
            max_in_flight_per_socket: 16_384,
            max_rate: 0.0,
        }
    }
}

impl DnsProbeConfig {
    /// How long the ids of a finished query stay off-limits: a reply to them after it
    /// finished is late, and must not be taken for a reply to a new query.
    pub(crate) fn id_quarantine(&self) -> Duration {
        self.timeout + self.wait_after_first
    }

    /// Sockets enough for `names` names in flight at once, `questions` questions each
    /// (at least `at_least`, at most the pool's limit), so that the pool need not grow
    /// during the scan. A socket's tables keep the size of the busiest moment they met:
    /// a pool that grew mid-scan keeps its first sockets' room for the whole early load
    /// besides the new sockets' (at 60,000 names in real mode, 25-30 MiB of peak RSS).
    ///
    /// A question holds its query id for its late-reply window, and the id then stays
    /// off-limits for the timeout and the window again (a late reply must not be taken
    /// for one to a new query): at the defaults an id is taken four times as long as its
    /// name is in flight. Without a window a name is held for a round trip only, and
    /// what its ids need is set by the rate, not by the names in flight: `at_least`.
    pub fn sockets_for(&self, names: usize, questions: usize, at_least: usize) -> usize {
        let at_least = at_least.clamp(1, MAX_SOCKETS);
        let window = self.wait_after_first.as_secs_f64();
        if window <= 0.0 || names == 0 || questions == 0 {
            return at_least;
        }
        let queries = (names as f64) * (questions as f64);
        let id_lifetime = (window + self.id_quarantine().as_secs_f64()) / window;
        let for_ids = (queries * id_lifetime / worker::ID_BUDGET as f64).ceil();
        let for_room = (queries / self.max_in_flight_per_socket.max(1) as f64).ceil();
        (for_ids.max(for_room) as usize).clamp(at_least, MAX_SOCKETS)
    }
}

/// One question to put to one server.
#[derive(Debug, Clone)]
pub struct DnsQuestion {
    /// Shared by the questions of one name (a name waits a second or more in real
    /// mode, with one question per server and query type).
    pub qname: Arc<Name>,
    pub qtype: RecordType,
    pub server: SocketAddr,
    pub role: DnsServerRole,
}

/// Everything observed for one group, in the order the questions were given.
///
/// Its questions' replies are usually still the datagrams as they came: parsed by
/// [`GroupDone::into_observations`], on the receiver's side. Finished groups can queue
/// there by the thousand when the late-reply windows of many names close together,
/// and held as datagrams they take a third of the room of parsed observations.
#[derive(Debug)]
pub struct GroupDone {
    pub token: u64,
    found: GroupFound,
}

#[derive(Debug)]
enum GroupFound {
    Observed(Vec<DnsQueryObservation>),
    Held(Vec<worker::FinishedQuery>),
}

impl GroupDone {
    /// The observations, in question order (parsing the replies held as datagrams).
    pub fn into_observations(self) -> Vec<DnsQueryObservation> {
        match self.found {
            GroupFound::Observed(observations) => observations,
            GroupFound::Held(queries) => queries
                .into_iter()
                .map(worker::FinishedQuery::into_observation)
                .collect(),
        }
    }
}

/// Most sockets the pool grows to when its sockets run short of query ids or room.
const MAX_SOCKETS: usize = 64;
/// Groups queued per socket before a submission tries another socket or waits.
const GROUPS_QUEUED_PER_SOCKET: usize = 256;

/// Counters the socket tasks add to (once per turn) and the report reads.
#[derive(Debug)]
struct EngineStats {
    started: Instant,
    queries_sent: AtomicU64,
    retries: AtomicU64,
    /// Microseconds since `started` of the first and the last send.
    first_send_us: AtomicU64,
    last_send_us: AtomicU64,
    names_in_flight: AtomicU64,
    max_names_in_flight: AtomicU64,
}

impl EngineStats {
    fn new() -> Self {
        EngineStats {
            started: Instant::now(),
            queries_sent: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            first_send_us: AtomicU64::new(u64::MAX),
            last_send_us: AtomicU64::new(0),
            names_in_flight: AtomicU64::new(0),
            max_names_in_flight: AtomicU64::new(0),
        }
    }

    fn on_sent(&self, sent: u64, retries: u64, now: Instant) {
        let at = u64::try_from(now.duration_since(self.started).as_micros()).unwrap_or(u64::MAX);
        self.queries_sent.fetch_add(sent, Ordering::Relaxed);
        self.retries.fetch_add(retries, Ordering::Relaxed);
        self.first_send_us.fetch_min(at, Ordering::Relaxed);
        self.last_send_us.fetch_max(at, Ordering::Relaxed);
    }

    fn fill(&self, report: &mut DnsRateReport) {
        report.queries_sent = self.queries_sent.load(Ordering::Relaxed);
        report.retries = self.retries.load(Ordering::Relaxed);
        report.max_names_in_flight = self.max_names_in_flight.load(Ordering::Relaxed);
        let known = report.attempts_answered + report.attempts_lost;
        report.loss_rate = if known == 0 {
            0.0
        } else {
            report.attempts_lost as f64 / known as f64
        };
        let first = self.first_send_us.load(Ordering::Relaxed);
        let last = self.last_send_us.load(Ordering::Relaxed);
        report.achieved_qps = if last > first {
            report.queries_sent as f64 / ((last - first) as f64 / 1e6)
        } else {
            0.0
        };
    }
}

/// What the engine's callers and its socket tasks share.
struct EngineShared {
    config: DnsProbeConfig,
    gate: RateGate,
    stats: EngineStats,
}

impl EngineShared {
    /// Hands a finished group to its submitter; it is no longer in flight.
    fn deliver(
        &self,
        token: u64,
        done: &mpsc::UnboundedSender<GroupDone>,
        observations: Vec<DnsQueryObservation>,
    ) {
        self.deliver_found(token, done, GroupFound::Observed(observations));
    }

    /// [`EngineShared::deliver`] with the replies still held as datagrams.
    fn deliver_held(
        &self,
        token: u64,
        done: &mpsc::UnboundedSender<GroupDone>,
        queries: Vec<worker::FinishedQuery>,
    ) {
        self.deliver_found(token, done, GroupFound::Held(queries));
    }

    fn deliver_found(
        &self,
        token: u64,
        done: &mpsc::UnboundedSender<GroupDone>,
        found: GroupFound,
    ) {
        self.stats.names_in_flight.fetch_sub(1, Ordering::Relaxed);
        let _ = done.send(GroupDone { token, found });
    }
}

struct WorkerHandle {
    jobs: mpsc::Sender<GroupJob>,
    short_of_room: Arc<AtomicBool>,
}

struct EngineInner {
    shared: Arc<EngineShared>,
    family: IpAddr,
    workers: RwLock<Vec<WorkerHandle>>,
    next: AtomicUsize,
    /// Held while a socket is added, so that concurrent submitters add one, not many.
    growing: tokio::sync::Mutex<()>,
}

/// A pool of probe sockets. Cheap to clone; every clone submits to the same pool.
#[derive(Clone)]
pub struct DnsEngine {
    inner: Arc<EngineInner>,
}

impl DnsEngine {
    /// Opens the socket pool for servers of the given address family and starts its tasks
    /// on the current tokio runtime. The pool grows (up to 64 sockets) when its sockets
    /// run short of query ids.
    pub async fn start(config: DnsProbeConfig, family: IpAddr) -> Result<Self> {
        let sockets = config.sockets.clamp(1, MAX_SOCKETS);
        let shared = Arc::new(EngineShared {
            gate: RateGate::new(config.max_rate),
            config,
            stats: EngineStats::new(),
        });
        let mut workers = Vec::with_capacity(sockets);
        for _ in 0..sockets {
            workers.push(start_worker(&shared, family).await?);
        }
        Ok(DnsEngine {
            inner: Arc::new(EngineInner {
                shared,
                family,
                workers: RwLock::new(workers),
                next: AtomicUsize::new(0),
                growing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Sends one question and returns everything observed for it. Waits for the pacer,
    /// and (back-pressure) when the engine is full. A truncated reply is followed by a
    /// TCP retry.
    pub async fn query(&self, question: DnsQuestion) -> DnsQueryObservation {
        self.query_together(vec![question])
            .await
            .pop()
            .expect("one observation per question")
    }

    /// Sends the questions back to back from one socket (in the order given, with no
    /// pacing gap between them) and returns their observations in the same order.
    pub async fn query_together(&self, questions: Vec<DnsQuestion>) -> Vec<DnsQueryObservation> {
        let stopped: Vec<DnsQueryObservation> = questions.iter().map(stopped_observation).collect();
        let (done, mut finished) = mpsc::unbounded_channel();
        self.submit_group(questions, 0, done).await;
        finished
            .recv()
            .await
            .map_or(stopped, GroupDone::into_observations)
    }

    /// Submits the questions of one name as a group, all sent from one socket back to
    /// back. Returns once they are accepted (waits only for the rate gate and for room in
    /// the engine: back-pressure). When every question of the group is finished (TCP
    /// retry of a truncated resolver reply included), sends `GroupDone { token, .. }` on
    /// `done`, with the observations in the order of `questions`. A waiting group costs
    /// a small table entry in the socket task, no task of its own.
    ///
    /// Per role: the resolver's questions are retried on timeout and listened to for
    /// `wait_after_first` after their first reply; a sink's question is never retried
    /// and listens until `wait_after_first` after the first reply of the group's resolver
    /// question of the same type (or its timeout); a control's question is retried at
    /// least twice and done at its first valid reply.
    pub async fn submit_group(
        &self,
        questions: Vec<DnsQuestion>,
        token: u64,
        done: mpsc::UnboundedSender<GroupDone>,
    ) {
        let shared = &self.inner.shared;
        shared
            .gate
            .admit(u32::try_from(questions.len()).unwrap_or(u32::MAX))
            .await;
        let in_flight = shared.stats.names_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared
            .stats
            .max_names_in_flight
            .fetch_max(in_flight, Ordering::Relaxed);
        let mut job = GroupJob {
            questions,
            token,
            done,
        };
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        loop {
            let (waiting_on, grow) = {
                let workers = self
                    .inner
                    .workers
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let count = workers.len();
                for offset in 0..count {
                    match workers[(start + offset) % count].jobs.try_send(job) {
                        Ok(()) => return,
                        Err(
                            mpsc::error::TrySendError::Full(back)
                            | mpsc::error::TrySendError::Closed(back),
                        ) => job = back,
                    }
                }
                let grow = count < MAX_SOCKETS
                    && workers
                        .iter()
                        .any(|w| w.short_of_room.load(Ordering::Relaxed));
                (workers[start % count].jobs.clone(), grow)
            };
            if grow && self.grow().await {
                continue;
            }
            if let Err(mpsc::error::SendError(job)) = waiting_on.send(job).await {
                let observations = job.questions.iter().map(stopped_observation).collect();
                shared.deliver(job.token, &job.done, observations);
            }
            return;
        }
    }

    /// Adds a socket to the pool; false when none could be added.
    async fn grow(&self) -> bool {
        let _one_at_a_time = self.inner.growing.lock().await;
        let still_short = {
            let workers = self
                .inner
                .workers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            workers.len() < MAX_SOCKETS && workers.iter().all(|w| w.jobs.capacity() == 0)
        };
        if !still_short {
            return true; // another submitter made room
        }
        match start_worker(&self.inner.shared, self.inner.family).await {
            Ok(worker) => {
                self.inner
                    .workers
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(worker);
                true
            }
            Err(_) => false,
        }
    }

    /// What the rate control did so far, with the engine's counts.
    pub fn rate_report(&self) -> DnsRateReport {
        let shared = &self.inner.shared;
        let mut report = shared.gate.report();
        shared.stats.fill(&mut report);
        report
    }
}

async fn start_worker(shared: &Arc<EngineShared>, family: IpAddr) -> Result<WorkerHandle> {
    let socket = open_socket(family).await?;
    let (jobs, receiver) = mpsc::channel(GROUPS_QUEUED_PER_SOCKET);
    let short_of_room = Arc::new(AtomicBool::new(false));
    let worker = SocketWorker::new(socket, Arc::clone(shared), Arc::clone(&short_of_room));
    tokio::spawn(worker.run(receiver));
    Ok(WorkerHandle {
        jobs,
        short_of_room,
    })
}

fn stopped_observation(question: &DnsQuestion) -> DnsQueryObservation {
    DnsQueryObservation {
        role: question.role,
        server: question.server,
        qname: name_text(&question.qname),
        qtype: question.qtype.to_string(),
        source_port: 0,
        ids: Vec::new(),
        attempts: 0,
        replies: Vec::new(),
        listened_ms: 0.0,
        send_error: Some("DNS engine stopped".to_owned()),
        omitted_replies: None,
        tcp: None,
        rechecks: Vec::new(),
    }
}

/// One query over TCP (two-byte length prefix), bounded by `timeout` as a whole.
pub async fn tcp_exchange(question: &DnsQuestion, timeout: Duration) -> DnsTcpExchange {
    let started = Instant::now();
    let id: u16 = rand::random();
    let exchange = async {
        let bytes = encode_query(id, question)?;
        let mut stream = tokio::net::TcpStream::connect(question.server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let length = u16::try_from(bytes.len()).map_err(|_| "query too long".to_owned())?;
        let mut framed = length.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream
            .write_all(&framed)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let length = stream
            .read_u16()
            .await
            .map_err(|e| format!("read length: {e}"))?;
        // At most 65,535 bytes: the frame bounds what is read.
        let mut reply = vec![0; usize::from(length)];
        stream
            .read_exact(&mut reply)
            .await
            .map_err(|e| format!("read reply: {e}"))?;
        Ok::<Vec<u8>, String>(reply)
    };
    let outcome = tokio::time::timeout(timeout, exchange).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (reply, error) = match outcome {
        Err(_) => (
            None,
            Some(format!("no reply within {} ms", timeout.as_millis())),
        ),
        Ok(Err(e)) => (None, Some(e)),
        Ok(Ok(bytes)) if bytes.len() < 2 => (None, Some("reply too short".to_owned())),
        Ok(Ok(bytes)) => {
            let reply = parse_reply(&bytes, question, question.server, None, elapsed_ms, 1);
            let error =
                (reply.id != id).then(|| format!("reply id {} differs from {id}", reply.id));
            (Some(reply), error)
        }
    };
    DnsTcpExchange {
        elapsed_ms,
        reply,
        error,
    }
}

async fn open_socket(family: IpAddr) -> Result<UdpSocket> {
    let bind: SocketAddr = match family {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // Port 0: the kernel picks a random ephemeral source port for each socket.
    let socket = UdpSocket::bind(bind).await.map_err(ProbeError::Socket)?;
    let ttl_option = match family {
        IpAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4RecvTtl, &true),
        IpAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true),
    };
    ttl_option.map_err(|e| ProbeError::Socket(e.into()))?;
    // A large receive buffer keeps bursts of replies from being dropped by the kernel.
    // `net.core.rmem_max` caps SO_RCVBUF (at about 200 KiB by default, and it cannot be
    // raised inside a network namespace): a scan with CAP_NET_ADMIN forces the size past
    // the cap; without it the capped size is what there is.
    if setsockopt(&socket, sockopt::RcvBufForce, &(8 << 20)).is_err() {
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
    }
    let _ = socket2::SockRef::from(&socket).set_send_buffer_size(4 << 20);
    Ok(socket)
}

/// Lowercase, no trailing dot: the form names take in reports.
pub fn name_text(name: &Name) -> String {
    // Every observation and every answer record carries a name: labels of letters,
    // digits, underscores and (not first) hyphens need no escaping, and are joined
    // directly rather than through hickory's formatter (a test holds the two equal).
    let plain = name.iter().all(|label| {
        label
            .iter()
            .enumerate()
            .all(|(at, b)| b.is_ascii_alphanumeric() || *b == b'_' || (*b == b'-' && at > 0))
    });
    if plain && name.num_labels() > 0 {
        let mut text = String::with_capacity(name.len());
        for (index, label) in name.iter().enumerate() {
            if index > 0 {
                text.push('.');
            }
            text.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        }
        return text;
    }
    let mut text = name.to_ascii();
    if text.len() > 1 && text.ends_with('.') {
        text.pop();
    }
    text.make_ascii_lowercase();
    text
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

fn sockaddr_to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// The header of every query after its id: RD set; one question, one additional record.
const QUERY_HEADER_AFTER_ID: [u8; 10] = [0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
/// The EDNS0 record every query ends with: root owner, type OPT, a 1232-byte payload,
/// version 0, no flags, no options.
const QUERY_OPT_RECORD: [u8; 11] = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];
/// Class IN.
const CLASS_IN: [u8; 2] = [0, 1];

/// Builds the wire form of a query (RD set, EDNS0 with a 1232-byte payload): the bytes
/// hickory's `Message::to_vec` gives for that message (a test holds the two equal).
///
/// It is written out here because it runs once per name at full rate: hickory's encoder
/// keeps a compression table (an allocation per label) and reserves 512 bytes per
/// message, and a query has one name, so there is nothing to compress. The name's labels
/// come from hickory's `Name`, which already holds them to the wire's limits.
pub fn encode_query(id: u16, question: &DnsQuestion) -> std::result::Result<Vec<u8>, String> {
    encode_name_query(id, &question.qname, question.qtype)
}

/// [`encode_query`] for a name and type (the socket task keeps no whole question).
pub(super) fn encode_name_query(
    id: u16,
    name: &Name,
    qtype: RecordType,
) -> std::result::Result<Vec<u8>, String> {
    let name_len = name.iter().map(|label| label.len() + 1).sum::<usize>() + 1;
    if name_len > 255 {
        return Err(format!(
            "name of {name_len} bytes on the wire (at most 255)"
        ));
    }
    let mut wire = Vec::with_capacity(2 + QUERY_HEADER_AFTER_ID.len() + name_len + 4 + 11);
    wire.extend_from_slice(&id.to_be_bytes());
    wire.extend_from_slice(&QUERY_HEADER_AFTER_ID);
    for label in name {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|len| *len <= 63)
            .ok_or_else(|| format!("label of {} bytes (at most 63)", label.len()))?;
        wire.push(len);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    wire.extend_from_slice(&u16::from(qtype).to_be_bytes());
    wire.extend_from_slice(&CLASS_IN);
    wire.extend_from_slice(&QUERY_OPT_RECORD);
    Ok(wire)
}

fn parse_reply(
    bytes: &[u8],
    question: &DnsQuestion,
    from: SocketAddr,
    ip_ttl: Option<u8>,
    elapsed_ms: f64,
    attempt: u32,
) -> DnsReply {
    parse_name_reply(
        bytes,
        (&question.qname, question.qtype),
        from,
        ip_ttl,
        elapsed_ms,
        attempt,
    )
}

/// [`parse_reply`] for the question's name and type (the socket task keeps no whole
/// question).
pub(super) fn parse_name_reply(
    bytes: &[u8],
    (qname, qtype): (&Name, RecordType),
    from: SocketAddr,
    ip_ttl: Option<u8>,
    elapsed_ms: f64,
    attempt: u32,
) -> DnsReply {
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    match Message::from_vec(bytes) {
        Ok(message) => {
            let meta = &message.metadata;
            let question_matches = message.queries.len() == 1
                && message.queries[0].query_type() == qtype
                // Case-insensitive, label by label (as `name_text` compares), without
                // rendering both names as text for every reply.
                && message.queries[0].name().eq_ignore_root(qname);
            DnsReply {
                from,
                elapsed_ms,
                attempt,
                ip_ttl,
                ip_id: None,
                df: None,
                size: bytes.len(),
                id,
                flags: DnsFlags {
                    qr: meta.message_type == MessageType::Response,
                    aa: meta.authoritative,
                    tc: meta.truncation,
                    rd: meta.recursion_desired,
                    ra: meta.recursion_available,
                    ad: meta.authentic_data,
                    cd: meta.checking_disabled,
                },
                rcode: rcode_text(meta.response_code),
                question_matches,
                answers: message
                    .answers
                    .iter()
                    .take(MAX_RECORDS_KEPT)
                    .map(record_of)
                    .collect(),
                authorities: message
                    .authorities
                    .iter()
                    .take(MAX_RECORDS_KEPT)
                    .map(record_of)
                    .collect(),
                malformed: None,
                records_omitted: message.answers.len().saturating_sub(MAX_RECORDS_KEPT)
                    + message.authorities.len().saturating_sub(MAX_RECORDS_KEPT),
            }
        }
        Err(e) => DnsReply {
            from,
            elapsed_ms,
            attempt,
            ip_ttl,
            ip_id: None,
            df: None,
            size: bytes.len(),
            id,
            flags: DnsFlags::default(),
            rcode: "Malformed".to_owned(),
            question_matches: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            malformed: Some(e.to_string()),
            records_omitted: 0,
        },
    }
}

/// A response code in the mnemonic form reports carry (hickory's `Debug` form), without
/// formatting machinery for the two codes almost every reply has.
fn rcode_text(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NoError".to_owned(),
        ResponseCode::NXDomain => "NXDomain".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A query or record type as reports write it: `Display`'s text, without formatting
/// machinery (every observation and every answer record carries one).
pub(crate) fn type_text(rtype: RecordType) -> String {
    <&'static str>::from(rtype).to_owned()
}

/// Converts a hickory record into the report's form.
pub fn record_of(record: &Record) -> DnsRecord {
    // An address is known as an address here: no need to parse the text back.
    let address = match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    };
    if let Some(ip) = address {
        return DnsRecord::of_address(name_text(&record.name), record.ttl, ip);
    }
    let data = match &record.data {
        RData::CNAME(c) => name_text(&c.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(p) => name_text(&p.0),
        other => other.to_string(),
    };
    let data = match data.char_indices().nth(MAX_RECORD_DATA) {
        // A huge record (TXT, unknown type) must not fill the report.
        Some((cut, _)) => format!("{}… ({} bytes)", &data[..cut], data.len()),
        None => data,
    };
    DnsRecord::new(
        name_text(&record.name),
        type_text(record.record_type()),
        record.ttl,
        data,
    )
}

/// What the probe records for one datagram that carries an outstanding query's id, as
/// the socket task does on receipt; `None` for a datagram too short to carry an id (the
/// task ignores those). Not a stable API: it exists for the fuzz targets and property
/// tests, which feed it hostile bytes.
#[doc(hidden)]
pub fn reply_of_datagram(
    bytes: &[u8],
    question: &DnsQuestion,
    from: SocketAddr,
) -> Option<DnsReply> {
    (bytes.len() >= 2).then(|| parse_reply(bytes, question, from, None, 0.0, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query};

    /// Needs root (`CAP_NET_ADMIN`), as every scan in namespaces does: fails, never skips,
    /// without it.
    #[tokio::test]
    async fn the_receive_buffer_is_forced_past_rmem_max_as_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: it checks that SO_RCVBUFFORCE lifts the socket's \
             receive buffer past net.core.rmem_max"
        );
        let socket = open_socket(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.unwrap();
        let size = nix::sys::socket::getsockopt(&socket, sockopt::RcvBuf).unwrap();
        // The kernel doubles the size asked for (bookkeeping overhead).
        assert!(size >= 8 << 20, "receive buffer of {size} bytes");
    }
    use hickory_proto::rr::rdata::A;
    use std::str::FromStr;

    /// A query as hickory's own encoder writes it: what `encode_query` must give.
    fn hickory_encoding(id: u16, question: &DnsQuestion) -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::clone(&question.qname), question.qtype));
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1232);
        message.set_edns(edns);
        message.to_vec().unwrap()
    }

    fn question_for(name: Name, qtype: RecordType) -> DnsQuestion {
        DnsQuestion {
            qname: Arc::new(name),
            qtype,
            server: "198.18.0.2:53".parse().unwrap(),
            role: DnsServerRole::Resolver,
        }
    }

    /// The names' text as hickory's formatter gives it (lower-cased, no trailing dot):
    /// what `name_text` must give.
    fn formatted_name_text(name: &Name) -> String {
        let mut text = name.to_ascii();
        if text.len() > 1 && text.ends_with('.') {
            text.pop();
        }
        text.make_ascii_lowercase();
        text
    }

    #[test]
    fn names_are_written_as_hickory_formats_them() {
        for text in [
            ".",
            "a.",
            "n1.Bench.test.",
            "_dmarc.example.com",
            "a\\.b.example.",
        ] {
            let name = Name::from_ascii(text).unwrap();
            assert_eq!(name_text(&name), formatted_name_text(&name), "{text}");
        }
        let utf8 = Name::from_utf8("bücher.example.").unwrap();
        assert_eq!(name_text(&utf8), "xn--bcher-kva.example");
        // Bytes that need escaping take hickory's formatter.
        let raw = Name::from_labels(vec![&b"a b"[..], &b"x"[..]]).unwrap();
        let dash = Name::from_labels(vec![&b"-b"[..], &b"x"[..]]).unwrap();
        assert_eq!(name_text(&dash), formatted_name_text(&dash));
        assert_eq!(name_text(&dash), "\\-b.x");
        assert_eq!(name_text(&raw), formatted_name_text(&raw));
        assert_eq!(name_text(&raw), "a\\040b.x");
    }

    proptest::proptest! {
        #[test]
        fn every_name_is_written_as_hickory_formats_it(
            labels in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..20), 0..5),
            plain in proptest::collection::vec("[A-Za-z0-9_-]{1,20}", 0..5),
            fqdn in proptest::prelude::any::<bool>(),
        ) {
            for labels in [labels.iter().map(Vec::as_slice).collect::<Vec<_>>(), plain.iter().map(String::as_bytes).collect()] {
                if let Ok(mut name) = Name::from_labels(labels) {
                    name.set_fqdn(fqdn);
                    proptest::prop_assert_eq!(name_text(&name), formatted_name_text(&name));
                }
            }
        }
    }

    /// An address record made from the address is the record made from its text, and one
    /// read back from a report carries the same address.
    #[test]
    fn address_records_carry_their_address_however_made() {
        use hickory_proto::rr::rdata::AAAA;
        let name = Name::from_ascii("N1.bench.test.").unwrap();
        for (data, text) in [
            (RData::A(A::new(198, 18, 1, 10)), "198.18.1.10"),
            (
                RData::AAAA(AAAA::from_str("2001:db8::1").unwrap()),
                "2001:db8::1",
            ),
        ] {
            let record = record_of(&Record::from_rdata(name.clone(), 300, data));
            let rtype = if text.contains(':') { "AAAA" } else { "A" };
            let from_text = DnsRecord::new("n1.bench.test".into(), rtype.into(), 300, text.into());
            assert_eq!(record, from_text);
            assert_eq!(record.ip(), Some(text.parse().unwrap()));
            let read: DnsRecord =
                serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
            assert_eq!(read, record);
            assert_eq!(read.ip(), record.ip());
        }
        let cname = Record::from_rdata(
            name.clone(),
            300,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(name)),
        );
        assert_eq!(record_of(&cname).ip(), None);
        assert_eq!(record_of(&cname).rtype, "CNAME");
    }

    #[test]
    fn response_codes_are_written_in_their_debug_form() {
        for code in 0..=24u16 {
            let code = <ResponseCode as From<u16>>::from(code);
            assert_eq!(rcode_text(code), format!("{code:?}"));
        }
        assert_eq!(rcode_text(ResponseCode::NXDomain), "NXDomain");
    }

    #[test]
    fn a_query_is_encoded_as_hickory_encodes_it() {
        for (text, qtype) in [
            (".", RecordType::NS),
            ("n1.bench.test.", RecordType::A),
            ("example.com", RecordType::AAAA),
            ("Mixed-Case.Example.ORG.", RecordType::HTTPS),
            ("xn--mgbh0fb.xn--kgbechtv.", RecordType::TXT),
        ] {
            let question = question_for(Name::from_ascii(text).unwrap(), qtype);
            for id in [0, 0x1234, u16::MAX] {
                assert_eq!(
                    encode_query(id, &question).unwrap(),
                    hickory_encoding(id, &question),
                    "{text} {qtype}"
                );
            }
        }
        // The reply parser reads it back as the question asked.
        let question = question_for(Name::from_ascii("n1.bench.test.").unwrap(), RecordType::A);
        let parsed = Message::from_vec(&encode_query(7, &question).unwrap()).unwrap();
        assert_eq!(parsed.metadata.id, 7);
        assert!(parsed.metadata.recursion_desired);
        assert_eq!(parsed.queries[0].name(), &*question.qname);
        assert_eq!(
            parsed
                .edns
                .as_ref()
                .map(hickory_proto::op::Edns::max_payload),
            Some(1232)
        );
    }

    proptest::proptest! {
        /// Any name hickory accepts, any query type: the same bytes as hickory's encoder.
        #[test]
        fn every_query_is_encoded_as_hickory_encodes_it(
            labels in proptest::collection::vec("[A-Za-z0-9_-]{1,63}", 1..5),
            fqdn in proptest::prelude::any::<bool>(),
            qtype in proptest::sample::select(vec![
                RecordType::A, RecordType::AAAA, RecordType::CNAME, RecordType::NS,
                RecordType::TXT, RecordType::HTTPS, RecordType::SVCB, RecordType::MX,
            ]),
            id in proptest::prelude::any::<u16>(),
        ) {
            let mut text = labels.join(".");
            if fqdn {
                text.push('.');
            }
            // Names past 255 bytes are refused by hickory itself: nothing to encode.
            if let Ok(name) = Name::from_ascii(&text) {
                let question = question_for(name, qtype);
                proptest::prop_assert_eq!(
                    encode_query(id, &question).unwrap(),
                    hickory_encoding(id, &question)
                );
            }
        }
    }

    /// The observation of one question to `server`, from a one-socket engine that
    /// listens `wait` after the first reply.
    async fn ask_one_socket(server: SocketAddr, wait: Duration) -> DnsQueryObservation {
        let config = DnsProbeConfig {
            wait_after_first: wait,
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, server.ip()).await.unwrap();
        engine.query(question(server)).await
    }

    /// A loopback server that answers each query with the given (delay, address) replies.
    async fn fake_server(replies: Vec<(u64, Ipv4Addr)>) -> SocketAddr {
        fake_server_losing(0, replies).await
    }

    /// [`fake_server`] that ignores the first `lost` queries it receives (lost packets).
    async fn fake_server_losing(lost: usize, replies: Vec<(u64, Ipv4Addr)>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let socket = Arc::new(socket);
            let mut buf = vec![0; 2048];
            let mut received = 0;
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                received += 1;
                if received <= lost {
                    continue;
                }
                let query = Message::from_vec(&buf[..len]).unwrap();
                for (delay, ip) in &replies {
                    let bytes = a_reply(&query, *ip);
                    let socket = Arc::clone(&socket);
                    let delay = *delay;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        socket.send_to(&bytes, peer).await.unwrap();
                    });
                }
            }
        });
        addr
    }

    /// A loopback server that answers each query as `respond` says: with a reply of one
    /// A record for each (delay in ms, address) it gives (none: the query is lost).
    async fn scripted_server(
        mut respond: impl FnMut(&Message) -> Vec<(u64, Ipv4Addr)> + Send + 'static,
    ) -> SocketAddr {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0; 2048];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = Message::from_vec(&buf[..len]).unwrap();
                for (delay, ip) in respond(&query) {
                    let bytes = a_reply(&query, ip);
                    let socket = Arc::clone(&socket);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        socket.send_to(&bytes, peer).await.unwrap();
                    });
                }
            }
        });
        addr
    }

    /// A one-socket engine for `server` with one retry, the given timeout and window.
    async fn one_socket_engine(server: SocketAddr, timeout: Duration, wait_ms: u64) -> DnsEngine {
        let config = DnsProbeConfig {
            timeout,
            retries: 1,
            wait_after_first: Duration::from_millis(wait_ms),
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        DnsEngine::start(config, server.ip()).await.unwrap()
    }

    /// The reply to `query` with one A record, `ip`.
    fn a_reply(query: &Message, ip: Ipv4Addr) -> Vec<u8> {
        let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        reply.add_query(query.queries[0].clone());
        reply.add_answer(Record::from_rdata(
            query.queries[0].name().clone(),
            60,
            RData::A(A(ip)),
        ));
        reply.to_vec().unwrap()
    }

    fn question(server: SocketAddr) -> DnsQuestion {
        DnsQuestion {
            qname: Arc::new(Name::from_str("blocked.example.").unwrap()),
            qtype: RecordType::A,
            server,
            role: DnsServerRole::Resolver,
        }
    }

    #[tokio::test]
    async fn records_every_reply_in_order_with_ttl() {
        let server = fake_server(vec![
            (0, Ipv4Addr::new(10, 10, 34, 34)),
            (80, Ipv4Addr::new(198, 18, 1, 10)),
        ])
        .await;
        let obs = ask_one_socket(server, Duration::from_millis(400)).await;
        assert_eq!(obs.attempts, 1);
        assert_eq!(obs.replies.len(), 2, "{obs:#?}");
        assert_eq!(obs.replies[0].answers[0].data, "10.10.34.34");
        assert_eq!(obs.replies[1].answers[0].data, "198.18.1.10");
        assert!(obs.replies[0].elapsed_ms < obs.replies[1].elapsed_ms);
        assert!(
            obs.replies
                .iter()
                .all(|r| r.question_matches && r.from == server)
        );
        assert!(obs.replies.iter().all(|r| r.ip_ttl == Some(64)), "{obs:#?}");
        assert_eq!(obs.replies[0].id, obs.ids[0]);
    }

    #[tokio::test]
    async fn each_reply_keeps_its_source_and_each_question_its_server() {
        // A server that answers from its own address and then, with the same id, from
        // another socket: the second reply is recorded with the address it came from.
        let answering = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (spoofed_server, other_addr) =
            (answering.local_addr().unwrap(), other.local_addr().unwrap());
        tokio::spawn(async move {
            let mut buf = vec![0; 2048];
            let (len, peer) = answering.recv_from(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf[..len]).unwrap();
            for (socket, ip) in [(&answering, [198, 18, 2, 1]), (&other, [198, 18, 2, 2])] {
                let bytes = a_reply(&query, Ipv4Addr::from(ip));
                socket.send_to(&bytes, peer).await.unwrap();
            }
        });
        // More servers than the socket's table searches in order, so that some of them
        // are found by hash; all asked through one socket.
        let mut servers = Vec::new();
        for i in 0..12u8 {
            servers.push(fake_server(vec![(0, Ipv4Addr::new(198, 18, 1, i))]).await);
        }
        let config = DnsProbeConfig {
            wait_after_first: Duration::from_millis(200),
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, spoofed_server.ip()).await.unwrap();
        let asked = std::iter::once(spoofed_server)
            .chain(servers.iter().copied())
            .map(|server| engine.query(question(server)));
        let observations = futures::future::join_all(asked).await;

        let spoofed = &observations[0];
        assert_eq!(spoofed.server, spoofed_server);
        let sources: Vec<SocketAddr> = spoofed.replies.iter().map(|r| r.from).collect();
        assert_eq!(sources, [spoofed_server, other_addr], "{spoofed:#?}");
        assert_eq!(spoofed.replies[1].answers[0].data, "198.18.2.2");
        for (i, (observation, server)) in observations[1..].iter().zip(&servers).enumerate() {
            assert_eq!(observation.server, *server);
            assert_eq!(observation.replies.len(), 1, "{observation:#?}");
            assert_eq!(observation.replies[0].from, *server);
            assert_eq!(
                observation.replies[0].answers[0].data,
                format!("198.18.1.{i}")
            );
        }
    }

    #[tokio::test]
    async fn replies_beyond_the_cap_are_counted_and_digested_not_kept() {
        let server = fake_server(vec![(0, Ipv4Addr::new(198, 18, 1, 10)); 40]).await;
        let obs = ask_one_socket(server, Duration::from_millis(300)).await;
        assert_eq!(obs.replies.len(), MAX_REPLIES_KEPT);
        let omitted = obs.omitted_replies.as_ref().expect("the rest are counted");
        assert_eq!(omitted.count, 40 - MAX_REPLIES_KEPT);
        assert_eq!(
            omitted.identical_to_first, omitted.count,
            "same bytes every time"
        );
        assert_eq!(omitted.bytes, omitted.count * obs.replies[0].size);
        assert_eq!(omitted.sha256.len(), 64);
        assert_eq!(obs.reply_count(), 40);
    }

    /// A reply too large to be held as a datagram while the late-reply window runs is
    /// parsed on arrival; what is reported is the same as for a small one: the records
    /// kept and counted, and the omitted copies found identical to the first.
    #[tokio::test]
    async fn large_replies_are_parsed_on_arrival_and_reported_as_small_ones_are() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0; 2048];
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let query = Message::from_vec(&buf[..len]).unwrap();
            let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            reply.add_query(query.queries[0].clone());
            for i in 0..100u32 {
                reply.add_answer(Record::from_rdata(
                    query.queries[0].name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::from(0xC612_0100 | i))),
                ));
            }
            let bytes = reply.to_vec().unwrap();
            for _ in 0..20 {
                socket.send_to(&bytes, peer).await.unwrap();
            }
            // Held until the engine is done, so that the socket is not closed early.
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let obs = ask_one_socket(server, Duration::from_millis(300)).await;
        assert_eq!(obs.replies.len(), MAX_REPLIES_KEPT, "{obs:#?}");
        let first = &obs.replies[0];
        assert!(first.size > 512, "a large reply: {} bytes", first.size);
        assert!(first.question_matches && first.flags.qr && first.from == server);
        assert_eq!(first.answers.len(), MAX_RECORDS_KEPT);
        assert_eq!(first.records_omitted, 100 - MAX_RECORDS_KEPT);
        assert_eq!(first.answers[0].data, "198.18.1.0");
        assert!(
            obs.replies
                .iter()
                .all(|r| r.answers == first.answers && r.size == first.size)
        );
        let omitted = obs.omitted_replies.as_ref().expect("the rest are counted");
        assert_eq!(omitted.count, 20 - MAX_REPLIES_KEPT);
        assert_eq!(omitted.identical_to_first, omitted.count);
        assert_eq!(omitted.bytes, omitted.count * first.size);
    }

    #[test]
    fn records_and_record_data_are_capped() {
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let q = question(server);
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(Name::clone(&q.qname), q.qtype));
        for i in 0..100u32 {
            message.add_answer(Record::from_rdata(
                Name::clone(&q.qname),
                60,
                RData::A(A(Ipv4Addr::from(0xC612_0000 | i))),
            ));
        }
        // A TXT record of 1,000 characters (four strings of 250).
        message.add_answer(Record::from_rdata(
            Name::clone(&q.qname),
            60,
            RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["x".repeat(250); 4])),
        ));
        let reply = parse_reply(&message.to_vec().unwrap(), &q, server, None, 1.0, 1);
        assert_eq!(reply.answers.len(), MAX_RECORDS_KEPT);
        assert_eq!(reply.records_omitted, 101 - MAX_RECORDS_KEPT);
        let txt = record_of(message.answers.last().unwrap());
        assert!(
            txt.data.chars().count() < MAX_RECORD_DATA + 20,
            "{}",
            txt.data
        );
    }

    #[tokio::test]
    async fn silent_server_is_retried_then_given_up() {
        // Bound but never read: queries vanish.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = silent.local_addr().unwrap();
        let config = DnsProbeConfig {
            timeout: Duration::from_millis(150),
            retries: 2,
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, server.ip()).await.unwrap();
        let obs = engine.query(question(server)).await;
        assert_eq!(obs.attempts, 3);
        assert_eq!(obs.ids.len(), 3);
        assert!(obs.replies.is_empty());
        drop(silent);
    }

    #[tokio::test]
    async fn a_lost_query_to_a_server_known_fast_is_sent_again_early_and_the_last_attempt_waits_the_timeout()
     {
        // A server that answers at once, except the first query for each `lost*` name
        // (a lost packet) and every query for `silent.example.`.
        let mut lost = std::collections::HashSet::new();
        let server = scripted_server(move |query| {
            let name = query.queries[0].name().to_ascii();
            let dropped =
                name == "silent.example." || (name.starts_with("lost") && lost.insert(name));
            if dropped {
                Vec::new()
            } else {
                vec![(0, Ipv4Addr::new(198, 18, 1, 10))]
            }
        })
        .await;
        let engine = one_socket_engine(server, Duration::from_secs(2), 50).await;
        let named = |name: &str| DnsQuestion {
            qname: Arc::new(Name::from_str(name).unwrap()),
            ..question(server)
        };
        // Before the server's round trips are known, a lost query waits the timeout.
        let obs = engine.query(named("lost1.example.")).await;
        assert_eq!(obs.attempts, 2, "{obs:#?}");
        assert!(obs.replies[0].elapsed_ms >= 2_000.0, "{obs:#?}");
        // Prompt replies, enough to trust their percentile. Each name is done at the
        // window after its reply, not at the timeout.
        let started = Instant::now();
        let warm = (0..100).map(|i| engine.query(named(&format!("n{i}.example."))));
        for obs in futures::future::join_all(warm).await {
            assert_eq!(obs.attempts, 1, "{obs:#?}");
            assert!(obs.listened_ms < 1_000.0, "{obs:#?}");
        }
        // (At the timeout they would take 2 s.)
        assert!(started.elapsed() < Duration::from_millis(1_800));
        // Now a lost query is sent again early: after the least wait, a quarter second,
        // on an idle machine (a loaded one may see slower round trips), never the 2 s.
        let obs = engine.query(named("lost2.example.")).await;
        assert_eq!(obs.attempts, 2, "{obs:#?}");
        assert_eq!(obs.replies.len(), 1, "{obs:#?}");
        assert_eq!(obs.replies[0].attempt, 2, "{obs:#?}");
        let retried_at = obs.replies[0].elapsed_ms;
        assert!((250.0..1_900.0).contains(&retried_at), "{obs:#?}");
        // A silent server: the first attempt is sent again early, and the last one
        // listens until both would have waited the whole timeout: silence is given up
        // no sooner than before.
        let started = Instant::now();
        let obs = engine.query(named("silent.example.")).await;
        assert_eq!(obs.attempts, 2, "{obs:#?}");
        assert!(obs.replies.is_empty(), "{obs:#?}");
        assert!(obs.listened_ms >= 2_000.0, "{obs:#?}");
        let given_up = started.elapsed();
        assert!(
            given_up >= Duration::from_secs(4) && given_up < Duration::from_secs(5),
            "{given_up:?}"
        );
    }

    #[tokio::test]
    async fn a_duplicate_reply_is_no_round_trip() {
        // Every query draws a prompt reply and a second one 900 ms later (an injector's
        // and the genuine one, say), except the first query for `lost.example.`. Were the
        // late duplicates round trips, half the samples would be 900 ms and the lost query
        // would wait the whole timeout before it is sent again.
        let mut lost = false;
        let server = scripted_server(move |query| {
            let name = query.queries[0].name().to_ascii();
            if name == "lost.example." && !std::mem::replace(&mut lost, true) {
                return Vec::new();
            }
            vec![
                (0, Ipv4Addr::new(198, 18, 1, 10)),
                (900, Ipv4Addr::new(198, 18, 1, 11)),
            ]
        })
        .await;
        let engine = one_socket_engine(server, Duration::from_secs(2), 1_500).await;
        let named = |name: &str| DnsQuestion {
            qname: Arc::new(Name::from_str(name).unwrap()),
            ..question(server)
        };
        let warm = (0..100).map(|i| engine.query(named(&format!("n{i}.example."))));
        for obs in futures::future::join_all(warm).await {
            assert_eq!(obs.replies.len(), 2, "{obs:#?}");
        }
        let obs = engine.query(named("lost.example.")).await;
        assert_eq!(obs.attempts, 2, "{obs:#?}");
        // Sent again early, not after the 2 s the duplicates would have made it wait.
        let retried_at = obs.replies[0].elapsed_ms;
        assert!((250.0..1_900.0).contains(&retried_at), "{obs:#?}");
    }

    #[tokio::test]
    async fn a_late_reply_to_the_first_attempt_is_tagged_with_the_attempt_it_answers() {
        // A slow resolver: every query is answered after 400 ms, each with another
        // address (a load-balanced answer). The first attempt times out at 300 ms, the
        // retry leaves, then both replies come (at 400 ms, 200 ms before the retry's
        // timeout, and at 700 ms, inside the window): each must carry its own attempt, so
        // that the judge does not take the changed answer for an injection.
        let mut last_octet = 9;
        let server = scripted_server(move |_| {
            last_octet += 1;
            vec![(400, Ipv4Addr::new(198, 18, 1, last_octet))]
        })
        .await;
        let engine = one_socket_engine(server, Duration::from_millis(300), 800).await;
        let obs = engine.query(question(server)).await;
        assert_eq!(obs.attempts, 2, "{obs:#?}");
        assert_eq!(obs.replies.len(), 2, "{obs:#?}");
        // The first reply arrived while the retry was outstanding, yet it answers the
        // first attempt (it carries the first attempt's id).
        assert_eq!(obs.replies[0].answers[0].data, "198.18.1.10", "{obs:#?}");
        assert_eq!(obs.replies[0].attempt, 1, "{obs:#?}");
        assert_eq!(obs.replies[1].answers[0].data, "198.18.1.11", "{obs:#?}");
        assert_eq!(obs.replies[1].attempt, 2, "{obs:#?}");
    }

    #[tokio::test]
    async fn many_concurrent_queries_each_get_their_own_replies() {
        let server = fake_server(vec![(0, Ipv4Addr::new(198, 18, 0, 1))]).await;
        let config = DnsProbeConfig {
            wait_after_first: Duration::from_millis(50),
            sockets: 2,
            max_in_flight_per_socket: 64,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, server.ip()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..500 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let mut q = question(server);
                q.qname = Arc::new(Name::from_str(&format!("n{i}.example.")).unwrap());
                engine.query(q).await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let obs = task.await.unwrap();
            assert_eq!(obs.qname, format!("n{i}.example"));
            assert_eq!(obs.replies.len(), 1, "{obs:#?}");
            assert!(obs.replies[0].question_matches);
        }
    }

    fn question_to(server: SocketAddr, role: DnsServerRole, qtype: RecordType) -> DnsQuestion {
        DnsQuestion {
            qtype,
            role,
            ..question(server)
        }
    }

    /// A group's one delivery, its observations made.
    struct Delivered {
        token: u64,
        observations: Vec<DnsQueryObservation>,
    }

    /// Submits one group and returns its one delivery; checks nothing else comes.
    async fn run_group(engine: &DnsEngine, questions: Vec<DnsQuestion>) -> Delivered {
        let (done, mut finished) = mpsc::unbounded_channel();
        engine.submit_group(questions, 42, done).await;
        let group = finished.recv().await.expect("one GroupDone");
        assert!(finished.recv().await.is_none(), "exactly one GroupDone");
        Delivered {
            token: group.token,
            observations: group.into_observations(),
        }
    }

    #[tokio::test]
    async fn the_late_window_keeps_forged_and_genuine_replies_1_ms_and_900_ms_apart() {
        for gap_ms in [1, 900] {
            let forged = Ipv4Addr::new(10, 10, 34, 34);
            let genuine = Ipv4Addr::new(198, 18, 1, 10);
            let server = fake_server(vec![(0, forged), (gap_ms, genuine)]).await;
            let config = DnsProbeConfig {
                wait_after_first: Duration::from_secs(1),
                sockets: 1,
                ..DnsProbeConfig::default()
            };
            let engine = DnsEngine::start(config, server.ip()).await.unwrap();
            let group = run_group(&engine, vec![question(server)]).await;
            let obs = &group.observations[0];
            let seen: Vec<&str> = obs
                .replies
                .iter()
                .map(|r| r.answers[0].data.as_str())
                .collect();
            assert_eq!(
                seen,
                ["10.10.34.34", "198.18.1.10"],
                "{gap_ms} ms apart: {obs:#?}"
            );
            assert!(obs.listened_ms >= 1000.0, "{obs:#?}");
        }
    }

    #[tokio::test]
    async fn the_sink_window_closes_at_wait_after_the_resolvers_first_reply_not_at_timeout() {
        let resolver = fake_server(vec![(0, Ipv4Addr::new(198, 18, 1, 10))]).await;
        // The sink "answers" (an injector) 100 ms after the query, and only once.
        let sink = fake_server(vec![(100, Ipv4Addr::new(10, 10, 34, 34))]).await;
        let config = DnsProbeConfig {
            timeout: Duration::from_secs(5),
            wait_after_first: Duration::from_millis(400),
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, resolver.ip()).await.unwrap();
        let group = run_group(
            &engine,
            vec![
                question_to(resolver, DnsServerRole::Resolver, RecordType::A),
                question_to(sink, DnsServerRole::Sink, RecordType::A),
            ],
        )
        .await;
        let sink_obs = &group.observations[1];
        assert_eq!(sink_obs.role, DnsServerRole::Sink);
        assert_eq!(sink_obs.attempts, 1, "the sink is never retried");
        assert_eq!(
            sink_obs.replies.len(),
            1,
            "its reply is recorded: {sink_obs:#?}"
        );
        // Closed 400 ms after the resolver's reply (which came at once), far from 5 s.
        assert!(
            sink_obs.listened_ms >= 390.0 && sink_obs.listened_ms < 2_500.0,
            "{sink_obs:#?}"
        );
    }

    #[tokio::test]
    async fn a_sink_listens_until_timeout_when_the_resolver_never_answers() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let resolver = silent.local_addr().unwrap();
        let silent_sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = silent_sink.local_addr().unwrap();
        let config = DnsProbeConfig {
            timeout: Duration::from_millis(300),
            retries: 0,
            wait_after_first: Duration::from_millis(50),
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, resolver.ip()).await.unwrap();
        let group = run_group(
            &engine,
            vec![
                question_to(resolver, DnsServerRole::Resolver, RecordType::A),
                question_to(sink, DnsServerRole::Sink, RecordType::A),
            ],
        )
        .await;
        let sink_obs = &group.observations[1];
        assert!(sink_obs.listened_ms >= 299.0, "{sink_obs:#?}");
    }

    #[tokio::test]
    async fn the_control_is_done_at_its_first_reply_and_retried_when_its_first_packet_is_lost() {
        // The first query is lost; the retry is answered.
        let control = fake_server_losing(1, vec![(0, Ipv4Addr::new(198, 18, 1, 10))]).await;
        let config = DnsProbeConfig {
            timeout: Duration::from_millis(200),
            // No resolver retries: the control still gets its own (at least two).
            retries: 0,
            wait_after_first: Duration::from_secs(2),
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, control.ip()).await.unwrap();
        let group = run_group(
            &engine,
            vec![question_to(control, DnsServerRole::Control, RecordType::A)],
        )
        .await;
        let obs = &group.observations[0];
        assert_eq!(obs.role, DnsServerRole::Control);
        assert_eq!(obs.attempts, 2, "{obs:#?}");
        assert_eq!(obs.valid_replies().count(), 1, "{obs:#?}");
        // Done at the reply: no late window of 2 s after it.
        assert!(obs.listened_ms < 1_000.0, "{obs:#?}");
        // A control that never answers is asked three times.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = silent.local_addr().unwrap();
        let obs = engine
            .query(question_to(server, DnsServerRole::Control, RecordType::A))
            .await;
        assert_eq!(obs.attempts, 3, "{obs:#?}");
    }

    #[tokio::test]
    async fn submit_group_delivers_one_group_done_in_question_order() {
        let resolver = fake_server(vec![(30, Ipv4Addr::new(198, 18, 1, 10))]).await;
        let control = fake_server(vec![(0, Ipv4Addr::new(198, 18, 1, 11))]).await;
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = silent.local_addr().unwrap();
        let config = DnsProbeConfig {
            wait_after_first: Duration::from_millis(100),
            sockets: 2,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, resolver.ip()).await.unwrap();
        let questions = vec![
            question_to(resolver, DnsServerRole::Resolver, RecordType::A),
            question_to(sink, DnsServerRole::Sink, RecordType::A),
            question_to(resolver, DnsServerRole::Resolver, RecordType::AAAA),
            question_to(sink, DnsServerRole::Sink, RecordType::AAAA),
            question_to(control, DnsServerRole::Control, RecordType::A),
        ];
        let group = run_group(&engine, questions.clone()).await;
        assert_eq!(group.token, 42);
        assert_eq!(group.observations.len(), questions.len());
        for (question, obs) in questions.iter().zip(&group.observations) {
            assert_eq!(obs.role, question.role);
            assert_eq!(obs.server, question.server);
            assert_eq!(obs.qtype, question.qtype.to_string());
        }
        // One socket for the whole group.
        let port = group.observations[0].source_port;
        assert!(group.observations.iter().all(|o| o.source_port == port));
        assert_eq!(group.observations[4].valid_replies().count(), 1);
        // An empty group is delivered at once.
        let empty = run_group(&engine, Vec::new()).await;
        assert!(empty.observations.is_empty());
    }

    #[tokio::test]
    async fn the_rate_report_counts_queries_retries_loss_and_names_in_flight() {
        let server = fake_server(vec![(0, Ipv4Addr::new(198, 18, 1, 10))]).await;
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let lost = silent.local_addr().unwrap();
        let config = DnsProbeConfig {
            timeout: Duration::from_millis(200),
            retries: 2,
            // Answered names stay in flight long enough for all eleven to overlap.
            wait_after_first: Duration::from_millis(500),
            sockets: 2,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, server.ip()).await.unwrap();
        let (done, mut finished) = mpsc::unbounded_channel();
        for i in 0..10 {
            let mut q = question(server);
            q.qname = Arc::new(Name::from_str(&format!("n{i}.example.")).unwrap());
            engine.submit_group(vec![q], i, done.clone()).await;
        }
        engine.submit_group(vec![question(lost)], 10, done).await;
        let mut tokens = Vec::new();
        while let Some(group) = finished.recv().await {
            tokens.push(group.token);
        }
        tokens.sort_unstable();
        assert_eq!(tokens, (0..=10).collect::<Vec<u64>>());
        let report = engine.rate_report();
        assert_eq!(report.queries_sent, 13, "{report:#?}");
        assert_eq!(report.retries, 2, "{report:#?}");
        assert_eq!(report.attempts_answered, 10, "{report:#?}");
        assert_eq!(report.attempts_lost, 3, "{report:#?}");
        assert!((report.loss_rate - 3.0 / 13.0).abs() < 1e-9, "{report:#?}");
        assert_eq!(report.max_names_in_flight, 11, "{report:#?}");
        assert!(report.achieved_qps > 0.0, "{report:#?}");
        drop(silent);
    }

    #[tokio::test]
    async fn a_socket_short_of_ids_makes_the_pool_grow() {
        let server = fake_server(vec![(0, Ipv4Addr::new(198, 18, 1, 10))]).await;
        let config = DnsProbeConfig {
            // Ids stay in quarantine for timeout + wait: long enough to fill one socket.
            timeout: Duration::from_secs(5),
            retries: 0,
            wait_after_first: Duration::ZERO,
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, server.ip()).await.unwrap();
        let (done, mut finished) = mpsc::unbounded_channel::<GroupDone>();
        let names = worker::ID_BUDGET as u64 + 5_000;
        let collect = tokio::spawn(async move {
            let mut ports = std::collections::HashSet::new();
            let mut count = 0;
            while let Some(group) = finished.recv().await {
                let observations = group.into_observations();
                assert!(observations[0].send_error.is_none());
                ports.insert(observations[0].source_port);
                count += 1;
            }
            (count, ports.len())
        });
        for i in 0..names {
            let mut q = question(server);
            q.qname = Arc::new(Name::from_str(&format!("n{i}.example.")).unwrap());
            engine.submit_group(vec![q], i, done.clone()).await;
        }
        drop(done);
        let (count, sockets) = collect.await.unwrap();
        assert_eq!(count, names);
        assert!(sockets >= 2, "the pool grew beyond one socket");
    }

    #[test]
    fn the_pool_starts_with_the_sockets_its_names_in_flight_need() {
        let config = DnsProbeConfig::default();
        // Resolver, sink and control for as many names as a socket has ids: each id is
        // taken for the 1 s window and 3 s after it.
        let names = worker::ID_BUDGET;
        assert_eq!(config.sockets_for(names, 3, 8), 3 * 4);
        // A small scan keeps the default; a huge one stops at the pool's limit.
        assert_eq!(config.sockets_for(500, 2, 8), 8);
        assert_eq!(config.sockets_for(10_000_000, 3, 8), MAX_SOCKETS);
        // Without a window the names in flight do not say what the ids need.
        let no_window = DnsProbeConfig {
            wait_after_first: Duration::ZERO,
            ..DnsProbeConfig::default()
        };
        assert_eq!(no_window.sockets_for(names, 3, 8), 8);
        // Room per socket counts too: with room for few queries, more sockets.
        let little_room = DnsProbeConfig {
            max_in_flight_per_socket: 100,
            ..DnsProbeConfig::default()
        };
        assert_eq!(little_room.sockets_for(1_000, 3, 1), 30);
    }
}
