//! The DNS probe: queries over UDP from sockets the probe owns.
//!
//! A stub resolver keeps only the first reply; an on-path injector makes sure that the
//! first reply is its forgery. So the probe keeps listening after the first reply (for
//! `wait_after_first`) and records every reply with its arrival time, IP TTL, id, flags and
//! answers. Sockets are never `connect()`ed: a connected socket would silently drop replies
//! whose source differs from the resolver's.
//!
//! Engine design (for tens of thousands of names a second on two cores): a small fixed
//! pool of sockets, each owned by one task that keeps its outstanding queries in a map
//! keyed by query id and its deadlines in a heap. No per-query thread or socket (the
//! rate control, when paced, takes one short lock per attempt);
//! submission goes through bounded channels, so a full engine applies back-pressure.
//!
//! Hostile networks: replies kept per query and records kept per reply are capped (the
//! rest are counted and digested); a socket task reads a bounded batch of packets per
//! wakeup, checks its deadlines against the clock and yields, so a flood cannot starve
//! timers. Queries leave at the pace of a [`rate::RateGate`] that backs off when the
//! resolver drops queries. A truncated reply (TC=1) is retried over TCP.

pub mod rate;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use sha2::{Digest, Sha256};
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::ProbeError;

type Result<T, E = ProbeError> = std::result::Result<T, E>;
use crate::observation::{
    DnsFlags, DnsQueryObservation, DnsRecord, DnsReply, DnsServerRole, DnsTcpExchange,
    OmittedReplies,
};
use rate::{DnsRateReport, RateGate};

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
    /// How long to wait for a first reply to one attempt.
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

/// One question to put to one server.
#[derive(Debug, Clone)]
pub struct DnsQuestion {
    pub qname: Name,
    pub qtype: RecordType,
    pub server: SocketAddr,
    pub role: DnsServerRole,
}

/// Everything observed for one group, in the order the questions were given.
#[derive(Debug)]
pub struct GroupDone {
    pub token: u64,
    pub observations: Vec<DnsQueryObservation>,
}

type Waiting = (
    DnsQuestion,
    DnsQueryObservation,
    Option<oneshot::Receiver<DnsQueryObservation>>,
);

struct Job {
    question: DnsQuestion,
    done: oneshot::Sender<DnsQueryObservation>,
}

/// A pool of probe sockets. Cheap to clone; every clone submits to the same pool.
#[derive(Clone)]
pub struct DnsEngine {
    workers: Arc<Vec<mpsc::Sender<Job>>>,
    next: Arc<AtomicUsize>,
    gate: Arc<RateGate>,
    timeout: Duration,
}

impl DnsEngine {
    /// Opens the socket pool for servers of the given address family and starts its tasks
    /// on the current tokio runtime.
    pub async fn start(config: DnsProbeConfig, family: IpAddr) -> Result<Self> {
        let config = Arc::new(config);
        let gate = Arc::new(RateGate::new(config.max_rate));
        let mut workers = Vec::with_capacity(config.sockets.max(1));
        for _ in 0..config.sockets.max(1) {
            let socket = open_socket(family).await?;
            let (tx, rx) = mpsc::channel(1024);
            let worker = SocketWorker::new(socket, Arc::clone(&config), Arc::clone(&gate));
            tokio::spawn(worker.run(rx));
            workers.push(tx);
        }
        Ok(DnsEngine {
            workers: Arc::new(workers),
            next: Arc::new(AtomicUsize::new(0)),
            gate,
            timeout: config.timeout,
        })
    }

    /// Sends one question and returns everything observed for it. Waits for the pacer,
    /// and (back-pressure) when the chosen socket already has its maximum of
    /// outstanding queries. A truncated reply is followed by a TCP retry.
    pub async fn query(&self, question: DnsQuestion) -> DnsQueryObservation {
        self.query_together(vec![question])
            .await
            .pop()
            .expect("one observation per question")
    }

    /// Sends the questions back to back from one socket (in the order given, with no
    /// pacing gap between them) and returns their observations in the same order.
    pub async fn query_together(&self, questions: Vec<DnsQuestion>) -> Vec<DnsQueryObservation> {
        let waiting = self.send_jobs(questions).await;
        self.collect(waiting).await
    }

