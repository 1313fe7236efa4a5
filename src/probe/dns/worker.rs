//! One probe socket and everything waiting on it, owned by one task (no locks).
//!
//! A waiting question is an entry in a slab, found from a reply through a table indexed
//! by query id (65,536 slots, one lookup); its deadline is an entry in a timer wheel.
//! A group (the questions of one name) is one more slab entry; a question that finished
//! stays in the slab, its replies held as datagrams, until the group's last question
//! finishes: then each becomes an observation, and the group is delivered in question
//! order.
//! Queries queued during one turn leave together in one `sendmmsg`; replies are read
//! with `recvmmsg`, a bounded number per wakeup so that a flood cannot starve timers.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg,
};
use sha2::{Digest, Sha256};
use slab::Slab;
use smallvec::SmallVec;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::rto::RoundTrips;
use super::wheel::{TimerEntry, TimerWheel};
use super::{
    DnsQuestion, EngineShared, GroupDone, MAX_REPLIES_KEPT, PACKETS_PER_WAKEUP, encode_name_query,
    hex_of, name_text, parse_name_reply, sockaddr_to_std, tcp_exchange,
};
use crate::observation::{DnsQueryObservation, DnsReply, DnsServerRole, OmittedReplies};

/// Ids a socket may have in flight or in quarantine before it stops taking new queries;
/// the rest stay free for retries. (Unit tests use a small budget, so that the test of
/// the pool growing when a socket runs short of ids need not send 60,000 queries.)
pub(super) const ID_BUDGET: usize = if cfg!(test) { 3_000 } else { 60_000 };
/// Datagrams read per `recvmmsg`.
const RECV_BATCH: usize = 16;
/// Room for one datagram: the largest UDP payload, as a flood of huge forged replies
/// must still be read whole. The buffer is allocated zeroed and only the pages the
/// kernel writes to become resident: a few KiB per slot for ordinary replies.
const RECV_SLOT: usize = 65_536;
/// Datagrams passed to one `sendmmsg`.
const SEND_BATCH: usize = 64;
/// Groups taken from the submission channel per wakeup.
const GROUPS_PER_WAKEUP: usize = 64;
/// Retries a question gets at most, whatever the configuration says (`--retries` is at
/// most 10): a query counts its attempts in 1 byte.
const MOST_RETRIES: u32 = u8::MAX as u32 - 1;
/// Attempts a control question gets at least (a lost control packet must not decide a
/// verdict).
const CONTROL_MIN_RETRIES: u32 = 2;

/// Id table states besides "owned by the query with this key".
const ID_FREE: u32 = u32::MAX;
const ID_QUARANTINED: u32 = u32::MAX - 1;

/// The questions of one name, as submitted.
pub(super) struct GroupJob {
    pub questions: Vec<DnsQuestion>,
    pub token: u64,
    pub done: mpsc::UnboundedSender<GroupDone>,
}

/// Which query owns each id of this socket, and ids recently retired: a late reply to a
/// finished query must not be taken for a reply to a new one.
struct IdTable {
    owner: Vec<u32>,
    live: usize,
    /// Ids in quarantine, oldest first (a constant delay keeps them in FIFO order). At
    /// full rate a socket holds well over 100,000: 2 bytes each, their times apart.
    quarantine: VecDeque<u16>,
    /// When the ids of `quarantine` may be reused, in its order: a time in milliseconds
    /// since `origin` (rounded up) and how many ids in a row it frees. Ids retired in
    /// the same millisecond share one entry.
    releases: VecDeque<(u32, u32)>,
    origin: Instant,
}

impl IdTable {
    fn new(origin: Instant) -> Self {
        IdTable {
            owner: vec![ID_FREE; 1 << 16],
            live: 0,
            quarantine: VecDeque::new(),
            releases: VecDeque::new(),
            origin,
        }
    }

    /// `at` in the quarantine's milliseconds, rounded up (an id is never freed early).
    fn ms_of(&self, at: Instant) -> u32 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        u32::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u32::MAX)
    }

    fn in_use(&self) -> usize {
        self.live + self.quarantine.len()
    }

    fn owner_of(&self, id: u16) -> Option<usize> {
        let owner = self.owner[usize::from(id)];
        (owner < ID_QUARANTINED).then_some(owner as usize)
    }

    /// Frees the ids whose quarantine is over.
    fn release(&mut self, now: Instant) {
        // Rounded down: only ids whose whole quarantine is over.
        let now = u32::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u32::MAX);
        while let Some(&(until, count)) = self.releases.front() {
            if until > now {
                break;
            }
            self.releases.pop_front();
            for id in self.quarantine.drain(..count as usize) {
                self.owner[usize::from(id)] = ID_FREE;
            }
        }
    }

    /// When the oldest id in quarantine is freed.
    fn next_release(&self) -> Option<Instant> {
        self.releases
            .front()
            .map(|(until, _)| self.origin + Duration::from_millis(u64::from(*until)))
    }

    /// Takes a random free id for `key`; `None` when all 65,536 are taken.
    fn take(&mut self, key: usize, now: Instant) -> Option<u16> {
        self.release(now);
        // Random probes first (ids stay unpredictable), then a scan as the last resort.
        let id = (0..32)
            .map(|_| rand::random::<u16>())
            .find(|id| self.owner[usize::from(*id)] == ID_FREE)
            .or_else(|| {
                let start: u16 = rand::random();
                (0..=u16::MAX)
                    .map(|offset| start.wrapping_add(offset))
                    .find(|id| self.owner[usize::from(*id)] == ID_FREE)
            })?;
        self.owner[usize::from(id)] = u32::try_from(key).expect("fewer than 2^32 queries");
        self.live += 1;
        Some(id)
    }

    fn retire(&mut self, id: u16, until: Instant) {
        self.owner[usize::from(id)] = ID_QUARANTINED;
        self.live -= 1;
        let until = self.ms_of(until);
        self.quarantine.push_back(id);
        match self.releases.back_mut() {
            // Never freed before its own time: an earlier time (not met with a constant
            // delay) joins the later one.
            Some((last, count)) if *last >= until => *count += 1,
            _ => self.releases.push_back((until, 1)),
        }
    }
}

/// One attempt that left, in 8 bytes: a waiting query keeps its first inline.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// Rate-control window id ([`NO_SAMPLE`]: none).
    sample: u32,
    id: u16,
    /// Which attempt of the query this is (1-based; 0 marks no attempt): a reply
    /// carrying this id answers it, whenever it comes.
    number: u8,
    /// [`SETTLED`] and [`REPLIED`].
    state: u8,
}

/// An attempt that is no rate-control sample.
const NO_SAMPLE: u32 = u32::MAX;
/// Its outcome was reported to the rate control.
const SETTLED: u8 = 1;
/// A reply to it came (its round trip is taken from the first).
const REPLIED: u8 = 2;

impl Attempt {
    /// The first attempt of a query not sent yet.
    const NONE: Attempt = Attempt {
        sample: NO_SAMPLE,
        id: 0,
        number: 0,
        state: 0,
    };

