//! The DNS stage end to end through the real binary, against loopback fakes:
//! every verdict and poisoning method, the sink, the schema, and start-up errors.

use std::time::Duration;

use serde_json::Value;

use censorprobe::record::TargetRecord;
use censorprobe::record::assessment::EvidenceKind;
use censorprobe::vocab::{Blocking, BlockingLayer};
use censorprobe::vocab::{DnsVerdict, PoisoningMethod};

use crate::support::{
    Behaviour, FakeOptions, Report, args, fake_dns, fake_dns_with, json, run_binary,
};

const LATE: Duration = Duration::from_millis(60);

fn methods(record: &TargetRecord) -> Vec<PoisoningMethod> {
    record
        .dns
        .as_ref()
        .map(|dns| dns.assessment.methods.clone())
        .unwrap_or_default()
}

fn evidence_kinds(record: &TargetRecord) -> Vec<EvidenceKind> {
    let dns = record.dns.as_ref().expect("a DNS stage");
    dns.assessment.evidence.iter().map(|e| e.kind).collect()
}

fn verdict_of(record: &TargetRecord) -> DnsVerdict {
    record.dns_verdict().expect("a DNS stage")
}

fn method_of(record: &TargetRecord) -> Option<PoisoningMethod> {
    record.dns.as_ref().and_then(|dns| dns.assessment.method)
}

