//! Target lists: the real Citizen Lab lists and the lists shipped in `targets/` load cleanly.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use censorprobe::targets::{TargetList, TargetLoader};
use censorprobe::vocab::Blocking;
use censorprobe::vocab::DnsVerdict;

use crate::support::json;

/// `shared/lists/citizenlab`, found beside the crate (`../shared`, the layout of the main
/// checkout) or beside one of its ancestors (a worktree nested one level deeper).
fn citizenlab_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/lists/citizenlab"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no shared/lists/citizenlab beside {} or its ancestors",
                manifest.display()
            )
        })
}

fn load_one(path: &Path) -> TargetList {
    let mut loader = TargetLoader::new(false);
    loader
        .add_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    loader.finish()
}

fn shipped_list(name: &str) -> TargetList {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("targets")
        .join(name);
    load_one(&path)
}

#[test]
fn every_citizenlab_list_loads_with_categories() {
    let dir = citizenlab_dir();
    let mut lists: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().contains("LEGEND"))
        .collect();
    lists.sort();
    assert!(
        lists.iter().any(|p| p.ends_with("global.csv")),
        "global.csv missing from {lists:?}"
    );
    assert!(lists.iter().any(|p| p.ends_with("cn.csv")));

    let mut all = TargetLoader::new(true);
    for path in &lists {
        let list = load_one(path);
        for skipped in &list.skipped {
            println!(
                "{}:{}: skipped {:?}: {}",
                skipped.source, skipped.line, skipped.input, skipped.reason
            );
        }
        // Every URL in the published lists names a valid host.
        assert!(
            list.skipped.is_empty(),
            "{}: {} skipped",
            path.display(),
            list.skipped.len()
        );
        assert!(
            list.targets.len() > 100,
            "{}: only {} targets",
            path.display(),
            list.targets.len()
        );
        let source = path.display().to_string();
        for target in &list.targets {
            assert!(!target.domain.is_empty());
            assert!(!target.domain.ends_with('.'));
            assert_eq!(target.domain, target.domain.to_ascii_lowercase());
            for from in &target.sources {
                assert_eq!(&*from.source, source.as_str());
                let line = from.line.expect("file sources have line numbers");
                assert!(line >= 2, "line {line} is the header");
                assert!(from.input.starts_with("http"), "{from:?}");
                let code = from.category_code.as_deref().expect("category kept");
                assert!(
                    code.len() >= 3 && code.bytes().all(|b| b.is_ascii_uppercase()),
                    "{from:?}"
                );
            }
        }
        // Several URLs on one host are one target with several sources.
        let sources: usize = list.targets.iter().map(|t| t.sources.len()).sum();
        assert!(sources >= list.targets.len());
        let distinct: HashSet<&str> = list.targets.domains().collect();
        assert_eq!(distinct.len(), list.targets.len(), "duplicates left");

        // And the whole list loads in strict mode too.
        all.add_file(path).unwrap();
    }
    let all = all.finish();
    assert!(all.skipped.is_empty());

    // Facts about the published lists that any correct loader reproduces.
    let cn = load_one(&dir.join("cn.csv"));
    let s3 = cn
        .targets
        .iter()
        .find(|t| t.domain == "s3.amazonaws.com")
        .expect("cn.csv has S3-hosted pages");
    assert!(s3.sources.len() >= 2, "{s3:?}");
    assert!(s3.category_codes().contains(&"ANON"));
    // `http://rescue.sitiits.com:9966/visur/#/`: port and fragment dropped.
    assert!(cn.targets.iter().any(|t| t.domain == "rescue.sitiits.com"));

    let global = load_one(&dir.join("global.csv"));
    let categories: HashSet<String> = global
        .targets
        .iter()
        .flat_map(|t| {
            t.category_codes()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    for code in ["NEWS", "HUMR", "ANON", "GRP", "CTRL"] {
        assert!(categories.contains(code), "global.csv lacks {code}");
    }
}

#[test]
fn the_legend_is_not_a_test_list() {
    // The legend's header is not `url,category_code`, so it reads as a plain list whose
    // lines are all rejected, loudly.
    let list = load_one(&citizenlab_dir().join("00-LEGEND-new_category_codes.csv"));
    assert!(list.targets.is_empty(), "{:?}", list.targets);
    assert!(list.skipped.len() > 20);
}

#[test]
fn cn_watch_list_loads_cleanly_with_categories() {
    let list = shipped_list("cn-watch.txt");
    assert!(list.skipped.is_empty(), "{:?}", list.skipped);
    assert!(
        (60..=100).contains(&list.targets.len()),
        "{} targets",
        list.targets.len()
    );
    for target in &list.targets {
        assert_eq!(target.sources.len(), 1, "{} listed twice", target.domain);
        assert!(target.address.is_none() && target.pinned_ips.is_empty());
        assert_eq!(target.category_codes().len(), 1, "{target:?}");
    }
    let categories: HashSet<String> = list
        .targets
        .iter()
        .flat_map(|t| {
            t.category_codes()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    for code in ["NEWS", "HUMR", "GRP", "COMT", "ANON"] {
        assert!(categories.contains(code), "no {code} entries");
    }
}

#[test]
fn controls_list_loads_cleanly() {
    let list = shipped_list("controls.txt");
    assert!(list.skipped.is_empty(), "{:?}", list.skipped);
    assert!(list.targets.iter().any(|t| t.domain == "example.com"));
    for target in &list.targets {
        assert_eq!(target.category_codes(), ["CTRL"], "{}", target.domain);
    }

    // A control is never also a watched name.
    let watched: HashSet<String> = shipped_list("cn-watch.txt")
        .targets
        .into_iter()
        .map(|t| t.domain)
        .collect();
    for target in &list.targets {
        assert!(!watched.contains(&target.domain), "{}", target.domain);
    }
}

#[test]
fn embedded_category_codes_are_the_legend() {
    let path = citizenlab_dir().join("00-LEGEND-new_category_codes.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = headers.iter().position(|h| h == "New Code").unwrap();
    let mut legend: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[column].trim().to_owned())
        .collect();
    legend.sort();
    let mut embedded: Vec<&str> = censorprobe::targets::CITIZENLAB_CATEGORIES.to_vec();
    embedded.sort_unstable();
    assert_eq!(legend, embedded);
}

/// Runs `censorprobe scan --targets FILE` on `text`; a loopback resolver keeps any scan
/// that does start on this host.
async fn scan_list(text: &str) -> crate::support::Run {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, text).unwrap();
    crate::support::run_binary(&crate::support::args(&[
        "scan",
        "--control",
        "none",
        "--tests",
        "dns",
        "--resolver",
        "127.0.0.1:9",
        "--dns-timeout",
        "10ms",
        "--targets",
        list.to_str().unwrap(),
    ]))
    .await
}

#[tokio::test]
async fn an_all_invalid_list_says_why_no_target_loaded() {
    let run = scan_list("-a.example\nnot a name\nx.example,category=BOGUS\n").await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    let error: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("censorprobe: error:"))
        .collect();
    assert_eq!(error.len(), 1, "{run:#?}");
    let error = error[0];
    assert!(
        error.contains("no targets: 3 input line(s) rejected"),
        "{error}"
    );
    assert!(error.contains("starts with a hyphen"), "{error}");
    assert!(error.contains("whitespace inside a target"), "{error}");
    assert!(error.contains("not in the Citizen Lab legend"), "{error}");
    assert!(run.stdout.is_empty());
}

#[tokio::test]
async fn a_huge_line_is_skipped_and_echoed_short() {
    let huge = "y".repeat(10 << 20);
    let run = scan_list(&format!("{huge}\n-b.example\n")).await;
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(
        run.stderr.len() < 4000,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert!(run.stderr.contains("bytes in all)"), "{}", run.stderr);
    assert!(run.stderr.contains("at most 16384"), "{}", run.stderr);
}

/// A name the loader would refuse, handed to the scan directly: the probe must not
/// query another name (hickory's root) in its place and report that as the name's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencodable_name_is_never_queried_as_the_root() {
    use censorprobe::cli::{Cli, Command, scan_config};
    use censorprobe::targets::{Target, TargetList, TargetSource};
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let cli = Cli::try_parse_from([
        "censorprobe",
        "scan",
        "--control",
        "none",
        "--tests",
        "dns",
        "--resolver",
        "127.0.0.1:9",
        "--dns-timeout",
        "50ms",
        "--retries",
        "0",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let Command::Scan(args) = cli.command else {
        panic!("a scan")
    };
    let config = scan_config(&args).unwrap();
    let list = TargetList {
        targets: vec![Target {
            domain: "-a.example".to_owned(),
            address: None,
            pinned_ips: Vec::new(),
            sources: vec![TargetSource {
                source: "test".into(),
                line: None,
                input: "-a.example".to_owned(),
                category_code: None,
            }],
            sources_omitted: 0,
        }]
        .into(),
        ..TargetList::default()
    };
    let passes = censorprobe::scan::Passes::once(list, config.seed, config.shard);
    let sink = Box::new(censorprobe::output::JsonlSink::create(
        config.out.as_deref(),
    ));
    censorprobe::scan::run_scan(config, passes, sink, std::future::pending())
        .await
        .unwrap();
    let report = crate::support::Report::parse(&std::fs::read_to_string(&out).unwrap());
    let typed = report.target("-a.example");
    let record = &json(typed);
    let dns = &record["dns"];
    assert_eq!(
        typed.dns_verdict(),
        Some(DnsVerdict::Inconclusive),
        "{record:#}"
    );
    assert_eq!(
        dns["queries"].as_array().map(Vec::len),
        Some(0),
        "{record:#}"
    );
    assert_eq!(dns["evidence"][0]["kind"], "invalid_name", "{record:#}");
    assert_ne!(typed.blocking, Blocking::No, "{record:#}");
}
