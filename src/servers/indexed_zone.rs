//! hickory's in-memory zone with negative answers from an index.
//!
//! Why: for a query without records of its type (an AAAA query for a name with only A
//! records, a name declared NXDOMAIN), hickory's `InMemoryZoneHandler` decides between
//! NODATA and NXDOMAIN by scanning every record of the zone. Generated lab zones hold tens
//! of thousands of names, and that scan made the lab's resolver its bottleneck. This
//! wrapper answers those queries from a set of the names that exist, with the very result
//! hickory would give; everything else goes to hickory.

use std::collections::{HashMap, HashSet};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RecordType, TSigResponseContext};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::server::{Request, RequestInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, ZoneHandler, ZoneType,
};

pub(super) struct IndexedZone {
    inner: InMemoryZoneHandler<TokioRuntimeProvider>,
    /// The record types each owner name holds.
    types: HashMap<LowerName, HashSet<RecordType>>,
    /// Every owner name and every name above one: the names that exist (hickory's
    /// `NameExists`: the name owns records or is an ancestor of a name that does).
    existing: HashSet<LowerName>,
    /// Wildcard owners make hickory synthesise answers: then it answers everything.
    has_wildcards: bool,
}

impl IndexedZone {
    pub(super) fn new(
        inner: InMemoryZoneHandler<TokioRuntimeProvider>,
        owners: Vec<(Name, RecordType)>,
    ) -> IndexedZone {
        let mut types: HashMap<LowerName, HashSet<RecordType>> = HashMap::new();
        let mut existing = HashSet::new();
        let mut has_wildcards = false;
        for (name, record_type) in owners {
            has_wildcards |= name.is_wildcard();
            let mut above = name.clone();
            loop {
                if !existing.insert(LowerName::new(&above)) || above.is_root() {
                    break;
                }
                above = above.base_name();
            }
            types
                .entry(LowerName::new(&name))
                .or_default()
                .insert(record_type);
        }
        IndexedZone {
            inner,
            types,
            existing,
            has_wildcards,
        }
    }

    /// hickory's answer when the zone holds no record of `rtype` at `name` (nor a CNAME
    /// there), or `None` when hickory itself must look.
    fn negative(&self, name: &LowerName, rtype: RecordType) -> Option<LookupError> {
        if self.has_wildcards || matches!(rtype, RecordType::ANY | RecordType::AXFR) {
            return None;
        }
        if let Some(held) = self.types.get(name)
            && (held.contains(&rtype) || held.contains(&RecordType::CNAME))
        {
            return None;
        }
        Some(if self.existing.contains(name) {
            LookupError::NameExists
        } else if self.inner.origin().zone_of(name) {
            LookupError::from(ResponseCode::NXDomain)
        } else {
            LookupError::from(ResponseCode::Refused)
        })
    }
}

#[async_trait::async_trait]
impl ZoneHandler for IndexedZone {
    fn zone_type(&self) -> ZoneType {
        self.inner.zone_type()
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        self.inner.axfr_policy()
    }

    fn origin(&self) -> &LowerName {
        self.inner.origin()
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        request_info: Option<&RequestInfo<'_>>,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        match self.negative(name, rtype) {
            Some(error) => LookupControlFlow::Continue(Err(error)),
            None => {
                self.inner
                    .lookup(name, rtype, request_info, lookup_options)
                    .await
            }
        }
    }

    /// As hickory's in-memory handler searches, through [`Self::lookup`].
    async fn search(
        &self,
        request: &Request,
        lookup_options: LookupOptions,
    ) -> (LookupControlFlow<AuthLookup>, Option<TSigResponseContext>) {
        let request_info = match request.request_info() {
            Ok(info) => info,
            Err(e) => return (LookupControlFlow::Break(Err(e)), None),
        };
        let rtype = request_info.query.query_type();
        if rtype == RecordType::AXFR {
            return self.inner.search(request, lookup_options).await;
        }
        let name = request_info.query.name();
        (
            self.lookup(name, rtype, Some(&request_info), lookup_options)
                .await,
            None,
        )
    }

    async fn nsec_records(
        &self,
        name: &LowerName,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        self.inner.nsec_records(name, lookup_options).await
    }
}