    /// Submits the questions of one name as a group, all sent from one socket back to
    /// back. Returns once they are accepted (waits only for the rate gate and for room in
    /// the engine: back-pressure). When every question of the group is finished (TCP
    /// retry of a truncated resolver reply included), sends `GroupDone { token, .. }` on
    /// `done`, with the observations in the order of `questions`.
    pub async fn submit_group(
        &self,
        questions: Vec<DnsQuestion>,
        token: u64,
        done: mpsc::UnboundedSender<GroupDone>,
    ) {
        let waiting = self.send_jobs(questions).await;
        let engine = self.clone();
        tokio::spawn(async move {
            let observations = engine.collect(waiting).await;
            let _ = done.send(GroupDone {
                token,
                observations,
            });
        });
    }

    async fn send_jobs(&self, questions: Vec<DnsQuestion>) -> Vec<Waiting> {
        self.gate
            .admit(u32::try_from(questions.len()).unwrap_or(u32::MAX))
            .await;
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let mut waiting = Vec::with_capacity(questions.len());
        for question in questions {
            let (done, result) = oneshot::channel();
            let stopped = stopped_observation(&question);
            let sent = self.workers[index]
                .send(Job {
                    question: question.clone(),
                    done,
                })
                .await
                .is_ok();
            waiting.push((question, stopped, sent.then_some(result)));
        }
        waiting
    }

    async fn collect(&self, waiting: Vec<Waiting>) -> Vec<DnsQueryObservation> {
        let observations = waiting
            .into_iter()
            .map(|(question, stopped, result)| async move {
                let observation = match result {
                    Some(result) => result.await.unwrap_or(stopped),
                    None => stopped,
                };
                self.with_tcp_retry(&question, observation).await
            });
        futures::future::join_all(observations).await
    }

    /// What the rate control did so far.
    pub fn rate_report(&self) -> DnsRateReport {
        self.gate.report()
    }

    /// Resolvers retry over TCP when the reply they would use is truncated (TC=1, e.g.
    /// a response-rate-limit "slip"): so does the probe, and keeps both exchanges.
    async fn with_tcp_retry(
        &self,
        question: &DnsQuestion,
        mut observation: DnsQueryObservation,
    ) -> DnsQueryObservation {
        let truncated = observation.role == DnsServerRole::Resolver
            && observation
                .valid_replies()
                .next()
                .is_some_and(|r| r.flags.tc);
        if truncated {
            observation.tcp = Some(tcp_exchange(question, self.timeout).await);
        }
        observation
    }
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
    let sock_ref = socket2::SockRef::from(&socket);
    let _ = sock_ref.set_recv_buffer_size(8 << 20);
    let _ = sock_ref.set_send_buffer_size(4 << 20);
    Ok(socket)
}

/// Lowercase, no trailing dot: the form names take in reports.
pub fn name_text(name: &Name) -> String {
    let mut text = name.to_ascii();
    if text.len() > 1 && text.ends_with('.') {
        text.pop();
    }
    text.to_ascii_lowercase()
}

/// Ids a socket may have in flight or in quarantine before it stops taking new queries;
/// the rest stay free for retries.
const ID_BUDGET: usize = 60_000;

struct PendingQuery {
    question: DnsQuestion,
    done: Option<oneshot::Sender<DnsQueryObservation>>,
    ids: Vec<u16>,
    /// Per attempt (parallel to `ids`): its rate-control sample stamp, and whether its
    /// outcome was reported to the rate control yet.
    samples: Vec<Option<u64>>,
    settled: Vec<bool>,
    /// Length and SHA-256 of the first reply kept, to count identical ones among the
    /// omitted (only same-length ones are hashed).
    first_digest: Option<(usize, [u8; 32])>,
    omitted: Option<(OmittedReplies, Sha256)>,
    attempts: u32,
    first_sent: Instant,
    last_sent: Instant,
    first_reply: Option<Instant>,
    replies: Vec<DnsReply>,
    deadline: Instant,
    send_error: Option<String>,
}

/// One socket and the queries outstanding on it. Owned by a single task: no locks.
struct SocketWorker {
    socket: UdpSocket,
    config: Arc<DnsProbeConfig>,
    gate: Arc<RateGate>,
    source_port: u16,
    /// Outstanding queries by key.
    pending: HashMap<u64, PendingQuery>,
    /// Query id -> key of the outstanding query that used it.
    by_id: HashMap<u16, u64>,
    /// Ids recently retired, oldest first, with the time they may be reused: a late
    /// reply to a finished query must not be taken for a reply to a new one.
    quarantine: VecDeque<(Instant, u16)>,
    /// Per id: in flight or in quarantine (65,536 flags, so a lookup is one index).
    id_taken: Vec<bool>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_key: u64,
    buffer: Vec<u8>,
    cmsg: Vec<u8>,
}