/// Every verdict and method in one scan: a resolver fake with one behaviour per name, a
/// control that knows the truth, a sink only the "injector" answers, a forged-IP list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dns_verdict_and_method() {
    let resolver = fake_dns(
        &[
            ("ok.test", Behaviour::a([198, 18, 1, 1])),
            (
                "injected.test",
                Behaviour::injected([10, 10, 34, 34], [198, 18, 1, 2], LATE),
            ),
            ("sinkhit.test", Behaviour::a([198, 18, 1, 3])),
            ("dropped.test", Behaviour::Drop),
            ("gone.test", Behaviour::Nxdomain),
            ("forgednx.test", Behaviour::Nxdomain),
            ("broken.test", Behaviour::ServFail),
            ("geo.test", Behaviour::a([198, 18, 5, 5])),
            ("bogon.test", Behaviour::a([127, 0, 0, 2])),
            ("known.test", Behaviour::a([198, 18, 66, 66])),
            ("nocontrol.test", Behaviour::Drop),
        ],
        Behaviour::Nxdomain,
    )
    .await;
    let control = fake_dns(
        &[
            ("ok.test", Behaviour::a([198, 18, 1, 1])),
            ("injected.test", Behaviour::a([198, 18, 1, 2])),
            ("sinkhit.test", Behaviour::a([198, 18, 1, 3])),
            ("dropped.test", Behaviour::a([198, 18, 1, 4])),
            ("forgednx.test", Behaviour::a([198, 18, 1, 5])),
            ("broken.test", Behaviour::a([198, 18, 1, 6])),
            ("geo.test", Behaviour::a([198, 18, 6, 6])),
            ("bogon.test", Behaviour::a([198, 18, 1, 7])),
            ("known.test", Behaviour::a([198, 18, 1, 8])),
            ("nocontrol.test", Behaviour::Drop),
        ],
        Behaviour::Nxdomain,
    )
    .await;
    // The sink runs no DNS service; the fake here plays the injector answering for
    // one name that it "censors".
    let sink = fake_dns(
        &[("sinkhit.test", Behaviour::a([10, 10, 34, 35]))],
        Behaviour::Drop,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let forged = dir.path().join("forged.txt");
    std::fs::write(&forged, "# pool seen before\n198.18.66.0/24\n").unwrap();
    let out = dir.path().join("report.jsonl");
    let names = [
        "ok.test",
        "injected.test",
        "sinkhit.test",
        "dropped.test",
        "gone.test",
        "forgednx.test",
        "broken.test",
        "geo.test",
        "bogon.test",
        "known.test",
        "nocontrol.test",
    ];
    let mut argv = args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        &format!("udp:{control}"),
        "--control-timeout",
        "400ms",
        "--dns-sink",
        &sink.to_string(),
        "--forged-ips",
        forged.to_str().unwrap(),
        "--qtype",
        "A",
        "--dns-wait",
        "250ms",
        "--dns-timeout",
        "300ms",
        "--retries",
        "1",
        "--vantage",
        "loopback-test",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    argv.extend(names.iter().map(|n| (*n).to_owned()));
    let run = run_binary(&argv).await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(report.targets.len(), names.len());
    assert_eq!(report.header.vantage.as_deref(), Some("loopback-test"));
    assert_eq!(report.header.control, format!("udp:{control}"));

    let verdict = |name: &str| verdict_of(report.target(name));
    let method = |name: &str| method_of(report.target(name));

    assert_eq!(verdict("ok.test"), DnsVerdict::Ok);
    assert_eq!(method("ok.test"), None);
    assert!(evidence_kinds(report.target("ok.test")).contains(&EvidenceKind::CommonAddress));

    // The injector's race: both replies recorded, forged first, genuine later.
    let injected_record = report.target("injected.test");
    let injected = &json(injected_record);
    assert_eq!(verdict("injected.test"), DnsVerdict::DnsPoisoning);
    assert_eq!(method("injected.test"), Some(PoisoningMethod::Injection));
    let replies = injected["dns"]["queries"][0]["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 2, "{injected:#}");
    assert_eq!(replies[0]["answers"][0]["data"], "10.10.34.34");
    assert_eq!(replies[1]["answers"][0]["data"], "198.18.1.2");
    assert!(replies[0]["elapsed_ms"].as_f64() < replies[1]["elapsed_ms"].as_f64());
    assert!(
        replies.iter().all(|r| r["ip_ttl"].as_u64().is_some()),
        "IP TTL recorded"
    );
    assert_eq!(
        injected["dns"]["forged_ips"],
        serde_json::json!(["10.10.34.34"])
    );
    assert!(
        injected["dns"]["genuine_ips"]
            .as_array()
            .unwrap()
            .contains(&Value::from("198.18.1.2"))
    );
    // Several methods apply; all are recorded, strongest first.
    assert_eq!(
        methods(injected_record),
        [
            PoisoningMethod::Injection,
            PoisoningMethod::Bogon,
            PoisoningMethod::Inconsistent
        ]
    );
    assert!(evidence_kinds(injected_record).contains(&EvidenceKind::DisagreeingReplies));

    assert_eq!(verdict("sinkhit.test"), DnsVerdict::DnsPoisoning);
    assert_eq!(method("sinkhit.test"), Some(PoisoningMethod::Injection));
    assert!(evidence_kinds(report.target("sinkhit.test")).contains(&EvidenceKind::SinkReply));
    assert!(
        json(report.target("sinkhit.test"))["dns"]["forged_ips"]
            .as_array()
            .unwrap()
            .contains(&Value::from("10.10.34.35"))
    );

    assert_eq!(verdict("dropped.test"), DnsVerdict::Timeout);
    let dropped_json = json(report.target("dropped.test"));
    let dropped_query = &dropped_json["dns"]["queries"][0];
    assert_eq!(dropped_query["attempts"], 2, "retried once");
    // The resolver answers a benign name (NXDOMAIN here) sent beside this one in every
    // re-check, but never this one, which the control resolves: its queries are dropped,
    // which is DNS blocking.
    let dropped = report.target("dropped.test");
    assert!(evidence_kinds(dropped).contains(&EvidenceKind::SelectiveSilence));
    let rechecks = dropped_query["rechecks"].as_array().unwrap();
    assert_eq!(rechecks.len(), 2, "{dropped_json:#}");
    for recheck in rechecks {
        assert_eq!(recheck["benign"]["qname"], "example.com");
        assert_eq!(recheck["benign"]["replies"].as_array().unwrap().len(), 1);
        assert!(recheck["query"]["replies"].as_array().unwrap().is_empty());
    }
    assert_eq!(dropped.blocking, Blocking::At(BlockingLayer::Dns));

    assert_eq!(verdict("gone.test"), DnsVerdict::Nxdomain);
    assert_eq!(verdict("forgednx.test"), DnsVerdict::DnsPoisoning);
    assert_eq!(
        method("forgednx.test"),
        Some(PoisoningMethod::ForgedNxdomain)
    );
    assert_eq!(verdict("broken.test"), DnsVerdict::Error);
    assert_eq!(
        json(report.target("broken.test"))["dns"]["rcode"],
        "ServFail"
    );
    assert_eq!(verdict("geo.test"), DnsVerdict::DnsPoisoning);
    assert_eq!(method("geo.test"), Some(PoisoningMethod::Inconsistent));
    assert_eq!(verdict("bogon.test"), DnsVerdict::DnsPoisoning);
    assert_eq!(method("bogon.test"), Some(PoisoningMethod::Bogon));
    assert_eq!(
        methods(report.target("bogon.test")),
        [PoisoningMethod::Bogon, PoisoningMethod::Inconsistent]
    );
    assert_eq!(verdict("known.test"), DnsVerdict::DnsPoisoning);
    assert_eq!(method("known.test"), Some(PoisoningMethod::KnownForgedIp));
    // Neither the resolver nor the control answered: no verdict can be claimed.
    assert_eq!(verdict("nocontrol.test"), DnsVerdict::Inconclusive);

    let summary = &report.summary;
    let dns_count = |verdict: DnsVerdict| summary.dns[verdict.as_str()];
    assert_eq!(summary.targets_measured, names.len());
    assert_eq!(dns_count(DnsVerdict::DnsPoisoning), 6);
    assert_eq!(dns_count(DnsVerdict::Ok), 1);
    assert_eq!(dns_count(DnsVerdict::Timeout), 1);
    assert_eq!(dns_count(DnsVerdict::Nxdomain), 1);
    assert_eq!(dns_count(DnsVerdict::Error), 1);
    assert_eq!(dns_count(DnsVerdict::Inconclusive), 1);
    assert_eq!(summary.dns_methods[PoisoningMethod::Injection.as_str()], 2);
    assert!(!summary.interrupted);
    assert!(
        run.stderr.contains("dns_poisoning 6"),
        "human summary on stderr: {}",
        run.stderr
    );
    assert!(run.stderr.contains("injected.test"), "{}", run.stderr);
}

/// Without a control, only self-evident tampering is claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_control_only_injection_is_claimed() {
    let resolver = fake_dns(
        &[
            ("plain.test", Behaviour::a([198, 18, 2, 1])),
            (
                "raced.test",
                Behaviour::injected([127, 0, 0, 3], [198, 18, 2, 2], LATE),
            ),
            ("gone.test", Behaviour::Nxdomain),
            ("silent.test", Behaviour::Drop),
            ("bogon.test", Behaviour::a([10, 10, 34, 34])),
            // The benign name: this network's names resolve into 198.18.0.0/15 (a lab).
            ("example.com", Behaviour::a([198, 18, 2, 9])),
        ],
        Behaviour::Nxdomain,
    )
    .await;
    let run = run_binary(&args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        "none",
        "--qtype",
        "A",
        "--dns-wait",
        "250ms",
        "--dns-timeout",
        "200ms",
        "--retries",
        "0",
        "plain.test",
        "raced.test",
        "gone.test",
        "silent.test",
        "bogon.test",
    ]))
    .await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&run.stdout);
    let verdict = |name: &str| verdict_of(report.target(name));
    assert_eq!(verdict("plain.test"), DnsVerdict::Ok);
    assert!(evidence_kinds(report.target("plain.test")).contains(&EvidenceKind::NoControl));
    // 198.18.2.1 is a bogon, but the benign name resolves into the same range here.
    assert!(evidence_kinds(report.target("plain.test")).contains(&EvidenceKind::BogonRangeInUse));
    // A bogon outside the network's ranges, with no control: poisoning, never ok.
    let bogon_record = report.target("bogon.test");
    let bogon = &json(bogon_record);
    assert_eq!(verdict("bogon.test"), DnsVerdict::DnsPoisoning, "{bogon:#}");
    assert_eq!(methods(bogon_record), [PoisoningMethod::Bogon]);
    assert_eq!(bogon_record.blocking, Blocking::At(BlockingLayer::Dns));
    assert_eq!(
        bogon["dns"]["forged_ips"],
        serde_json::json!(["10.10.34.34"])
    );
    assert_eq!(bogon["dns"]["benign_query"]["qname"], "example.com");
    assert_eq!(verdict("raced.test"), DnsVerdict::DnsPoisoning);
    // The forgery is a bogon outside the network's ranges too.
    assert_eq!(
        methods(report.target("raced.test")),
        [PoisoningMethod::Injection, PoisoningMethod::Bogon]
    );
    assert_eq!(
        verdict("gone.test"),
        DnsVerdict::Inconclusive,
        "NXDOMAIN is genuine only when a control agrees"
    );
    assert_eq!(
        verdict("silent.test"),
        DnsVerdict::Inconclusive,
        "a timeout needs a control that answered"
    );
}

