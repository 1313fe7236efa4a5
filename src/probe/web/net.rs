//! TCP plumbing shared by the HTTP and TLS probes: the global connection budget
//! (back-pressure instead of `Too many open files`) and a connect with a deadline
//! that records what happened.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::capture::{FlowTicket, ProbeCapture};
use crate::observation::packets::CaptureObservation;
use crate::observation::web::{ConnectObservation, ConnectStatus};

/// File descriptors kept out of the budget for everything else the process opens
/// (DNS sockets, report files, capture handles, the runtime itself), at most: under a
/// low limit half of it is kept (see [`fd_budget_for`]).
pub const DEFAULT_FD_RESERVE: usize = 1024;

/// A global cap on open probe sockets. Every probe connection holds one permit from
/// before its socket is created until it is closed, and so does every lookup through
/// the control (its sockets are descriptors too, see
/// [`crate::probe::control::ControlResolver::share_fd_budget`]), so the probe never runs out
/// of file descriptors: excess work waits here instead.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    permits: Arc<Semaphore>,
    capacity: usize,
}

/// One probe socket's share of the budget; released when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
}

impl ConnectionBudget {
    /// A budget of `max_sockets` concurrent probe connections (at least 1).
    pub fn new(max_sockets: usize) -> Self {
        let capacity = max_sockets.max(1);
        ConnectionBudget {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// A budget sized from the soft `RLIMIT_NOFILE` by [`fd_budget_for`].
    pub fn from_fd_limit(reserve: usize) -> Self {
        let limit = fd_soft_limit().unwrap_or(1024);
        Self::new(fd_budget_for(limit, reserve))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Permits not in use right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Wait for a free socket slot.
    pub async fn acquire(&self) -> ConnectionPermit {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the budget's semaphore is never closed");
        ConnectionPermit { _permit: permit }
    }
}

/// Sockets the budget allows under a descriptor limit of `limit`: the limit minus a
/// reserve for the rest of the process, which is `reserve` but never more than half the
/// limit. (A fixed reserve larger than a low limit left a floor of 16 that, with the
/// control's sockets outside the budget, ran the process out of descriptors.) The
/// budget never exceeds the limit; it is at least 1.
pub fn fd_budget_for(limit: usize, reserve: usize) -> usize {
    let reserve = reserve.min(limit / 2);
    limit.saturating_sub(reserve).max(1)
}

/// The soft limit on open file descriptors, if it can be read and is finite.
pub fn fd_soft_limit() -> Option<usize> {
    let (soft, _hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    usize::try_from(soft).ok()
}

/// How long a probe waits, after its exchange is over, for the server to close
/// first: the side that closes first keeps the connection in `TIME_WAIT`, and at
/// thousands of probes per second to one server the probe would run out of ports.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Wait (at most [`CLOSE_GRACE`]) for the server's FIN, discarding what arrives.
pub(crate) async fn await_server_close(stream: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 2048];
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Milliseconds between two instants, as reported in observations.
pub(crate) fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// What an I/O error on a probe connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoFailure {
    Reset,
    Refused,
    TimedOut,
    Other,
}

pub(crate) fn classify_io_error(err: &io::Error) -> IoFailure {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => IoFailure::Reset,
        io::ErrorKind::ConnectionRefused => IoFailure::Refused,
        io::ErrorKind::TimedOut => IoFailure::TimedOut,
        _ => IoFailure::Other,
    }
}

/// An established probe connection and its budget permit.
pub(crate) struct Connection {
    pub stream: TcpStream,
    /// Held for as long as the socket is open.
    pub permit: ConnectionPermit,
}

/// How long to wait before trying again to create a socket when the process is out
/// of descriptors anyway (something outside the budget holds them); the pause doubles
/// up to [`FD_EXHAUSTED_MAX_PAUSE`].
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(10);
const FD_EXHAUSTED_MAX_PAUSE: Duration = Duration::from_millis(200);

fn new_socket(ip: IpAddr) -> io::Result<TcpSocket> {
    match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
}

fn is_fd_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE)
}

