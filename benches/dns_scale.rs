//! The DNS stage at scale under massdns-like conditions: the release binary scans N names
//! with `--tests dns --qtype A` from one network namespace, through a veth link, against
//! Debian's `knot` authoritative server (`knotd`) in another. Prints one row per mode:
//! names/s, the scan's CPU µs per name, its peak RSS, report bytes per name and per `ok`
//! name, how many names were answered wrong, how many control lookups failed. Asserts
//! nothing about speed; exits non-zero when the setup fails. Needs root and `knotd`
//! (`.ci/install-deps`).
//!
//! `cargo bench --bench dns_scale -- [--names N] [--mode closest|real|real-dot|all]
//! [--concurrency C] [--extra 'more scan args'] [--server-batch]`
//!
//! knotd: 4 UDP workers, each with its own socket, at nice -10 (see `Knot::start`);
//! `--server-batch` runs it under `SCHED_BATCH`, so that its wake-ups do not preempt
//! the probe on the shared cores.
//!
//! - `closest`: closest to massdns: `--control none --rate 0 --retries 0 --dns-wait 0s`.
//! - `real`: `--rate 0 --dns-wait 1s`, a sink that drops everything (`--dns-sink`) and a
//!   UDP control (a second address of the same knotd).
//! - `real-dot`: `real` with a DNS-over-TLS control: the project's own server
//!   (`servers::dns`, hickory-server) on threads of this process, in the server namespace,
//!   holding the same zone, with a certificate from a throwaway CA passed with `--ca`.
//!
//! Every name `n{i}.bench.test` has its own address, so a wrong answer is seen. The two
//! namespaces (`cp-dnsscale<pid>-cli`, `-srv`) use 198.18.0.0/15 only, have no route out,
//! and while they exist the host holds a `prohibit 198.18.0.0/15` route, shared with the
//! lab's (the `cp-` prefix makes the lab count them). Everything is removed on return, on
//! panic and on SIGINT/SIGTERM/SIGHUP. Set `CENSORPROBE_BENCH_EXE` to measure another
//! build, `CENSORPROBE_BENCH_KEEP=DIR` to keep the reports.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use censorprobe::lab::netns;
use censorprobe::lab::signals::StopSignals;
use censorprobe::lab::topology;
use censorprobe::servers::ca::LabCa;
use censorprobe::servers::dns::{AuthoritativeDns, TlsEndpoint, ZoneSpec};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::resource::{UsageWho, getrusage};

const ZONE: &str = "bench.test";
/// The client's end of the link.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// knotd, as the resolver under test.
const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// knotd again, as the UDP control.
const CONTROL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// On the link, resolved to a MAC nobody owns: every packet to it vanishes, no ICMP.
const SINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
const SINK_MAC: &str = "02:00:5e:00:de:ad";
/// The project's own server, as the `DoT` control.
const DOT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);
const DOT_NAME: &str = "dot.bench.test";
/// The benign name (`--control-name`): its address tells the classifier, without a
/// control, that 198.18.0.0/15 is this network's normal address space.
const BENIGN_NAME: &str = "benign.bench.test";
const BENIGN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const HOST_ROUTE: &str = "198.18.0.0/15";
/// Names' addresses start above the link's /24 and wrap after this many (1M names share).
const ADDRESS_BASE: u32 = u32::from_be_bytes([198, 18, 1, 0]);
const ADDRESS_SPAN: u32 = (1 << 17) - 256;

/// The address of `n{i}.bench.test`.
fn address_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(ADDRESS_BASE + (i as u32 % ADDRESS_SPAN))
}

