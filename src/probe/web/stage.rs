//! The per-target web stage: for each chosen address, HTTP and TLS each run the benign
//! control, then the test, then (after a test that was reset or dropped) the residual
//! control, under the [`PathGuard`]. It observes only: the scan has the web judge turn
//! the observations into the target's `http` and `tls` assessments.
//!
//! Work on one target runs concurrently across addresses and protocols; probes on one
//! path wait only when the guard says the path is penalised or a failure on it is
//! being settled. Waiting holds no socket: sockets come from the global
//! [`ConnectionBudget`] only while a probe is connected.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;

use super::http::{HttpProbeConfig, HttpProber, valid_host_header};
use super::net::{ConnectionBudget, ms_between};
use super::tls::{TlsProbeConfig, TlsProber, server_name};
use crate::observation::web::{AddressPlan, AddressSource, PathRun, StageRun, WebObservations};
use crate::observation::web::{
    AttemptObservations, HttpObservation, PathFacts, ProbeRole, TlsObservation,
};
use crate::pathguard::{AccessMode, AttributionRule, PathGuard, PathKey, PortRotation};
use crate::probe::ProbeError;

use crate::observation::web::DEFAULT_CONTROL_NAME;

/// `--via IP [--via-ports A-B]`: every probe goes to one server with each target's
/// Host/SNI.
#[derive(Debug, Clone)]
pub struct ViaConfig {
    pub ip: IpAddr,
    /// Destination ports to rotate over; `None` uses the stage's HTTP and TLS ports.
    pub ports: Option<RangeInclusive<u16>>,
    /// No two tests share a port inside this window (the residual window).
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct WebStageConfig {
    pub run_http: bool,
    pub run_tls: bool,
    pub http_port: u16,
    pub tls_port: u16,
    /// `--control-name`.
    pub control_name: String,
    /// `--max-ips`: addresses probed per target.
    pub max_ips: usize,
    /// Re-runs of one address's probes when their failure cannot be attributed.
    pub max_requeues: u32,
    pub via: Option<ViaConfig>,
    pub http: HttpProbeConfig,
    pub tls: TlsProbeConfig,
}

impl Default for WebStageConfig {
    fn default() -> Self {
        WebStageConfig {
            run_http: true,
            run_tls: true,
            http_port: 80,
            tls_port: 443,
            control_name: DEFAULT_CONTROL_NAME.to_owned(),
            max_ips: 2,
            max_requeues: 3,
            via: None,
            http: HttpProbeConfig::default(),
            tls: TlsProbeConfig::default(),
        }
    }
}

/// Order addresses by how many of their paths are penalised (fewest first), keeping
/// the planned order (IPv4 first) among equals.
fn prefer_clean_paths(ips: &mut [IpAddr], penalised_paths: impl Fn(IpAddr) -> usize) {
    if ips.len() > 1 {
        ips.sort_by_cached_key(|ip| penalised_paths(*ip));
    }
}

/// Runs the web stage for targets; share one per scan (`Arc`), it is `Sync`.
#[derive(Debug)]
pub struct WebStage {
    config: WebStageConfig,
    http: HttpProber,
    tls: TlsProber,
    guard: PathGuard,
    via_ports: Option<PortRotation>,
    control_host: String,
    control_server_name: ServerName<'static>,
}

/// The Host header value for a name: IPv6 literals in brackets.
fn host_header(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => name.to_owned(),
    }
}

impl WebStage {
    /// `roots` are the trust anchors for certificate validity (webpki roots plus
    /// `--ca`); `budget` caps open sockets across the whole scan.
    pub fn new(
        config: WebStageConfig,
        roots: Arc<RootCertStore>,
        guard: PathGuard,
        budget: ConnectionBudget,
    ) -> Result<Self, ProbeError> {
        let control_host = host_header(&config.control_name);
        if !valid_host_header(&control_host) {
            return Err(ProbeError::BadOption {
                option: "--control-name",
                reason: format!("{:?} cannot be sent as a Host header", config.control_name),
            });
        }
        let control_server_name =
            ServerName::try_from(config.control_name.clone()).map_err(|source| {
                ProbeError::ControlNameNotTls {
                    name: config.control_name.clone(),
                    source,
                }
            })?;
        let via_ports = match &config.via {
            Some(ViaConfig {
                ports: Some(range),
                window,
                ..
            }) => Some(PortRotation::new(range.clone(), *window)?),
            _ => None,
        };
        let http = HttpProber::new(config.http.clone(), budget.clone());
        let tls = TlsProber::new(roots, config.tls.clone(), budget)?;
        Ok(WebStage {
            config,
            http,
            tls,
            guard,
            via_ports,
            control_host,
            control_server_name,
        })
    }

    pub fn config(&self) -> &WebStageConfig {
        &self.config
    }

    /// Capture the packets of every probe connection (see [`crate::capture`]).
    #[must_use]
    pub fn with_capture(mut self, capture: crate::capture::ProbeCapture) -> Self {
        self.http = self.http.with_capture(capture.clone());
        self.tls = self.tls.with_capture(capture);
        self
    }

