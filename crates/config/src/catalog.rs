//! The whole system: settings plus every valid connectivity document, with the rules that
//! span documents (behaviour.md §1): a DID is claimed once in the whole system, two IP-auth
//! servers never share an address, no IP-auth server hides behind a carrier's trusted
//! sources, and no document points the proxy at a carrier or at itself (`targets`).
//!
//! Documents are taken *in order*: when two conflict, the error is reported on the later
//! one and names the earlier one. [`load_connectivity_dir`](crate::load_connectivity_dir)
//! sorts by account then document id; [`Catalog::replace`] puts the document being written
//! last, so an API write that conflicts is refused rather than breaking an existing one.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde_json::json;

use crate::claims::{ip_path, show_addr, Claims, DidIndex};
use crate::document::{AuthMethod, Did, Document, MediaHandling, Server};
use crate::error::{FileErrors, ValidationErrors};
use crate::settings::{Carrier, Settings};

/// An IP-auth server whose address a carrier trusts could never be told apart from that
/// carrier (§3 checks carriers first), so it is refused.
fn check_carrier_overlap(doc: &Document, carriers: &[Carrier], errors: &mut ValidationErrors) {
    for server in &doc.servers {
        if server.auth.method() != AuthMethod::Ip {
            continue;
        }
        let (Some(ip), port) = (server.auth.ip(), server.auth.port()) else {
            continue;
        };
        for carrier in carriers {
            if let Some(src) = carrier.sources.iter().find(|s| s.overlaps(ip, port)) {
                errors.add(
                    ip_path(server),
                    "unique",
                    format!(
                        "IP-auth address {} is covered by source {} of carrier '{}'",
                        show_addr(ip, port),
                        src,
                        carrier.name
                    ),
                    Some(json!({"carrier": carrier.name, "source": src.to_string()})),
                    Some(json!(ip.to_string())),
                );
                break;
            }
        }
    }
}

/// A DID with everything needed to route to it.
#[derive(Debug, Clone, Copy)]
pub struct DidMatch<'a> {
    /// The document that claims the DID.
    pub document: &'a Document,
    /// The server of that document the DID belongs to.
    pub server: &'a Server,
    /// The DID entry with its own options.
    pub did: &'a Did,
}

/// Settings and every document, consistent with each other. Immutable: changes build a
/// new catalog ([`Catalog::replace`], [`Catalog::remove`]) to swap in atomically.
#[derive(Debug, Clone)]
pub struct Catalog {
    settings: Arc<Settings>,
    documents: Vec<Arc<Document>>,
    /// Normalised DID → position; positions are those of `documents`.
    dids: DidIndex,
}

impl Catalog {
    /// Checks the system-wide rules over already-validated documents, in the given order.
    /// Every conflict is reported on the later document's file, naming the earlier one.
    pub fn build(
        settings: impl Into<Arc<Settings>>,
        documents: impl IntoIterator<Item = Document>,
    ) -> Result<Catalog, Vec<FileErrors>> {
        let docs = documents.into_iter().map(Arc::new).collect();
        Self::build_shared(settings.into(), docs)
    }

    fn build_shared(
        settings: Arc<Settings>,
        documents: Vec<Arc<Document>>,
    ) -> Result<Catalog, Vec<FileErrors>> {
        let mut claims = Claims::with_capacity(did_count(&documents));
        let mut failures = Vec::new();
        let mut seen = HashSet::with_capacity(documents.len());
        for doc in &documents {
            let mut errors = ValidationErrors::new();
            if !seen.insert((doc.account_id.as_str(), doc.id.as_str())) {
                errors.add("", "unique", "Document is listed twice", None, None);
            } else {
                claims.claim_document(doc, &mut errors);
                check_carrier_overlap(doc, &settings.carriers, &mut errors);
                crate::targets::check_targets(doc, &settings, &mut errors);
            }
            if !errors.is_empty() {
                failures.push(document_errors(doc, errors));
            }
        }
        if !failures.is_empty() {
            return Err(failures);
        }
        // Without failures every document was claimed, in order, so the claims' positions
        // are positions in `documents`: the registry is the index.
        let dids = claims.into_index();
        Ok(Catalog {
            settings,
            documents,
            dids,
        })
    }