type BenchResult<T> = Result<T, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Closest,
    Real,
    RealDot,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Closest => "closest",
            Mode::Real => "real",
            Mode::RealDot => "real-dot",
        }
    }

    /// The mode's scan flags (flag, value); `None` for a flag without a value.
    fn flags(self, ca_pem: &Path) -> Vec<(&'static str, Option<String>)> {
        let sink = || ("--dns-sink", Some(SINK_IP.to_string()));
        match self {
            Mode::Closest => vec![
                ("--control", Some("none".to_owned())),
                ("--rate", Some("0".to_owned())),
                ("--retries", Some("0".to_owned())),
                ("--dns-wait", Some("0s".to_owned())),
            ],
            Mode::Real => vec![
                ("--rate", Some("0".to_owned())),
                ("--dns-wait", Some("1s".to_owned())),
                sink(),
                ("--control", Some(format!("udp:{CONTROL_IP}"))),
            ],
            Mode::RealDot => vec![
                ("--rate", Some("0".to_owned())),
                ("--dns-wait", Some("1s".to_owned())),
                sink(),
                ("--control", Some(format!("dot:{DOT_IP}:853#{DOT_NAME}"))),
                ("--ca", Some(ca_pem.display().to_string())),
            ],
        }
    }
}

struct Options {
    names: usize,
    modes: Vec<Mode>,
    concurrency: usize,
    extra: Vec<String>,
    /// knotd under `SCHED_BATCH` (`--server-batch`).
    server_batch: bool,
}

