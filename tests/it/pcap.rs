//! `censorprobe pcap` on Censored Planet's CenTrace captures (`../shared/real/centrace/`,
//! GPL-3.0 test data read in place, never copied): TTL-limited HTTP/TLS traces, each test
//! domain paired with the control `example.com` to the same server.

use std::path::PathBuf;
use std::process::Command;

use censorprobe::record::pcap::{
    CensorPlacement, FlowOutcome, HopSource, PcapCaptureRecord, ResponseKind, TriggerProtocol,
    TtlTrace,
};

use crate::support::{BIN, repo_path};

/// A capture of the CenTrace test data; panics when the data is missing (the test must
/// not pass without it). The data lives in `../shared` beside the checkout; a checkout
/// elsewhere (a git worktree) points `CENSORPROBE_SHARED` at that folder instead.
fn centrace(file: &str) -> PathBuf {
    let shared = std::env::var_os("CENSORPROBE_SHARED")
        .map_or_else(|| repo_path("../shared"), PathBuf::from);
    let dir = shared.join("real/centrace/testdata");
    assert!(
        dir.is_dir(),
        "the CenTrace captures are missing: expected {} (see ../shared/real/centrace/SOURCE.md)",
        dir.display()
    );
    let path = dir.join(file);
    assert!(path.is_file(), "missing capture {}", path.display());
    path
}

/// Runs `censorprobe pcap` on the files, returns one record per file.
fn analyse(files: &[&str], extra: &[&str]) -> Vec<PcapCaptureRecord> {
    let output = Command::new(BIN)
        .arg("pcap")
        .args(extra)
        .args(files.iter().map(|f| centrace(f)))
        .output()
        .expect("run censorprobe");
    assert!(
        output.status.success(),
        "pcap failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let records: Vec<PcapCaptureRecord> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a pcap_capture record"))
        .collect();
    assert_eq!(records.len(), files.len(), "one record per file:\n{text}");
    for record in &records {
        assert_eq!(record.record, "pcap_capture");
    }
    records
}

/// The single trace of a record for its trigger name.
fn trace<'a>(record: &'a PcapCaptureRecord, name: &str) -> &'a TtlTrace {
    record
        .traces
        .iter()
        .find(|t| t.trigger_name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no trace for {name} in {}", record.file))
}

#[test]
fn archive_org_draws_three_identical_rst_ack_with_df_from_hop_13_on() {
    let records = analyse(
        &[
            "222.138.4.221_archive.org_archive.org.pcap",
            "222.138.4.221_archive.org_example.com.pcap",
        ],
        &[],
    );
    let test = trace(&records[0], "archive.org");
    assert_eq!(test.protocol, Some(TriggerProtocol::Tls), "SNI trigger");
    assert_eq!(test.server.to_string(), "222.138.4.221:443");
    assert_eq!(test.first_blocking_ttl, Some(13));
    assert_eq!(
        test.router_before_blocking,
        Some("219.158.16.77".parse().unwrap())
    );
    assert_eq!(test.placement, CensorPlacement::OnPath);
    // The test capture never reaches the server: its distance comes from the control.
    assert_eq!(test.server_hop, Some(18));
    assert_eq!(test.server_hop_from, Some(HopSource::OtherCapture));
    let mut triples = 0;
    for hop in &test.hops {
        if hop.ttl < 13 {
            assert!(
                hop.blocking.is_empty(),
                "TTL {}: {:?}",
                hop.ttl,
                hop.blocking
            );
            assert!(
                !hop.routers.is_empty(),
                "TTL {} expires at a router",
                hop.ttl
            );
            continue;
        }
        assert_eq!(hop.blocking.len(), 1, "TTL {}: {:?}", hop.ttl, hop.blocking);
        let burst = &hop.blocking[0];
        assert_eq!(burst.count, 3, "three identical packets at TTL {}", hop.ttl);
        assert!(
            burst.spread_us < 1_000,
            "within a millisecond: {}",
            burst.spread_us
        );
        assert_eq!(burst.ip.df, Some(true), "DF set");
        let ResponseKind::Tcp {
            flags,
            payload_len,
            relative_seq,
            ..
        } = &burst.kind
        else {
            panic!("not TCP: {burst:?}");
        };
        assert_eq!(flags.to_string(), "RST+ACK");
        assert_eq!(*payload_len, 0);
        assert_eq!(*relative_seq, Some(1), "the server's next sequence number");
        // The server's SYN-ACK came with IP TTL 45; the resets with 128 and more.
        assert!(burst.ttl_minus_syn_ack.unwrap() > 50, "{burst:?}");
        triples += 1;
    }
    assert_eq!(triples, 6, "TTL 13..=18");
    // Every blocked flow's outcome is a reset; the server's own RST to the client's FIN
    // (3 s later) is not counted as a response to the trigger.
    for flow in &records[0].flows {
        let ttl = flow.trigger.as_ref().unwrap().sent_ttl;
        if ttl >= 13 {
            assert_eq!(flow.outcome, FlowOutcome::Reset, "TTL {ttl}");
            assert_eq!(flow.responses.iter().filter(|g| g.is_tcp()).count(), 1);
        }
    }
    // The built-in fingerprints name the injector: GFW type II (3 identical RST+ACK, DF).
    assert_eq!(test.injector.as_deref(), Some("gfw_type_ii"));
    let blocked = records[0]
        .flows
        .iter()
        .filter(|f| f.trigger.as_ref().unwrap().sent_ttl >= 13);
    for flow in blocked {
        assert!(flow.judgement.injected);
        assert_eq!(flow.judgement.injector.as_deref(), Some("gfw_type_ii"));
    }
    let control = trace(&records[1], "example.com");
    assert_eq!(control.placement, CensorPlacement::None);
    assert_eq!(control.server_hop, Some(18));
    assert_eq!(control.server_hop_from, Some(HopSource::ThisCapture));
}