    /// The running packet capture, when there is one (it also logs DNS replies: see
    /// [`crate::capture::Capture::annotate_dns`]).
    pub fn live_capture(&self) -> Option<&crate::capture::Capture> {
        self.tls.capture().live()
    }

    /// The TLS prober, for "TLS as proof" of DNS answers.
    pub fn tls_prober(&self) -> &TlsProber {
        &self.tls
    }

    pub fn guard(&self) -> &PathGuard {
        &self.guard
    }

    /// Run the probes for one target without judging them. `plan` comes from the
    /// scan's address planning (ignored with `--via`).
    pub async fn observe_target(
        &self,
        name: &str,
        plan: std::result::Result<AddressPlan, String>,
    ) -> WebObservations {
        let plan = match &self.config.via {
            Some(via) => Ok(AddressPlan {
                source: AddressSource::Via,
                ips: vec![via.ip],
            }),
            None => plan.map(|mut p| {
                // Of a name's addresses, probe first those whose paths are not waiting
                // out residual blocking.
                let (http_port, tls_port) = (self.config.http_port, self.config.tls_port);
                prefer_clean_paths(&mut p.ips, |ip| {
                    usize::from(self.guard.is_penalised(PathKey::new(ip, http_port)))
                        + usize::from(self.guard.is_penalised(PathKey::new(ip, tls_port)))
                });
                p.ips.truncate(self.config.max_ips.max(1));
                p
            }),
        };
        let host = host_header(name);
        let name_problem = if valid_host_header(&host) {
            // Wire text (the stage's skip reason): these words stay as they are.
            ServerName::try_from(name).err().map(|e| {
                format!("cannot parse address {name:?}: not usable as a TLS server name: {e}")
            })
        } else {
            Some(format!("{name:?} cannot be sent as a Host header"))
        };
        let skip_reason = match (&plan, name_problem) {
            (_, Some(problem)) => Some(problem),
            (Err(reason), None) => Some(reason.clone()),
            (Ok(p), None) if p.ips.is_empty() => Some("no address to probe".to_owned()),
            (Ok(_), None) => None,
        };
        let addresses = plan.ok();
        if let Some(reason) = skip_reason {
            return WebObservations {
                name: name.to_owned(),
                addresses,
                http: self
                    .config
                    .run_http
                    .then_some(StageRun::Skipped(reason.clone())),
                tls: self.config.run_tls.then_some(StageRun::Skipped(reason)),
            };
        }
        let ips = addresses
            .as_ref()
            .map(|p| p.ips.clone())
            .unwrap_or_default();
        let test_server_name = server_name(name).expect("checked above");
        let http_runs = async {
            if !self.config.run_http {
                return None;
            }
            let runs = join_all(ips.iter().map(|ip| self.http_path(&host, *ip))).await;
            Some(StageRun::Probed(runs))
        };
        let tls_runs = async {
            if !self.config.run_tls {
                return None;
            }
            let runs = join_all(
                ips.iter()
                    .map(|ip| self.tls_path(name, &test_server_name, *ip)),
            )
            .await;
            Some(StageRun::Probed(runs))
        };
        let (http, tls) = tokio::join!(http_runs, tls_runs);
        WebObservations {
            name: name.to_owned(),
            addresses,
            http,
            tls,
        }
    }

    async fn port_for(&self, default: u16) -> u16 {
        match &self.via_ports {
            Some(rotation) => rotation.next_port().await,
            None => default,
        }
    }

    async fn http_path(&self, host: &str, ip: IpAddr) -> PathRun<HttpObservation> {
        let port = self.port_for(self.config.http_port).await;
        let control = self.control_host.as_str();
        let probe = |role: ProbeRole| {
            let host = if role == ProbeRole::Test {
                host
            } else {
                control
            };
            self.http.probe(ip, port, host)
        };
        self.run_path(
            PathKey::new(ip, port),
            probe,
            HttpObservation::control_passed,
            HttpObservation::transport_failure,
        )
        .await
    }

    async fn tls_path(
        &self,
        name: &str,
        server_name: &ServerName<'static>,
        ip: IpAddr,
    ) -> PathRun<TlsObservation> {
        let port = self.port_for(self.config.tls_port).await;
        let probe = |role: ProbeRole| {
            if role == ProbeRole::Test {
                self.tls.probe_as(ip, port, name, server_name)
            } else {
                self.tls.probe_as(
                    ip,
                    port,
                    &self.config.control_name,
                    &self.control_server_name,
                )
            }
        };
        self.run_path(
            PathKey::new(ip, port),
            probe,
            TlsObservation::control_passed,
            TlsObservation::transport_failure,
        )
        .await
    }