fn parse_options(args: &[String]) -> BenchResult<Options> {
    let mut options = Options {
        names: 100_000,
        modes: vec![Mode::Closest, Mode::Real, Mode::RealDot],
        concurrency: 5000,
        extra: Vec::new(),
        server_batch: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            "--names" => {
                options.names = value()?.parse().map_err(|e| format!("--names: {e}"))?;
            }
            "--concurrency" => {
                options.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?;
            }
            "--mode" => {
                options.modes = match value()?.as_str() {
                    "closest" => vec![Mode::Closest],
                    "real" => vec![Mode::Real],
                    "real-dot" => vec![Mode::RealDot],
                    "all" => vec![Mode::Closest, Mode::Real, Mode::RealDot],
                    other => {
                        return Err(format!("--mode {other:?}: closest, real, real-dot or all"));
                    }
                };
            }
            "--server-batch" => options.server_batch = true,
            "--extra" => {
                options.extra = value()?.split_whitespace().map(str::to_owned).collect();
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.names == 0 {
        return Err("--names must be at least 1".to_owned());
    }
    Ok(options)
}

/// The two namespaces and the host route; removed when dropped.
struct BenchNet {
    client: String,
    server: String,
    created: Vec<String>,
}

impl BenchNet {
    fn create() -> BenchResult<BenchNet> {
        let pid = std::process::id();
        let mut net = BenchNet {
            client: format!("{}dnsscale{pid}-cli", topology::NAMESPACE_PREFIX),
            server: format!("{}dnsscale{pid}-srv", topology::NAMESPACE_PREFIX),
            created: Vec::new(),
        };
        {
            // The lab's lock: the host route is shared with every lab namespace.
            let _lock = host_lock()?;
            for name in [net.client.clone(), net.server.clone()] {
                if netns::list().contains(&name) {
                    return Err(format!("namespace {name} exists already"));
                }
                run_ip(&["netns", "add", &name])?;
                net.created.push(name);
            }
            let present = netns::run(
                "ip",
                &["route", "show", "type", "prohibit", HOST_ROUTE],
                None,
            )
            .map_err(|e| e.to_string())?;
            if present.trim().is_empty() {
                run_ip(&["route", "add", "prohibit", HOST_ROUTE])?;
            }
        }
        net.configure()?;
        Ok(net)
    }

    fn configure(&self) -> BenchResult<()> {
        let batch =
            |ns: &str, lines: &[String]| netns::ip_batch(ns, lines).map_err(|e| e.to_string());
        batch(
            &self.client,
            &[
                format!(
                    "link add dsc0 type veth peer name dss0 netns {}",
                    self.server
                ),
                format!("addr add {CLIENT_IP}/24 dev dsc0"),
                "link set lo up".to_owned(),
                "link set dsc0 up".to_owned(),
                // A MAC nobody owns: the server's end drops these frames unseen.
                format!("neigh add {SINK_IP} lladdr {SINK_MAC} dev dsc0 nud permanent"),
            ],
        )?;
        batch(
            &self.server,
            &[
                format!("addr add {RESOLVER_IP}/24 dev dss0"),
                format!("addr add {CONTROL_IP}/32 dev dss0"),
                format!("addr add {DOT_IP}/32 dev dss0"),
                "link set lo up".to_owned(),
                "link set dss0 up".to_owned(),
            ],
        )?;
        let no_ipv6 = [
            ("net/ipv6/conf/all/disable_ipv6", "1"),
            ("net/ipv6/conf/default/disable_ipv6", "1"),
        ];
        for ns in [&self.client, &self.server] {
            netns::sysctls(ns, &no_ipv6).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        // Removes the host route too when no lab namespace is left.
        for failure in topology::remove_namespaces(&self.created) {
            eprintln!("dns_scale: teardown: {failure}");
        }
    }
}

fn run_ip(args: &[&str]) -> BenchResult<()> {
    netns::run("ip", args, None)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The lock the lab takes around namespace creation and the host route.
fn host_lock() -> BenchResult<Flock<File>> {
    std::fs::create_dir_all(topology::RUN_DIR)
        .map_err(|e| format!("create {}: {e}", topology::RUN_DIR))?;
    let path = format!("{}/host-route.lock", topology::RUN_DIR);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| format!("lock {path}: {e}"))
}

/// knotd in the server namespace; killed (by its pid) when dropped.
struct Knot {
    child: Child,
    log: PathBuf,
}

impl Knot {
    fn start(net: &BenchNet, dir: &Path, names: usize, batch: bool) -> BenchResult<Knot> {
        let zone_path = dir.join("bench.test.zone");
        write_zone_file(&zone_path, names).map_err(|e| format!("write the zone: {e}"))?;
        let db = dir.join("knot-db");
        std::fs::create_dir_all(&db).map_err(|e| format!("create {}: {e}", db.display()))?;
        let conf = format!(
            "server:\n    rundir: \"{dir}\"\n    listen: [ \"{RESOLVER_IP}@53\", \"{CONTROL_IP}@53\" ]\n    \
             udp-workers: 4\n    tcp-workers: 1\n    background-workers: 1\n    \
             socket-affinity: on\n\
             log:\n  - target: stderr\n    any: warning\n\
             database:\n    storage: \"{db}\"\n\
             template:\n  - id: default\n    storage: \"{dir}\"\n    journal-content: none\n    \
             zonefile-sync: -1\n    semantic-checks: off\n\
             zone:\n  - domain: {ZONE}\n    file: \"{zone}\"\n",
            dir = dir.display(),
            db = db.display(),
            zone = zone_path.display(),
        );
        let conf_path = dir.join("knot.conf");
        std::fs::write(&conf_path, conf).map_err(|e| format!("write knot.conf: {e}"))?;
        let log = dir.join("knot.log");
        let log_file = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        // `--server-batch`: knotd under SCHED_BATCH, which does not preempt the running
        // task when a query wakes it. On these shared cores each wake-up otherwise
        // preempts the probe inside `sendmmsg`, about once per query: a cost a remote
        // server never puts on a probe. It shows how much of the probe's CPU that is
        // (knotd then drains its buffers later, and drops more in `closest`).
        let scheduling: &[&str] = if batch {
            &["chrt", "--batch", "0"]
        } else {
            &[]
        };
        let child = Command::new("ip")
            // knotd keeps the kernel's default UDP receive buffer (~200 KiB, not settable
            // per namespace): while it waits for a CPU on a busy machine, a burst of
            // queries overflows it and the loss would be the bench's, not the probe's. A
            // higher priority lets it drain the buffer in time (it uses no more CPU for it), and
            // `socket-affinity` gives each of its 4 UDP workers a socket, so 4 buffers.
            .args(["netns", "exec", &net.server, "nice", "-n", "-10"])
            .args(scheduling)
            .args(["knotd", "-c"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            // Its own process group: a Ctrl-C in the terminal reaches only this bench,
            // which stops things in order.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start knotd (is the `knot` package installed?): {e}"))?;
        Ok(Knot { child, log })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Waits until knotd answers for the last name on both its addresses.
    fn wait_ready(
        &mut self,
        net: &BenchNet,
        names: usize,
        signals: &StopSignals,
    ) -> BenchResult<()> {
        let last = format!("n{}.{ZONE}", names - 1);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            signals.check().map_err(|e| e.to_string())?;
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("knotd exited ({status}):\n{}", self.log_tail()));
            }
            let name = last.clone();
            let answered = netns::within(&net.client, move || {
                [RESOLVER_IP, CONTROL_IP].iter().all(|server| {
                    answers_a(*server, &name).is_some_and(|ip| ip == address_of(names - 1))
                })
            })
            .map_err(|e| e.to_string())?;
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "knotd did not answer for {last} in 300 s:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One A query to `server`; the first address of the answer.
fn answers_a(server: Ipv4Addr, name: &str) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((CLIENT_IP, 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let mut query = Message::new(0x4242, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    socket.send_to(&query.to_vec().ok()?, (server, 53)).ok()?;
    let mut buf = [0u8; 1500];
    let len = socket.recv(&mut buf).ok()?;
    let reply = Message::from_vec(&buf[..len]).ok()?;
    reply.answers.iter().find_map(|r| match r.data {
        hickory_proto::rr::RData::A(a) => Some(a.0),
        _ => None,
    })
}

fn write_zone_file(path: &Path, names: usize) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "$ORIGIN {ZONE}.\n$TTL 300")?;
    writeln!(
        out,
        "@ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60"
    )?;
    writeln!(
        out,
        "@ NS ns\nns A {RESOLVER_IP}\n{} A {BENIGN_IP}",
        BENIGN_NAME.trim_end_matches(&format!(".{ZONE}"))
    )?;
    for i in 0..names {
        writeln!(out, "n{i} A {}", address_of(i))?;
    }
    out.flush()
}

fn write_target_list(path: &Path, names: usize) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for i in 0..names {
        writeln!(out, "n{i}.{ZONE}")?;
    }
    out.flush()
}

/// The project's DNS server with only a `DoT` listener, on threads of this process that
/// live in the server namespace; stopped when dropped.
struct DotServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DotServer {
    fn start(net: &BenchNet, names: usize, ca: &LabCa) -> BenchResult<DotServer> {
        let mut zone = ZoneSpec::new(ZONE);
        zone.add_address(BENIGN_NAME, IpAddr::V4(BENIGN_IP));
        for i in 0..names {
            zone.add_address(&format!("n{i}.{ZONE}"), IpAddr::V4(address_of(i)));
        }
        let key = ca
            .issue(&[DOT_NAME], &[IpAddr::V4(DOT_IP)])
            .map_err(|e| format!("issue the DoT certificate: {e}"))?;
        let endpoint = TlsEndpoint::new(SocketAddr::from((DOT_IP, 853)), key);
        let (ready_tx, ready_rx) = mpsc::channel::<BenchResult<()>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let namespace = net.server.clone();
        let thread = std::thread::Builder::new()
            .name("dot-server".to_owned())
            .spawn(move || {
                // Threads started from here (the runtime's workers) inherit the namespace.
                if let Err(e) = netns::enter(&namespace) {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("DoT server runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match AuthoritativeDns::new(zone).dot(endpoint).serve() {
                        Ok(running) => {
                            let _ = ready_tx.send(Ok(()));
                            let _ = stop_rx.await;
                            drop(running);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("DoT server: {e}")));
                        }
                    }
                });
            })
            .map_err(|e| format!("spawn the DoT server thread: {e}"))?;
        let mut server = DotServer {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                server.stop = None;
                Err("the DoT server thread died".to_owned())
            }
        }
    }
}

impl Drop for DotServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the measuring child reports about the scan it ran and waited for.
#[derive(Debug, Default)]
struct ChildUsage {
    cpu_secs: f64,
    max_rss_kib: u64,
    exit: String,
}

/// The hidden role of this binary: run a command, wait for it, and write the resource
/// use of that one child (`RUSAGE_CHILDREN` of a process with no other child) to `out`.
/// Stop signals are passed on to the child (SIGINT, then SIGKILL after a grace).
fn measure_child(out: &Path, command: &[String]) -> ExitCode {
    // Dies with the bench, and the scan (started through `lab exec-child`) with us.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("dns_scale: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((program, args)) = command.split_first() else {
        eprintln!("dns_scale: --measure-child needs a command");
        return ExitCode::FAILURE;
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("dns_scale: start {program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    signals.watch_child(child.id());
    let status = child.wait();
    signals.forget_child();
    let usage = match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(usage) => usage,
        Err(e) => {
            eprintln!("dns_scale: getrusage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cpu = usage.user_time() + usage.system_time();
    let exit = status.map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
    let line = format!(
        "{} {} {}\n",
        cpu.tv_sec() as f64 + cpu.tv_usec() as f64 / 1e6,
        usage.max_rss(),
        exit
    );
    if let Err(e) = std::fs::write(out, line) {
        eprintln!("dns_scale: write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn read_usage(path: &Path) -> BenchResult<ChildUsage> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut parts = text.trim().splitn(3, ' ');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    Ok(ChildUsage {
        cpu_secs: next().parse().map_err(|e| format!("usage cpu: {e}"))?,
        max_rss_kib: next().parse().map_err(|e| format!("usage rss: {e}"))?,
        exit: next(),
    })
}

/// One mode's figures.
#[derive(Debug, Default)]
struct Row {
    mode: &'static str,
    names: usize,
    concurrency: usize,
    wall_secs: f64,
    usage: ChildUsage,
    report_bytes: u64,
    ok_names: usize,
    ok_bytes: u64,
    verdicts: BTreeMap<String, usize>,
    wrong: Vec<String>,
    missing: usize,
    control_failures: usize,
    summary_rate: Option<String>,
    /// UDP receive-buffer drops during the scan: (client, server).
    rcvbuf_drops: (u64, u64),
    /// CPU seconds of the servers during the scan: knotd, and this process (the `DoT`
    /// server's threads; the main thread only waits).
    knot_cpu_secs: f64,
    dot_cpu_secs: f64,
    /// Every name's start (its record's `started_at`), in seconds since the epoch.
    starts: Vec<f64>,
}

impl Row {
    /// Names started per second between the 10th and the 90th percentile of the start
    /// times: the rate once the scan is under way, without the list's loading before
    /// the first name and the last names' late-reply windows and retries after the
    /// last start, which weigh on the wall-clock rate of any list that ends.
    fn steady_rate(&self) -> Option<f64> {
        let mut starts = self.starts.clone();
        starts.sort_by(f64::total_cmp);
        let (low, high) = (starts.len() / 10, starts.len() * 9 / 10);
        let span = starts.get(high)? - starts.get(low)?;
        (span > 0.0).then(|| (high - low) as f64 / span)
    }
}

/// What every mode runs against.
struct Setup<'a> {
    net: &'a BenchNet,
    dir: &'a Path,
    list: &'a Path,
    ca_pem: &'a Path,
    knot_pid: u32,
}

/// User + system CPU seconds of process `pid` so far (0 when /proc does not say).
fn process_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first, utime
    // and stime the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    ticks as f64 / per_sec as f64
}

fn own_cpu_secs() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = u.user_time() + u.system_time();
        t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
    })
}