/// A resolver that answers nothing at all is down, not censoring: its timeouts are
/// reported, and no blocking is claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_answers_nothing_is_not_dns_blocking() {
    let resolver = fake_dns(&[], Behaviour::Drop).await;
    let control = fake_dns(
        &[("site.test", Behaviour::a([198, 18, 4, 1]))],
        Behaviour::Nxdomain,
    )
    .await;
    let run = run_binary(&args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        &format!("udp:{control}"),
        "--qtype",
        "A",
        "--dns-timeout",
        "200ms",
        "--retries",
        "0",
        "site.test",
    ]))
    .await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&run.stdout);
    let site_record = report.target("site.test");
    let site = &json(site_record);
    assert_eq!(verdict_of(site_record), DnsVerdict::Timeout);
    assert!(evidence_kinds(site_record).contains(&EvidenceKind::ResolverUnresponsive));
    let rechecks = site["dns"]["queries"][0]["rechecks"].as_array().unwrap();
    assert!(!rechecks.is_empty());
    assert!(rechecks.iter().all(|r| r["benign"]["attempts"] == 1));
    assert_eq!(site_record.blocking, Blocking::Inconclusive, "{site:#}");
}

/// A and AAAA by default; no-data for AAAA agrees with a control that has none either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_and_aaaa_by_default() {
    let resolver = fake_dns(
        &[("dual.test", Behaviour::a([198, 18, 3, 1]))],
        Behaviour::Nxdomain,
    )
    .await;
    let control = fake_dns(
        &[("dual.test", Behaviour::a([198, 18, 3, 1]))],
        Behaviour::Nxdomain,
    )
    .await;
    let run = run_binary(&args(&[
        "scan",
        // The test reads the observations of `ok` records.
        "--observations",
        "full",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        &format!("udp:{control}"),
        "--dns-wait",
        "100ms",
        "--dns-timeout",
        "300ms",
        "https://DUAL.test./path?q=1",
    ]))
    .await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&run.stdout);
    let record = &json(report.target("dual.test"));
    let qtypes: Vec<&str> = record["dns"]["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["qtype"].as_str().unwrap())
        .collect();
    assert_eq!(qtypes, ["A", "AAAA"]);
    assert_eq!(
        verdict_of(report.target("dual.test")),
        DnsVerdict::Ok,
        "{record:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_are_one_clear_line() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "scan",
                "--targets",
                "/nonexistent/list.txt",
                "--resolver",
                "127.0.0.1",
                "--control",
                "none",
            ],
            "/nonexistent/list.txt",
        ),
        (
            &[
                "scan",
                "--resolver",
                "not-an-ip",
                "--control",
                "none",
                "example.test",
            ],
            "not-an-ip",
        ),
        (
            &[
                "scan",
                "--resolver",
                "127.0.0.1",
                "--control",
                "bogus:x",
                "example.test",
            ],
            "bogus:x",
        ),
        (
            &[
                "scan",
                "--resolver",
                "127.0.0.1:9",
                "--control",
                "udp:127.0.0.1:9",
                "--control-timeout",
                "300ms",
                "example.test",
            ],
            "unreachable",
        ),
    ];
    for (argv, needle) in cases {
        let run = run_binary(&args(argv)).await;
        assert_eq!(run.status.code(), Some(2), "{argv:?}: {run:#?}");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{argv:?}: one line expected: {}",
            run.stderr
        );
        assert!(
            lines[0].starts_with("censorprobe: error:") && lines[0].contains(needle),
            "{argv:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "no report on a start-up error");
    }
}

