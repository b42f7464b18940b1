//! The shared tables: server transactions (each with its branches), the client
//! transaction index, and the call (dialog) table.
//!
//! One proxy transaction (§16: a server transaction and the client transactions of its
//! branches) is one `Arc<Mutex<ProxyTxn>>`: the lock is per transaction, never global,
//! and the maps are only touched briefly (clone the Arc, drop the map guard, then lock).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use trunkstore_sip::message::Message;

use crate::auth::{Authenticator, Protection};
use crate::callerid::{Identity, IdentityEdit};
use crate::config::ProxyConfig;
use crate::keys::{CallKey, ClientKey, KeyHasher, SpreadKeys, TxKey};
use crate::machines::branch::BranchState;
use crate::machines::deadlines::Deadlines;
use crate::machines::plan::PlanCursor;
use crate::media::client::Cookie;
use crate::media::relay::MediaRelay;
use crate::metrics::ProxyMetrics;
use crate::registrar::Registrar;
use crate::route::{Direction, Directory};
use crate::transaction::{
    client_invite, ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, TimerConfig,
};
use crate::trunks::{TrunkHold, Trunks};
use crate::types::{Peer, Stats};

pub(crate) type TxnRef = Arc<Mutex<ProxyTxn>>;

pub(crate) struct State {
    pub cfg: ProxyConfig,
    pub timers: TimerConfig,
    pub dir: Arc<dyn Directory>,
    pub hasher: KeyHasher,
    pub servers: DashMap<TxKey, TxnRef, SpreadKeys>,
    pub clients: DashMap<ClientKey, ClientEntry, SpreadKeys>,
    pub calls: DashMap<CallKey, Dialog, SpreadKeys>,
    pub shutting_down: AtomicBool,
    /// Digest challenges and verification (§5.1).
    pub auth: Authenticator,
    /// Rate limits, bans and scanner blocking for unknown sources (§8).
    pub protection: Protection,
    /// Bindings of password servers that REGISTER (§5.4).
    pub registrar: Registrar,
    /// Trunks in use per account (§6).
    pub trunks: Trunks,
    /// The rtpengine client of `process` calls (§4.7); `None` when none is configured.
    pub media: Option<MediaRelay>,
    /// Calls admitted and not yet over (early and confirmed), capped by `max_calls`.
    pub active_calls: Arc<AtomicU32>,
    /// Counters for `/metrics` (relaxed atomics).
    pub metrics: ProxyMetrics,
    /// When the proxy was made: the origin of nonce times and protection clocks.
    pub epoch: Instant,
    /// Our Via and Record-Route per listener, and where messages leave from (RFC 5658).
    pub sides: crate::sides::Sides,
}

/// Where a client transaction lives.
#[derive(Clone)]
pub(crate) struct ClientEntry {
    pub txn: TxnRef,
    pub branch: u16,
    pub peer: Peer,
}

/// One side of a call as the proxy recorded it when it admitted the call: where
/// requests toward it go, and who may speak for it. Never taken from a header.
#[derive(Debug, Clone)]
pub(crate) struct Party {
    /// The caller: the INVITE's source (its connection, for TCP). The callee: the hop
    /// the answering branch was sent to.
    pub peer: Peer,
    /// A carrier leg speaks from any of that carrier's trusted sources; any other leg
    /// only from `peer`'s IP address.
    pub carrier: Option<Arc<str>>,
}

/// The callee side of an early or confirmed dialog: its To tag (hashed with the
/// proxy's keyed hasher: compact, and a peer cannot aim a collision) and its party.
#[derive(Debug, Clone)]
pub(crate) struct Callee {
    pub tag: u64,
    pub party: Party,
}

/// Where a dialog is (RFC 3261 §12): early dialogs from the first provisional with a
/// To tag, one per callee tag; confirmed by the 2xx relayed to the caller.
#[derive(Debug)]
pub(crate) enum Phase {
    /// The INVITE is still pending: its trunk and call slot are held by its transaction.
    Early(Vec<Callee>),
    /// The 2xx went upstream: the dialog holds the call's trunk and slot until its BYE
    /// is answered by the far side, or the maximum call duration.
    Confirmed(Box<Confirmed>),
}

#[derive(Debug)]
pub(crate) struct Confirmed {
    pub callee: Callee,
    /// When the 2xx went upstream (the maximum duration counts from here).
    pub started: Instant,
    /// 1-based number of the attempt that answered.
    pub attempt: u16,
    pub failover: bool,
    /// The trunk the call holds (§6), released when the dialog is dropped.
    pub trunk: Option<TrunkHold>,
    /// The call's place under `limits.max_calls`: held for its `Drop`, never read.
    #[allow(dead_code)]
    pub slot: Option<TrunkHold>,
}

