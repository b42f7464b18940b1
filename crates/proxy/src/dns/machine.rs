//! The resolution machine: which query comes next and what each answer changes (the
//! sequence is in the module doc of `dns`).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use super::srv::{self, Rng};
use super::values::{
    Answer, Failure, Hop, Naptr, Options, Query, QueryKind, Resolved, Srv, Step, Target, Transport,
    MAX_HOPS, MAX_QUERIES, MAX_RECORDS,
};

/// Addresses to look up for one hop-to-be: an SRV target or the host itself.
#[derive(Debug, Clone)]
struct AddressJob {
    name: String,
    port: u16,
    transport: Transport,
    /// Queries still to make for it, in order.
    kinds: VecDeque<QueryKind>,
}

/// Where the machine is.
#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for the host's NAPTR records.
    Naptr,
    /// Trying SRV names in turn; the first with records wins.
    Srv,
    /// Looking up the addresses of `jobs`.
    Addresses,
    /// Finished.
    Over(Step),
}

/// One RFC 3263 resolution in progress. See the module doc.
#[derive(Debug, Clone)]
pub struct Resolution {
    target: Target,
    host: String,
    opts: Options,
    rng: Rng,
    phase: Phase,
    /// The query asked and not yet answered.
    pending: Option<Query>,
    queries: usize,
    /// SRV names still to try, with their transport.
    srv_names: VecDeque<(String, Transport)>,
    jobs: VecDeque<AddressJob>,
    /// Address answers already had in this resolution (a target named twice).
    known: Vec<(Query, Answer)>,
    hops: Vec<Hop>,
    ttl: u32,
    /// Why the last address lookup gave nothing (the failure if no hop comes).
    last_failure: Option<Failure>,
}

impl Resolution {
    /// A resolution of `target` for an edge described by `opts`.
    pub fn new(mut target: Target, opts: Options) -> Resolution {
        // `sips:…;transport=tcp` is TLS over TCP (RFC 3261 §26.2.2).
        if target.secure && target.transport == Some(Transport::Tcp) {
            target.transport = Some(Transport::Tls);
        }
        let host = normalise(&target.host);
        let mut r = Resolution {
            rng: Rng::new(opts.seed),
            target,
            host,
            opts,
            phase: Phase::Naptr,
            pending: None,
            queries: 0,
            srv_names: VecDeque::new(),
            jobs: VecDeque::new(),
            known: Vec::new(),
            hops: Vec::new(),
            ttl: u32::MAX,
            last_failure: None,
        };
        r.phase = r.first_phase();
        r
    }