/// The scan's arguments: the mode's flags, minus any flag `extra` sets itself.
fn scan_args(
    mode: Mode,
    options: &Options,
    list: &Path,
    report: &Path,
    ca_pem: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "scan",
        "--targets",
        &list.display().to_string(),
        "--tests",
        "dns",
        "--qtype",
        "A",
        "--resolver",
        &RESOLVER_IP.to_string(),
        "--control-name",
        BENIGN_NAME,
        "--concurrency",
        &options.concurrency.to_string(),
        "--seed",
        "1",
        "--quiet",
        "-o",
        &report.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    // `--extra` wins: drop a flag (and its value) that it sets again.
    let overridden = |flag: &str| {
        options
            .extra
            .iter()
            .any(|e| e == flag || e.starts_with(&format!("{flag}=")))
    };
    let mut base = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let flag = &args[i];
        let takes_value = flag != "--quiet";
        if overridden(flag) {
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        base.push(flag.clone());
        if takes_value {
            base.push(args[i + 1].clone());
            i += 2;
        } else {
            i += 1;
        }
    }
    args.truncate(1);
    args.extend(base);
    for (flag, value) in mode.flags(ca_pem) {
        if overridden(flag) {
            continue;
        }
        args.push(flag.to_owned());
        args.extend(value);
    }
    args.extend(options.extra.iter().cloned());
    args
}