/// Shards run with one seed are disjoint and cover the list, through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_list() {
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 4, 4])).await;
    let names: Vec<String> = (0..40).map(|i| format!("n{i}.shard.test")).collect();
    let mut seen = std::collections::BTreeSet::new();
    for shard in 0..3 {
        let mut argv = args(&[
            "scan",
            "--tests",
            "dns",
            "--resolver",
            &resolver.to_string(),
            "--control",
            "none",
            "--qtype",
            "A",
            "--dns-wait",
            "20ms",
            "--seed",
            "99",
            "--shard",
            &format!("{shard}/3"),
        ]);
        argv.extend(names.iter().cloned());
        let run = run_binary(&argv).await;
        assert!(run.status.success(), "{run:#?}");
        let report = Report::parse(&run.stdout);
        assert_eq!(report.header.targets_loaded, 40);
        for target in &report.targets {
            assert!(
                seen.insert(target.domain.clone()),
                "{} in two shards",
                target.domain
            );
        }
    }
    assert_eq!(seen.len(), 40);
    let run = run_binary(&args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        "127.0.0.1",
        "--shard",
        "0/2",
        "x.test",
    ]))
    .await;
    assert_eq!(
        run.status.code(),
        Some(2),
        "--shard without --seed is refused: {run:#?}"
    );
}

