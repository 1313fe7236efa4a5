//! One DNS-over-TLS connection with many queries outstanding at once (RFC 7858 §3.3:
//! pipelining, replies in any order, matched by message id).
//!
//! Two tasks own the connection: the writer takes queued queries in batches, gives each a
//! free id, writes the batch and flushes once; the reader matches every reply to its query
//! by id. A query's timeout counts from the flush that sent it. Because every query gets the
//! same timeout, the send order is the expiry order: the writer keeps the deadlines in a
//! queue and expires them from its front (no timer per query). When either side fails, the
//! connection is lost: every query still waiting gets the reason at once (so the pool can
//! retry it on another connection), and queries sent later are refused.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::pool::{ExchangeError, Reply};

/// Queries written (and flushed) together at most.
const WRITE_BATCH: usize = 256;

/// A DNS message is at most 65535 bytes; the reader buffers a few replies' worth.
const READ_BUFFER: usize = 64 * 1024;

/// A query waiting to be written.
struct Outgoing {
    /// The query in wire form; its id (first two bytes) is set by the writer.
    wire: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

/// A query written and not answered yet.
struct Pending {
    /// Tells this query from an earlier one that had the same id (ids are reused).
    seq: u64,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u16, Pending>,
    next_id: u16,
    next_seq: u64,
    /// Why the connection is lost, once it is.
    lost: Option<String>,
}

impl State {
    /// A free id for `reply`'s query. The caller bounds the queries outstanding far below
    /// 65536 (see the pool), so a free id always exists.
    fn register(&mut self, reply: oneshot::Sender<Reply>) -> (u16, u64) {
        while self.pending.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(id, Pending { seq, reply });
        (id, seq)
    }

    fn is_waiting(&self, id: u16, seq: u64) -> bool {
        self.pending.get(&id).is_some_and(|p| p.seq == seq)
    }