fn run_mode(
    mode: Mode,
    options: &Options,
    setup: &Setup<'_>,
    signals: &StopSignals,
) -> BenchResult<Row> {
    let Setup {
        net,
        dir,
        list,
        ca_pem,
        knot_pid,
    } = *setup;
    let exe = std::env::var_os("CENSORPROBE_BENCH_EXE").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_censorprobe")),
        PathBuf::from,
    );
    let report = dir.join(format!("report-{}.jsonl", mode.label()));
    let usage_path = dir.join(format!("usage-{}.txt", mode.label()));
    let args = scan_args(mode, options, list, &report, ca_pem);
    println!(
        "dns_scale: {} names, mode {}: censorprobe {}",
        options.names,
        mode.label(),
        args.join(" ")
    );
    let me = std::env::current_exe().map_err(|e| format!("find this bench binary: {e}"))?;
    let drops_before = (rcvbuf_errors(&net.client), rcvbuf_errors(&net.server));
    let servers_cpu_before = (process_cpu_secs(knot_pid), own_cpu_secs());
    let started = Instant::now();
    let mut measured = Command::new(me)
        .arg("--measure-child")
        .arg(&usage_path)
        .args(["--", "ip", "netns", "exec", &net.client])
        .arg(&exe)
        .args(["lab", "exec-child", "--parent-pid"])
        // The measuring process is the scan's parent; its pid is known only once it
        // runs, so it is filled in there (see `main`).
        .arg("MEASURER")
        .args(&args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the measuring child: {e}"))?;
    signals.watch_child(measured.id());
    let status = measured.wait();
    signals.forget_child();
    let wall_secs = started.elapsed().as_secs_f64();
    let knot_cpu_secs = process_cpu_secs(knot_pid) - servers_cpu_before.0;
    let dot_cpu_secs = own_cpu_secs() - servers_cpu_before.1;
    signals.check().map_err(|e| e.to_string())?;
    let status = status.map_err(|e| format!("wait for the scan: {e}"))?;
    if !status.success() {
        return Err(format!("the measuring child failed: {status}"));
    }
    let rcvbuf_drops = (
        rcvbuf_errors(&net.client).saturating_sub(drops_before.0),
        rcvbuf_errors(&net.server).saturating_sub(drops_before.1),
    );
    let usage = read_usage(&usage_path)?;
    let mut row = read_report(&report, options.names)?;
    row.mode = mode.label();
    row.names = options.names;
    row.concurrency = options.concurrency;
    row.wall_secs = wall_secs;
    row.usage = usage;
    row.rcvbuf_drops = rcvbuf_drops;
    row.knot_cpu_secs = knot_cpu_secs;
    row.dot_cpu_secs = dot_cpu_secs;
    if let Some(keep) = std::env::var_os("CENSORPROBE_BENCH_KEEP") {
        let keep = PathBuf::from(keep).join(format!(
            "dns_scale-{}-{}.jsonl",
            options.names,
            mode.label()
        ));
        if let Err(e) = std::fs::copy(&report, &keep) {
            eprintln!("dns_scale: keep {}: {e}", keep.display());
        }
    }
    Ok(row)
}