    fn new(sample: Option<u64>, id: u16, number: u8) -> Self {
        Attempt {
            // A window id past `u32` (billions of windows) is only not sampled.
            sample: sample
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s != NO_SAMPLE)
                .unwrap_or(NO_SAMPLE),
            id,
            number,
            state: 0,
        }
    }

    fn sample(self) -> Option<u64> {
        (self.sample != NO_SAMPLE).then_some(u64::from(self.sample))
    }

    fn settled(self) -> bool {
        self.state & SETTLED != 0
    }

    /// Marks it settled; whether it was not before.
    fn settle(&mut self) -> bool {
        let first = !self.settled();
        self.state |= SETTLED;
        first
    }

    /// Marks it replied to; whether this is its first reply.
    fn reply(&mut self) -> bool {
        let first = self.state & REPLIED == 0;
        self.state |= REPLIED;
        first
    }
}

/// A time as a waiting query keeps it: nanoseconds since the socket's origin (8 bytes;
/// an `Instant` takes 16, and a query keeps three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tick(u64);

impl Tick {
    fn at(origin: Instant, at: Instant) -> Tick {
        Tick(u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX))
    }

    fn after(self, wait: Duration) -> Tick {
        Tick(
            self.0
                .saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

/// One question waiting on this socket (or finished, held until its group is done).
/// Tens of thousands wait at once in real mode, each for the late-reply window: the
/// question is kept as its parts (the server as an index into the socket's table),
/// times as [`Tick`]s, the usual single attempt and reply inline, and what is rare
/// (further attempts and replies, replies beyond the cap, a send error) behind one
/// pointer.
struct Query {
    qname: Arc<Name>,
    first_sent: Tick,
    last_sent: Tick,
    /// When it times out; once finished, when it finished.
    deadline: Tick,
    /// The first reply, when it is an ordinary datagram from the question's server (as
    /// almost every first reply is); the other replies follow it in the rare parts.
    first_reply: Option<HeldDatagram>,
    rare: Option<Box<RareParts>>,
    /// Inline ([`Attempt::NONE`] until one leaves): almost every query is sent once,
    /// and a waiting query must not cost an allocation per attempt.
    first_attempt: Attempt,
    stamp: u32,
    group: u32,
    /// Index in the socket's [`ServerTable`].
    server: u32,
    qtype: RecordType,
    /// Place in its group.
    index: u16,
    /// Sends, including those that found no free id (at most [`MOST_RETRIES`] + 1).
    attempts: u8,
    role: DnsServerRole,
    /// A reply came (valid or not).
    answered: bool,
    /// Done listening; held (not yet an observation) until its group is done.
    finished: bool,
}

/// What few queries have: attempts after the first, replies after the first (or every
/// reply, when the first was not an ordinary one), replies beyond the cap, a send error.
#[derive(Default)]
struct RareParts {
    attempts: Vec<Attempt>,
    replies: Vec<HeldReply>,
    omitted: Option<Omitted>,
    send_error: Option<String>,
}

impl Query {
    fn rare(&mut self) -> &mut RareParts {
        self.rare.get_or_insert_with(Box::default)
    }

    fn set_send_error(&mut self, error: String) {
        self.rare().send_error = Some(error);
    }

    /// The attempts that left, in order.
    fn sent(&self) -> impl Iterator<Item = &Attempt> {
        let first = (self.first_attempt.number != 0).then_some(&self.first_attempt);
        let more = self.rare.as_deref().map_or(&[][..], |r| &r.attempts[..]);
        first.into_iter().chain(more)
    }

    fn sent_mut(&mut self) -> impl Iterator<Item = &mut Attempt> {
        let first = (self.first_attempt.number != 0).then_some(&mut self.first_attempt);
        let more = self
            .rare
            .as_deref_mut()
            .map_or(&mut [][..], |r| &mut r.attempts[..]);
        first.into_iter().chain(more)
    }

    fn push_attempt(&mut self, attempt: Attempt) {
        if self.first_attempt.number == 0 {
            self.first_attempt = attempt;
        } else {
            self.rare().attempts.push(attempt);
        }
    }

    fn last_attempt_mut(&mut self) -> Option<&mut Attempt> {
        self.sent_mut().last()
    }

    fn reply_count(&self) -> usize {
        usize::from(self.first_reply.is_some())
            + self.rare.as_deref().map_or(0, |r| r.replies.len())
    }

    /// Holds a reply after those already held.
    fn push_reply(&mut self, held: HeldReply) {
        match held {
            HeldReply::Datagram {
                held,
                other_source: None,
            } if self.reply_count() == 0 => self.first_reply = Some(held),
            held => self.rare().replies.push(held),
        }
    }

    /// Length and SHA-256 of the first reply held.
    fn first_length_and_digest(&self) -> Option<(usize, [u8; 32])> {
        match &self.first_reply {
            Some(held) => Some(held.length_and_digest()),
            None => self
                .rare
                .as_deref()
                .and_then(|r| r.replies.first())
                .map(HeldReply::length_and_digest),
        }
    }

    /// Whether a held reply has TC set.
    fn any_reply_truncated(&self) -> bool {
        self.first_reply
            .as_ref()
            .is_some_and(HeldDatagram::truncated)
            || self.rare.as_deref().is_some_and(|r| {
                r.replies.iter().any(|reply| match reply {
                    HeldReply::Datagram { held, .. } => held.truncated(),
                    HeldReply::Parsed(parsed) => parsed.0.flags.tc,
                })
            })
    }
}

/// The servers questions on this socket go to: a query keeps an index (4 bytes, a
/// `SocketAddr` takes 32). A scan asks a handful (resolver, sink, control).
#[derive(Default)]
struct ServerTable {
    servers: Vec<std::net::SocketAddr>,
    /// Beyond the first few, found by hash.
    index: std::collections::HashMap<std::net::SocketAddr, u32>,
    /// Per server (same index): its round trips, for when to send a query again.
    round_trips: Vec<RoundTrips>,
}

/// Servers found by a linear search before the hash is used.
const SERVERS_SEARCHED: usize = 8;

impl ServerTable {
    fn intern(&mut self, server: std::net::SocketAddr) -> u32 {
        if let Some(at) = self
            .servers
            .iter()
            .take(SERVERS_SEARCHED)
            .position(|s| *s == server)
        {
            return at as u32;
        }
        if let Some(at) = self.index.get(&server) {
            return *at;
        }
        let at = u32::try_from(self.servers.len()).expect("fewer than 2^32 servers");
        self.servers.push(server);
        self.round_trips.push(RoundTrips::default());
        if self.servers.len() > SERVERS_SEARCHED {
            self.index.insert(server, at);
        }
        at
    }

    fn get(&self, at: u32) -> std::net::SocketAddr {
        self.servers[at as usize]
    }
}

/// Replies beyond [`MAX_REPLIES_KEPT`], counted and hashed rather than kept.
struct Omitted {
    replies: OmittedReplies,
    digest: Sha256,
    /// Length and SHA-256 of the first reply kept, to count identical ones (only
    /// same-length ones are hashed).
    first: (usize, [u8; 32]),
}

/// A reply's datagram as held while its question's group waits (the late-reply window
/// holds a name for a second or more), with what was seen of its arrival, in one
/// allocation: a [`HeldDatagram::HEADER`]-byte header (microseconds since the query's
/// first attempt left, the attempt it answers, the IP TTL), then the datagram. It is
/// parsed into a [`DnsReply`] only when the group is done.
struct HeldDatagram(Box<[u8]>);

impl HeldDatagram {
    const HEADER: usize = 7;

    fn new(datagram: &[u8], elapsed_us: u32, attempt: u8, ttl: Option<u8>) -> Self {
        let mut bytes = Vec::with_capacity(Self::HEADER + datagram.len());
        bytes.extend_from_slice(&elapsed_us.to_le_bytes());
        bytes.push(attempt);
        bytes.push(u8::from(ttl.is_some()));
        bytes.push(ttl.unwrap_or(0));
        bytes.extend_from_slice(datagram);
        HeldDatagram(bytes.into_boxed_slice())
    }

    fn datagram(&self) -> &[u8] {
        &self.0[Self::HEADER..]
    }

    fn elapsed_us(&self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    fn attempt(&self) -> u8 {
        self.0[4]
    }

    fn ttl(&self) -> Option<u8> {
        (self.0[5] != 0).then_some(self.0[6])
    }

    fn truncated(&self) -> bool {
        self.datagram().get(2).is_some_and(|b| b & 0x02 != 0)
    }

    fn length_and_digest(&self) -> (usize, [u8; 32]) {
        let datagram = self.datagram();
        (datagram.len(), Sha256::digest(datagram).into())
    }

    fn into_reply(self, question: (&Name, RecordType), from: std::net::SocketAddr) -> DnsReply {
        parse_name_reply(
            self.datagram(),
            question,
            from,
            self.ttl(),
            ms_of_us(self.elapsed_us()),
            u32::from(self.attempt()),
        )
    }
}

/// A reply held beside the first (see [`Query::first_reply`]): an ordinary one as its
/// datagram; a large one (a flood of huge forged replies must not be held whole) parsed
/// at once, as parsing keeps a bounded number of records.
enum HeldReply {
    Datagram {
        held: HeldDatagram,
        /// `None`: from the question's server (as almost every reply is).
        other_source: Option<std::net::SocketAddr>,
    },
    /// With the SHA-256 of the datagram (see [`HeldReply::length_and_digest`]).
    Parsed(Box<(DnsReply, [u8; 32])>),
}

/// Milliseconds as reports give them, from microseconds.
fn ms_of_us(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

/// Replies up to this size are held as datagrams (see [`HeldReply`]).
const HELD_DATAGRAM_MAX: usize = 512;

impl HeldReply {
    fn into_reply(self, question: (&Name, RecordType), server: std::net::SocketAddr) -> DnsReply {
        match self {
            HeldReply::Datagram { held, other_source } => {
                held.into_reply(question, other_source.unwrap_or(server))
            }
            HeldReply::Parsed(parsed) => parsed.0,
        }
    }

    /// Length and SHA-256 of the datagram.
    fn length_and_digest(&self) -> (usize, [u8; 32]) {
        match self {
            HeldReply::Datagram { held, .. } => held.length_and_digest(),
            HeldReply::Parsed(parsed) => (parsed.0.size, parsed.1),
        }
    }
}

/// One question of a group: what the group needs to know of it after it finished,
/// without keeping the question itself.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// Slab key of the question, valid until the group is delivered (a finished
    /// question is held in the slab until then).
    key: u32,
    role: DnsServerRole,
    qtype: RecordType,
    finished: bool,
}

struct Group {
    token: u64,
    done: mpsc::UnboundedSender<GroupDone>,
    /// In question order; a finished question stays in the slab until the group is
    /// done, and becomes an observation then. Inline for the usual three (resolver,
    /// sink, control) of one query type.
    members: SmallVec<[Member; 3]>,
    remaining: usize,
}

struct Outgoing {
    bytes: Vec<u8>,
    to: SockaddrStorage,
    key: usize,
    stamp: u32,
}

pub(super) struct SocketWorker {
    socket: UdpSocket,
    shared: Arc<EngineShared>,
    /// Set while this socket turns work away for want of query ids or room (the pool
    /// grows).
    short_of_room: Arc<AtomicBool>,
    source_port: u16,
    /// The origin of the queries' [`Tick`]s.
    origin: Instant,
    servers: ServerTable,
    queries: Slab<Query>,
    /// Finished queries held in `queries` until their group is done.
    held: usize,
    groups: Slab<Group>,
    ids: IdTable,
    wheel: TimerWheel,
    next_stamp: u32,
    outbox: Vec<Outgoing>,
    /// The last query encoded this turn, as its place in `outbox`, for the next question
    /// of the same name and type: the resolver, sink and control questions of a name
    /// differ only in their id, and leave in the same turn. (No copy is kept: in
    /// `closest` mode every name has one question, and a copy would be one more
    /// allocation per name.)
    last_encoded: Option<(Arc<Name>, RecordType, usize)>,
    due: Vec<TimerEntry>,
    recv_buffer: Vec<u8>,
    /// Counted here, added to the engine's totals once per turn.
    sent: u64,
    retries: u64,
}

impl SocketWorker {
    pub(super) fn new(
        socket: UdpSocket,
        shared: Arc<EngineShared>,
        short_of_room: Arc<AtomicBool>,
    ) -> Self {
        let source_port = socket.local_addr().map_or(0, |a| a.port());
        let origin = Instant::now();
        SocketWorker {
            socket,
            shared,
            short_of_room,
            source_port,
            origin,
            servers: ServerTable::default(),
            // Room for as many queries as the socket has ids from the start: a slab that
            // doubled as it filled would copy itself, and hold both copies for a moment,
            // at its largest. Pages never written to take no memory.
            queries: Slab::with_capacity(ID_BUDGET),
            held: 0,
            groups: Slab::with_capacity(ID_BUDGET),
            ids: IdTable::new(origin),
            wheel: TimerWheel::new(origin),
            next_stamp: 0,
            outbox: Vec::new(),
            last_encoded: None,
            due: Vec::new(),
            recv_buffer: vec![0; RECV_BATCH * RECV_SLOT],
            sent: 0,
            retries: 0,
        }
    }

    fn tick(&self, at: Instant) -> Tick {
        Tick::at(self.origin, at)
    }

    fn instant(&self, tick: Tick) -> Instant {
        self.origin + Duration::from_nanos(tick.0)
    }

    fn can_take(&self) -> bool {
        self.queries.len() - self.held < self.shared.config.max_in_flight_per_socket
            && self.ids.in_use() < ID_BUDGET
    }

    pub(super) async fn run(mut self, mut jobs: mpsc::Receiver<GroupJob>) {
        let mut accepting = true;
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            // Deadlines are judged by the clock at every turn, before any packet: a flood
            // of replies must not make a timeout fire late.
            self.expire(Instant::now());
            self.flush().await;
            self.publish_counts();
            if !accepting && self.queries.is_empty() {
                return;
            }
            let can_take = accepting && self.can_take();
            let mut next = self.wheel.next_due();
            if accepting && !can_take {
                // Ids come free when their quarantine ends: wake then to take work.
                next = match (next, self.ids.next_release()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if next != armed {
                if let Some(at) = next {
                    sleep.as_mut().reset(at.into());
                }
                armed = next;
            }
            self.short_of_room
                .store(accepting && !can_take, Ordering::Relaxed);
            tokio::select! {
                biased;
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                }
                ready = self.socket.readable() => {
                    let full = ready.is_ok() && self.drain_socket();
                    // Replies keep coming while queries are out: take queued groups here
                    // too, or a busy socket would never get to its submissions.
                    if accepting {
                        self.take_queued(&mut jobs, Instant::now());
                    }
                    if full {
                        // A full batch: more may be queued. Let the runtime run other
                        // tasks (timers, the control) before reading on.
                        tokio::task::yield_now().await;
                    }
                }
                job = jobs.recv(), if can_take => {
                    match job {
                        Some(job) => {
                            let now = Instant::now();
                            self.start_group(job, now);
                            // Take what else is queued: it leaves in the same sendmmsg.
                            self.take_queued(&mut jobs, now);
                        }
                        None => accepting = false,
                    }
                }
            }
        }
    }

    /// Starts the groups already queued, as many as there is room for (bounded per turn).
    fn take_queued(&mut self, jobs: &mut mpsc::Receiver<GroupJob>, now: Instant) {
        for _ in 0..GROUPS_PER_WAKEUP {
            if !self.can_take() {
                return;
            }
            match jobs.try_recv() {
                Ok(job) => self.start_group(job, now),
                Err(_) => return,
            }
        }
    }

    fn publish_counts(&mut self) {
        if self.sent > 0 {
            self.shared
                .stats
                .on_sent(self.sent, self.retries, Instant::now());
            self.sent = 0;
            self.retries = 0;
        }
    }

    fn start_group(&mut self, job: GroupJob, now: Instant) {
        let count = job.questions.len();
        let group_key = self.groups.insert(Group {
            token: job.token,
            done: job.done,
            members: SmallVec::with_capacity(count),
            remaining: count,
        });
        if count == 0 {
            let group = self.groups.remove(group_key);
            self.shared.deliver(group.token, &group.done, Vec::new());
            return;
        }
        let tick = self.tick(now);
        for (index, question) in job.questions.into_iter().enumerate() {
            let stamp = self.next_stamp;
            self.next_stamp = self.next_stamp.wrapping_add(1);
            let DnsQuestion {
                qname,
                qtype,
                server,
                role,
            } = question;
            let server = self.servers.intern(server);
            let key = self.queries.insert(Query {
                qname,
                first_sent: tick,
                last_sent: tick,
                // Set by the first attempt.
                deadline: tick,
                first_reply: None,
                rare: None,
                first_attempt: Attempt::NONE,
                stamp,
                group: u32::try_from(group_key).expect("fewer than 2^32 groups"),
                attempts: 0,
                server,
                qtype,
                index: u16::try_from(index).expect("fewer than 65,536 questions a name"),
                role,
                answered: false,
                finished: false,
            });
            self.groups[group_key].members.push(Member {
                key: u32::try_from(key).expect("fewer than 2^32 queries"),
                role,
                qtype,
                finished: false,
            });
            self.send_attempt(key, now);
            let deadline = self.instant(self.queries[key].deadline);
            self.wheel.insert(
                deadline,
                TimerEntry {
                    key: key as u32,
                    stamp,
                },
            );
        }
    }

    /// Queues one attempt of the query (it leaves at the end of the turn).
    fn send_attempt(&mut self, key: usize, now: Instant) {
        let timeout = self.shared.config.timeout;
        let most_retries = self.retries_allowed(self.queries[key].role);
        let origin = self.origin;
        let query = &mut self.queries[key];
        // At most `--retries` + 1 (11), or the control's 3; never past `MOST_RETRIES`.
        query.attempts = query.attempts.saturating_add(1);
        if query.attempts > 1 {
            self.retries += 1;
        }
        // An attempt that another may follow is sent again once a reply is later than
        // this server's replies have been (twice as late at each further attempt, as a
        // burst of loss lasts). Sending early never shortens how long the question is
        // listened to: the last attempt waits until the attempts would all have waited
        // the whole timeout, and at least the timeout itself, so an outage or a slow
        // server meets the same patience as before.
        let sent_at = Tick::at(origin, now);
        query.last_sent = sent_at;
        query.deadline = if u32::from(query.attempts) <= most_retries {
            let early = self.servers.round_trips[query.server as usize].retransmit_after(timeout);
            let backoff = 1u32 << (query.attempts - 1).min(8);
            sent_at.after(early.saturating_mul(backoff).min(timeout))
        } else {
            let budget = timeout.saturating_mul(most_retries.saturating_add(1));
            sent_at.after(timeout).max(query.first_sent.after(budget))
        };
        let Some(id) = self.ids.take(key, now) else {
            query.set_send_error("every query id of this socket is in use".to_owned());
            return;
        };
        // The sink never answers and the control is another server: only the
        // resolver's queries say anything about the resolver's loss.
        let sample = if query.role == DnsServerRole::Resolver {
            self.shared.gate.on_send()
        } else {
            None
        };
        query.push_attempt(Attempt::new(sample, id, query.attempts));
        let encoded = match &self.last_encoded {
            Some((qname, qtype, at))
                if Arc::ptr_eq(qname, &query.qname) && *qtype == query.qtype =>
            {
                Ok(with_id(&self.outbox[*at].bytes, id))
            }
            _ => encode_name_query(id, &query.qname, query.qtype).inspect(|_| {
                self.last_encoded =
                    Some((Arc::clone(&query.qname), query.qtype, self.outbox.len()));
            }),
        };
        match encoded {
            Ok(bytes) => self.outbox.push(Outgoing {
                bytes,
                to: SockaddrStorage::from(self.servers.get(query.server)),
                key,
                stamp: query.stamp,
            }),
            Err(e) => {
                query.set_send_error(e);
                self.settle_last_lost(key);
            }
        }
    }

    /// The last attempt could not leave (e.g. the kernel's buffers are full): as good
    /// as lost.
    fn settle_last_lost(&mut self, key: usize) {
        let query = &mut self.queries[key];
        let role = query.role;
        if let Some(attempt) = query.last_attempt_mut()
            && attempt.settle()
            && role == DnsServerRole::Resolver
        {
            self.shared.gate.record(attempt.sample(), false);
        }
    }

    /// Sends everything queued, in batches; waits while the socket's buffer is full.
    async fn flush(&mut self) {
        let mut start = 0;
        while start < self.outbox.len() {
            if self.socket.writable().await.is_err() {
                break;
            }
            let fd = self.socket.as_raw_fd();
            let batch = &self.outbox[start..(start + SEND_BATCH).min(self.outbox.len())];
            let sent = self.socket.try_io(Interest::WRITABLE, || {
                let slices: Vec<[IoSlice<'_>; 1]> =
                    batch.iter().map(|o| [IoSlice::new(&o.bytes)]).collect();
                let addresses: Vec<Option<SockaddrStorage>> =
                    batch.iter().map(|o| Some(o.to)).collect();
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
                let no_cmsgs: [ControlMessage<'_>; 0] = [];
                let results = sendmmsg(
                    fd,
                    &mut headers,
                    &slices,
                    &addresses,
                    no_cmsgs,
                    MsgFlags::empty(),
                )
                .map_err(std::io::Error::from)?;
                Ok(results.count())
            });
            match sent {
                Ok(count) => {
                    self.sent += count as u64;
                    start += count.max(1);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // The first datagram of the batch failed: mark it, go on with the rest.
                    let failed = &self.outbox[start];
                    let (key, stamp) = (failed.key, failed.stamp);
                    if let Some(query) = self.queries.get_mut(key)
                        && query.stamp == stamp
                        && !query.finished
                    {
                        query.set_send_error(e.to_string());
                        self.settle_last_lost(key);
                    }
                    start += 1;
                }
            }
        }
        self.outbox.clear();
        self.last_encoded = None;
    }

    /// Reads queued packets, at most [`PACKETS_PER_WAKEUP`]; true when the batch was
    /// full (more may be waiting).
    fn drain_socket(&mut self) -> bool {
        let mut buffer = std::mem::take(&mut self.recv_buffer);
        let mut read = 0;
        let mut full = true;
        while read < PACKETS_PER_WAKEUP {
            let batch = (PACKETS_PER_WAKEUP - read).min(RECV_BATCH);
            let fd = self.socket.as_raw_fd();
            let received = self.socket.try_io(Interest::READABLE, || {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffer
                    .chunks_mut(RECV_SLOT)
                    .take(batch)
                    .map(|slot| [IoSliceMut::new(slot)])
                    .collect();
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
                    batch,
                    Some(nix::cmsg_space!(libc::c_int)),
                );
                let results = recvmmsg(
                    fd,
                    &mut headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                )
                .map_err(std::io::Error::from)?;
                let mut packets = Vec::with_capacity(batch);
                for message in results {
                    let mut ttl = None;
                    if let Ok(cmsgs) = message.cmsgs() {
                        for cmsg in cmsgs {
                            if let ControlMessageOwned::Ipv4Ttl(t)
                            | ControlMessageOwned::Ipv6HopLimit(t) = cmsg
                            {
                                ttl = u8::try_from(t).ok();
                            }
                        }
                    }
                    let from = message.address.as_ref().and_then(sockaddr_to_std);
                    packets.push((message.bytes.min(RECV_SLOT), from, ttl));
                }
                Ok(packets)
            });
            match received {
                Ok(packets) => {
                    let now = Instant::now();
                    let count = packets.len();
                    for (slot, (len, from, ttl)) in packets.into_iter().enumerate() {
                        // A packet without a source address cannot be matched to a query.
                        if let Some(from) = from {
                            let start = slot * RECV_SLOT;
                            self.on_packet(&buffer[start..start + len], from, ttl, now);
                        }
                    }
                    read += count.max(1);
                    if count < batch {
                        full = false;
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    full = false;
                    break;
                }
                // ICMP errors (port unreachable) surface here on unconnected sockets on
                // some kernels; they carry no reply, so keep reading.
                Err(_) => read += 1,
            }
        }
        self.recv_buffer = buffer;
        full
    }

    fn on_packet(
        &mut self,
        bytes: &[u8],
        from: std::net::SocketAddr,
        ttl: Option<u8>,
        now: Instant,
    ) {
        if bytes.len() < 2 {
            return;
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let Some(key) = self.ids.owner_of(id) else {
            return; // not ours, or late for a finished query
        };
        let wait = self.shared.config.wait_after_first;
        let tick = self.tick(now);
        let query = &mut self.queries[key];
        let server = self.servers.get(query.server);
        let role = query.role;
        // The attempt this reply answers is the one whose id it carries: a late reply to
        // the first attempt that comes after the retry left answers the first, and the
        // judge compares only replies to one attempt as an injection would show.
        let (attempts, first_sent, last_sent, server_index) = (
            query.attempts,
            query.first_sent,
            query.last_sent,
            query.server as usize,
        );
        let mut attempt = attempts;
        if let Some(sent) = query.sent_mut().find(|a| a.id == id) {
            attempt = sent.number;
            if sent.settle() && role == DnsServerRole::Resolver {
                self.shared.gate.record(sent.sample(), true);
            }
            // The round trip of the attempt this reply answers, from its first reply
            // (a duplicate is no round trip), when its send time is kept: the first
            // attempt's, or the last one's. A reply that came after the attempt was
            // given up and sent again counts too: ids tell attempts apart, and a slow
            // server's slow replies are what keep it from being asked twice.
            let sent_at = if !sent.reply() {
                None
            } else if sent.number == 1 {
                Some(first_sent)
            } else if sent.number == attempts {
                Some(last_sent)
            } else {
                None
            };
            if let Some(sent_at) = sent_at
                && from == server
            {
                self.servers.round_trips[server_index]
                    .record(Duration::from_nanos(tick.0.saturating_sub(sent_at.0)));
            }
        }
        // Microseconds, saturated (a query listens for seconds, not 71 minutes).
        let elapsed_us =
            u32::try_from((tick.0.saturating_sub(first_sent.0)) / 1000).unwrap_or(u32::MAX);
        let since_first_ms = ms_of_us(elapsed_us);
        let mut valid = false;
        if query.reply_count() < MAX_REPLIES_KEPT {
            // Only a valid control reply changes what happens now (it ends the
            // question); every other reply is held as it came and parsed later.
            let parsed =
                (role == DnsServerRole::Control || bytes.len() > HELD_DATAGRAM_MAX).then(|| {
                    parse_name_reply(
                        bytes,
                        (&query.qname, query.qtype),
                        from,
                        ttl,
                        since_first_ms,
                        u32::from(attempt),
                    )
                });
            if let Some(reply) = &parsed {
                valid = reply.from == server && reply.question_matches && reply.flags.qr;
            }
            let held = match parsed {
                Some(reply) if bytes.len() > HELD_DATAGRAM_MAX => {
                    HeldReply::Parsed(Box::new((reply, Sha256::digest(bytes).into())))
                }
                _ => HeldReply::Datagram {
                    held: HeldDatagram::new(bytes, elapsed_us, attempt, ttl),
                    other_source: (from != server).then_some(from),
                },
            };
            query.push_reply(held);
        } else {
            // Beyond the cap: no parsing, no storing; count, time and digest.
            let at_ms = since_first_ms as u64;
            let first = query
                .first_length_and_digest()
                .expect("replies are held up to the cap");
            let omitted = query.rare().omitted.get_or_insert_with(|| Omitted {
                replies: OmittedReplies {
                    first_ms: at_ms,
                    ..OmittedReplies::default()
                },
                digest: Sha256::new(),
                first,
            });
            omitted.replies.count += 1;
            omitted.replies.bytes += bytes.len();
            omitted.replies.last_ms = at_ms;
            omitted.digest.update(bytes);
            let (first_len, first_digest) = omitted.first;
            if first_len == bytes.len() && first_digest == <[u8; 32]>::from(Sha256::digest(bytes)) {
                omitted.replies.identical_to_first += 1;
            }
        }
        let first = !query.answered;
        query.answered = true;
        let (group, qtype) = (query.group as usize, query.qtype);
        match role {
            DnsServerRole::Control => {
                if valid {
                    self.finish(key, now);
                }
            }
            DnsServerRole::Resolver => {
                if first {
                    self.set_deadline(key, now + wait, now);
                    self.close_sink_windows(group, qtype, now + wait, now);
                }
            }
            DnsServerRole::Sink => {
                // Its window follows the resolver's question of the same type; without
                // one in the group, its own first reply starts it.
                if first && self.resolver_in_group(group, qtype).is_none() {
                    self.set_deadline(key, now + wait, now);
                }
            }
        }
    }

    /// The group's resolver question of `qtype`, when still waiting or finished.
    fn resolver_in_group(&self, group: usize, qtype: RecordType) -> Option<usize> {
        self.groups[group]
            .members
            .iter()
            .find(|member| member.role == DnsServerRole::Resolver && member.qtype == qtype)
            .map(|member| member.key as usize)
    }

    /// The resolver's question of `qtype` got its first reply: the group's sink
    /// questions of that type listen until `at`, no longer.
    fn close_sink_windows(&mut self, group: usize, qtype: RecordType, at: Instant, now: Instant) {
        let Some(entry) = self.groups.get(group) else {
            return;
        };
        let sinks: SmallVec<[usize; 2]> = entry
            .members
            .iter()
            .filter(|member| {
                !member.finished && member.role == DnsServerRole::Sink && member.qtype == qtype
            })
            .map(|member| member.key as usize)
            .collect();
        for key in sinks {
            self.set_deadline(key, at, now);
        }
    }

    /// Moves a query's deadline; a deadline already passed finishes it now.
    fn set_deadline(&mut self, key: usize, at: Instant, now: Instant) {
        let at_tick = self.tick(at);
        let query = &mut self.queries[key];
        let earlier = at_tick < query.deadline;
        query.deadline = at_tick;
        if at <= now {
            self.finish(key, now);
        } else if earlier {
            // A later deadline needs no entry: the earlier entry finds it and re-inserts.
            let stamp = query.stamp;
            self.wheel.insert(
                at,
                TimerEntry {
                    key: key as u32,
                    stamp,
                },
            );
        }
    }

    fn expire(&mut self, now: Instant) {
        self.ids.release(now);
        let mut due = std::mem::take(&mut self.due);
        self.wheel.expire(now, &mut due);
        let tick = self.tick(now);
        for entry in due.drain(..) {
            let key = entry.key as usize;
            let Some(query) = self.queries.get(key) else {
                continue;
            };
            if query.stamp != entry.stamp || query.finished {
                continue; // finished (and perhaps the key reused)
            }
            if query.deadline > tick {
                let deadline = self.instant(query.deadline);
                self.wheel.insert(deadline, entry);
                continue;
            }
            let retry_allowed = u32::from(query.attempts) <= self.retries_allowed(query.role)
                // A resolver that answered (validly or not) is not asked again; a control
                // still waiting has no valid reply yet, whatever else came.
                && !(query.role == DnsServerRole::Resolver && query.answered);
            self.settle_lost(key);
            if retry_allowed {
                // A retry leaves now; the pacer makes later queries wait for it.
                self.shared.gate.charge(1);
                self.send_attempt(key, now);
                let deadline = self.instant(self.queries[key].deadline);
                self.wheel.insert(deadline, entry);
            } else {
                self.finish(key, now);
            }
        }
        self.due = due;
    }

    /// How many times a query to a server in `role` may be sent again: `--retries`,
    /// at least [`CONTROL_MIN_RETRIES`] for the control, never for the sink.
    fn retries_allowed(&self, role: DnsServerRole) -> u32 {
        let retries = self.shared.config.retries.min(MOST_RETRIES);
        match role {
            DnsServerRole::Resolver => retries,
            DnsServerRole::Control => retries.max(CONTROL_MIN_RETRIES),
            DnsServerRole::Sink => 0,
        }
    }

    /// Reports every attempt of the query without an outcome yet as lost.
    fn settle_lost(&mut self, key: usize) {
        let query = &mut self.queries[key];
        let resolver = query.role == DnsServerRole::Resolver;
        for attempt in query.sent_mut() {
            if attempt.settle() && resolver {
                self.shared.gate.record(attempt.sample(), false);
            }
        }
    }

    /// The query is done listening: its ids are retired and it is held until its group
    /// is done.
    fn finish(&mut self, key: usize, now: Instant) {
        let tick = self.tick(now);
        let query = &mut self.queries[key];
        if query.finished {
            return;
        }
        query.finished = true;
        query.deadline = tick;
        self.held += 1;
        // Keep the ids off-limits for a while: a reply to them now would be late, and
        // must not be mistaken for a reply to a new query.
        let until = now + self.shared.config.id_quarantine();
        for attempt in query.sent() {
            self.ids.retire(attempt.id, until);
        }
        let (group_key, index) = (query.group as usize, usize::from(query.index));
        let group = &mut self.groups[group_key];
        group.members[index].finished = true;
        group.remaining -= 1;
        if group.remaining == 0 {
            let group = self.groups.remove(group_key);
            self.complete(group);
        }
    }

    /// The finished query, out of the slab, its replies still as held.
    fn finished_query(&mut self, key: usize) -> FinishedQuery {
        let query = self.queries.remove(key);
        self.held -= 1;
        FinishedQuery {
            server: self.servers.get(query.server),
            source_port: self.source_port,
            query,
        }
    }

    /// Delivers a finished group; a truncated resolver reply is retried over TCP first
    /// (on a task of its own: rare, and it must not hold up this socket).
    fn complete(&mut self, group: Group) {
        let Group {
            token,
            done,
            members,
            ..
        } = group;
        let queries: Vec<FinishedQuery> = members
            .iter()
            .map(|member| self.finished_query(member.key as usize))
            .collect();
        if !queries.iter().any(FinishedQuery::may_be_truncated) {
            self.shared.deliver_held(token, &done, queries);
            return;
        }
        let mut observations = Vec::with_capacity(queries.len());
        let mut truncated_questions = Vec::new();
        for (index, query) in queries.into_iter().enumerate() {
            let question = query.question();
            let observation = query.into_observation();
            if truncated(&observation) {
                truncated_questions.push((index, question));
            }
            observations.push(observation);
        }
        if truncated_questions.is_empty() {
            self.shared.deliver(token, &done, observations);
            return;
        }
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            for (index, question) in truncated_questions {
                if let Some(observation) = observations.get_mut(index) {
                    observation.tcp = Some(Box::new(
                        tcp_exchange(&question, shared.config.timeout).await,
                    ));
                }
            }
            shared.deliver(token, &done, observations);
        });
    }
}

/// A finished query as its group hands it over: its replies still as held (most as the
/// datagrams), parsed by [`FinishedQuery::into_observation`] on the receiver's side.
pub(crate) struct FinishedQuery {
    /// Its times are the socket's ticks: only their differences are read.
    query: Query,
    /// The server its index in the socket's table stands for.
    server: std::net::SocketAddr,
    source_port: u16,
}

impl std::fmt::Debug for FinishedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinishedQuery")
            .field("qname", &self.query.qname)
            .field("qtype", &self.query.qtype)
            .field("server", &self.server)
            .field("role", &self.query.role)
            .field("attempts", &self.query.attempts)
            .field("replies", &self.query.reply_count())
            .finish_non_exhaustive()
    }
}

impl FinishedQuery {
    /// A resolver reply with TC set, which would be retried over TCP: those groups
    /// are parsed at once, on the socket's task (rare).
    fn may_be_truncated(&self) -> bool {
        self.query.role == DnsServerRole::Resolver && self.query.any_reply_truncated()
    }

    fn question(&self) -> DnsQuestion {
        DnsQuestion {
            qname: Arc::clone(&self.query.qname),
            qtype: self.query.qtype,
            server: self.server,
            role: self.query.role,
        }
    }

    /// The query as it is reported.
    pub(crate) fn into_observation(self) -> DnsQueryObservation {
        let FinishedQuery {
            query,
            server,
            source_port,
        } = self;
        let ids: Vec<u16> = query.sent().map(|a| a.id).collect();
        let question = (&*query.qname, query.qtype);
        let RareParts {
            attempts: _,
            replies: more_replies,
            omitted,
            send_error,
        } = query.rare.map(|rare| *rare).unwrap_or_default();
        let mut replies =
            Vec::with_capacity(usize::from(query.first_reply.is_some()) + more_replies.len());
        replies.extend(
            query
                .first_reply
                .map(|held| held.into_reply(question, server)),
        );
        replies.extend(
            more_replies
                .into_iter()
                .map(|held| held.into_reply(question, server)),
        );
        DnsQueryObservation {
            role: query.role,
            server,
            qname: name_text(&query.qname),
            qtype: super::type_text(query.qtype),
            source_port,
            attempts: u32::from(query.attempts),
            ids,
            replies,
            // From the last attempt to the end of listening (a difference of ticks).
            listened_ms: Duration::from_nanos(query.deadline.0.saturating_sub(query.last_sent.0))
                .as_secs_f64()
                * 1000.0,
            send_error,
            omitted_replies: omitted.map(|omitted| {
                let Omitted {
                    mut replies,
                    digest,
                    ..
                } = omitted;
                replies.sha256 = hex_of(&digest.finalize());
                replies
            }),
            tcp: None,
            rechecks: Vec::new(),
        }
    }
}

/// A copy of an encoded query with another id (the header's first two bytes).
fn with_id(wire: &[u8], id: u16) -> Vec<u8> {
    let mut bytes = wire.to_vec();
    bytes[..2].copy_from_slice(&id.to_be_bytes());
    bytes
}

/// Whether a resolver question's first valid reply came truncated (TC=1): it is retried
/// over TCP, as resolvers do.
fn truncated(observation: &DnsQueryObservation) -> bool {
    observation.role == DnsServerRole::Resolver
        && observation
            .valid_replies()
            .next()
            .is_some_and(|r| r.flags.tc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::dns::encode_query;

    #[test]
    fn a_retired_id_is_never_freed_before_its_quarantine_is_over() {
        let origin = Instant::now();
        let mut ids = IdTable::new(origin);
        let id = ids.take(7, origin).expect("a free id");
        assert_eq!(ids.owner_of(id), Some(7));
        // Between two milliseconds: kept as the later one.
        let until = origin + Duration::from_micros(2_500);
        ids.retire(id, until);
        assert_eq!(ids.owner_of(id), None, "a late reply finds no owner");
        assert!(ids.next_release().expect("one in quarantine") >= until);
        ids.release(origin + Duration::from_micros(2_999));
        assert_eq!(ids.in_use(), 1, "still in quarantine");
        ids.release(origin + Duration::from_millis(3));
        assert_eq!(ids.in_use(), 0);
        assert_eq!(ids.next_release(), None);
    }

    #[test]
    fn ids_retired_together_share_one_release_and_none_is_freed_early() {
        let origin = Instant::now();
        let mut ids = IdTable::new(origin);
        let [a, b, c, d] = [1, 2, 3, 4].map(|key| ids.take(key, origin).expect("a free id"));
        ids.retire(a, origin + Duration::from_micros(4_200));
        ids.retire(b, origin + Duration::from_micros(4_900));
        ids.retire(c, origin + Duration::from_millis(9));
        // Earlier than the one before it: freed with it, never before its own time.
        ids.retire(d, origin + Duration::from_millis(6));
        assert_eq!(ids.releases.len(), 2, "a and b share the 5th millisecond");
        assert_eq!(ids.in_use(), 4);
        ids.release(origin + Duration::from_millis(5));
        assert_eq!(ids.in_use(), 2);
        assert_eq!(ids.owner[usize::from(a)], ID_FREE);
        assert_eq!(ids.owner[usize::from(b)], ID_FREE);
        ids.release(origin + Duration::from_millis(8));
        assert_eq!(ids.in_use(), 2, "d waits for c's time");
        assert_eq!(ids.owner[usize::from(d)], ID_QUARANTINED);
        ids.release(origin + Duration::from_millis(9));
        assert_eq!(ids.in_use(), 0);
        assert_eq!(ids.next_release(), None);
    }

    /// The questions of one name are encoded once: another id in the header gives
    /// exactly what encoding the question with that id gives.
    #[test]
    fn a_query_with_another_id_is_the_query_encoded_with_that_id() {
        let question = DnsQuestion {
            qname: Arc::new(Name::from_ascii("n1.bench.test.").unwrap()),
            qtype: RecordType::A,
            server: "198.18.0.2:53".parse().unwrap(),
            role: DnsServerRole::Resolver,
        };
        let first = encode_query(0x1234, &question).unwrap();
        for id in [0, 1, 0x00ff, 0xff00, 0xbeef, u16::MAX] {
            assert_eq!(with_id(&first, id), encode_query(id, &question).unwrap());
        }
    }

    fn bare_query(qname: Arc<Name>) -> Query {
        Query {
            qname,
            first_sent: Tick(0),
            last_sent: Tick(0),
            deadline: Tick(0),
            first_reply: None,
            rare: None,
            first_attempt: Attempt::NONE,
            stamp: 0,
            group: 0,
            server: 0,
            qtype: RecordType::A,
            index: 0,
            attempts: 0,
            role: DnsServerRole::Resolver,
            answered: false,
            finished: true,
        }
    }

    /// A reply to `qname` with `id`: its query with QR set.
    fn bare_reply(qname: &Name, id: u16) -> Vec<u8> {
        let mut bytes = encode_name_query(id, qname, RecordType::A).expect("encodable");
        bytes[2] |= 0x80;
        bytes
    }

    fn held(bytes: &[u8], elapsed_us: u32, attempt: u8, ttl: Option<u8>) -> HeldReply {
        HeldReply::Datagram {
            held: HeldDatagram::new(bytes, elapsed_us, attempt, ttl),
            other_source: None,
        }
    }

    /// The usual first reply is held inline, every other in the rare parts: either way
    /// the replies are reported in the order they came, each with its own source, time,
    /// attempt and TTL.
    #[test]
    fn replies_are_reported_in_arrival_order_with_what_was_seen_of_each() {
        let qname = Arc::new(Name::from_ascii("held.example.").expect("a name"));
        let server: std::net::SocketAddr = "198.18.0.2:53".parse().expect("an address");
        let other: std::net::SocketAddr = "198.18.0.9:53".parse().expect("an address");
        let report = |query: Query| {
            FinishedQuery {
                query,
                server,
                source_port: 5353,
            }
            .into_observation()
        };

        let mut usual = bare_query(Arc::clone(&qname));
        usual.push_reply(held(&bare_reply(&qname, 4), 7_000, 1, Some(64)));
        usual.push_reply(held(&bare_reply(&qname, 5), 9_500, 1, None));
        assert!(
            usual.first_reply.is_some(),
            "the first reply is held inline"
        );
        assert_eq!(usual.reply_count(), 2);
        let seen = report(usual);
        let of = |f: fn(&DnsReply) -> String| seen.replies.iter().map(f).collect::<Vec<_>>();
        assert_eq!(of(|r| r.id.to_string()), ["4", "5"]);
        assert_eq!(of(|r| r.elapsed_ms.to_string()), ["7", "9.5"]);
        assert_eq!(of(|r| format!("{:?}", r.ip_ttl)), ["Some(64)", "None"]);
        assert!(
            seen.replies
                .iter()
                .all(|r| r.from == server && r.question_matches)
        );

        // From another source first, then from the server, then one parsed at once
        // (large): none is held inline, and the order stands.
        let mut unusual = bare_query(Arc::clone(&qname));
        unusual.push_reply(HeldReply::Datagram {
            held: HeldDatagram::new(&bare_reply(&qname, 1), 1_000, 1, Some(58)),
            other_source: Some(other),
        });
        unusual.push_reply(held(&bare_reply(&qname, 2), 2_500_000, 2, None));
        let parsed = parse_name_reply(
            &bare_reply(&qname, 3),
            (&qname, RecordType::A),
            server,
            Some(248),
            3_000.0,
            2,
        );
        unusual.push_reply(HeldReply::Parsed(Box::new((parsed, [0; 32]))));
        assert!(unusual.first_reply.is_none());
        assert_eq!(unusual.reply_count(), 3);
        let seen = report(unusual);
        let of = |f: fn(&DnsReply) -> String| seen.replies.iter().map(f).collect::<Vec<_>>();
        assert_eq!(of(|r| r.id.to_string()), ["1", "2", "3"]);
        assert_eq!(
            of(|r| r.from.to_string()),
            [other.to_string(), server.to_string(), server.to_string()]
        );
        assert_eq!(of(|r| r.elapsed_ms.to_string()), ["1", "2500", "3000"]);
        assert_eq!(of(|r| r.attempt.to_string()), ["1", "2", "2"]);
        assert_eq!(
            of(|r| format!("{:?}", r.ip_ttl)),
            ["Some(58)", "None", "Some(248)"]
        );
    }

    /// The first attempt is kept inline, the others in the rare parts, in the order
    /// they left; each is settled once.
    #[test]
    fn attempts_are_kept_in_order_and_settled_once() {
        let mut query = bare_query(Arc::new(Name::root()));
        assert_eq!(query.sent().count(), 0);
        assert!(query.last_attempt_mut().is_none());
        for (id, number) in [(700, 1), (800, 2), (900, 4)] {
            query.push_attempt(Attempt::new(Some(3), id, number));
        }
        let sent: Vec<(u16, u8)> = query.sent().map(|a| (a.id, a.number)).collect();
        assert_eq!(sent, [(700, 1), (800, 2), (900, 4)]);
        let last = query.last_attempt_mut().expect("three left");
        assert_eq!((last.id, last.sample()), (900, Some(3)));
        assert!(last.settle(), "first settled now");
        assert!(!last.settle(), "only once");
        let unsettled: Vec<u16> = query
            .sent_mut()
            .filter_map(|a| a.settle().then_some(a.id))
            .collect();
        assert_eq!(unsettled, [700, 800]);
        // A window id that does not fit is no sample (never a wrong one).
        assert_eq!(Attempt::new(Some(u64::from(u32::MAX)), 1, 1).sample(), None);
        assert_eq!(Attempt::new(Some(1 << 40), 1, 1).sample(), None);
    }

    /// What a waiting question and a waiting group cost inline (issue 11: a waiting
    /// name is a small table entry). The TCP retry is boxed: it is rare, and inline it
    /// made every observation 200 bytes larger.
    #[test]
    fn a_waiting_question_and_group_stay_small() {
        let sizes = [
            ("Query", std::mem::size_of::<Query>()),
            ("Group", std::mem::size_of::<Group>()),
            (
                "DnsQueryObservation",
                std::mem::size_of::<DnsQueryObservation>(),
            ),
            ("DnsReply", std::mem::size_of::<DnsReply>()),
            ("HeldDatagram", std::mem::size_of::<HeldDatagram>()),
        ];
        println!("{sizes:?}");
        // Tens of thousands wait at once in real mode, three a name: at 60,000 names
        // in flight, each 8 bytes here is 1.4 MB of peak RSS.
        assert!(sizes[0].1 <= 88, "{sizes:?}");
        assert!(sizes[1].1 <= 72, "{sizes:?}");
        assert!(sizes[2].1 <= 300, "{sizes:?}");
        // A reply waiting in the late-reply window is held as its datagram: the held
        // form is much smaller than the parsed one (whose records and rcode are more
        // allocations besides).
        assert!(sizes[4].1 * 4 <= sizes[3].1, "{sizes:?}");
    }
}
