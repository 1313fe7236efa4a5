//! From a control's DNS reply (or a special-use name) to the observed [`ControlOutcome`].

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::domain::usage::{
    IN_ADDR_ARPA_127, INVALID, IP6_ARPA_1, LOCAL, LOCALHOST, ONION, ResolverUsage,
};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::observation::{ControlOutcome, DnsRecord};

/// TTL of the answers made up for special-use names (hickory's, as before).
const SPECIAL_USE_TTL: u32 = hickory_resolver::MAX_TTL;

/// How many CNAMEs are followed inside one reply before giving up on the chain.
const MAX_CNAME_CHAIN: usize = 16;

/// The answer a stub resolver gives itself for special-use names, without asking the
/// control (as hickory-resolver does): `localhost` and the loopback reverse zones resolve to
/// loopback (RFC 6761), `*.invalid` (RFC 6761) and `*.onion` (RFC 7686) do not exist.
/// `None`: an ordinary name, to be asked.
pub(super) fn special_use_outcome(qname: &Name, qtype: RecordType) -> Option<ControlOutcome> {
    let usage = [
        &*LOCALHOST,
        &*IN_ADDR_ARPA_127,
        &*IP6_ARPA_1,
        &*INVALID,
        &*LOCAL,
        &*ONION,
    ]
    .into_iter()
    .find(|usage| usage.zone_of(qname))?;
    match usage.resolver() {
        ResolverUsage::Loopback => {
            let data = match qtype {
                RecordType::A => RData::A(A::new(127, 0, 0, 1)),
                RecordType::AAAA => RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, 1)),
                RecordType::PTR => RData::PTR(PTR(Name::from_ascii("localhost.").ok()?)),
                _ => return Some(ControlOutcome::NoData),
            };
            let record = Record::from_rdata(qname.clone(), SPECIAL_USE_TTL, data);
            Some(resolved(vec![crate::probe::dns::record_of(&record)]))
        }
        ResolverUsage::NxDomain => Some(ControlOutcome::Nxdomain),
        _ => None,
    }
}

fn resolved(records: Vec<DnsRecord>) -> ControlOutcome {
    ControlOutcome::Resolved {
        ips: records.iter().filter_map(DnsRecord::ip).collect(),
        records,
    }
}

/// Whether `reply` answers `query` (a response, to this very question); `Err` says why not.
pub(super) fn check_reply(query: &Query, reply: &Message) -> Result<(), String> {
    if reply.metadata.message_type != hickory_proto::op::MessageType::Response {
        return Err("the control sent a query, not a response".to_owned());
    }
    match reply.queries.first() {
        Some(asked) if asked == query => Ok(()),
        // Some servers leave the question out of error replies.
        None if reply.metadata.response_code != ResponseCode::NoError => Ok(()),
        Some(other) => Err(format!("the control answered another question ({other})")),
        None => Err("the control's reply has no question".to_owned()),
    }
}

