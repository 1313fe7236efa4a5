//! The Internet side of the lab, built from [`crate::servers`]: the resolver
//! (authoritative for every scenario name, on UDP and TCP port 53, `DoT` and `DoH` at
//! [`plan::RESOLVER_IP`]), the resolver of the web-control helper's network (UDP and TCP
//! at [`plan::HELPER_RESOLVER_IP`]), and HTTP and TLS servers for every scenario server,
//! at each of its addresses, with the server's behaviour.
//!
//! Per-client answers (geo-DNS): each kind of client asks its own listener, and each
//! listener serves its own view of the zone ([`DnsClient`]): the vantage point's
//! resolver on port 53, the control's `DoT`/`DoH`, the helper's resolver. A scenario
//! name's `geo` answers replace its records in the control's or the helper's view.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::error::{LabError, LabResult};
use super::plan;
use super::scenario::{Behaviour, DnsClient, Scenario, Server};
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
    zone_for(scenario, DnsClient::Vantage)
}

/// The zone as `client` sees it: [`zone`] with the geo answers for that client.
pub fn zone_for(scenario: &Scenario, client: DnsClient) -> ZoneSpec {
    let mut zone = ZoneSpec::new(".");
    for entry in &scenario.names {
        if entry.nxdomain {
            zone.add_nxdomain(&entry.name);
            continue;
        }
        for ip in scenario.a_records_for(entry, client) {
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
    /// The resolver under test, and its `DoT`/`DoH` (one server when no name has geo
    /// answers, else two, each with its view); then the helper's resolver.
    dns: Vec<RunningDns>,
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
        let encrypted = |server: AuthoritativeDns| -> LabResult<AuthoritativeDns> {
            Ok(server
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
                ))
        };
        let plain = AuthoritativeDns::new(zone(scenario))
            .udp_tcp(SocketAddr::from((plan::RESOLVER_IP, 53)));
        let mut dns = Vec::new();
        if scenario.has_geo_names() {
            dns.push(plain.serve().map_err(servers_error)?);
            let control = AuthoritativeDns::new(zone_for(scenario, DnsClient::Control));
            dns.push(encrypted(control)?.serve().map_err(servers_error)?);
        } else {
            dns.push(encrypted(plain)?.serve().map_err(servers_error)?);
        }
        dns.push(
            AuthoritativeDns::new(zone_for(scenario, DnsClient::Helper))
                .udp_tcp(SocketAddr::from((plan::HELPER_RESOLVER_IP, 53)))
                .serve()
                .map_err(servers_error)?,
        );
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
        for dns in self.dns {
            dns.shutdown().await.map_err(servers_error)?;
        }
        Ok(())
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

    #[test]
    fn each_client_sees_its_geo_answer_and_the_records_otherwise() {
        let scenario = Scenario::parse(
            r#"
[[names]]
name = "cdn.example"
a = ["198.19.20.10"]
geo = { control = ["198.19.21.10"], helper = ["198.19.20.11"] }

[[names]]
name = "half.example"
a = ["198.19.1.1"]
geo = { helper = ["198.19.1.2"] }
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(scenario.has_geo_names());
        let addresses = |client, name: &str| -> Vec<String> {
            zone_for(&scenario, client)
                .records
                .iter()
                .filter(|r| r.name == name)
                .map(|r| format!("{:?}", r.data))
                .collect()
        };
        assert_eq!(
            addresses(DnsClient::Vantage, "cdn.example"),
            ["A(198.19.20.10)"]
        );
        assert_eq!(
            addresses(DnsClient::Control, "cdn.example"),
            ["A(198.19.21.10)"]
        );
        assert_eq!(
            addresses(DnsClient::Helper, "cdn.example"),
            ["A(198.19.20.11)"]
        );
        assert_eq!(
            addresses(DnsClient::Control, "half.example"),
            ["A(198.19.1.1)"]
        );
        assert_eq!(
            addresses(DnsClient::Helper, "half.example"),
            ["A(198.19.1.2)"]
        );
        let err = Scenario::parse(
            "[[names]]\nname = \"g.example\"\nnxdomain = true\ngeo = { control = [\"10.0.0.1\"] }\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nxdomain and has geo answers"), "{err}");
        assert!(err.contains("geo address 10.0.0.1 is outside"), "{err}");
    }
}