/// UDP datagrams the namespace's sockets dropped for want of receive buffer so far.
fn rcvbuf_errors(namespace: &str) -> u64 {
    netns::within(namespace, || {
        // `thread-self`: /proc/self/net would show the main thread's namespace.
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(header), Some(values)) = (udp.next(), udp.next()) else {
            return 0;
        };
        header
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(key, _)| *key == "RcvbufErrors")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0)
    })
    .unwrap_or(0)
}

/// The index `i` of `n{i}.bench.test`.
fn name_index(name: &str) -> Option<usize> {
    name.trim_end_matches('.')
        .strip_suffix(&format!(".{ZONE}"))?
        .strip_prefix('n')?
        .parse()
        .ok()
}

/// Every IPv4 address given as a string anywhere under `value`.
fn addresses_in(value: &serde_json::Value, out: &mut Vec<Ipv4Addr>) {
    match value {
        serde_json::Value::String(s) => {
            if let Ok(ip) = s.parse::<Ipv4Addr>() {
                out.push(ip);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| addresses_in(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| addresses_in(v, out)),
        _ => {}
    }
}

/// Whether the control of this DNS result failed (an error outcome or the evidence).
fn control_failed(dns: &serde_json::Value) -> bool {
    let in_evidence = dns["evidence"]
        .as_array()
        .is_some_and(|list| list.iter().any(|e| e["kind"] == "control_failed"));
    let in_answers = dns["control"]["answers"]
        .as_array()
        .is_some_and(|list| list.iter().any(|a| a["status"] == "error"));
    in_evidence || in_answers
}

fn read_report(path: &Path, names: usize) -> BenchResult<Row> {
    let file = File::open(path).map_err(|e| format!("open the report {}: {e}", path.display()))?;
    let mut row = Row {
        report_bytes: file.metadata().map_or(0, |m| m.len()),
        ..Row::default()
    };
    let mut seen = vec![false; names];
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("read the report: {e}"))?;
        let record: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("a report line is not JSON: {e}: {line:.200}"))?;
        if record["record"] == "summary" {
            if let Some(rate) = record.get("dns_rate") {
                row.summary_rate = Some(rate.to_string());
            }
            continue;
        }
        if record["record"] != "target" {
            continue;
        }
        let name = record["domain"].as_str().unwrap_or_default();
        if let Some(start) = record["started_at"].as_str().and_then(epoch_seconds) {
            row.starts.push(start);
        }
        let dns = &record["dns"];
        let verdict = dns["verdict"].as_str().unwrap_or("(none)").to_owned();
        *row.verdicts.entry(verdict.clone()).or_default() += 1;
        if control_failed(dns) {
            row.control_failures += 1;
        }
        let Some(i) = name_index(name).filter(|i| *i < names) else {
            row.wrong.push(format!("{name}: not a listed name"));
            continue;
        };
        seen[i] = true;
        let mut ips = Vec::new();
        addresses_in(dns, &mut ips);
        let expected = address_of(i);
        // Right: `ok`, the name's own address seen, and no other name's address.
        let others: Vec<&Ipv4Addr> = ips
            .iter()
            .filter(|ip| **ip != expected && u32::from(**ip) >= ADDRESS_BASE)
            .collect();
        if verdict == "ok" && ips.contains(&expected) && others.is_empty() {
            row.ok_names += 1;
            row.ok_bytes += line.len() as u64 + 1;
        } else {
            row.wrong.push(format!(
                "{name}: verdict {verdict}, expected {expected}, addresses {ips:?}"
            ));
        }
    }
    row.missing = seen.iter().filter(|s| !**s).count();
    Ok(row)
}