/// A dialog of a call the proxy admitted, keyed by its Call-ID and the caller's From
/// tag; for logs, limits, the sweep, its call record and the routing of every
/// in-dialog request (which goes to the other leg, never where a header says).
#[derive(Debug)]
pub(crate) struct Dialog {
    pub call_id: Bytes,
    pub info: CallInfo,
    /// When the INVITE arrived.
    pub invited: Instant,
    pub caller: Party,
    /// The caller's two identities when its caller ID was rewritten (§5.3).
    pub identity: Option<Arc<Identity>>,
    pub phase: Phase,
    /// Whether and where the call's media is anchored (§4.7).
    pub media: MediaMode,
}

/// How a call's media is handled (behaviour.md §4.7; the call record says it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum MediaMode {
    /// Its server's `media_handling` is `bypass`: SDP passes untouched.
    #[default]
    Bypass,
    /// `process`, but not anchored: no rtpengine answered and `on_failure` is `bypass`,
    /// or the INVITE carried no SDP (late offer), or the offer is still on its way.
    Unanchored,
    /// Anchored at the rtpengine instance at `instance`; the caller's From tag names the
    /// session there (its `delete`).
    Anchored {
        instance: SocketAddr,
        from_tag: Bytes,
    },
}

impl MediaMode {
    /// The call record's spelling.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            MediaMode::Bypass => "bypass",
            MediaMode::Unanchored => "unanchored",
            MediaMode::Anchored { .. } => "anchored",
        }
    }
}

/// The media of one proxied request of an anchored call (`process` servers only): the
/// NG session it belongs to, its offer and the answers of its responses.
#[derive(Debug)]
pub(crate) struct MediaTxn {
    /// The NG session: the Call-ID and the request's From tag.
    pub call_id: Bytes,
    pub from_tag: Bytes,
    /// The call's key at the NG client (its instance pinning): the dialog's key.
    pub call_key: u64,
    /// The dialog-creating INVITE of the call (its offer anchors the call).
    pub initial: bool,
    pub offer: Offer,
    /// Responses with SDP waiting for rtpengine's answer, in arrival order.
    pub held: Vec<Held>,
    /// Each answered SDP (To tag, the SDP as received) and rtpengine's rewrite: a
    /// retransmitted response carries the same rewrite without a new request.
    pub answered: Vec<Answered>,
}

impl MediaTxn {
    /// Waiting for rtpengine: the plan does not move and the transaction stays.
    pub(crate) fn is_busy(&self) -> bool {
        matches!(self.offer, Offer::Pending) || !self.held.is_empty()
    }

    /// The SDP every attempt carries instead of the request's.
    pub(crate) fn offer_sdp(&self) -> Option<&Bytes> {
        match &self.offer {
            Offer::Ready(sdp) => Some(sdp),
            _ => None,
        }
    }
}

/// Where a request's offer is.
#[derive(Debug)]
pub(crate) enum Offer {
    /// Sent to rtpengine; no attempt starts before its reply.
    Pending,
    /// rtpengine's SDP, forwarded in every attempt (failover included: one media
    /// session per call).
    Ready(Bytes),
    /// No instance answered and `on_failure` let the request go on untouched; its
    /// responses are not answered either.
    Failed,
}

/// A response held until rtpengine rewrites its SDP.
#[derive(Debug)]
pub(crate) struct Held {
    pub cookie: Cookie,
    pub branch: usize,
    pub msg: Box<Message>,
}

/// One answer rtpengine rewrote.
#[derive(Debug)]
pub(crate) struct Answered {
    /// The branch whose response it was.
    pub branch: usize,
    pub to_tag: Bytes,
    pub sdp: Bytes,
    pub rewritten: Bytes,
}

impl Dialog {
    /// Where the maximum call duration counts from: the 2xx, or for an early dialog
    /// the INVITE.
    pub(crate) fn since(&self) -> Instant {
        match &self.phase {
            Phase::Early(_) => self.invited,
            Phase::Confirmed(c) => c.started,
        }
    }
}

/// What we log about a call. The numbers are slices of the INVITE (no copy).
#[derive(Debug, Clone, Default)]
pub(crate) struct CallInfo {
    pub did: Option<Arc<str>>,
    pub account: Option<Arc<str>>,
    pub server: Option<Arc<str>>,
    pub document: Option<Arc<str>>,
    /// From URI user.
    pub from: Bytes,
    /// Request-URI user as received.
    pub to: Bytes,
    pub direction: Direction,
}