#[test]
fn bisexual_org_draws_an_injected_fin_ack_block_page_at_the_hop_of_149_14_125_90() {
    let records = analyse(
        &[
            "103.93.208.20_bisexual.org_bisexual.org.pcap",
            "103.93.208.20_bisexual.org_example.com.pcap",
        ],
        &[],
    );
    let test = trace(&records[0], "bisexual.org");
    assert_eq!(test.protocol, Some(TriggerProtocol::Http));
    assert_eq!(test.first_blocking_ttl, Some(17));
    // CenTrace's middlebox: the router whose time-exceeded comes with the injection.
    assert_eq!(
        test.routers_at_blocking,
        ["149.14.125.90".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(test.server_hop, Some(22));
    assert_eq!(test.placement, CensorPlacement::OnPath);
    let hop = test.hops.iter().find(|h| h.ttl == 17).unwrap();
    let fin = &hop.blocking[0];
    let ResponseKind::Tcp {
        flags,
        payload_len,
        payload_hex,
        ..
    } = &fin.kind
    else {
        panic!("not TCP: {fin:?}");
    };
    assert_eq!(flags.to_string(), "FIN+ACK");
    assert_eq!(*payload_len, 553, "a block page rides on the FIN");
    assert!(
        payload_hex.starts_with(&hex::encode("<html>")),
        "{payload_hex}"
    );
    assert_eq!(fin.ip.df, Some(false));
    // The server (SYN-ACK IP TTL 238, DF) did not send it.
    assert_eq!(fin.ttl_minus_syn_ack, Some(83 - 238));
    let reset = &hop.blocking[1];
    assert!(matches!(&reset.kind, ResponseKind::Tcp { flags, .. } if flags.to_string() == "RST"));
    let flow = records[0]
        .flows
        .iter()
        .find(|f| f.trigger.as_ref().is_some_and(|t| t.sent_ttl == 17))
        .unwrap();
    assert_eq!(flow.outcome, FlowOutcome::ForeignData);
}

#[test]
fn nifty_org_is_reset_at_hop_18_after_134_0_217_233_and_the_fin_acks_are_the_servers() {
    let records = analyse(
        &[
            "188.65.24.82_www.nifty.org_www.nifty.org.pcap",
            "188.65.24.82_www.nifty.org_example.com.pcap",
        ],
        &["--packets"],
    );
    let test = trace(&records[0], "www.nifty.org");
    assert_eq!(test.first_blocking_ttl, Some(18));
    assert_eq!(
        test.router_before_blocking,
        Some("134.0.217.233".parse().unwrap())
    );
    assert_eq!(test.server_hop, Some(23));
    assert_eq!(test.placement, CensorPlacement::OnPath);
    let routers = test.hops.iter().filter(|h| !h.routers.is_empty()).count();
    assert_eq!(routers, 14, "14 ICMP time-exceeded hops (upstream test)");
    let flow = records[0]
        .flows
        .iter()
        .find(|f| f.trigger.as_ref().is_some_and(|t| t.sent_ttl == 18))
        .unwrap();
    let reset = &flow.responses[0];
    assert!(matches!(&reset.kind, ResponseKind::Tcp { flags, .. } if flags.to_string() == "RST"));
    // The injector copies the trigger's IP ID into its reset; the server's TTL is 228.
    assert_eq!(reset.ip.ip_id, flow.trigger.as_ref().unwrap().sent_ip_id);
    assert_eq!(reset.ip.ttl, 43);
    assert_eq!(flow.syn_ack.unwrap().ttl, 228);
    // SOURCE.md calls the FIN+ACK (IP TTL 227-238, DF, window 5360) injected: in the
    // packets it is the server's own answer to the client's FIN (same TTL and window as
    // its SYN-ACK, on the control too), so it is not a response to the trigger.
    let mut server_fins = 0;
    for flow in records.iter().flat_map(|r| &r.flows) {
        let packets = flow.packets.as_ref().expect("--packets");
        let client_fin = packets.packets.iter().position(|p| {
            p.direction == censorprobe::observation::packets::PacketDirection::ToServer
                && p.tcp().is_some_and(|t| t.flags.is_fin())
        });
        for (index, packet) in packets.packets.iter().enumerate() {
            if packet.direction == censorprobe::observation::packets::PacketDirection::ToClient
                && packet
                    .tcp()
                    .is_some_and(|t| t.flags.is_fin() && t.window == 5360)
            {
                assert!(client_fin.is_some_and(|fin| fin < index), "{}", flow.client);
                server_fins += 1;
            }
        }
        for group in &flow.responses {
            assert!(
                !matches!(&group.kind, ResponseKind::Tcp { flags, window: 5360, .. } if flags.is_fin()),
                "the server's FIN is not a response to the trigger: {group:?}"
            );
        }
    }
    assert!(server_fins > 10, "{server_fins}");
}

#[test]
fn bitcomet_is_blocked_by_the_endpoint_itself() {
    let records = analyse(
        &[
            "91.199.201.114_www.bitcomet.com_www.bitcomet.com.pcap",
            "91.199.201.114_www.bitcomet.com_example.com.pcap",
        ],
        &[],
    );
    let test = trace(&records[0], "www.bitcomet.com");
    assert_eq!(test.first_blocking_ttl, None, "nothing on the path");
    assert_eq!(test.server_hop, Some(14));
    assert_eq!(
        test.server_answer.as_deref(),
        Some("HTTP/1.1 403 Forbidden")
    );
    assert_eq!(test.control_answer.as_deref(), Some("HTTP/1.1 200 OK"));
    assert_eq!(test.placement, CensorPlacement::Endpoint);
    let control = trace(&records[1], "example.com");
    assert_eq!(control.placement, CensorPlacement::None);
}

#[test]
fn torproject_and_sohu_show_no_censorship() {
    for (pair, server_hop) in [
        ("85.209.148.79_bridges.torproject.org", 24),
        ("95.167.150.101_sohu.com", 16),
    ] {
        let test = format!("{pair}_{}.pcap", pair.split_once('_').unwrap().1);
        let control = format!("{pair}_example.com.pcap");
        let records = analyse(&[&test, &control], &[]);
        for record in &records {
            for trace in &record.traces {
                assert_eq!(trace.placement, CensorPlacement::None, "{trace:?}");
                assert_eq!(trace.first_blocking_ttl, None);
            }
            for flow in &record.flows {
                assert!(
                    !flow.judgement.injected,
                    "{}: {:?}",
                    record.file, flow.judgement
                );
                assert!(
                    !matches!(flow.outcome, FlowOutcome::Reset | FlowOutcome::ForeignData),
                    "{}: {:?}",
                    record.file,
                    flow
                );
            }
        }
        let name = pair.split_once('_').unwrap().1;
        let test_trace = trace(&records[0], name);
        assert_eq!(test_trace.server_hop, Some(server_hop), "{pair}");
        assert_eq!(test_trace.server_hop_from, Some(HopSource::ThisCapture));
        assert_eq!(
            test_trace.server_answer,
            trace(&records[1], "example.com").server_answer
        );
    }
}

#[test]
fn text_mode_lists_the_hops_and_the_placement() {
    let output = Command::new(BIN)
        .args(["pcap", "--format", "text"])
        .arg(centrace("222.138.4.221_archive.org_archive.org.pcap"))
        .arg(centrace("222.138.4.221_archive.org_example.com.pcap"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("trace to 222.138.4.221:443 (archive.org): on-path censor"),
        "{text}"
    );
    assert!(
        text.contains("TTL  13: time exceeded from 219.158.18.65; 3 identical RST+ACK"),
        "{text}"
    );
    assert!(text.contains("the server is 18 hops away"), "{text}");
}

#[test]
fn a_file_that_is_not_a_capture_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.pcap");
    std::fs::write(&path, "not a capture\n").unwrap();
    let output = Command::new(BIN).arg("pcap").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a pcap or pcapng file"), "{stderr}");
}

#[test]
fn an_injector_file_names_the_injector_in_its_own_words() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("injectors.toml");
    std::fs::write(
        &file,
        r#"
replace_builtin = true

[[injector]]
name = "triple_reset"
description = "three identical RST+ACK with DF"
source = "this test"
flags = "RST+ACK"
count = 3
max_span_ms = 1.0
ip_id_same_in_burst = true
df = true
payload_hex = ""
"#,
    )
    .unwrap();
    let records = analyse(
        &[
            "222.138.4.221_archive.org_archive.org.pcap",
            "222.138.4.221_archive.org_example.com.pcap",
        ],
        &["--injectors", file.to_str().unwrap()],
    );
    let test = trace(&records[0], "archive.org");
    assert_eq!(test.injector.as_deref(), Some("triple_reset"));
    // A file that does not parse is refused before any capture is read.
    std::fs::write(&file, "[[injector]]\nname = \"x\"\nbogus = 1\n").unwrap();
    let output = Command::new(BIN)
        .args(["pcap", "--injectors", file.to_str().unwrap()])
        .arg(centrace("222.138.4.221_archive.org_archive.org.pcap"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