/// Create a socket with `create`, waiting as long as the process is out of file
/// descriptors: a shortage is back-pressure, never an outcome. Every descriptor held
/// elsewhere (DNS, control lookups, other probes) is released within its own
/// deadline, so the wait ends.
async fn new_socket_when_available<S>(mut create: impl FnMut() -> io::Result<S>) -> io::Result<S> {
    let mut pause = FD_EXHAUSTED_PAUSE;
    let mut warned = false;
    loop {
        match create() {
            Err(err) if is_fd_exhaustion(&err) => {
                if !warned {
                    tracing::warn!(
                        "out of file descriptors outside the socket budget: waiting ({err})"
                    );
                    warned = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(FD_EXHAUSTED_MAX_PAUSE);
            }
            other => return other,
        }
    }
}

/// A probe connection's part in the packet capture.
#[derive(Debug)]
pub(crate) enum FlowCapture {
    /// The flow is registered: its packets are taken at the end of the exchange.
    Registered(FlowTicket),
    /// Not captured: what the observation says instead (nothing with capture off).
    Not(Option<CaptureObservation>),
}

impl FlowCapture {
    /// The observation's `capture` once the exchange is over (at `exchange_end`, cleanly
    /// or not: a failed exchange waits for late packets, see [`crate::capture::SETTLE`]).
    /// The captured flow also tells our address when the connect did not (a refused
    /// or reset connect).
    pub(crate) async fn finish(
        self,
        clean: bool,
        exchange_end: Instant,
        connect: &mut ConnectObservation,
    ) -> Option<CaptureObservation> {
        match self {
            FlowCapture::Not(observation) => observation,
            FlowCapture::Registered(ticket) => {
                let packets = ticket.finish(clean, exchange_end).await;
                if connect.local_addr.is_none() && !packets.flow.client.ip().is_unspecified() {
                    connect.local_addr = Some(packets.flow.client);
                }
                Some(CaptureObservation::Captured(packets))
            }
        }
    }
}

/// Bind the socket (so its local port is known before the SYN) and register the flow
/// with the capture. Without a live capture the socket is left unbound, as it always
/// was: `bind(0)` makes the port exclusive on the host rather than per destination.
fn register_flow(socket: &TcpSocket, target: SocketAddr, capture: &ProbeCapture) -> FlowCapture {
    let Some(live) = capture.live() else {
        return FlowCapture::Not(capture.not_captured(None));
    };
    let unspecified: IpAddr = match target {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let bound = socket
        .bind(SocketAddr::new(unspecified, 0))
        .and_then(|()| socket.local_addr());
    match bound {
        Ok(local) => match live.register(local, target) {
            Ok(ticket) => FlowCapture::Registered(ticket),
            Err(reason) => FlowCapture::Not(capture.not_captured(Some(&reason))),
        },
        Err(err) => FlowCapture::Not(
            capture.not_captured(Some(&format!("binding the socket failed: {err}"))),
        ),
    }
}

/// Connect to (ip, port) within `timeout`, recording the outcome. The clock starts
/// once a socket slot was obtained, so waiting for the budget is not counted. With a
/// live capture the flow is registered before the SYN.
pub(crate) async fn connect(
    ip: IpAddr,
    port: u16,
    timeout: Duration,
    budget: &ConnectionBudget,
    capture: &ProbeCapture,
) -> (ConnectObservation, Instant, Option<Connection>, FlowCapture) {
    let permit = budget.acquire().await;
    let socket = new_socket_when_available(|| new_socket(ip)).await;
    let start = Instant::now();
    let socket = match socket {
        Ok(socket) => socket,
        Err(err) => {
            let obs = failed_connect(ConnectStatus::Error, &err, start, None);
            let why = format!("no socket: {err}");
            return (
                obs,
                start,
                None,
                FlowCapture::Not(capture.not_captured(Some(&why))),
            );
        }
    };
    // Probe connections are short; Nagle would only delay the request.
    let _ = socket.set_nodelay(true);
    let target = SocketAddr::new(ip, port);
    let flow = register_flow(&socket, target, capture);
    let deadline = tokio::time::Instant::from_std(start + timeout);
    match tokio::time::timeout_at(deadline, socket.connect(target)).await {
        Ok(Ok(stream)) => {
            let obs = ConnectObservation {
                status: ConnectStatus::Ok,
                errno: None,
                error: None,
                connect_ms: ms_between(start, Instant::now()),
                local_addr: stream.local_addr().ok(),
            };
            let conn = Connection { stream, permit };
            (obs, start, Some(conn), flow)
        }
        Ok(Err(err)) => {
            let status = match classify_io_error(&err) {
                IoFailure::Refused => ConnectStatus::Refused,
                IoFailure::Reset => ConnectStatus::Reset,
                IoFailure::TimedOut => ConnectStatus::Timeout,
                IoFailure::Other => ConnectStatus::Error,
            };
            (failed_connect(status, &err, start, None), start, None, flow)
        }
        Err(_elapsed) => {
            let obs = ConnectObservation {
                status: ConnectStatus::Timeout,
                errno: None,
                error: None,
                connect_ms: ms_between(start, Instant::now()),
                local_addr: None,
            };
            (obs, start, None, flow)
        }
    }
}

fn failed_connect(
    status: ConnectStatus,
    err: &io::Error,
    start: Instant,
    local_addr: Option<SocketAddr>,
) -> ConnectObservation {
    ConnectObservation {
        status,
        errno: err.raw_os_error(),
        error: Some(err.to_string()),
        connect_ms: ms_between(start, Instant::now()),
        local_addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn connect_to_listener_is_ok_and_records_local_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let budget = ConnectionBudget::new(4);
        let (obs, _, conn, _) = connect(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            Duration::from_secs(5),
            &budget,
            &ProbeCapture::Off,
        )
        .await;
        assert_eq!(obs.status, ConnectStatus::Ok);
        assert!(obs.local_addr.is_some());
        assert!(conn.is_some());
        assert_eq!(budget.available(), 3, "an open connection holds a permit");
        drop(conn);
        assert_eq!(budget.available(), 4);
    }

    #[tokio::test]
    async fn connect_to_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let budget = ConnectionBudget::new(1);
        let (obs, _, conn, _) = connect(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            Duration::from_secs(5),
            &budget,
            &ProbeCapture::Off,
        )
        .await;
        assert_eq!(obs.status, ConnectStatus::Refused);
        assert_eq!(obs.errno, Some(libc::ECONNREFUSED));
        assert!(conn.is_none());
        assert_eq!(
            budget.available(),
            1,
            "a failed connect releases its permit"
        );
    }

    #[tokio::test]
    async fn budget_makes_excess_connects_wait() {
        let budget = ConnectionBudget::new(1);
        let held = budget.acquire().await;
        let blocked = tokio::time::timeout(Duration::from_millis(50), budget.acquire()).await;
        assert!(
            blocked.is_err(),
            "a second permit must not be granted while one is held"
        );
        drop(held);
        let granted = tokio::time::timeout(Duration::from_secs(5), budget.acquire()).await;
        assert!(granted.is_ok());
    }

    #[test]
    fn budget_keeps_a_reserve_that_fits_the_limit() {
        // A low limit: half is kept for the rest of the process, half is the budget.
        assert_eq!(fd_budget_for(64, DEFAULT_FD_RESERVE), 32);
        assert_eq!(fd_budget_for(1024, DEFAULT_FD_RESERVE), 512);
        // A high limit: the whole reserve is kept.
        assert_eq!(fd_budget_for(20_000, DEFAULT_FD_RESERVE), 20_000 - 1024);
        for limit in [1, 2, 16, 64, 100, 1024, 4096] {
            let budget = fd_budget_for(limit, DEFAULT_FD_RESERVE);
            assert!(budget >= 1 && budget <= limit.max(1), "{limit}: {budget}");
        }
    }

    #[tokio::test]
    async fn fd_exhaustion_is_waited_out_not_returned() {
        let mut failures_left = 3;
        let created = new_socket_when_available(|| {
            if failures_left > 0 {
                failures_left -= 1;
                Err(io::Error::from_raw_os_error(libc::EMFILE))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(created.unwrap(), 7);
        assert_eq!(failures_left, 0);
        // Other errors are returned as they are.
        let other = new_socket_when_available(|| -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
        })
        .await;
        assert_eq!(other.unwrap_err().raw_os_error(), Some(libc::EAFNOSUPPORT));
    }

    #[test]
    fn fd_limit_is_readable() {
        assert!(fd_soft_limit().is_some_and(|n| n > 0));
    }
}