impl SocketWorker {
    fn new(socket: UdpSocket, config: Arc<DnsProbeConfig>, gate: Arc<RateGate>) -> Self {
        let source_port = socket.local_addr().map_or(0, |a| a.port());
        SocketWorker {
            socket,
            config,
            gate,
            source_port,
            pending: HashMap::new(),
            by_id: HashMap::new(),
            quarantine: VecDeque::new(),
            id_taken: vec![false; 1 << 16],
            deadlines: BinaryHeap::new(),
            next_key: 0,
            buffer: vec![0; 65_535],
            cmsg: nix::cmsg_space!(libc::c_int),
        }
    }

    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut accepting = true;
        loop {
            if !accepting && self.pending.is_empty() {
                return;
            }
            // Deadlines are judged by the clock at every turn, before any packet: a flood
            // of replies must not make a timeout fire late.
            self.expire(Instant::now()).await;
            let next_deadline = self.deadlines.peek().map(|Reverse((at, _))| *at);
            // Keep ids in reserve for retries of queries already in flight.
            let can_take = accepting
                && self.pending.len() < self.config.max_in_flight_per_socket
                && self.ids_in_use() < ID_BUDGET;
            tokio::select! {
                biased;
                () = sleep_until_opt(next_deadline), if next_deadline.is_some() => {
                    self.expire(Instant::now()).await;
                }
                ready = self.socket.readable() => {
                    if ready.is_ok() && self.drain_socket() {
                        // A full batch: more may be queued. Let the runtime run other
                        // tasks (timers, the control) before reading on.
                        tokio::task::yield_now().await;
                    }
                }
                job = jobs.recv(), if can_take => {
                    match job {
                        Some(job) => self.start(job).await,
                        None => accepting = false,
                    }
                }
            }
        }
    }

    /// Ids of this socket in flight or in quarantine.
    fn ids_in_use(&self) -> usize {
        self.by_id.len() + self.quarantine.len()
    }

    /// A random id not in flight and not in quarantine; `None` when all 65,536 are.
    fn fresh_id(&mut self, now: Instant) -> Option<u16> {
        while let Some(&(until, id)) = self.quarantine.front() {
            if until > now {
                break;
            }
            self.quarantine.pop_front();
            self.id_taken[usize::from(id)] = false;
        }
        let start: u16 = rand::random();
        // Random probes first (ids stay unpredictable), then a scan as the last resort.
        for _ in 0..32 {
            let id: u16 = rand::random();
            if !self.id_taken[usize::from(id)] {
                return Some(id);
            }
        }
        (0..=u16::MAX)
            .map(|offset| start.wrapping_add(offset))
            .find(|id| !self.id_taken[usize::from(*id)])
    }

    async fn start(&mut self, job: Job) {
        let now = Instant::now();
        let key = self.next_key;
        self.next_key += 1;
        let mut query = PendingQuery {
            question: job.question,
            done: Some(job.done),
            ids: Vec::new(),
            samples: Vec::new(),
            settled: Vec::new(),
            first_digest: None,
            omitted: None,
            attempts: 0,
            first_sent: now,
            last_sent: now,
            first_reply: None,
            replies: Vec::new(),
            deadline: now + self.config.timeout,
            send_error: None,
        };
        self.send_attempt(key, &mut query, now).await;
        self.deadlines.push(Reverse((query.deadline, key)));
        self.pending.insert(key, query);
    }

    async fn send_attempt(&mut self, key: u64, query: &mut PendingQuery, now: Instant) {
        query.attempts += 1;
        query.last_sent = now;
        query.deadline = now + self.config.timeout;
        let Some(id) = self.fresh_id(now) else {
            query.send_error = Some("every query id of this socket is in use".to_owned());
            return;
        };
        self.id_taken[usize::from(id)] = true;
        query.ids.push(id);
        // The sink never answers: its queries say nothing about the resolver's loss.
        let sample = if query.question.role == DnsServerRole::Resolver {
            self.gate.on_send()
        } else {
            None
        };
        query.samples.push(sample);
        query.settled.push(false);
        self.by_id.insert(id, key);
        let sent = match encode_query(id, &query.question) {
            Ok(bytes) => match self.socket.send_to(&bytes, query.question.server).await {
                Ok(_) => true,
                Err(e) => {
                    query.send_error = Some(e.to_string());
                    false
                }
            },
            Err(e) => {
                query.send_error = Some(e);
                false
            }
        };
        if !sent {
            // Could not leave (e.g. the kernel's buffers are full): as good as lost.
            if let Some(settled) = query.settled.last_mut() {
                *settled = true;
                if query.question.role == DnsServerRole::Resolver {
                    self.gate.record(sample, false);
                }
            }
        }
    }

    /// Reports every attempt of `query` without an outcome yet as lost.
    fn settle_lost(&self, query: &mut PendingQuery) {
        for (settled, sample) in query.settled.iter_mut().zip(&query.samples) {
            if !*settled {
                *settled = true;
                if query.question.role == DnsServerRole::Resolver {
                    self.gate.record(*sample, false);
                }
            }
        }
    }

    /// Reads queued packets, at most [`PACKETS_PER_WAKEUP`]; true when the batch was
    /// full (more may be waiting).
    fn drain_socket(&mut self) -> bool {
        for _ in 0..PACKETS_PER_WAKEUP {
            let fd = self.socket.as_raw_fd();
            let buffer = &mut self.buffer;
            let cmsg = &mut self.cmsg;
            let received = self.socket.try_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buffer)];
                let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::empty())
                    .map_err(std::io::Error::from)?;
                let mut ttl = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        match c {
                            ControlMessageOwned::Ipv4Ttl(t)
                            | ControlMessageOwned::Ipv6HopLimit(t) => {
                                ttl = u8::try_from(t).ok();
                            }
                            _ => {}
                        }
                    }
                }
                let from = msg.address.as_ref().and_then(sockaddr_to_std);
                Ok((msg.bytes, from, ttl))
            });
            match received {
                Ok((len, Some(from), ttl)) => self.on_packet(len, from, ttl, Instant::now()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                // ICMP errors (port unreachable) surface here on unconnected sockets on
                // some kernels; they carry no reply, so keep reading. A packet without a
                // source address cannot be matched to a query either.
                Ok((_, None, _)) | Err(_) => {}
            }
        }
        true
    }

    fn on_packet(&mut self, len: usize, from: SocketAddr, ttl: Option<u8>, now: Instant) {
        let bytes = &self.buffer[..len];
        if len < 2 {
            return;
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let Some(&key) = self.by_id.get(&id) else {
            return; // not ours, or late for a finished query
        };
        let Some(query) = self.pending.get_mut(&key) else {
            return;
        };
        if let Some(index) = query.ids.iter().position(|i| *i == id)
            && !query.settled[index]
        {
            query.settled[index] = true;
            if query.question.role == DnsServerRole::Resolver {
                self.gate.record(query.samples[index], true);
            }
        }
        let attempt = query.attempts;
        let elapsed_ms = now.duration_since(query.first_sent).as_secs_f64() * 1000.0;
        if query.replies.len() < MAX_REPLIES_KEPT {
            if query.first_digest.is_none() {
                query.first_digest = Some((len, Sha256::digest(bytes).into()));
            }
            let reply = parse_reply(bytes, &query.question, from, ttl, elapsed_ms, attempt);
            query.replies.push(reply);
        } else {
            // Beyond the cap: no parsing, no storing; count, time and digest.
            let at_ms = elapsed_ms as u64;
            let (omitted, digest) = query.omitted.get_or_insert_with(|| {
                (
                    OmittedReplies {
                        first_ms: at_ms,
                        ..OmittedReplies::default()
                    },
                    Sha256::new(),
                )
            });
            omitted.count += 1;
            omitted.bytes += len;
            omitted.last_ms = at_ms;
            digest.update(bytes);
            if let Some((first_len, first_digest)) = query.first_digest
                && first_len == len
                && first_digest == <[u8; 32]>::from(Sha256::digest(bytes))
            {
                omitted.identical_to_first += 1;
            }
        }
        if query.first_reply.is_none() {
            query.first_reply = Some(now);
            query.deadline = now + self.config.wait_after_first;
            if query.question.role == DnsServerRole::Control {
                query.deadline = now;
            }
            self.deadlines.push(Reverse((query.deadline, key)));
        }
    }

    async fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(mut query) = self.pending.remove(&key) else {
                continue;
            };
            if query.deadline > now {
                // Superseded deadline: a newer one is in the heap.
                self.pending.insert(key, query);
                continue;
            }
            let retry_allowed = match query.question.role {
                DnsServerRole::Resolver => query.attempts <= self.config.retries,
                DnsServerRole::Control => query.attempts <= self.config.retries.max(2),
                DnsServerRole::Sink => false,
            } && query.first_reply.is_none();
            self.settle_lost(&mut query);
            if retry_allowed {
                // A retry leaves now; the pacer makes later queries wait for it.
                self.gate.charge(1);
                self.send_attempt(key, &mut query, now).await;
                self.deadlines.push(Reverse((query.deadline, key)));
                self.pending.insert(key, query);
                continue;
            }
            self.finish(query, now);
        }
    }

    fn finish(&mut self, mut query: PendingQuery, now: Instant) {
        // Keep the ids off-limits for a while: a reply to them now would be late, and
        // must not be mistaken for a reply to a new query.
        let until = now + self.config.timeout + self.config.wait_after_first;
        for id in &query.ids {
            self.by_id.remove(id);
            self.quarantine.push_back((until, *id));
        }
        let observation = DnsQueryObservation {
            role: query.question.role,
            server: query.question.server,
            qname: name_text(&query.question.qname),
            qtype: query.question.qtype.to_string(),
            source_port: self.source_port,
            attempts: query.attempts,
            ids: std::mem::take(&mut query.ids),
            replies: std::mem::take(&mut query.replies),
            listened_ms: now.duration_since(query.last_sent).as_secs_f64() * 1000.0,
            send_error: query.send_error.take(),
            omitted_replies: query.omitted.take().map(|(mut omitted, digest)| {
                omitted.sha256 = hex_of(&digest.finalize());
                omitted
            }),
            tcp: None,
            rechecks: Vec::new(),
        };
        if let Some(done) = query.done.take() {
            let _ = done.send(observation);
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
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

/// Builds the wire form of a query (RD set, EDNS0 with a 1232-byte payload).
pub fn encode_query(id: u16, question: &DnsQuestion) -> std::result::Result<Vec<u8>, String> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(question.qname.clone(), question.qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message.to_vec().map_err(|e| e.to_string())
}

fn parse_reply(
    bytes: &[u8],
    question: &DnsQuestion,
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
                && message.queries[0].query_type() == question.qtype
                && name_text(message.queries[0].name()) == name_text(&question.qname);
            DnsReply {
                from,
                elapsed_ms,
                attempt,
                ip_ttl,
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
                rcode: format!("{:?}", meta.response_code),
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

/// Converts a hickory record into the report's form.
pub fn record_of(record: &Record) -> DnsRecord {
    let data = match &record.data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
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
    DnsRecord {
        name: name_text(&record.name),
        rtype: record.record_type().to_string(),
        ttl: record.ttl,
        data,
    }
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
    use hickory_proto::rr::rdata::A;
    use std::str::FromStr;

    /// A loopback server that answers each query with the given (delay, address) replies.
    async fn fake_server(replies: Vec<(u64, Ipv4Addr)>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let socket = Arc::new(socket);
            let mut buf = vec![0; 2048];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = Message::from_vec(&buf[..len]).unwrap();
                for (delay, ip) in &replies {
                    let mut reply =
                        Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                    reply.add_query(query.queries[0].clone());
                    reply.add_answer(Record::from_rdata(
                        query.queries[0].name().clone(),
                        60,
                        RData::A(A(*ip)),
                    ));
                    let bytes = reply.to_vec().unwrap();
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

    fn question(server: SocketAddr) -> DnsQuestion {
        DnsQuestion {
            qname: Name::from_str("blocked.example.").unwrap(),
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
        let config = DnsProbeConfig {
            wait_after_first: Duration::from_millis(400),
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, server.ip()).await.unwrap();
        let obs = engine.query(question(server)).await;
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
    async fn replies_beyond_the_cap_are_counted_and_digested_not_kept() {
        let server = fake_server(vec![(0, Ipv4Addr::new(198, 18, 1, 10)); 40]).await;
        let config = DnsProbeConfig {
            wait_after_first: Duration::from_millis(300),
            sockets: 1,
            ..DnsProbeConfig::default()
        };
        let engine = DnsEngine::start(config, server.ip()).await.unwrap();
        let obs = engine.query(question(server)).await;
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

    #[test]
    fn records_and_record_data_are_capped() {
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let q = question(server);
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(q.qname.clone(), q.qtype));
        for i in 0..100u32 {
            message.add_answer(Record::from_rdata(
                q.qname.clone(),
                60,
                RData::A(A(Ipv4Addr::from(0xC612_0000 | i))),
            ));
        }
        // A TXT record of 1,000 characters (four strings of 250).
        message.add_answer(Record::from_rdata(
            q.qname.clone(),
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
                q.qname = Name::from_str(&format!("n{i}.example.")).unwrap();
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
}