/// An RFC 3339 time (as records give `started_at`) in seconds since the epoch.
fn epoch_seconds(text: &str) -> Option<f64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(at.unix_timestamp_nanos() as f64 / 1e9)
}

fn print_rows(rows: &[Row]) {
    println!();
    println!(
        "| mode | names | concurrency | wall s | names/s | steady names/s | CPU µs/name | peak RSS MiB | report B/name | B/ok-name | wrong | missing | control failures |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let n = row.names as f64;
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {} | {} |",
            row.mode,
            row.names,
            row.concurrency,
            row.wall_secs,
            n / row.wall_secs,
            row.steady_rate()
                .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}")),
            row.usage.cpu_secs * 1e6 / n,
            row.usage.max_rss_kib as f64 / 1024.0,
            row.report_bytes as f64 / n,
            if row.ok_names == 0 {
                0.0
            } else {
                row.ok_bytes as f64 / row.ok_names as f64
            },
            row.wrong.len(),
            row.missing,
            row.control_failures,
        );
    }
    for row in rows {
        println!();
        println!(
            "{}: scan exit {}; verdicts {:?}; UDP receive-buffer drops: client {}, server {}",
            row.mode, row.usage.exit, row.verdicts, row.rcvbuf_drops.0, row.rcvbuf_drops.1
        );
        println!(
            "{}: servers' CPU µs/name: knotd {:.1}, DoT server {:.1}",
            row.mode,
            row.knot_cpu_secs * 1e6 / row.names as f64,
            row.dot_cpu_secs * 1e6 / row.names as f64
        );
        if let Some(rate) = &row.summary_rate {
            println!("{}: summary dns_rate {rate}", row.mode);
        }
        for wrong in row.wrong.iter().take(10) {
            println!("{}: wrong: {wrong}", row.mode);
        }
        if row.wrong.len() > 10 {
            println!("{}: ... and {} more wrong", row.mode, row.wrong.len() - 10);
        }
    }
}