    /// A catalog with `doc` added, or replacing the document with the same account and id.
    /// `doc` is checked last, so conflicts are reported on it (this is the API write path,
    /// after [`validate_document`](crate::validate_document)).
    pub fn replace(&self, doc: Document) -> Result<Catalog, ValidationErrors> {
        let mut docs: Vec<Arc<Document>> = self
            .documents
            .iter()
            .filter(|d| !(d.account_id == doc.account_id && d.id == doc.id))
            .cloned()
            .collect();
        docs.push(Arc::new(doc));
        Self::build_shared(self.settings.clone(), docs).map_err(|failures| {
            let mut all = ValidationErrors::new();
            for f in failures {
                all.extend(f.errors);
            }
            all
        })
    }

    /// A catalog without document `account/id` (unchanged if it is not there).
    pub fn remove(&self, account: &str, id: &str) -> Catalog {
        let documents: Vec<Arc<Document>> = self
            .documents
            .iter()
            .filter(|d| !(d.account_id == account && d.id == id))
            .cloned()
            .collect();
        let dids = index_dids(&documents);
        Catalog {
            settings: self.settings.clone(),
            documents,
            dids,
        }
    }

    /// The proxy settings the documents were checked against.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Documents in precedence order.
    pub fn documents(&self) -> &[Arc<Document>] {
        &self.documents
    }

    /// A document by account and id.
    pub fn document(&self, account: &str, id: &str) -> Option<&Arc<Document>> {
        self.documents
            .iter()
            .find(|d| d.account_id == account && d.id == id)
    }

    /// The owner of a normalised DID.
    pub fn did(&self, number: &str) -> Option<DidMatch<'_>> {
        let r = self.dids.locate(self.dids.get(number)?);
        let document = &self.documents[r.document];
        let server = &document.servers[r.server];
        Some(DidMatch {
            document,
            server,
            did: &server.dids[r.did],
        })
    }

    /// Counts for the `check` summary (and the API/metrics later).
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            carriers: self.settings.carriers.len(),
            documents: self.documents.len(),
            dids: self.dids.len(),
            ..Summary::default()
        };
        let mut accounts: Vec<&str> = self
            .documents
            .iter()
            .map(|d| d.account_id.as_str())
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        s.accounts = accounts.len();
        for server in self.documents.iter().flat_map(|d| &d.servers) {
            match server.auth.method() {
                AuthMethod::Password => s.password_servers += 1,
                AuthMethod::Ip => s.ip_servers += 1,
            }
            if !server.enabled() {
                s.disabled_servers += 1;
            }
        }
        s
    }

    /// Warnings that do not stop the proxy: what it will do differently from what the
    /// configuration asks, one line each as `<file>: <dotted path>: ...`: servers or DIDs
    /// asking for `media_handling: process` when no rtpengine is configured. Names that do
    /// not resolve are warned about by `trunkstore check`, which resolves
    /// [`Catalog::named_targets`].
    pub fn warnings(&self) -> Vec<String> {
        self.media_warnings()
    }

    /// Every target named by DNS (carrier gateways, `failover.sip` URIs), with the place
    /// it is written (`settings: carriers.0.gateways.1.host`, `<file>: servers.0.options.failover.sip`).
    pub fn named_targets(&self) -> Vec<NamedTarget> {
        let mut out = Vec::new();
        for (i, carrier) in self.settings.carriers.iter().enumerate() {
            for (j, gw) in carrier.gateways.iter().enumerate() {
                if let crate::settings::Host::Name(name) = &gw.host {
                    out.push(NamedTarget {
                        place: format!("settings: carriers.{i}.gateways.{j}.host"),
                        uri: gateway_uri(name, gw),
                        host: name.clone(),
                    });
                }
            }
        }
        for doc in &self.documents {
            let file = doc.source.clone().unwrap_or_else(|| doc.relative_path());
            for server in &doc.servers {
                let own = server.options.call.failover.as_ref();
                let dids = server.dids.iter().map(|d| {
                    let path = format!("servers.{}.DIDs.{}", server.index, d.key);
                    (path, d.options.failover.as_ref())
                });
                let levels = std::iter::once((format!("servers.{}.options", server.index), own));
                for (path, failover) in levels.chain(dids) {
                    let Some(uri) = failover.and_then(|f| f.sip.as_deref()) else {
                        continue;
                    };
                    let Some(host) = sip_hostname(uri) else {
                        continue;
                    };
                    out.push(NamedTarget {
                        place: format!("{}: {path}.failover.sip", file.display()),
                        host: host.to_string(),
                        uri: uri.to_string(),
                    });
                }
            }
        }
        out
    }

    /// Servers or DIDs asking for `media_handling: process` when no rtpengine is
    /// configured (their calls get 503, or pass unanchored with `media.on_failure:
    /// bypass`).
    fn media_warnings(&self) -> Vec<String> {
        if !self.settings.media.rtpengine.is_empty() {
            return Vec::new();
        }
        let outcome = match self.settings.media.on_failure {
            crate::settings::MediaFailure::Reject => "its calls get 503 Media Relay Unavailable",
            crate::settings::MediaFailure::Bypass => {
                "its calls go on unanchored (media.on_failure is \"bypass\": SDP passes untouched)"
            }
        };
        let mut out = Vec::new();
        for doc in &self.documents {
            let file = doc.source.clone().unwrap_or_else(|| doc.relative_path());
            for server in &doc.servers {
                let timers = &self.settings.timers;
                let mut asked: Vec<String> = Vec::new();
                if server.effective(None, timers).media_handling == MediaHandling::Process {
                    asked.push(format!("servers.{}", server.index));
                }
                for did in &server.dids {
                    let own = did.options.media_handling == Some(MediaHandling::Process);
                    if own {
                        asked.push(format!("servers.{}.DIDs.{}", server.index, did.key));
                    }
                }
                for path in asked {
                    out.push(format!(
                        "{}: {path}: media_handling is \"process\" but no media.rtpengine is configured: {outcome}",
                        file.display()
                    ));
                }
            }
        }
        out
    }
}

