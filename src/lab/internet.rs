//! The Internet side of the lab, built from [`crate::servers`]: the resolver
//! (authoritative for every scenario name, on UDP and TCP port 53, `DoT` and `DoH` at
//! [`plan::RESOLVER_IP`]), and HTTP and TLS servers for every scenario server, at each of
//! its addresses, with the server's behaviour.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::error::{LabError, LabResult};
use super::plan;
use super::scenario::{Behaviour, Scenario, Server};
use crate::servers::ca::{IssueOnDemand, LabCa};
use crate::servers::dns::{AuthoritativeDns, DOH_PATH, RunningDns, TlsEndpoint, ZoneSpec};
use crate::servers::web::{
    HttpBehaviour, HttpLabConfig, LabServer, TlsBehaviour, TlsIdentity, TlsLabConfig,
};

/// The name of the certificate served to a `ClientHello` without SNI.
const NO_SNI_NAME: &str = "lab-server.lab.example";

/// The resolver's zone: the root, holding every scenario name with its records (so any
/// top-level domain works); NXDOMAIN names are declared absent (checked), and the
/// resolver's own `DoT` name points at it.
pub fn zone(scenario: &Scenario) -> ZoneSpec {
    let mut zone = ZoneSpec::new(".");
    for entry in &scenario.names {
        if entry.nxdomain {
            zone.add_nxdomain(&entry.name);
            continue;
        }
        for ip in scenario.a_records(entry) {
            zone.add_address(&entry.name, IpAddr::V4(ip));
        }
        for ip in &entry.aaaa {
            zone.add_address(&entry.name, IpAddr::V6(*ip));
        }
    }
    zone.add_address(plan::DOT_NAME, IpAddr::V4(plan::RESOLVER_IP));
    zone
}

/// Every Internet-side server, running; stopped by [`InternetServers::shutdown`] or when
/// dropped.
#[derive(Debug)]
pub struct InternetServers {
    dns: RunningDns,
    web: Vec<LabServer>,
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(servers_error)
fn servers_error(e: crate::servers::ServerError) -> LabError {
    LabError::Servers(super::error::error_chain(&e))
}

impl InternetServers {
    /// Start every server of `scenario`. Call it inside a Tokio runtime, on a thread in
    /// the lab's Internet namespace (the addresses must exist there).
    pub async fn start(scenario: &Scenario, ca: Arc<LabCa>) -> LabResult<InternetServers> {
        let resolver_cert = || {
            ca.issue(&[plan::DOT_NAME], &[IpAddr::V4(plan::RESOLVER_IP)])
                .map_err(|e| LabError::Ca(super::error::error_chain(&e)))
        };
        let dns = AuthoritativeDns::new(zone(scenario))
            .udp_tcp(SocketAddr::from((plan::RESOLVER_IP, 53)))
            .dot(TlsEndpoint::new(
                SocketAddr::from((plan::RESOLVER_IP, plan::DOT_PORT)),
                resolver_cert()?,
            ))
            .doh(
                TlsEndpoint::new(
                    SocketAddr::from((plan::RESOLVER_IP, plan::DOH_PORT)),
                    resolver_cert()?,
                ),
                DOH_PATH,
            )
            .serve()
            .map_err(servers_error)?;
        let per_name = Arc::new(IssueOnDemand::new(Arc::clone(&ca), NO_SNI_NAME));
        let (chain, key) = ca
            .issue(&[NO_SNI_NAME], &[])
            .map_err(|e| LabError::Ca(super::error::error_chain(&e)))?;
        let fallback = TlsIdentity { chain, key };
        let mut web = Vec::new();
        for server in &scenario.servers {
            if server.behaviour == Behaviour::Closed {
                continue;
            }
            let (http, tls) = configs(server, &ca, &per_name, &fallback)?;
            for ip in &server.ips {
                let at = |port| SocketAddr::from((*ip, port));
                let started = |port, e| {
                    LabError::Servers(format!(
                        "server {} cannot listen on {}: {e}",
                        server.id,
                        at(port)
                    ))
                };
                web.push(
                    LabServer::spawn_http(at(server.http_port), http.clone())
                        .await
                        .map_err(|e| started(server.http_port, e))?,
                );
                web.push(
                    LabServer::spawn_tls(at(server.tls_port), tls.clone())
                        .await
                        .map_err(|e| started(server.tls_port, e))?,
                );
            }
        }
        Ok(InternetServers { dns, web })
    }

    /// Stop every server.
    pub async fn shutdown(self) -> LabResult<()> {
        drop(self.web);
        self.dns.shutdown().await.map_err(servers_error)
    }
}

/// The HTTP and TLS configuration of one scenario server.
fn configs(
    server: &Server,
    ca: &LabCa,
    per_name: &Arc<IssueOnDemand>,
    fallback: &TlsIdentity,
) -> LabResult<(HttpLabConfig, TlsLabConfig)> {
    let delay = Duration::from_millis(server.delay_ms.unwrap_or(0));
    let any_name = TlsLabConfig::new(fallback.clone()).issue_per_name(Arc::clone(per_name));
    let one_name = || -> LabResult<TlsLabConfig> {
        let name = server.certificate_name();
        let (chain, key) = ca
            .issue(&[&name], &[])
            .map_err(|e| LabError::Ca(super::error::error_chain(&e)))?;
        Ok(TlsLabConfig::new(TlsIdentity { chain, key }))
    };
    let http = HttpLabConfig::default();
    Ok(match server.behaviour {
        Behaviour::Normal | Behaviour::Closed => (http, any_name),
        Behaviour::Slow => (
            http.otherwise(HttpBehaviour::Slow(delay)),
            any_name.otherwise(TlsBehaviour::Slow(delay)),
        ),
        // A valid chain from the lab CA, for another name: a misconfigured server.
        Behaviour::WrongCert => (http, one_name()?),
        Behaviour::Decoy => (
            http.otherwise(HttpBehaviour::ServeAs(server.certificate_name())),
            one_name()?,
        ),
        Behaviour::Reset => (
            http.otherwise(HttpBehaviour::Reset),
            any_name.otherwise(TlsBehaviour::Reset),
        ),
        Behaviour::AnswerThenReset => (
            http.otherwise(HttpBehaviour::ServeThenReset),
            any_name.otherwise(TlsBehaviour::ServeThenReset),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_zone_holds_every_name_and_checks_the_nxdomain_ones() {
        let scenario = Scenario::load(&super::super::scenario::scenario_dir().join("demo.toml"))
            .expect("the demo scenario loads");
        let zone = zone(&scenario);
        zone.check().expect("the demo zone is consistent");
        let contradiction = Scenario::parse(
            r#"
[[names]]
name = "www.gone.example"
a = ["198.19.1.1"]

[[names]]
name = "gone.example"
nxdomain = true
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        let err = super::zone(&contradiction).check().unwrap_err();
        assert!(err.to_string().contains("declared NXDOMAIN"), "{err}");
    }
}