pub(crate) enum ServerSide {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

impl ServerSide {
    pub(crate) fn is_terminated(&self) -> bool {
        match self {
            ServerSide::Invite(s) => s.is_terminated(),
            ServerSide::NonInvite(s) => s.is_terminated(),
        }
    }

    pub(crate) fn is_final(&self) -> bool {
        match self {
            ServerSide::Invite(s) => s.is_final(),
            ServerSide::NonInvite(s) => s.is_final(),
        }
    }

    pub(crate) fn on_retransmission(&self) -> Option<Bytes> {
        match self {
            ServerSide::Invite(s) => s.on_retransmission(),
            ServerSide::NonInvite(s) => s.on_retransmission(),
        }
    }
}

pub(crate) enum ClientSide {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl ClientSide {
    pub(crate) fn is_terminated(&self) -> bool {
        match self {
            ClientSide::Invite(c) => c.is_terminated(),
            ClientSide::NonInvite(c) => c.is_terminated(),
        }
    }

    pub(crate) fn is_pending(&self) -> bool {
        match self {
            ClientSide::Invite(c) => c.is_pending(),
            ClientSide::NonInvite(c) => c.is_pending(),
        }
    }

    pub(crate) fn terminate(&mut self) {
        match self {
            ClientSide::Invite(c) => c.terminate(),
            ClientSide::NonInvite(c) => c.terminate(),
        }
    }
}

/// The CANCEL sent on a branch, with its own client transaction (it outlives the
/// INVITE's final response).
pub(crate) struct SentCancel {
    pub request: Bytes,
    pub client: ClientNonInvite,
}

/// One branch: a client transaction to one attempt's target.
pub(crate) struct Branch {
    pub id: u64,
    /// The hop; we send to it from `ProxyConfig::local` of its transport.
    pub peer: Peer,
    /// The request as sent (retransmitted as is; CANCEL, ACK and the BYE of an unwanted
    /// 2xx are built from it); `None` once nothing can need it ([`Branch::needs_request`]).
    pub request: Option<Bytes>,
    pub client: ClientSide,
    /// The proxy's position on the branch: provisionals seen, cancelled by whom, given up.
    pub state: BranchState,
    /// The CANCEL sent on it, if one was.
    pub cancel: Option<Box<SentCancel>>,
    /// Timer C and the attempt's progress and answer timeouts, behind one queued timer.
    pub deadlines: Deadlines,
    /// 1-based attempt number and whether it is the failover (call record).
    pub attempt: u16,
    pub is_failover: bool,
    /// Relay early media from it as a plain 180 (§4.6).
    pub ignore_early_media: bool,
    /// When the INVITE went out, until its final response came back (response-time
    /// histograms; `None` for other methods).
    pub sent: Option<Instant>,
    /// The dialogs of 2xx answers after the proxy cancelled the branch, and their BYEs.
    pub late: Option<Box<Late2xx>>,
}

impl Branch {
    pub(crate) fn is_done(&self) -> bool {
        self.client.is_terminated()
            && self
                .cancel
                .as_ref()
                .is_none_or(|c| c.client.is_terminated())
            && late_done(self.late.as_deref())
    }

