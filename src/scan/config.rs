//! A scan's configuration, built from its recorded options ([`ScanOptions`]) plus the
//! inputs the options only name (resolver, control, trust anchors, forged addresses),
//! so that what the header records is what ran.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use rustls_pki_types::CertificateDer;

use crate::ipclass::ForgedIpList;
use crate::pathguard::{PathGuardConfig, PortRangeError, PortRotation};
use crate::probe::control::ControlSpec;
use crate::probe::dns::DnsProbeConfig;
use crate::probe::web::http::HttpProbeConfig;
use crate::probe::web::stage::{ViaConfig, WebStageConfig};
use crate::probe::web::tls::TlsProbeConfig;
use crate::probe::web_control::WebControlConfig;
use crate::record::ScanOptions;
use crate::scheduler::{Shard, ShardError};
use crate::targets::InvalidTarget;

type Result<T, E = ScanConfigError> = std::result::Result<T, E>;

/// An option a scan cannot run with. The cause is the
/// [`source`](std::error::Error::source) where there is one, not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanConfigError {
    #[error("invalid option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
    #[error("invalid option --control-name: {name:?}")]
    ControlName {
        name: String,
        #[source]
        reason: InvalidTarget,
    },
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    ViaPorts(#[from] PortRangeError),
}

impl ScanConfigError {
    /// The option refused (`--qtype`, `--shard`, ...).
    pub fn option(&self) -> &'static str {
        match self {
            ScanConfigError::BadOption { option, .. } => option,
            ScanConfigError::ControlName { .. } => "--control-name",
            ScanConfigError::Shard(_) => "--shard",
            ScanConfigError::ViaPorts(_) => "--via-ports",
        }
    }
}

/// Sockets in the DNS probe's pool when the options name no number.
pub const DEFAULT_DNS_SOCKETS: usize = 8;

/// Which stages run (`--tests dns,http,tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    pub dns: bool,
    pub http: bool,
    pub tls: bool,
}

impl Stages {
    pub fn web(self) -> bool {
        self.http || self.tls
    }

    /// The stages named (`dns`, `http`, `tls`; case and spaces ignored).
    pub fn parse(names: &[String]) -> Result<Stages> {
        let mut stages = Stages {
            dns: false,
            http: false,
            tls: false,
        };
        for name in names {
            match normalise_stage_name(name).as_str() {
                "dns" => stages.dns = true,
                "http" => stages.http = true,
                "tls" => stages.tls = true,
                other => {
                    return Err(ScanConfigError::BadOption {
                        option: "--tests",
                        reason: format!("unknown stage {other:?} (dns, http, tls)"),
                    });
                }
            }
        }
        Ok(stages)
    }
}

fn normalise_stage_name(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// The query types named, de-duplicated, in order (case ignored).
pub fn parse_qtypes(names: &[String]) -> Result<Vec<RecordType>> {
    let mut qtypes = Vec::new();
    for text in names {
        let qtype = RecordType::from_str(&text.to_ascii_uppercase()).map_err(|_| {
            ScanConfigError::BadOption {
                option: "--qtype",
                reason: format!("unknown query type {text:?}"),
            }
        })?;
        if !qtypes.contains(&qtype) {
            qtypes.push(qtype);
        }
    }
    Ok(qtypes)
}

/// Refuses a control name that is not a DNS name.
pub fn check_control_name(name: &str) -> Result<()> {
    crate::targets::validate_dns_name(name)
        .map(drop)
        .map_err(|reason| ScanConfigError::ControlName {
            name: name.to_owned(),
            reason,
        })
}

/// What a scan needs beside its options: what the options name, resolved (servers,
/// files read), and where the report goes.
#[derive(Debug, Clone)]
pub struct ScanInputs {
    pub resolver: SocketAddr,
    pub sink: Option<SocketAddr>,
    pub control: ControlSpec,
    /// The trust anchors of `options.ca_files`.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The forged-address list (`options.forged_ips` records its length).
    pub forged_ips: ForgedIpList,
    pub vantage: Option<String>,
    /// `None` or `-`: stdout.
    pub out: Option<PathBuf>,
    /// The bearer token of `options.web_control` (never recorded).
    pub web_control_token: Option<String>,
    /// The trust anchors of `options.web_control`'s `ca_file` (empty: the Mozilla roots).
    pub web_control_roots: Vec<CertificateDer<'static>>,
}

impl ScanInputs {
    /// Inputs with only a resolver: no sink, control, trust anchors or forged addresses;
    /// the report on stdout.
    pub fn new(resolver: SocketAddr) -> ScanInputs {
        ScanInputs {
            resolver,
            sink: None,
            control: ControlSpec::None,
            extra_roots: Vec::new(),
            forged_ips: ForgedIpList::default(),
            vantage: None,
            out: None,
            web_control_token: None,
            web_control_roots: Vec::new(),
        }
    }
}

/// Everything a scan needs, built by [`ScanConfig::from_options`] (or its builder):
/// outside this crate there is no other way (`non_exhaustive`), so the header always
/// records the options the scan ran with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanConfig {
    pub resolver: SocketAddr,
    pub sink: Option<SocketAddr>,
    pub qtypes: Vec<RecordType>,
    pub dns: DnsProbeConfig,
    pub control: ControlSpec,
    pub control_timeout: Duration,
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub forged_ips: ForgedIpList,
    pub concurrency: usize,
    /// DNS queries a second (0: unpaced).
    pub rate: f64,
    pub seed: u64,
    pub shard: Option<Shard>,
    pub vantage: Option<String>,
    /// `None` or `-`: stdout.
    pub out: Option<PathBuf>,
    /// The options as recorded in the header (normalised: effective values).
    pub options: ScanOptions,
    pub stages: Stages,
    /// HTTP and TLS stage settings (`run_http`/`run_tls` follow `stages`).
    pub web: WebStageConfig,
    pub residual: PathGuardConfig,
    /// Block-page fingerprints (`None`: the built-in set).
    pub blockpages: Option<PathBuf>,
    /// Injector fingerprints extending the built-in set (`None`: the built-in set).
    pub injectors: Option<PathBuf>,
    /// The web control to ask for every target (`--web-control`).
    pub web_control: Option<WebControlConfig>,
    /// The AS table the DNS judge consults with a web control (`None`: none).
    pub asn_db: Option<PathBuf>,
}