fn run(options: &Options, signals: &StopSignals) -> BenchResult<Vec<Row>> {
    // Files outside the checkout; removed on return.
    let dir = tempfile::Builder::new()
        .prefix("censorprobe-dns-scale-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let list = dir.path().join("names.txt");
    write_target_list(&list, options.names).map_err(|e| format!("write the list: {e}"))?;
    let ca = LabCa::new("censorprobe dns_scale bench CA").map_err(|e| e.to_string())?;
    let ca_pem = dir.path().join("ca.pem");
    ca.write_pem(&ca_pem).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let net = BenchNet::create()?;
    let mut knot = Knot::start(&net, dir.path(), options.names, options.server_batch)?;
    knot.wait_ready(&net, options.names, signals)?;
    let _dot = if options.modes.contains(&Mode::RealDot) {
        Some(DotServer::start(&net, options.names, &ca)?)
    } else {
        None
    };
    println!(
        "dns_scale: namespaces {} and {}, knotd and servers up in {:.1} s; load average {}",
        net.client,
        net.server,
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let setup = Setup {
        net: &net,
        dir: dir.path(),
        list: &list,
        ca_pem: &ca_pem,
        knot_pid: knot.child.id(),
    };
    let mut rows = Vec::new();
    for mode in &options.modes {
        signals.check().map_err(|e| e.to_string())?;
        rows.push(run_mode(*mode, options, &setup, signals)?);
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--measure-child") {
        let Some(out) = args.get(1) else {
            return ExitCode::FAILURE;
        };
        let me = std::process::id().to_string();
        let command: Vec<String> = args[3..]
            .iter()
            .map(|a| {
                if a == "MEASURER" {
                    me.clone()
                } else {
                    a.clone()
                }
            })
            .collect();
        return measure_child(Path::new(out), &command);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("dns_scale: needs root (network namespaces, knotd on port 53)");
        return ExitCode::FAILURE;
    }
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("dns_scale: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before any thread starts: every thread inherits the blocked stop signals.
    let signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("dns_scale: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&options, &signals) {
        Ok(rows) => {
            print_rows(&rows);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dns_scale: {e}");
            ExitCode::FAILURE
        }
    }
}