    /// Control → test → (residual control) on one path. A failed test is attributed
    /// from the controls around it (see [`crate::pathguard`]); it is re-run alone only
    /// when that evidence is ambiguous.
    async fn run_path<O, P, Fut>(
        &self,
        key: PathKey,
        probe: P,
        passed: fn(&O) -> bool,
        transport_failure: fn(&O) -> bool,
    ) -> PathRun<O>
    where
        P: Fn(ProbeRole) -> Fut,
        Fut: std::future::Future<Output = O>,
    {
        let mut mode = AccessMode::Shared;
        let mut requeues = 0;
        let mut waited = Duration::ZERO;
        loop {
            let recheck = || {
                let control = probe(ProbeRole::Control);
                async move { passed(&control.await) }
            };
            let mut ticket = self.guard.acquire(key, mode, recheck).await;
            waited += ticket.waited();
            let outlived = ticket.penalty_outlived();
            let facts = |requeues: u32, attribution: Option<AttributionRule>| PathFacts {
                mode,
                requeues,
                waited_ms: waited.as_secs_f64() * 1000.0,
                penalty_outlived: outlived,
                attribution,
            };
            let may_requeue = requeues < self.config.max_requeues;
            let window_start = Instant::now();
            let control = probe(ProbeRole::Control).await;
            if !passed(&control) {
                ticket.note_control_failure(window_start);
                if ticket.seen_working() && !outlived && may_requeue {
                    // The path worked moments ago and a harmless name fails on it now:
                    // residual blocking from an earlier test, if it persists (a second
                    // control at once tells it from a passing glitch of an overloaded
                    // path). Then close the path until a benign control passes. Run
                    // this target again either way.
                    if !passed(&probe(ProbeRole::Control).await) {
                        ticket.penalise_from(window_start);
                    }
                    drop(ticket);
                    requeues += 1;
                    continue;
                }
                // The path or server is broken for the control too: the classifier
                // claims no keyword blocking; nothing to attribute.
                let test = probe(ProbeRole::Test).await;
                drop(ticket);
                return PathRun {
                    observations: AttemptObservations {
                        control,
                        test,
                        residual: None,
                        residual_after_ms: None,
                    },
                    path: facts(requeues, Some(AttributionRule::ControlFailed)),
                };
            }
            ticket.mark_working();
            let test = probe(ProbeRole::Test).await;
            let test_end = Instant::now();
            if !transport_failure(&test) {
                drop(ticket);
                return PathRun {
                    observations: AttemptObservations {
                        control,
                        test,
                        residual: None,
                        residual_after_ms: None,
                    },
                    path: facts(requeues, None),
                };
            }
            // Reset or dropped after a passing control: possibly a trigger. The control
            // started at once after the test says whether residual blocking is active.
            ticket.note_disturbance();
            let residual_start = Instant::now();
            let residual = probe(ProbeRole::Control).await;
            let rule = if passed(&residual) {
                ticket.mark_working();
                let rule = ticket.attribute_between_passing_controls(window_start);
                drop(ticket);
                rule
            } else {
                // Blocked after the test. A second control at once tells residual
                // blocking (it persists: the path is penalised) from blocking already
                // over; the attribution is the same (see the guard).
                let persists = !passed(&probe(ProbeRole::Control).await);
                ticket
                    .attribute_after_failed_control(residual_start, persists)
                    .await
            };
            let rule = match rule {
                Some(rule) => rule,
                None if may_requeue => {
                    requeues += 1;
                    mode = AccessMode::Exclusive;
                    continue;
                }
                None => AttributionRule::Ambiguous,
            };
            return PathRun {
                observations: AttemptObservations {
                    control,
                    test,
                    residual: Some(residual),
                    residual_after_ms: Some(ms_between(test_end, residual_start)),
                },
                path: facts(requeues, Some(rule)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    #[test]
    fn addresses_on_penalised_paths_go_last() {
        let mut ips = vec![ip(1), ip(2), ip(3), ip(4)];
        prefer_clean_paths(&mut ips, |a| match a {
            a if a == ip(1) => 2,
            a if a == ip(3) => 1,
            _ => 0,
        });
        assert_eq!(ips, [ip(2), ip(4), ip(3), ip(1)]);
    }

    #[tokio::test]
    async fn a_name_with_several_addresses_moves_to_a_clean_path() {
        let guard = PathGuard::default();
        let penalised = guard
            .acquire(PathKey::new(ip(1), 80), AccessMode::Shared, || async {
                true
            })
            .await;
        penalised.penalise();
        drop(penalised);
        let stage = WebStage::new(
            WebStageConfig {
                max_ips: 1,
                ..WebStageConfig::default()
            },
            Arc::new(RootCertStore::empty()),
            guard,
            ConnectionBudget::new(4),
        )
        .unwrap();
        // The name's invalid Host makes the stage skip before any connection, after
        // choosing its addresses.
        let observed = stage
            .observe_target(
                "bad host",
                Ok(AddressPlan {
                    source: AddressSource::Control,
                    ips: vec![ip(1), ip(2)],
                }),
            )
            .await;
        assert_eq!(observed.addresses.unwrap().ips, [ip(2)]);
    }

    #[test]
    fn ipv6_literals_get_brackets_in_host() {
        assert_eq!(host_header("2001:db8::1"), "[2001:db8::1]");
        assert_eq!(host_header("198.18.0.1"), "198.18.0.1");
        assert_eq!(host_header("a.test"), "a.test");
    }
}