/// Ctrl-C: every record already measured stays, the summary is written, exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_scan_keeps_what_it_measured() {
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 8, 8])).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let mut argv = args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        "none",
        "--qtype",
        "A",
        "--dns-wait",
        "10ms",
        "--rate",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]);
    argv.extend((0..200).map(|i| format!("n{i}.slow.test")));
    let mut child = tokio::process::Command::new(crate::support::BIN)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few records are on disk, then interrupt.
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
            > 3
        {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130));
    let report = Report::parse(&std::fs::read_to_string(&out).unwrap());
    assert!(report.summary.interrupted);
    let measured = report.summary.targets_measured;
    assert_eq!(measured, report.targets.len());
    assert!((3..200).contains(&measured), "{measured}");
}

/// `--targets -` reads the list from standard input, with line numbers in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_from_stdin() {
    use tokio::io::AsyncWriteExt as _;
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 8, 9])).await;
    let mut child = tokio::process::Command::new(crate::support::BIN)
        .args(args(&[
            "scan",
            "--tests",
            "dns",
            "--resolver",
            &resolver.to_string(),
            "--control",
            "none",
            "--qtype",
            "A",
            "--dns-wait",
            "10ms",
            "--targets",
            "-",
        ]))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"# from a pipe\none.stdin.test\nhttp://Two.Stdin.Test/x\nnot a domain\n")
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = Report::parse(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(report.targets.len(), 2);
    let two = json(report.target("two.stdin.test"));
    assert_eq!(two["sources"][0]["source"], "-");
    assert_eq!(two["sources"][0]["line"], 3);
    let header = json(&report.header);
    let skipped = header["skipped_inputs"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["line"], 4);
    assert!(String::from_utf8_lossy(&output.stderr).contains("skipped -:4"));
}

/// A resolver that drops queries above 100 a second is not censoring: the scan backs off
/// (and says so in the summary), and silence is called blocking only when a benign query
/// sent beside the silent one was answered, in several re-checks. A name the resolver
/// always drops is still found among the rate-limited ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limiting_resolver_is_not_reported_as_censoring() {
    // The two cases: far above the limit, and three times it.
    for rate in ["1000", "300"] {
        scan_a_rate_limiting_resolver(rate).await;
    }
}

async fn scan_a_rate_limiting_resolver(rate: &str) {
    let names: Vec<String> = (0..300).map(|i| format!("n{i}.limited.test")).collect();
    let resolver = fake_dns_with(
        &[("censored.test", Behaviour::Drop)],
        Behaviour::a([198, 18, 10, 1]),
        FakeOptions {
            limit_qps: Some(100.0),
            burst: 10.0,
            tcp: false,
        },
    )
    .await;
    let control = fake_dns(&[], Behaviour::a([198, 18, 10, 1])).await;
    let mut argv = args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        &format!("udp:{control}"),
        "--qtype",
        "A",
        "--dns-timeout",
        "300ms",
        "--dns-wait",
        "50ms",
        "--retries",
        "1",
        "--rate",
        rate,
        "--seed",
        "3",
        "censored.test",
    ]);
    argv.extend(names.iter().cloned());
    let run = run_binary(&argv).await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&run.stdout);
    assert_eq!(report.targets.len(), names.len() + 1);
    let blocked: Vec<&str> = report
        .targets
        .iter()
        .filter(|t| t.blocking == Blocking::At(BlockingLayer::Dns))
        .map(|t| t.domain.as_str())
        .collect();
    assert_eq!(
        blocked,
        ["censored.test"],
        "only the dropped name is blocked"
    );
    let censored = report.target("censored.test");
    assert_eq!(verdict_of(censored), DnsVerdict::Timeout);
    assert!(
        evidence_kinds(censored).contains(&EvidenceKind::SelectiveSilence),
        "{:#}",
        json(censored)
    );

    let max: f64 = rate.parse().unwrap();
    let summary = json(&report.summary);
    let rate = &summary["dns_rate"];
    assert!(
        (rate["max_qps"].as_f64().unwrap() - max).abs() < 1e-9,
        "{rate:#}"
    );
    assert!(rate["backoffs"].as_u64().unwrap() >= 1, "{rate:#}");
    assert!(rate["lowest_qps"].as_f64().unwrap() <= 150.0, "{rate:#}");
    assert!(rate["attempts_lost"].as_u64().unwrap() > 0, "{rate:#}");
    assert!(!rate["changes"].as_array().unwrap().is_empty());
    assert!(run.stderr.contains("backed off"), "{}", run.stderr);
}

