//! `censorprobe helper`: the web-control server (see [`crate::helper`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ipnet::IpNet;

use super::{ConfigError, StopSignal, parse_count, parse_server, parse_timeout, system_resolver};
use crate::helper::identity::{
    certificate_addresses, generate_identity, load_identity, server_config,
};
use crate::helper::{AddressPolicy, HelperLimits, HelperServer, Measurer, load_token};
use crate::probe::control::{ControlResolver, ControlSpec};
use crate::probe::web::ConnectionBudget;
use crate::probe::web::http::{HttpProbeConfig, HttpProber};
use crate::probe::web::net::DEFAULT_FD_RESERVE;
use crate::probe::web::tls::{TlsProbeConfig, TlsProber};
use crate::trust::{load_ca_file, root_store};

/// Most names one request may carry, at the highest `--max-names`.
const MAX_NAMES_LIMIT: usize = 10_000;
/// Largest `--max-request-bytes` (64 MiB).
const MAX_REQUEST_BYTES_LIMIT: usize = 64 << 20;

#[derive(Debug, Args)]
pub struct HelperArgs {
    /// Address and port to listen on (HTTPS), e.g. `0.0.0.0:8443` or `[::]:8443`.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// File holding the bearer token clients must send (first line; at least 16 characters).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// Certificate chain (PEM, leaf first) to serve; needs --key. Without it a CA and a
    /// certificate are generated at start-up and the CA written to --cert-out.
    #[arg(
        long,
        value_name = "PEM",
        requires = "key",
        conflicts_with = "cert_out"
    )]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Where to write the generated CA certificate (PEM) that clients trust with
    /// `--web-control-ca` (required without --cert).
    #[arg(long, value_name = "FILE", required_unless_present = "cert")]
    pub cert_out: Option<PathBuf>,
    /// Host name the generated certificate also names (repeatable; it always names the
    /// listen address, or every local address when listening on 0.0.0.0 / ::).
    #[arg(long = "cert-name", value_name = "NAME")]
    pub cert_names: Vec<String>,
    /// Also connect to addresses in this prefix although they are private, loopback or
    /// otherwise special-purpose (repeatable; labs: 198.18.0.0/15). Public addresses are
    /// always allowed; nothing else is.
    #[arg(long = "allow", value_name = "CIDR", value_parser = parse_prefix)]
    pub allow: Vec<IpNet>,
    /// The helper's own DNS resolver (plain DNS); default: the first nameserver of
    /// /etc/resolv.conf.
    #[arg(long, value_name = "IP[:PORT]")]
    pub resolver: Option<String>,
    /// Also look names up with DNS over HTTPS at this URL (https://...).
    #[arg(long, value_name = "URL")]
    pub doh: Option<String>,
    /// Extra trust anchors (PEM) for judging targets' certificates, besides the webpki
    /// roots (repeatable; labs pass their CA).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Requests measured at once; others wait a few seconds for a slot, then get 503.
    #[arg(long, default_value = "16", value_parser = |t: &str| parse_count(t, 1, 4096))]
    pub max_concurrency: usize,
    /// Requests a second per client address (IPv6: per /64); 0 turns the limit off.
    #[arg(long, default_value = "10", value_name = "PER_CLIENT_PER_SEC", value_parser = parse_client_rate)]
    pub rate: f64,
    /// Requests a client may send in a burst before --rate applies.
    #[arg(long, default_value = "20", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub burst: u32,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value = "262144", value_parser = |t: &str| parse_count(t, 1024, MAX_REQUEST_BYTES_LIMIT))]
    pub max_request_bytes: usize,
    /// Most names in one request (413 beyond).
    #[arg(long, default_value = "100", value_parser = |t: &str| parse_count(t, 1, MAX_NAMES_LIMIT))]
    pub max_names: usize,
    /// Addresses tested per name at most (the client's first, then the helper's own).
    #[arg(long, default_value = "8", value_parser = |t: &str| parse_count(t, 1, 64))]
    pub max_addresses: usize,
    /// Timeout of each step: a DNS attempt, a TCP connect, a TLS handshake, an HTTP
    /// response.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The whole measurement of one name at most.
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub name_timeout: Duration,
    /// The whole request at most (504 beyond).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub request_timeout: Duration,
}