impl ScanConfig {
    /// The configuration of `options`. The options are normalised first (canonical query
    /// type and stage names, effective counts), and the configuration keeps them as the
    /// header's record: the two cannot differ.
    pub fn from_options(mut options: ScanOptions, inputs: ScanInputs) -> Result<ScanConfig> {
        let qtypes = parse_qtypes(&options.qtypes)?;
        check_control_name(&options.control_name)?;
        if options.rate < 0.0 || !options.rate.is_finite() {
            return Err(ScanConfigError::BadOption {
                option: "--rate",
                reason: "must be 0 (unpaced) or more".to_owned(),
            });
        }
        let stages = Stages::parse(&options.tests)?;
        let shard = options.shard.as_deref().map(Shard::from_str).transpose()?;
        let web = web_config(&options, stages)?;
        options.qtypes = qtypes.iter().map(ToString::to_string).collect();
        options.tests = options
            .tests
            .iter()
            .map(|name| normalise_stage_name(name))
            .collect();
        options.shard = shard.map(|shard| shard.to_string());
        options.concurrency = options.concurrency.max(1);
        options.max_ips = web.max_ips;
        let mut dns = DnsProbeConfig {
            timeout: options.dns_timeout,
            retries: options.retries,
            wait_after_first: options.dns_wait,
            ..DnsProbeConfig::default()
        };
        dns.sockets = if let Some(sockets) = options.dns_sockets {
            sockets.max(1)
        } else {
            // As many as the names in flight need, from the start (see `sockets_for`).
            let servers = 1
                + usize::from(inputs.sink.is_some())
                + usize::from(matches!(inputs.control, ControlSpec::Udp { .. }));
            dns.sockets_for(
                options.concurrency,
                qtypes.len() * servers,
                DEFAULT_DNS_SOCKETS,
            )
        };
        options.dns_sockets = Some(dns.sockets);
        options.forged_ips = inputs.forged_ips.len();
        let web_control = web_control_config(&mut options, &inputs)?;
        Ok(ScanConfig {
            resolver: inputs.resolver,
            sink: inputs.sink,
            qtypes,
            dns,
            control: inputs.control,
            control_timeout: options.control_timeout,
            extra_roots: inputs.extra_roots,
            forged_ips: inputs.forged_ips,
            concurrency: options.concurrency,
            rate: options.rate,
            seed: options.seed,
            shard,
            vantage: inputs.vantage,
            out: inputs.out,
            stages,
            web,
            residual: PathGuardConfig {
                residual_wait: options.residual_wait,
                recheck_initial: options.residual_recheck,
                ..PathGuardConfig::default()
            },
            blockpages: options.blockpages.clone(),
            injectors: options.injectors.clone(),
            web_control,
            asn_db: options.asn_db.clone(),
            options,
        })
    }

    /// A builder starting from the command line's defaults ([`ScanOptions::default`],
    /// seed 0) and [`ScanInputs::new`].
    pub fn builder(resolver: SocketAddr) -> ScanConfigBuilder {
        ScanConfigBuilder {
            options: ScanOptions::default(),
            inputs: ScanInputs::new(resolver),
        }
    }
}

