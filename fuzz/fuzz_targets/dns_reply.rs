//! A datagram that carries an outstanding query's id, as the DNS probe records it.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use censorprobe::probe::dns::{DnsQuestion, reply_of_datagram};
use censorprobe::observation::DnsServerRole;
use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;

fn question() -> &'static DnsQuestion {
    static QUESTION: OnceLock<DnsQuestion> = OnceLock::new();
    QUESTION.get_or_init(|| DnsQuestion {
        qname: Name::from_ascii("blocked.example.").expect("valid name").into(),
        qtype: RecordType::A,
        server: SocketAddr::from((Ipv4Addr::LOCALHOST, 53)),
        role: DnsServerRole::Resolver,
    })
}

fuzz_target!(|data: &[u8]| {
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
    if let Some(reply) = reply_of_datagram(data, question(), from) {
        let kept: usize = reply
            .answers
            .iter()
            .chain(&reply.authorities)
            .map(|r| r.name.len() + r.rtype.len() + r.data.len())
            .sum();
        // A compression pointer (2 bytes) stands for at most a 255-octet name.
        assert!(
            kept <= 48 * data.len() + 256,
            "{kept} bytes from {}",
            data.len()
        );
    }
});
