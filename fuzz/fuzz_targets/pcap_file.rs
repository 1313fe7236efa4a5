//! Whole capture files for `censorprobe pcap`: the block reader, the timestamp arithmetic,
//! flow routing and the TTL-trace grouping must never panic on a hostile file.
#![no_main]

use censorprobe::classify::injectors::InjectorSet;
use censorprobe::workflows::pcap::{PcapOptions, analyse_reader, share_server_hops};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let injectors = InjectorSet::builtin();
    if let Ok(record) = analyse_reader("fuzz.pcap", data, &injectors, PcapOptions::default()) {
        // Each frame is counted at most once as skipped or unmatched.
        assert!(record.skipped_frames + record.unmatched_packets <= record.frames);
        let mut records = [record];
        share_server_hops(&mut records, "example.com");
    }
});