/// TC=1 with no answer (truncation, a rate limiter's "slip") is retried over TCP; both
/// exchanges are recorded and the verdict rests on the TCP answer. When TCP fails, it
/// is not poisoning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_replies_are_retried_over_tcp() {
    let resolver = fake_dns_with(
        &[
            (
                "big.test",
                Behaviour::Truncated(vec![[198, 18, 11, 1].into()]),
            ),
            ("notcp.test", Behaviour::TruncatedNoTcp),
        ],
        Behaviour::Nxdomain,
        FakeOptions {
            tcp: true,
            ..FakeOptions::default()
        },
    )
    .await;
    let control = fake_dns(
        &[
            ("big.test", Behaviour::a([198, 18, 11, 1])),
            ("notcp.test", Behaviour::a([198, 18, 11, 2])),
        ],
        Behaviour::Nxdomain,
    )
    .await;
    let run = run_binary(&args(&[
        "scan",
        // The test reads the observations of `ok` records.
        "--observations",
        "full",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        &format!("udp:{control}"),
        "--qtype",
        "A",
        "--dns-timeout",
        "500ms",
        "--dns-wait",
        "50ms",
        "big.test",
        "notcp.test",
    ]))
    .await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&run.stdout);
    let big_record = report.target("big.test");
    let big = &json(big_record);
    assert_eq!(verdict_of(big_record), DnsVerdict::Ok, "{big:#}");
    let query = &big["dns"]["queries"][0];
    assert_eq!(query["replies"][0]["flags"]["tc"], true);
    assert!(
        query["replies"][0]["answers"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(query["tcp"]["reply"]["answers"][0]["data"], "198.18.11.1");
    assert!(evidence_kinds(big_record).contains(&EvidenceKind::TruncatedReply));

    let notcp_record = report.target("notcp.test");
    let notcp = &json(notcp_record);
    assert_eq!(
        verdict_of(notcp_record),
        DnsVerdict::Inconclusive,
        "{notcp:#}"
    );
    assert_eq!(method_of(notcp_record), None);
    assert!(notcp["dns"]["method"].is_null());
    assert_eq!(notcp_record.blocking, Blocking::Inconclusive);
    assert!(notcp["dns"]["queries"][0]["tcp"]["error"].is_string());
    assert!(evidence_kinds(notcp_record).contains(&EvidenceKind::TcpRetryFailed));
}

/// Floods: 10,000 identical replies are evidence (count, timing), not silently `ok`;
/// hundreds of 60 KB replies are capped (replies per query, records per reply) so the
/// report stays small; and the other names' timers and verdicts are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_floods_are_capped_recorded_and_starve_nothing() {
    let resolver = fake_dns(
        &[
            (
                "dup.test",
                Behaviour::Flood {
                    copies: 10_000,
                    records: 1,
                },
            ),
            (
                "huge.test",
                Behaviour::Flood {
                    copies: 400,
                    records: 2_400,
                },
            ),
            ("fine.test", Behaviour::a([198, 18, 12, 3])),
            ("quiet.test", Behaviour::Drop),
        ],
        Behaviour::Nxdomain,
    )
    .await;
    let control = fake_dns(
        &[
            ("dup.test", Behaviour::a([198, 18, 0, 0])),
            ("huge.test", Behaviour::a([198, 18, 0, 0])),
            ("fine.test", Behaviour::a([198, 18, 12, 3])),
            ("quiet.test", Behaviour::a([198, 18, 12, 4])),
        ],
        Behaviour::Nxdomain,
    )
    .await;
    let run = run_binary(&args(&[
        "scan",
        // The test reads the observations of `ok` records.
        "--observations",
        "full",
        "--tests",
        "dns",
        "--resolver",
        &resolver.to_string(),
        "--control",
        &format!("udp:{control}"),
        "--qtype",
        "A",
        "--dns-timeout",
        "500ms",
        "--dns-wait",
        "1s",
        "--retries",
        "0",
        "dup.test",
        "huge.test",
        "fine.test",
        "quiet.test",
    ]))
    .await;
    assert!(run.status.success(), "{:?}", run.status);
    for line in run.stdout.lines() {
        assert!(
            line.len() < 1_000_000,
            "a report line of {} bytes",
            line.len()
        );
    }
    let report = Report::parse(&run.stdout);

    let dup = &json(report.target("dup.test"));
    let query = &dup["dns"]["queries"][0];
    let kept = query["replies"].as_array().unwrap().len();
    assert_eq!(kept, 16, "replies kept in full are capped: {dup:#}");
    let omitted = query["omitted_replies"]["count"].as_u64().unwrap();
    assert!(omitted >= 1_000, "{omitted} counted");
    assert_eq!(query["omitted_replies"]["identical_to_first"], omitted);
    let duplicates = dup["dns"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "duplicate_replies")
        .unwrap_or_else(|| panic!("duplicates are evidence: {dup:#}"));
    let detail = duplicates["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("{} replies to 1 attempt(s)", omitted + 16)),
        "{detail}"
    );

    let huge = &json(report.target("huge.test"));
    let query = &huge["dns"]["queries"][0];
    assert_eq!(query["replies"].as_array().unwrap().len(), 16, "{huge:#}");
    assert!(query["omitted_replies"]["count"].as_u64().unwrap() >= 1);
    assert_eq!(query["replies"][0]["answers"].as_array().unwrap().len(), 32);
    assert_eq!(query["replies"][0]["records_omitted"], 2_400 - 32);

    assert_eq!(verdict_of(report.target("fine.test")), DnsVerdict::Ok);
    let quiet = &json(report.target("quiet.test"));
    assert_eq!(
        verdict_of(report.target("quiet.test")),
        DnsVerdict::Timeout,
        "{quiet:#}"
    );
    // Correctness, not speed: the 500 ms timer fired when due, not after the flood.
    let listened = quiet["dns"]["queries"][0]["listened_ms"].as_f64().unwrap();
    assert!(
        listened < 2_500.0,
        "a 500 ms timeout fired after {listened} ms"
    );
}