/// The web control client's settings of `options` (batch normalised to at least 1).
fn web_control_config(
    options: &mut ScanOptions,
    inputs: &ScanInputs,
) -> Result<Option<WebControlConfig>> {
    let Some(recorded) = &mut options.web_control else {
        return Ok(None);
    };
    recorded.batch = recorded.batch.max(1);
    if let Err(crate::probe::web_control::WebControlError::BadUrl { url, reason }) =
        crate::probe::web_control::endpoint(&recorded.url)
    {
        return Err(ScanConfigError::BadOption {
            option: "--web-control",
            reason: format!("{url:?}: {reason}"),
        });
    }
    let token = inputs
        .web_control_token
        .clone()
        .ok_or_else(|| ScanConfigError::BadOption {
            option: "--web-control-token",
            reason: "a web control needs its token".to_owned(),
        })?;
    Ok(Some(WebControlConfig {
        roots: inputs.web_control_roots.clone(),
        batch: recorded.batch,
        timeout: recorded.timeout,
        ..WebControlConfig::new(recorded.url.clone(), token)
    }))
}

/// The HTTP and TLS stage settings of `options`.
fn web_config(options: &ScanOptions, stages: Stages) -> Result<WebStageConfig> {
    let via = match options.via {
        Some(ip) => Some(ViaConfig {
            ip,
            ports: options
                .via_ports
                .as_deref()
                .map(PortRotation::parse_range)
                .transpose()?,
            window: options.residual_wait,
        }),
        None => None,
    };
    Ok(WebStageConfig {
        run_http: stages.http,
        run_tls: stages.tls,
        http_port: options.http_port,
        tls_port: options.tls_port,
        control_name: options.control_name.clone(),
        max_ips: options.max_ips.max(1),
        via,
        http: HttpProbeConfig {
            connect_timeout: options.connect_timeout,
            response_timeout: options.web_timeout,
            ..HttpProbeConfig::default()
        },
        tls: TlsProbeConfig {
            connect_timeout: options.connect_timeout,
            handshake_timeout: options.web_timeout,
            ..TlsProbeConfig::default()
        },
        ..WebStageConfig::default()
    })
}

/// Builds a [`ScanConfig`] through [`ScanConfig::from_options`]: set what differs from
/// the defaults, then [`build`](ScanConfigBuilder::build).
#[derive(Debug, Clone)]
#[must_use]
pub struct ScanConfigBuilder {
    options: ScanOptions,
    inputs: ScanInputs,
}

impl ScanConfigBuilder {
    /// Changes options not covered by a method of its own.
    pub fn options(mut self, change: impl FnOnce(&mut ScanOptions)) -> Self {
        change(&mut self.options);
        self
    }

    /// Changes inputs not covered by a method of its own.
    pub fn inputs(mut self, change: impl FnOnce(&mut ScanInputs)) -> Self {
        change(&mut self.inputs);
        self
    }

    /// Query types by name (`A`, `AAAA`, ...).
    pub fn qtypes(mut self, qtypes: &[RecordType]) -> Self {
        self.options.qtypes = qtypes.iter().map(ToString::to_string).collect();
        self
    }

