//! Blackholes seen in round trips: after a probe has written its request or `ClientHello`,
//! the kernel's `TCP_INFO` for the socket says whether the server acknowledged the bytes.
//!
//! - Bytes the server acknowledged and no answer yet: a slow server. Keep waiting (up to the
//!   probe's own deadline).
//! - Bytes never acknowledged while the kernel retransmits them: the path drops the flow (a
//!   censor blackholing it after seeing the Host or SNI). The probe calls it a timeout
//!   after a few retransmission timeouts ([`StallPolicy`]) instead of the full
//!   `--web-timeout`, and the evidence says how many retransmissions and how many bytes.
//!
//! The only `unsafe` of the crate: `getsockopt(TCP_INFO)`, which neither nix nor
//! socket2 wraps.
#![allow(unsafe_code)]

use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// When unacknowledged, retransmitted data counts as dropped by the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StallPolicy {
    /// Consecutive retransmission timeouts of the same data with no ACK.
    pub min_retransmits: u8,
    /// Never decide earlier than this after the write (a floor against tiny RTOs).
    pub floor: Duration,
    /// How often `TCP_INFO` is read.
    pub poll: Duration,
}

impl Default for StallPolicy {
    fn default() -> Self {
        StallPolicy {
            // Linux's RTO is 200 ms or more and doubles: two timeouts take at least
            // 0.6 s, many round trips of any path that ACKed the handshake; the floor
            // makes it 1 s at least.
            min_retransmits: 2,
            floor: Duration::from_secs(1),
            poll: Duration::from_millis(50),
        }
    }
}

/// The kernel's view of a connection whose data was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stall {
    /// Data segments sent and not acknowledged.
    pub unacked_segments: u32,
    /// Bytes written by the probe and not acknowledged.
    pub unacked_bytes: u64,
    /// Consecutive retransmission timeouts without an ACK.
    pub retransmits: u8,
    /// Retransmitted segments over the connection's life.
    pub total_retransmits: u32,
    /// Smoothed RTT (of the handshake), microseconds.
    pub rtt_us: u32,
    /// Current retransmission timeout, microseconds.
    pub rto_us: u32,
    /// Since the last ACK from the server, milliseconds.
    pub since_last_ack_ms: u32,
    /// Since the probe finished writing, milliseconds.
    pub since_write_ms: u64,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dropped in the path: {} byte(s) in {} segment(s) never acknowledged, retransmitted {} time(s) \
             ({} consecutive timeouts) over {} ms; RTT {:.1} ms, RTO {} ms, last ACK {} ms ago",
            self.unacked_bytes,
            self.unacked_segments,
            self.total_retransmits,
            self.retransmits,
            self.since_write_ms,
            f64::from(self.rtt_us) / 1000.0,
            self.rto_us / 1000,
            self.since_last_ack_ms
        )
    }
}

/// The fields of `struct tcp_info` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TcpInfo {
    pub unacked_segments: u32,
    pub retransmits: u8,
    pub total_retransmits: u32,
    pub rtt_us: u32,
    pub rto_us: u32,
    pub last_ack_recv_ms: u32,
    pub bytes_acked: u64,
}

/// `getsockopt(fd, IPPROTO_TCP, TCP_INFO)`.
pub(super) fn tcp_info(socket: &impl AsFd) -> std::io::Result<TcpInfo> {
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: `tcp_info` is plain old data, so all-zero is a valid value; the pointer
    // and length describe that one local value, which outlives the call; the kernel
    // writes at most `len` bytes into it; `fd` is borrowed from a live socket.
    let (rc, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast::<libc::c_void>(),
            &raw mut len,
        );
        (rc, info)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TcpInfo {
        unacked_segments: info.tcpi_unacked,
        retransmits: info.tcpi_retransmits,
        total_retransmits: info.tcpi_total_retrans,
        rtt_us: info.tcpi_rtt,
        rto_us: info.tcpi_rto,
        last_ack_recv_ms: info.tcpi_last_ack_recv,
        bytes_acked: info.tcpi_bytes_acked,
    })
}