fn parse_prefix(text: &str) -> Result<IpNet, String> {
    IpNet::from_str(text.trim())
        .or_else(|_| text.trim().parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR prefix or an address"))
}

fn parse_client_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if rate == 0.0 || (0.001..=100_000.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "{text:?} is out of range: 0 (no limit) or 0.001 to 100000 requests a second"
        ))
    }
}

/// The helper's resolver and its label (`system` when read from resolv.conf).
fn own_resolver(
    args: &HelperArgs,
    extra_roots: &[rustls_pki_types::CertificateDer<'static>],
) -> anyhow::Result<(ControlResolver, String)> {
    let (addr, label) = match &args.resolver {
        Some(text) => {
            let addr = parse_server(text, 53)?;
            (addr, format!("udp:{addr}"))
        }
        None => (
            system_resolver(Path::new("/etc/resolv.conf"))?,
            "system".to_owned(),
        ),
    };
    let resolver = ControlResolver::new(&ControlSpec::Udp { addr }, extra_roots, args.timeout)?
        .expect("a UDP resolver is a resolver");
    Ok((resolver, label))
}

fn doh_resolver(
    args: &HelperArgs,
    extra_roots: &[rustls_pki_types::CertificateDer<'static>],
) -> anyhow::Result<Option<ControlResolver>> {
    let Some(url) = &args.doh else {
        return Ok(None);
    };
    let spec =
        ControlSpec::from_str(&format!("doh:{url}")).map_err(|_| ConfigError::BadOption {
            option: "--doh",
            reason: format!("{url:?} is not an https:// DoH URL"),
        })?;
    Ok(ControlResolver::new(&spec, extra_roots, args.timeout)?)
}

pub(super) fn run_helper(args: &HelperArgs) -> anyhow::Result<ExitCode> {
    let token = load_token(&args.token_file)?;
    let mut extra_roots = Vec::new();
    for path in &args.ca {
        extra_roots.extend(load_ca_file(path)?);
    }
    let identity = match (&args.cert, &args.key, &args.cert_out) {
        (Some(cert), Some(key), _) => load_identity(cert, key)?,
        (_, _, Some(out)) => generate_identity(
            &args.cert_names,
            &certificate_addresses(args.listen.ip()),
            out,
        )?,
        _ => unreachable!("clap requires --cert and --key, or --cert-out"),
    };
    let tls_server = server_config(identity)?;
    let runtime = super::runtime()?;
    runtime
        .block_on(async {
            let budget = ConnectionBudget::from_fd_limit(DEFAULT_FD_RESERVE);
            let (mut resolver, resolver_label) = own_resolver(args, &extra_roots)?;
            resolver.share_fd_budget(budget.clone());
            let doh = doh_resolver(args, &extra_roots)?;
            let http = HttpProber::new(
                HttpProbeConfig {
                    connect_timeout: args.timeout,
                    response_timeout: args.timeout,
                    ..HttpProbeConfig::default()
                },
                budget.clone(),
            );
            let tls = TlsProber::new(
                std::sync::Arc::new(root_store(&extra_roots)),
                TlsProbeConfig {
                    connect_timeout: args.timeout,
                    handshake_timeout: args.timeout,
                    ..TlsProbeConfig::default()
                },
                budget,
            )?;
            let measurer = Measurer {
                resolver,
                resolver_label,
                doh,
                http,
                tls,
                policy: AddressPolicy::new(args.allow.clone()),
                max_addresses: args.max_addresses,
                name_timeout: args.name_timeout,
            };
            let limits = HelperLimits {
                max_concurrency: args.max_concurrency,
                rate_per_client: args.rate,
                burst: args.burst,
                max_request_bytes: args.max_request_bytes,
                max_names: args.max_names,
                request_timeout: args.request_timeout,
                ..HelperLimits::default()
            };
            let server =
                HelperServer::bind(args.listen, tls_server, &token, limits, measurer).await?;
            let stop = StopSignal::default();
            let stopped = stop.install()?;
            eprintln!(
                "censorprobe helper: listening on https://{}{}",
                server.local_addr(),
                args.cert_out
                    .as_ref()
                    .map(|out| format!(" (clients trust {} with --web-control-ca)", out.display()))
                    .unwrap_or_default()
            );
            server.run(stopped).await;
            Ok::<_, anyhow::Error>(())
        })
        .context("the helper stopped")?;
    Ok(ExitCode::SUCCESS)
}