    /// Stages by name (`dns`, `http`, `tls`).
    pub fn tests(mut self, tests: &[&str]) -> Self {
        self.options.tests = tests.iter().map(|&name| name.to_owned()).collect();
        self
    }

    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.options.concurrency = concurrency;
        self
    }

    /// DNS queries a second (0: unpaced).
    pub fn rate(mut self, rate: f64) -> Self {
        self.options.rate = rate;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.options.seed = seed;
        self
    }

    pub fn out(mut self, out: impl Into<PathBuf>) -> Self {
        self.inputs.out = Some(out.into());
        self
    }

    pub fn control(mut self, control: ControlSpec) -> Self {
        self.inputs.control = control;
        self
    }

    pub fn build(self) -> Result<ScanConfig> {
        ScanConfig::from_options(self.options, self.inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> SocketAddr {
        "198.18.0.53:53".parse().unwrap()
    }

    #[test]
    fn the_recorded_options_are_the_effective_ones() {
        let config = ScanConfig::builder(resolver())
            .options(|o| {
                o.qtypes = vec!["aaaa".to_owned(), "A".to_owned(), "AAAA".to_owned()];
                o.tests = vec![" DNS".to_owned(), "tls ".to_owned()];
                o.concurrency = 0;
                o.max_ips = 0;
                o.dns_sockets = Some(0);
            })
            .build()
            .unwrap();
        assert_eq!(config.qtypes, vec![RecordType::AAAA, RecordType::A]);
        assert_eq!(config.options.qtypes, vec!["AAAA", "A"]);
        assert_eq!(config.options.tests, vec!["dns", "tls"]);
        assert_eq!(
            config.stages,
            Stages {
                dns: true,
                http: false,
                tls: true
            }
        );
        assert_eq!((config.concurrency, config.options.concurrency), (1, 1));
        assert_eq!((config.web.max_ips, config.options.max_ips), (1, 1));
        assert_eq!(
            (config.dns.sockets, config.options.dns_sockets),
            (1, Some(1))
        );
    }

    #[test]
    fn the_dns_pool_is_sized_for_the_names_in_flight_unless_given() {
        let sized = |concurrency: usize, sockets: Option<usize>| {
            let config = ScanConfig::builder(resolver())
                .options(|o| {
                    o.qtypes = vec!["A".to_owned()];
                    o.concurrency = concurrency;
                    o.dns_sockets = sockets;
                })
                .build()
                .unwrap();
            assert_eq!(config.options.dns_sockets, Some(config.dns.sockets));
            config.dns.sockets
        };
        assert_eq!(sized(500, None), DEFAULT_DNS_SOCKETS);
        let large = sized(60_000, None);
        assert_eq!(
            large,
            DnsProbeConfig::default().sockets_for(60_000, 1, DEFAULT_DNS_SOCKETS)
        );
        assert!(large > DEFAULT_DNS_SOCKETS, "{large}");
        assert_eq!(sized(60_000, Some(3)), 3, "a given count is kept");
    }

    #[test]
    fn defaults_match_the_command_line() {
        let config = ScanConfig::builder(resolver()).build().unwrap();
        assert_eq!(config.options.dns_sockets, Some(DEFAULT_DNS_SOCKETS));
        assert_eq!(config.dns.sockets, DEFAULT_DNS_SOCKETS);
        assert_eq!(config.concurrency, 500);
        assert_eq!(config.qtypes, vec![RecordType::A, RecordType::AAAA]);
        assert!(config.stages.dns && config.stages.http && config.stages.tls);
        assert_eq!(config.dns.wait_after_first, Duration::from_secs(1));
        assert_eq!(config.residual.residual_wait, Duration::from_secs(180));
    }

    #[test]
    fn a_bad_control_name_keeps_the_reason() {
        let err = check_control_name("a..b").unwrap_err();
        let source = std::error::Error::source(&err).expect("the reason is kept");
        assert!(source.is::<InvalidTarget>(), "{source:?}");
        let err = ScanConfig::builder(resolver())
            .options(|o| o.shard = Some("3/2".to_owned()))
            .build()
            .unwrap_err();
        assert!(matches!(err, ScanConfigError::Shard(_)), "{err:?}");
    }

    #[test]
    fn bad_options_are_refused() {
        let refused = |change: fn(&mut ScanOptions), option: &str| {
            let error = ScanConfig::builder(resolver())
                .options(change)
                .build()
                .unwrap_err();
            assert_eq!(error.option(), option, "{error}");
        };
        refused(|o| o.qtypes = vec!["NOPE".to_owned()], "--qtype");
        refused(|o| o.tests = vec!["ftp".to_owned()], "--tests");
        refused(|o| o.rate = -1.0, "--rate");
        refused(|o| o.control_name = "a..b".to_owned(), "--control-name");
        refused(|o| o.shard = Some("3/2".to_owned()), "--shard");
        refused(
            |o| o.web_control = Some(web_control_options("http://198.18.0.9:8080")),
            "--web-control",
        );
    }

    fn web_control_options(url: &str) -> crate::record::WebControlOptions {
        crate::record::WebControlOptions {
            batch: 0,
            ca_file: None,
            timeout: Duration::from_secs(3),
            url: url.to_owned(),
        }
    }

    #[test]
    fn a_web_control_needs_its_token_and_keeps_it_out_of_the_options() {
        let options = |o: &mut ScanOptions| {
            o.web_control = Some(web_control_options("https://198.18.0.9:8443"));
        };
        let error = ScanConfig::builder(resolver())
            .options(options)
            .build()
            .unwrap_err();
        assert_eq!(error.option(), "--web-control-token", "{error}");
        let config = ScanConfig::builder(resolver())
            .options(options)
            .inputs(|i| i.web_control_token = Some("s3cret".to_owned()))
            .build()
            .unwrap();
        let client = config.web_control.expect("a web control");
        assert_eq!(client.token, "s3cret");
        assert_eq!((client.batch, client.timeout), (1, Duration::from_secs(3)));
        let recorded = serde_json::to_string(&config.options).unwrap();
        assert!(!recorded.contains("s3cret"), "{recorded}");
        assert!(
            recorded.contains(
                r#""web_control":{"batch":1,"timeout_ms":3000,"url":"https://198.18.0.9:8443"}"#
            ),
            "{recorded}"
        );
    }
}