/// The scan's pipeline holds at most `--concurrency` names in flight (each waits for
/// its late-reply window as a table entry), draws the list as names finish, and
/// measures every name: the summary's `max_names_in_flight` says how many it held.
#[tokio::test]
async fn concurrency_bounds_the_names_in_flight_and_every_name_is_measured() {
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 3, 7])).await;
    let control = fake_dns(&[], Behaviour::a([198, 18, 3, 7])).await;
    let names: Vec<String> = (0..40).map(|i| format!("n{i}.bulk.test")).collect();
    let mut argv = vec![
        "scan".to_owned(),
        "--tests".to_owned(),
        "dns".to_owned(),
        "--qtype".to_owned(),
        "A".to_owned(),
        "--resolver".to_owned(),
        resolver.to_string(),
        "--control".to_owned(),
        format!("udp:{control}"),
        "--dns-wait".to_owned(),
        "50ms".to_owned(),
        "--rate".to_owned(),
        "0".to_owned(),
        "--concurrency".to_owned(),
        "4".to_owned(),
    ];
    argv.extend(names.iter().cloned());
    let run = run_binary(&argv).await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&run.stdout);
    assert_eq!(report.targets.len(), names.len());
    for name in &names {
        assert_eq!(verdict_of(report.target(name)), DnsVerdict::Ok, "{name}");
    }
    let rate = report
        .summary
        .dns_rate
        .as_ref()
        .expect("the DNS rate report");
    assert!(
        (1..=4).contains(&rate.max_names_in_flight),
        "{} names in flight at once with --concurrency 4",
        rate.max_names_in_flight
    );
    // Every name's resolver question, and its UDP control question, went out.
    assert_eq!(rate.queries_sent, 2 * names.len() as u64, "{rate:#?}");
}
