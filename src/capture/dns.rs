//! DNS replies seen by the capture: the IP ID and DF bit of each reply to the probe's
//! queries, which the socket API does not give (the TTL it does, with `IP_RECVTTL`).
//! Kept by (our port, the server, the DNS id) until the scan asks for them, bounded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use crate::observation::packets::IpFacts;

/// Reply keys held at most; the oldest go first. A name's replies are asked for within
/// seconds of their arrival, so this covers tens of thousands of names in flight.
pub const MAX_DNS_KEYS: usize = 65_536;

/// (our local port, the server's address, the DNS message id).
type ReplyKey = (u16, SocketAddr, u16);

#[derive(Debug, Clone, Copy)]
struct LoggedReply {
    /// Size of the DNS message (the UDP payload).
    size: usize,
    ttl: u8,
    ip: IpFacts,
    taken: bool,
}

/// The IP facts of captured DNS replies, waiting to be matched to the probe's records.
#[derive(Debug)]
pub struct DnsReplyLog {
    replies: HashMap<ReplyKey, Vec<LoggedReply>>,
    order: VecDeque<ReplyKey>,
    max_keys: usize,
}

impl Default for DnsReplyLog {
    fn default() -> Self {
        DnsReplyLog::with_limit(MAX_DNS_KEYS)
    }
}

impl DnsReplyLog {
    pub fn with_limit(max_keys: usize) -> DnsReplyLog {
        DnsReplyLog {
            replies: HashMap::new(),
            order: VecDeque::new(),
            max_keys,
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.replies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Log a reply from `server` to our `local_port` (its DNS id and message size).
    pub fn insert(
        &mut self,
        local_port: u16,
        server: SocketAddr,
        id: u16,
        size: usize,
        ip: IpFacts,
    ) {
        let key = (local_port, server, id);
        let entry = self.replies.entry(key).or_default();
        if entry.is_empty() {
            self.order.push_back(key);
        }
        // An injector may answer many times; a flood must not grow one key without end.
        if entry.len() < 16 {
            entry.push(LoggedReply {
                size,
                ttl: ip.ttl,
                ip,
                taken: false,
            });
        }
        while self.order.len() > self.max_keys {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
    }

    /// The IP facts of the reply the probe recorded (same key, size and TTL; forged and
    /// genuine replies to one query share the key, and differ in size or TTL when they
    /// differ at all), each logged reply given out once. Without a TTL, the first of that
    /// size.
    pub fn take(
        &mut self,
        local_port: u16,
        server: SocketAddr,
        id: u16,
        size: usize,
        ttl: Option<u8>,
    ) -> Option<IpFacts> {
        let entry = self.replies.get_mut(&(local_port, server, id))?;
        let found = entry
            .iter_mut()
            .find(|r| !r.taken && r.size == size && ttl.is_none_or(|t| t == r.ttl))?;
        found.taken = true;
        Some(found.ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(ttl: u8, ip_id: u16, df: bool) -> IpFacts {
        IpFacts {
            ttl,
            ip_id: Some(ip_id),
            df: Some(df),
        }
    }

    #[test]
    fn forged_and_genuine_replies_to_one_query_are_told_apart_by_size_and_ttl() {
        let resolver: SocketAddr = "198.19.0.53:53".parse().unwrap();
        let mut log = DnsReplyLog::default();
        log.insert(40000, resolver, 7, 45, facts(201, 0, false)); // forged, first
        log.insert(40000, resolver, 7, 61, facts(60, 4321, true)); // genuine
        assert_eq!(
            log.take(40000, resolver, 7, 61, Some(60)),
            Some(facts(60, 4321, true))
        );
        assert_eq!(
            log.take(40000, resolver, 7, 45, Some(201)),
            Some(facts(201, 0, false))
        );
        // Given out once; other ports, ids and servers have nothing.
        assert_eq!(log.take(40000, resolver, 7, 45, Some(201)), None);
        assert_eq!(log.take(40001, resolver, 7, 61, Some(60)), None);
        assert_eq!(log.take(40000, resolver, 8, 61, Some(60)), None);
    }

    #[test]
    fn the_log_is_bounded_oldest_first() {
        let resolver: SocketAddr = "198.19.0.53:53".parse().unwrap();
        let mut log = DnsReplyLog::with_limit(2);
        for id in 0..3 {
            log.insert(40000, resolver, id, 50, facts(60, id, true));
        }
        assert_eq!(log.len(), 2);
        assert_eq!(log.take(40000, resolver, 0, 50, None), None);
        assert!(log.take(40000, resolver, 2, 50, None).is_some());
    }
}