    /// The transports this target may use, in our order of preference.
    fn allowed(&self) -> Vec<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .filter(|t| self.opts.supported.contains(t))
            .filter(|t| !self.target.secure || *t == Transport::Tls)
            .filter(|t| self.target.transport.is_none_or(|given| given == *t))
            .collect()
    }

    /// The transport used when DNS says nothing about it (RFC 3263 §4.1).
    fn default_transport(&self) -> Transport {
        match self.target.transport {
            Some(t) => t,
            None if self.target.secure => Transport::Tls,
            None => Transport::Udp,
        }
    }

    fn first_phase(&mut self) -> Phase {
        let transport = self.default_transport();
        if !self.allowed().contains(&transport) {
            return Phase::Over(Step::Failed(Failure::Unsupported(format!(
                "{}: transport {transport} cannot be used{}",
                self.host,
                if self.target.secure { " for sips:" } else { "" }
            ))));
        }
        let port = self.target.port.unwrap_or(transport.default_port());
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return self.literal(ip, port, transport);
        }
        if self.target.port.is_some() {
            self.jobs.push_back(self.host_job(port, transport));
            return Phase::Addresses;
        }
        if self.target.transport.is_some() {
            self.srv_names = self.plain_srv_names();
            return Phase::Srv;
        }
        Phase::Naptr
    }

    /// An IP literal: one hop, no DNS.
    fn literal(&self, ip: IpAddr, port: u16, transport: Transport) -> Phase {
        if !self.opts.families.allows(ip) {
            return Phase::Over(Step::Failed(Failure::Unsupported(format!(
                "{ip}: no listener of its address family"
            ))));
        }
        Phase::Over(Step::Done(Resolved {
            hops: vec![Hop {
                addr: SocketAddr::new(ip, port),
                transport,
            }],
            ttl: u32::MAX,
        }))
    }

    /// The host's own addresses on `port`.
    fn host_job(&self, port: u16, transport: Transport) -> AddressJob {
        AddressJob {
            name: self.host.clone(),
            port,
            transport,
            kinds: self.opts.families.kinds().into(),
        }
    }

    /// `_sip._udp.host` etc. for every allowed transport (RFC 3263 §4.1, no NAPTR).
    fn plain_srv_names(&self) -> VecDeque<(String, Transport)> {
        self.allowed()
            .into_iter()
            .map(|t| (format!("{}{}", t.srv_prefix(), self.host), t))
            .collect()
    }

    /// What to do next. Asking again before answering gives the same query.
    pub fn step(&mut self) -> Step {
        // Each turn either returns or moves the machine on by one job or name, all of
        // them bounded, so the loop is too.
        loop {
            if let Phase::Over(step) = &self.phase {
                return step.clone();
            }
            if let Some(q) = &self.pending {
                return Step::Query(q.clone());
            }
            if self.hops.len() >= MAX_HOPS {
                self.finish();
                continue;
            }
            let Some(query) = self.next_query() else {
                continue;
            };
            if let Some(answer) = self.remembered(&query) {
                self.pending = Some(query.clone());
                self.on_answer(&query, answer);
                continue;
            }
            if self.queries >= MAX_QUERIES {
                self.finish_over_budget();
                continue;
            }
            self.queries += 1;
            self.pending = Some(query.clone());
            return Step::Query(query);
        }
    }

    /// The query of the current phase, or `None` after moving to another phase.
    fn next_query(&mut self) -> Option<Query> {
        match self.phase {
            Phase::Naptr => Some(Query {
                name: self.host.clone(),
                kind: QueryKind::Naptr,
            }),
            Phase::Srv => match self.srv_names.front() {
                Some((name, _)) => Some(Query {
                    name: name.clone(),
                    kind: QueryKind::Srv,
                }),
                None => {
                    // No SRV anywhere: the host itself on the default port.
                    let t = self.default_transport();
                    self.jobs.push_back(self.host_job(t.default_port(), t));
                    self.phase = Phase::Addresses;
                    None
                }
            },
            Phase::Addresses => {
                while let Some(job) = self.jobs.front_mut() {
                    if let Some(kind) = job.kinds.front() {
                        return Some(Query {
                            name: job.name.clone(),
                            kind: *kind,
                        });
                    }
                    self.jobs.pop_front();
                }
                self.finish();
                None
            }
            Phase::Over(_) => None,
        }
    }

    /// An address query already answered in this resolution.
    fn remembered(&self, query: &Query) -> Option<Answer> {
        self.known
            .iter()
            .find(|(q, _)| q == query)
            .map(|(_, a)| a.clone())
    }

    /// Feeds the answer to `query` (the one [`Resolution::step`] gave). An answer to any
    /// other query is ignored: returns false.
    pub fn on_answer(&mut self, query: &Query, answer: Answer) -> bool {
        if self.pending.as_ref() != Some(query) {
            return false;
        }
        self.pending = None;
        match query.kind {
            QueryKind::Naptr => self.on_naptr(answer),
            QueryKind::Srv => self.on_srv(query, answer),
            QueryKind::A | QueryKind::Aaaa => {
                if !self.known.iter().any(|(q, _)| q == query) {
                    self.known.push((query.clone(), answer.clone()));
                }
                self.on_addresses(query, answer)
            }
        }
        true
    }

    fn on_naptr(&mut self, answer: Answer) {
        let mut names: VecDeque<(String, Transport)> = VecDeque::new();
        match answer {
            Answer::Naptr(records) => {
                let records = self.usable_naptrs(records);
                for r in &records {
                    self.ttl = self.ttl.min(r.ttl);
                }
                for r in records {
                    let Some(t) = Transport::from_naptr_service(&r.service) else {
                        continue;
                    };
                    let name = normalise(&r.replacement);
                    // Many records naming one SRV name ask it once.
                    if !names.iter().any(|(n, _)| *n == name) {
                        names.push_back((name, t));
                    }
                }
            }
            Answer::Timeout => return self.fail(Failure::Timeout(self.host.clone())),
            // Nothing usable: straight to SRV.
            _ => {}
        }
        // NAPTR records whose SRV names give nothing fall back to the plain SRV names
        // (once each).
        for (name, t) in self.plain_srv_names() {
            if !names.iter().any(|(n, _)| *n == name) {
                names.push_back((name, t));
            }
        }
        self.srv_names = names;
        self.phase = Phase::Srv;
    }

    /// The NAPTR records RFC 3263 lets us follow, best first (order, then preference).
    fn usable_naptrs(&self, mut records: Vec<Naptr>) -> Vec<Naptr> {
        records.truncate(MAX_RECORDS);
        let allowed = self.allowed();
        records.retain(|r| {
            r.flags.eq_ignore_ascii_case("s")
                && r.regexp.is_empty()
                && !normalise(&r.replacement).is_empty()
                && Transport::from_naptr_service(&r.service).is_some_and(|t| allowed.contains(&t))
        });
        // Stable: equal records keep the server's order.
        records.sort_by_key(|r| (r.order, r.preference));
        records
    }

    fn on_srv(&mut self, query: &Query, answer: Answer) {
        let Some((_, transport)) = self.srv_names.pop_front() else {
            return;
        };
        let records = match answer {
            Answer::Srv(records) if !records.is_empty() => records,
            Answer::Timeout => return self.fail(Failure::Timeout(query.name.clone())),
            // No SRV here: the next name.
            _ => return,
        };
        let mut records: Vec<Srv> = records.into_iter().take(MAX_RECORDS).collect();
        if records.len() == 1 && normalise(&records[0].target).is_empty() {
            return self.fail(Failure::NoService(query.name.clone()));
        }
        records.retain(|r| !normalise(&r.target).is_empty());
        for r in &records {
            self.ttl = self.ttl.min(r.ttl);
        }
        let kinds = self.opts.families.kinds();
        for r in srv::order(records, &mut self.rng) {
            self.jobs.push_back(AddressJob {
                name: normalise(&r.target),
                port: r.port,
                transport,
                kinds: kinds.clone().into(),
            });
        }
        self.srv_names.clear();
        self.phase = Phase::Addresses;
    }

    fn on_addresses(&mut self, query: &Query, answer: Answer) {
        let Some(job) = self.jobs.front_mut() else {
            return;
        };
        job.kinds.pop_front();
        let (port, transport) = (job.port, job.transport);
        let records = match answer {
            Answer::Addresses(records) => records,
            Answer::NxDomain => {
                self.last_failure = Some(Failure::NxDomain(query.name.clone()));
                return;
            }
            Answer::Timeout => {
                self.last_failure = Some(Failure::Timeout(query.name.clone()));
                return;
            }
            _ => Vec::new(),
        };
        let before = self.hops.len();
        let family_ok = |ip: &IpAddr| match query.kind {
            QueryKind::A => ip.is_ipv4(),
            _ => ip.is_ipv6(),
        };
        for r in records.into_iter().take(MAX_RECORDS) {
            if !family_ok(&r.ip) || !self.opts.families.allows(r.ip) {
                continue;
            }
            let hop = Hop {
                addr: SocketAddr::new(r.ip, port),
                transport,
            };
            if self.hops.len() < MAX_HOPS && !self.hops.contains(&hop) {
                self.hops.push(hop);
                self.ttl = self.ttl.min(r.ttl);
            }
        }
        if self.hops.len() == before && self.last_failure.is_none() {
            self.last_failure = Some(Failure::NoAddress(query.name.clone()));
        }
    }

    /// No more queries: done with the hops found, or failed with the last reason.
    fn finish(&mut self) {
        let step = if self.hops.is_empty() {
            Step::Failed(
                self.last_failure
                    .clone()
                    .unwrap_or_else(|| Failure::NoAddress(self.host.clone())),
            )
        } else {
            Step::Done(Resolved {
                hops: std::mem::take(&mut self.hops),
                ttl: self.ttl,
            })
        };
        self.phase = Phase::Over(step);
    }

    fn finish_over_budget(&mut self) {
        if self.hops.is_empty() {
            self.fail(Failure::TooManyQueries);
        } else {
            self.finish();
        }
    }

    fn fail(&mut self, why: Failure) {
        self.phase = Phase::Over(Step::Failed(why));
    }

    /// How many queries were made so far.
    pub fn queries(&self) -> usize {
        self.queries
    }
}

/// A DNS name as we query it: lower case, no brackets (IPv6 literal), no trailing dot.
fn normalise(name: &str) -> String {
    let name = name.trim();
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.trim_end_matches('.').to_ascii_lowercase()
}