/// The outcome of a checked reply to `qname`/`qtype`. Only an actual NXDOMAIN makes
/// [`ControlOutcome::Nxdomain`] and only NOERROR without a record of the type makes
/// [`ControlOutcome::NoData`]; any other response code is an error naming it.
///
/// The records kept are the answer's CNAME chain from `qname` and the records of `qtype` at
/// its end (other records of the answer section are not about this question).
pub(super) fn outcome_of_reply(qname: &Name, qtype: RecordType, reply: &Message) -> ControlOutcome {
    match reply.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return ControlOutcome::Nxdomain,
        other => {
            return ControlOutcome::Error {
                message: format!("response code {other:?}"),
            };
        }
    }
    let mut records = Vec::new();
    let mut owner = qname.clone();
    for _ in 0..=MAX_CNAME_CHAIN {
        let at_owner = || {
            reply
                .answers
                .iter()
                .filter(|r| r.dns_class == DNSClass::IN && r.name == owner)
        };
        let wanted: Vec<&Record> = at_owner().filter(|r| r.record_type() == qtype).collect();
        if !wanted.is_empty() {
            records.extend(wanted.into_iter().map(crate::probe::dns::record_of));
            return resolved(records);
        }
        let Some(cname) = at_owner().find_map(|r| match &r.data {
            RData::CNAME(target) => Some((r, target.0.clone())),
            _ => None,
        }) else {
            break;
        };
        records.push(crate::probe::dns::record_of(cname.0));
        owner = cname.1;
    }
    ControlOutcome::NoData
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::CNAME;

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn reply(qname: &str, rcode: ResponseCode, answers: Vec<Record>) -> Message {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.add_query(Query::query(name(qname), RecordType::A));
        m.answers = answers;
        m
    }

    #[test]
    fn special_use_names_are_answered_without_asking() {
        match special_use_outcome(&name("LocalHost."), RecordType::A) {
            Some(ControlOutcome::Resolved { ips, records }) => {
                assert_eq!(ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
                assert_eq!(records[0].ttl, SPECIAL_USE_TTL);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            special_use_outcome(&name("a.localhost."), RecordType::AAAA),
            Some(ControlOutcome::Resolved { .. })
        ));
        assert_eq!(
            special_use_outcome(&name("localhost."), RecordType::MX),
            Some(ControlOutcome::NoData)
        );
        assert_eq!(
            special_use_outcome(&name("x.invalid."), RecordType::A),
            Some(ControlOutcome::Nxdomain)
        );
        assert_eq!(
            special_use_outcome(&name("abc.onion."), RecordType::A),
            Some(ControlOutcome::Nxdomain)
        );
        assert_eq!(
            special_use_outcome(&name("printer.local."), RecordType::A),
            None
        );
        assert_eq!(
            special_use_outcome(&name("www.example.org."), RecordType::A),
            None
        );
    }

    #[test]
    fn cname_chains_are_kept_and_unrelated_records_dropped() {
        let answers = vec![
            Record::from_rdata(
                name("unrelated.example."),
                60,
                RData::A(A::new(10, 10, 34, 34)),
            ),
            Record::from_rdata(
                name("www.example."),
                60,
                RData::CNAME(CNAME(name("cdn.example."))),
            ),
            Record::from_rdata(name("CDN.example."), 30, RData::A(A::new(198, 18, 0, 1))),
        ];
        let reply = reply("www.example.", ResponseCode::NoError, answers);
        match outcome_of_reply(&name("www.example."), RecordType::A, &reply) {
            ControlOutcome::Resolved { ips, records } => {
                assert_eq!(ips, vec!["198.18.0.1".parse::<IpAddr>().unwrap()]);
                assert_eq!(records.len(), 2);
                assert_eq!(records[0].rtype, "CNAME");
                assert_eq!(records[1].rtype, "A");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_codes_keep_nxdomain_nodata_and_failures_apart() {
        let q = name("www.example.");
        assert_eq!(
            outcome_of_reply(
                &q,
                RecordType::A,
                &reply("www.example.", ResponseCode::NXDomain, vec![])
            ),
            ControlOutcome::Nxdomain
        );
        assert_eq!(
            outcome_of_reply(
                &q,
                RecordType::A,
                &reply("www.example.", ResponseCode::NoError, vec![])
            ),
            ControlOutcome::NoData
        );
        assert_eq!(
            outcome_of_reply(
                &q,
                RecordType::A,
                &reply("www.example.", ResponseCode::ServFail, vec![])
            ),
            ControlOutcome::Error {
                message: "response code ServFail".to_owned()
            }
        );
    }

    #[test]
    fn a_reply_to_another_question_is_rejected() {
        let asked = Query::query(name("www.example."), RecordType::A);
        assert!(
            check_reply(
                &asked,
                &reply("www.example.", ResponseCode::NoError, vec![])
            )
            .is_ok()
        );
        assert!(
            check_reply(
                &asked,
                &reply("other.example.", ResponseCode::NoError, vec![])
            )
            .is_err()
        );
        let mut query = reply("www.example.", ResponseCode::NoError, vec![]);
        query.metadata.message_type = MessageType::Query;
        assert!(check_reply(&asked, &query).is_err());
    }
}