/// A named gateway as the URI its resolution starts from: its port and transport only
/// when written (RFC 3263: no port means SRV, no transport means NAPTR first).
fn gateway_uri(name: &str, gw: &crate::settings::Gateway) -> String {
    let mut uri = format!("sip:{name}");
    if gw.port_given {
        uri.push_str(&format!(":{}", gw.port));
    }
    if gw.transport_given {
        uri.push_str(&format!(";transport={}", gw.transport.as_str()));
    }
    uri
}

/// A target named by DNS, and where the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTarget {
    /// `<file>: <dotted path>` (`settings` for the settings file).
    pub place: String,
    /// The name.
    pub host: String,
    /// The target as a SIP URI (a gateway's port and transport written in).
    pub uri: String,
}

/// The host of a `sip:`/`sips:` URI when it is a name, not an IP literal.
fn sip_hostname(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if rest.starts_with('[') {
        return None;
    }
    let host = rest.split([':', ';', '?', '>']).next()?;
    (host.parse::<std::net::IpAddr>().is_err() && !host.is_empty()).then_some(host)
}

fn document_errors(doc: &Document, errors: ValidationErrors) -> FileErrors {
    let file = doc.source.clone().unwrap_or_else(|| doc.relative_path());
    FileErrors::for_document(file, &doc.account_id, &doc.id, errors)
}

/// DIDs in `documents`, to size the claim registry once.
fn did_count(documents: &[Arc<Document>]) -> usize {
    documents
        .iter()
        .flat_map(|d| &d.servers)
        .map(|s: &Server| s.dids.len())
        .sum()
}

/// The DID index of documents already known to be consistent (first claim wins, as in
/// [`Catalog::build`]).
fn index_dids(documents: &[Arc<Document>]) -> DidIndex {
    let mut claims = Claims::with_capacity(did_count(documents));
    let mut ignored = ValidationErrors::new();
    for doc in documents {
        claims.claim_document(doc, &mut ignored);
    }
    claims.into_index()
}

/// Counts shown by `trunkstore check`. Contains no secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct account ids.
    pub accounts: usize,
    /// Connectivity documents.
    pub documents: usize,
    /// Servers authenticated by digest.
    pub password_servers: usize,
    /// Servers identified by source address.
    pub ip_servers: usize,
    /// Servers with `enabled: false` (counted in the two above too).
    pub disabled_servers: usize,
    /// DIDs over all documents.
    pub dids: usize,
    /// Carriers in the settings.
    pub carriers: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "accounts:  {}", self.accounts)?;
        writeln!(f, "documents: {}", self.documents)?;
        writeln!(
            f,
            "servers:   {} ({} password, {} ip; {} disabled)",
            self.password_servers + self.ip_servers,
            self.password_servers,
            self.ip_servers,
            self.disabled_servers
        )?;
        writeln!(f, "DIDs:      {}", self.dids)?;
        write!(f, "carriers:  {}", self.carriers)
    }
}