    /// Marks the connection lost and tells every waiting query why.
    fn lose(&mut self, reason: &str) {
        if self.lost.is_none() {
            self.lost = Some(reason.to_owned());
        }
        for (_, pending) in self.pending.drain() {
            let _ = pending
                .reply
                .send(Err(ExchangeError::Lost(reason.to_owned())));
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An open `DoT` connection; dropping it closes the connection.
pub(super) struct DotConnection {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
    reader: AbortHandle,
    writer: AbortHandle,
}

impl Drop for DotConnection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl DotConnection {
    /// Starts the connection's tasks on an established TLS stream to `peer`.
    pub(super) fn start(stream: TlsStream<TcpStream>, peer: SocketAddr, timeout: Duration) -> Self {
        let (read, write) = tokio::io::split(stream);
        let shared = Arc::new(Shared::default());
        shared.lock().next_id = rand::random();
        let (outgoing, queued) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_replies(read, Arc::clone(&shared), peer)).abort_handle();
        let writer =
            tokio::spawn(write_queries(write, queued, Arc::clone(&shared), timeout)).abort_handle();
        Self {
            outgoing,
            shared,
            reader,
            writer,
        }
    }

    /// Whether the connection failed or was closed (it takes no more queries).
    pub(super) fn is_lost(&self) -> bool {
        self.shared.lock().lost.is_some()
    }

    /// Sends `wire` (a query; its id is replaced) and waits for the reply, the timeout or the
    /// loss of the connection.
    pub(super) async fn exchange(&self, wire: Vec<u8>) -> Reply {
        let (reply, answer) = oneshot::channel();
        if self.outgoing.send(Outgoing { wire, reply }).is_err() {
            return Err(ExchangeError::Lost("the connection is closed".to_owned()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(ExchangeError::Lost("the connection is closed".to_owned())))
    }
}

async fn write_queries(
    mut write: WriteHalf<TlsStream<TcpStream>>,
    mut queued: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut bytes = Vec::new();
    let mut sent = Vec::with_capacity(WRITE_BATCH);
    // (deadline, id, seq) in send order, hence in deadline order.
    let mut deadlines: VecDeque<(Instant, u16, u64)> = VecDeque::new();
    loop {
        let next_deadline = deadlines.front().map(|&(at, _, _)| at);
        tokio::select! {
            count = queued.recv_many(&mut batch, WRITE_BATCH) => {
                if count == 0 {
                    return; // the connection was dropped
                }
                bytes.clear();
                sent.clear();
                {
                    let mut state = shared.lock();
                    if let Some(reason) = &state.lost {
                        for query in batch.drain(..) {
                            let _ = query.reply.send(Err(ExchangeError::Lost(reason.clone())));
                        }
                        continue;
                    }
                    // Deadlines of queries already answered need no timer any more.
                    while deadlines
                        .front()
                        .is_some_and(|&(_, id, seq)| !state.is_waiting(id, seq))
                    {
                        deadlines.pop_front();
                    }
                    for mut query in batch.drain(..) {
                        let Ok(len) = u16::try_from(query.wire.len()) else {
                            let _ = query.reply.send(Err(ExchangeError::BadReply(
                                "query too long".to_owned(),
                            )));
                            continue;
                        };
                        let (id, seq) = state.register(query.reply);
                        query.wire[..2].copy_from_slice(&id.to_be_bytes());
                        bytes.extend_from_slice(&len.to_be_bytes());
                        bytes.extend_from_slice(&query.wire);
                        sent.push((id, seq));
                    }
                }
                let written = async {
                    write.write_all(&bytes).await?;
                    write.flush().await
                };
                if let Err(e) = written.await {
                    shared.lock().lose(&format!("sending failed: {e}"));
                    return;
                }
                let deadline = Instant::now() + timeout;
                deadlines.extend(sent.iter().map(|&(id, seq)| (deadline, id, seq)));
            }
            () = sleep_until(next_deadline) => {
                let now = Instant::now();
                let mut state = shared.lock();
                while let Some(&(at, id, seq)) = deadlines.front() {
                    if at > now {
                        break;
                    }
                    deadlines.pop_front();
                    if state.is_waiting(id, seq)
                        && let Some(pending) = state.pending.remove(&id)
                    {
                        let _ = pending.reply.send(Err(ExchangeError::Timeout(timeout)));
                    }
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn read_replies(read: ReadHalf<TlsStream<TcpStream>>, shared: Arc<Shared>, peer: SocketAddr) {
    let mut read = BufReader::with_capacity(READ_BUFFER, read);
    let reason = loop {
        let mut len = [0u8; 2];
        if let Err(e) = read.read_exact(&mut len).await {
            break closed_reason(&e, peer);
        }
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if let Err(e) = read.read_exact(&mut reply).await {
            break closed_reason(&e, peer);
        }
        if reply.len() < 12 {
            break format!("{peer} sent a message shorter than a DNS header");
        }
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        // A reply nobody waits for (its query timed out) is dropped.
        let waiting = shared.lock().pending.remove(&id);
        if let Some(pending) = waiting {
            let _ = pending.reply.send(Ok(reply));
        }
    };
    shared.lock().lose(&reason);
}

fn closed_reason(e: &std::io::Error, peer: SocketAddr) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        format!("{peer} closed the connection")
    } else {
        format!("reading from {peer} failed: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_still_waiting_for_its_reply_is_never_given_out_again() {
        let mut state = State {
            next_id: u16::MAX,
            ..State::default()
        };
        let (first, _first_reply) = oneshot::channel();
        let (id, seq) = state.register(first);
        assert_eq!(id, u16::MAX);
        state.next_id = u16::MAX; // the counter came round
        let (second, _second_reply) = oneshot::channel();
        let (next_id, next_seq) = state.register(second);
        assert_eq!(next_id, 0);
        assert_ne!(seq, next_seq);
        assert!(state.is_waiting(id, seq));
        assert!(!state.is_waiting(id, next_seq));
    }

    #[test]
    fn a_lost_connection_tells_every_waiting_query_why() {
        let mut state = State::default();
        let (reply, mut waiting) = oneshot::channel();
        state.register(reply);
        state.lose("10.0.0.1:853 closed the connection");
        match waiting.try_recv() {
            Ok(Err(ExchangeError::Lost(reason))) => assert!(reason.contains("closed"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(state.pending.is_empty());
        assert!(state.lost.is_some());
    }
}