    /// Can anything still be built from the request? Retransmissions and the CANCEL while
    /// the client transaction is pending, the ACK of each copy of a non-2xx final
    /// (Completed), and the ACK and BYE of each copy of a 2xx on a branch we cancelled
    /// ourselves (Accepted). A 2xx relayed upstream, or a non-INVITE's final, needs nothing.
    pub(crate) fn needs_request(&self) -> bool {
        match &self.client {
            ClientSide::Invite(c) => match c.state() {
                client_invite::State::Calling
                | client_invite::State::Proceeding
                | client_invite::State::Completed => true,
                client_invite::State::Accepted => self.state.by_proxy(),
                client_invite::State::Terminated => false,
            },
            ClientSide::NonInvite(c) => c.is_pending(),
        }
    }
}

/// Dialogs hung up per branch: a downstream fork may answer more than once (each 2xx
/// with its own To tag is its own dialog), but a peer spraying 2xx with new tags must
/// not make the proxy send and keep without bound.
pub(crate) const MAX_DIALOGS: usize = 4;

/// The late dialogs of one branch (boxed in [`Branch`]: few branches ever have one).
#[derive(Default)]
pub(crate) struct Late2xx {
    pub dialogs: Vec<LateDialog>,
}

/// One dialog set up by a late 2xx, and the BYE that ends it.
pub(crate) struct LateDialog {
    /// The 2xx's To tag: its copies carry the same one.
    pub to_tag: Bytes,
    /// Where its ACK and BYE go (first route, else Contact, else the branch's peer).
    pub hop: Peer,
    /// Sent again for each copy of the 2xx.
    pub ack: Bytes,
    /// Sent again on timer E.
    pub bye: Bytes,
    /// The BYE's Via branch id: its client index key.
    pub bye_id: u64,
    pub client: ClientNonInvite,
    /// For the log line.
    pub call_id: Bytes,
}

/// Is every BYE of the branch done (answered and past timer K, or timed out)?
pub(crate) fn late_done(late: Option<&Late2xx>) -> bool {
    late.is_none_or(|l| l.dialogs.iter().all(|d| d.client.is_terminated()))
}

/// One proxied request: its server transaction and its branches.
///
/// Kept small: a transaction lingers 64·T1 after its final response (timers L, J, M,
/// D) at thousands per second, so whatever only the routing decision needs lives in
/// [`Deciding`] and is dropped with the final response.
pub(crate) struct ProxyTxn {
    pub key: TxKey,
    pub source: Peer,
    pub local: SocketAddr,
    pub server: ServerSide,
    pub branches: Vec<Branch>,
    /// Until the caller has its final response; `None` after (and for a CANCEL's own
    /// transaction, answered at once).
    pub deciding: Option<Box<Deciding>>,
    /// Caller ID rewrite of the request and its responses (§5.3): retransmitted 2xx
    /// still need it after the final response.
    pub identity: Option<IdentityEdit>,
    /// For the response-time metrics of late responses (a copy of `call.direction`).
    pub direction: Direction,
    /// The caller CANCELled.
    pub cancelled: bool,
    /// Dialog-creating INVITE (no To tag): a 2xx creates a call record.
    pub initial_invite: bool,
    /// A BYE matched to a dialog: the far side's final response (or timer F) ends
    /// that dialog, and only that one.
    pub ends: Option<DialogEnd>,
    /// The request came from a carrier leg: identity headers it carries are trusted,
    /// and the responses going back to it lose `Proxy-Authenticate` (§5.3, item 10).
    pub from_carrier: bool,
    /// The request goes to a carrier: it loses every `Proxy-Authorization`.
    pub to_carrier: bool,
    /// The request's media is anchored at rtpengine (§4.7).
    pub media: Option<Box<MediaTxn>>,
}

/// The dialog a BYE ends when the far side answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DialogEnd {
    pub key: CallKey,
    /// The callee tag of the dialog (an early dialog of another tag stays).
    pub callee_tag: u64,
}

/// What a proxy transaction needs until the caller has its final response: the request
/// (attempts are built from it), the plan and its progress, the call record's data.
pub(crate) struct Deciding {
    /// The request as received.
    pub request: Box<Message>,
    /// The attempt plan and the position in it, with the best response so far.
    pub cursor: PlanCursor,
    /// When the request arrived (call record).
    pub started: Instant,
    /// Route edits decided once for all attempts: how many of our Routes to pop.
    pub pop_route: u8,
    /// Strict-router fix-up: the Request-URI to restore (and Route to drop).
    pub strict_uri: Option<Bytes>,
    pub record_route: bool,
    pub loop_hash: u32,
    pub call: CallInfo,
    /// The trunk an initial INVITE took (§6): moved to the dialog by its 2xx, released
    /// by its final failure.
    pub trunk: Option<TrunkHold>,
    /// The call's place under `limits.max_calls`, moved like the trunk.
    pub slot: Option<TrunkHold>,
    /// The call's dialog entry (initial INVITEs), made at admission.
    pub dialog: Option<CallKey>,
    /// The current attempt's target is a DNS name: its resolution, then its hops.
    pub resolving: Option<Box<Resolving>>,
}

/// An attempt whose target is a DNS name (RFC 3263): asked of the edge, then each of its
/// hops in turn within the one attempt (the next on a 503, a timeout or a transport
/// error), before the attempt counts as failed.
pub(crate) struct Resolving {
    pub attempt: crate::route::Attempt,
    /// 1-based attempt number.
    pub number: u16,
    /// `None` while the edge resolves; then the hops not yet tried.
    pub hops: Option<std::collections::VecDeque<Peer>>,
}

impl ProxyTxn {
    /// A server transaction answered locally (CANCEL's 200), kept to absorb
    /// retransmissions.
    pub(crate) fn local_only(
        key: TxKey,
        source: Peer,
        local: SocketAddr,
        server: ServerSide,
    ) -> Self {
        ProxyTxn {
            key,
            source,
            local,
            server,
            branches: Vec::new(),
            deciding: None,
            identity: None,
            direction: Direction::default(),
            cancelled: false,
            initial_invite: false,
            ends: None,
            from_carrier: false,
            to_carrier: false,
            media: None,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.server.is_terminated()
            && self.media.as_ref().is_none_or(|m| !m.is_busy())
            && self
                .deciding
                .as_ref()
                .is_none_or(|d| !d.cursor.is_waiting())
            && self.branches.iter().all(Branch::is_done)
    }
}

/// Transactions the transaction tables have room for from the start (they grow beyond,
/// up to `max_transactions`): ~8 MB for the server index and ~16 MB for the client
/// index, the load of ~3,000 calls/s (two transactions per call for ~32 s).
const TRANSACTIONS_SIZED: usize = 200_000;

/// Dialogs the call table has room for from the start (it grows beyond, up to
/// `max_calls`). An entry is ~240 B: room for 200,000 would be ~60 MB.
const CALLS_SIZED: usize = 16_384;

impl State {
    /// The tables are made with room for a busy proxy's load: grown by doubling from
    /// empty they would rehash every entry under a shard's write lock, stalling every
    /// worker that needs the shard, at each doubling of the load, and fault in a new
    /// table each time. Their memory is only touched as entries land in it.
    pub(crate) fn new(cfg: ProxyConfig, dir: Arc<dyn Directory>) -> State {
        let timers = TimerConfig {
            t1: cfg.t1,
            t2: cfg.t2,
            t4: cfg.t4,
        };
        let sides = crate::sides::Sides::new(&cfg);
        let epoch = Instant::now();
        let hasher = KeyHasher::default();
        let transactions = cfg.max_transactions.min(TRANSACTIONS_SIZED);
        let calls = cfg.max_calls.min(CALLS_SIZED);
        let media = MediaRelay::new(
            &cfg.media.rtpengine,
            cfg.media.timeout,
            cfg.media.retries,
            cfg.media.down_for,
            // Random per process: rtpengine answers a cookie it saw recently from its cache.
            hasher.u64(&[b"ng-cookie-seed"]),
            epoch,
        );
        State {
            media,
            auth: authenticator(&cfg),
            protection: protection(&cfg, epoch),
            registrar: Registrar::new(cfg.registrar.clone()),
            trunks: Trunks::new(cfg.cluster.is_some()),
            active_calls: Arc::default(),
            metrics: ProxyMetrics::default(),
            epoch,
            cfg,
            timers,
            dir,
            hasher,
            servers: DashMap::with_capacity_and_hasher(transactions, SpreadKeys),
            clients: DashMap::with_capacity_and_hasher(transactions, SpreadKeys),
            calls: DashMap::with_capacity_and_hasher(calls, SpreadKeys),
            shutting_down: AtomicBool::new(false),
            sides,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let (media_requests, media_calls) = self.media.as_ref().map_or((0, 0), |m| m.sizes());
        Stats {
            server_transactions: self.servers.len(),
            client_transactions: self.clients.len(),
            calls: self.calls.len(),
            media_requests,
            media_calls,
        }
    }
}

/// A node alone makes its own random nonce secret; a cluster node the shared one, so every
/// node verifies every node's nonces (issue 18).
fn authenticator(cfg: &ProxyConfig) -> Authenticator {
    match &cfg.cluster {
        Some(c) => Authenticator::new(
            crate::auth::NonceKey::for_node(c.secret.expose(), &c.node_id),
            crate::auth::DEFAULT_NONCE_CAPACITY,
        ),
        None => Authenticator::default(),
    }
}

/// A cluster node also tells the others of its auth failures and bans.
fn protection(cfg: &ProxyConfig, epoch: Instant) -> Protection {
    let p = Protection::new(cfg.protection.clone(), epoch);
    if cfg.cluster.is_some() {
        p.share()
    } else {
        p
    }
}

#[cfg(test)]
mod size_probe {
    #[test]
    fn sizes() {
        eprintln!(
            "ProxyTxn {} Deciding {} Branch {} Dialog {} ServerSide {}",
            std::mem::size_of::<super::ProxyTxn>(),
            std::mem::size_of::<super::Deciding>(),
            std::mem::size_of::<super::Branch>(),
            std::mem::size_of::<super::Dialog>(),
            std::mem::size_of::<super::ServerSide>()
        );
    }
}
