//! The Internet side of the lab: the resolver (authoritative for every scenario name, on
//! UDP, TCP and `DoT` at [`plan::RESOLVER_IP`]), and one web host per scenario server.
//!
//! This is the boundary between the lab and the servers it runs. Today the servers are the
//! provisional ones in [`super::provisional`]; when `crate::servers` lands, only this
//! module changes.

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use super::error::{LabError, LabResult};
use super::plan;
use super::provisional::ca::{FixedCert, LabCa};
use super::provisional::dns::{DnsServer, Zone, ZoneEntry};
use super::provisional::web::{WebHost, WebServer};
use super::scenario::Scenario;

/// The resolver's zone: every scenario name with records; NXDOMAIN names are absent.
pub fn zone(scenario: &Scenario) -> Zone {
    let mut zone = Zone::new();
    for entry in &scenario.names {
        if entry.nxdomain {
            continue;
        }
        zone.insert(
            entry.name.clone(),
            ZoneEntry {
                a: scenario.a_records(entry),
                aaaa: entry.aaaa.clone(),
            },
        );
    }
    zone.insert(
        plan::DOT_NAME.to_owned(),
        ZoneEntry {
            a: vec![plan::RESOLVER_IP],
            aaaa: Vec::new(),
        },
    );
    zone
}

/// Every Internet-side server, bound and ready to run.
pub struct InternetServers {
    dns: DnsServer,
    web: Vec<WebServer>,
}

impl InternetServers {
    /// Bind every server of `scenario` (the addresses must exist: call this inside the
    /// Internet namespace of a lab that is up).
    pub async fn bind(scenario: &Scenario, ca: Arc<LabCa>) -> LabResult<InternetServers> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let dot_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LabError::Servers(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(ca.issue(&[plan::DOT_NAME.to_owned()])?)));
        let dns = DnsServer::bind(
            plan::RESOLVER_IP,
            53,
            plan::DOT_PORT,
            zone(scenario),
            TlsAcceptor::from(Arc::new(dot_config)),
        )
        .await?;
        let mut web = Vec::new();
        for server in &scenario.servers {
            let host = WebHost {
                id: server.id.clone(),
                ips: server.ips.clone(),
                behaviour: server.behaviour,
                http_port: server.http_port,
                tls_port: server.tls_port,
                delay: Duration::from_millis(server.delay_ms.unwrap_or(0)),
                cert_name: server.certificate_name(),
            };
            web.push(WebServer::bind(host, &ca)?);
        }
        Ok(InternetServers { dns, web })
    }

    /// Serve until the future is dropped.
    pub async fn run(self) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.dns.run());
        for server in self.web {
            tasks.spawn(server.run());
        }
        while tasks.join_next().await.is_some() {}
    }
}