/// Judge one reading: `Some` when the `written` bytes (all written by `since_write`)
/// count as dropped by the path.
pub(super) fn judge(
    info: &TcpInfo,
    written: u64,
    since_write: Duration,
    policy: &StallPolicy,
) -> Option<Stall> {
    let dropped = info.unacked_segments > 0
        && info.retransmits >= policy.min_retransmits
        && since_write >= policy.floor
        // No ACK since the write: none of our data got through.
        && Duration::from_millis(u64::from(info.last_ack_recv_ms)) + policy.poll >= since_write;
    dropped.then(|| Stall {
        unacked_segments: info.unacked_segments,
        // The handshake's SYN counts in `bytes_acked` on some kernels.
        unacked_bytes: written.saturating_sub(info.bytes_acked.saturating_sub(1)),
        retransmits: info.retransmits,
        total_retransmits: info.total_retransmits,
        rtt_us: info.rtt_us,
        rto_us: info.rto_us,
        since_last_ack_ms: info.last_ack_recv_ms,
        since_write_ms: since_write.as_millis() as u64,
    })
}

/// Resolves once the `written` bytes, all written by `write_done`, count as dropped by
/// the path; pending forever while the server acknowledges them (a slow server) or
/// when `TCP_INFO` cannot be read. Race it against the read.
pub(super) async fn dropped_in_path(
    socket: &impl AsFd,
    written: u64,
    write_done: Instant,
    policy: StallPolicy,
) -> Stall {
    tokio::time::sleep_until(tokio::time::Instant::from_std(write_done + policy.floor)).await;
    loop {
        match tcp_info(socket) {
            Ok(info) => {
                if let Some(stall) = judge(&info, written, write_done.elapsed(), &policy) {
                    return stall;
                }
            }
            Err(_) => std::future::pending::<()>().await,
        }
        tokio::time::sleep(policy.poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(unacked: u32, retransmits: u8, last_ack_ms: u32) -> TcpInfo {
        TcpInfo {
            unacked_segments: unacked,
            retransmits,
            total_retransmits: u32::from(retransmits),
            rtt_us: 150,
            rto_us: 1_600_000,
            last_ack_recv_ms: last_ack_ms,
            bytes_acked: 1,
        }
    }

    #[test]
    fn unacked_retransmitted_data_is_a_drop_only_after_the_floor() {
        let policy = StallPolicy::default();
        let stall =
            judge(&info(1, 2, 1500), 199, Duration::from_millis(1450), &policy).expect("dropped");
        assert_eq!((stall.unacked_bytes, stall.retransmits), (199, 2));
        assert!(stall.to_string().contains("199 byte(s)"), "{stall}");
        assert!(judge(&info(1, 1, 1500), 199, Duration::from_millis(1450), &policy).is_none());
        let eager = StallPolicy {
            min_retransmits: 1,
            ..policy
        };
        assert!(
            judge(&info(1, 1, 300), 199, Duration::from_millis(300), &eager).is_none(),
            "never before the floor"
        );
    }

    #[test]
    fn acknowledged_data_is_a_slow_server() {
        let policy = StallPolicy::default();
        // Nothing in flight: the server ACKed the request and thinks.
        assert!(judge(&info(0, 0, 1400), 199, Duration::from_secs(2), &policy).is_none());
        // An ACK arrived after the write: data got through.
        assert!(judge(&info(1, 3, 200), 199, Duration::from_secs(2), &policy).is_none());
    }

    #[tokio::test]
    async fn a_live_socket_reads_its_tcp_info_and_an_acked_request_is_not_a_drop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            // A slow server: reads nothing, answers nothing, keeps the connection.
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(socket);
        });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let written = Instant::now();
        let policy = StallPolicy {
            min_retransmits: 1,
            floor: Duration::from_millis(300),
            poll: Duration::from_millis(20),
        };
        let waited = tokio::time::timeout(
            Duration::from_millis(1200),
            dropped_in_path(&stream, 18, written, policy),
        )
        .await;
        assert!(waited.is_err(), "the kernel ACKed the bytes: a slow server");
        let now = tcp_info(&stream).unwrap();
        assert_eq!(now.unacked_segments, 0);
        assert!(now.bytes_acked >= 18, "{now:?}");
        server.abort();
    }
}
