//! Frames the packet capture and the pcap reader hand to the wire parser: the first byte
//! picks the link type, the rest is the frame.
#![no_main]

use censorprobe::packet::{LinkType, Transport, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link = [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
    ][usize::from(selector % 4)];
    if let Ok(packet) = parse_frame(link, frame) {
        if let Transport::Tcp { facts, payload, .. } = &packet.transport {
            assert_eq!(facts.payload_len as usize, payload.len());
            assert!(payload.len() < frame.len());
        }
    }
});
