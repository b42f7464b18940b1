//! Outbound calls (behaviour.md §5): a request from one of our servers — known by its
//! source address (IP auth) or by digest credentials (password servers) — to a number:
//! on-net to one of our DIDs, else over the carriers, with the caller ID and headers of
//! the calling server.

use std::net::IpAddr;
use std::sync::Arc;

use trunkstore_config::numbers::normalize;
use trunkstore_config::{CallerId, SipHeader};
use trunkstore_routing::{RouteInfo, ServerId, ServerInfo, Snapshot};
use trunkstore_sip::message::{HeaderName, Message, Method};
use trunkstore_sip::nameaddr::NameAddr;
use trunkstore_sip::validate::Checked;

use crate::auth::{AuthOutcome, AuthRequest, ChallengeHeaders};
use crate::callerid::{self, IdentityEdit, Side};
use crate::carriers::carrier_attempts;
use crate::context::Ctx;
use crate::route::{self, AttemptPlan, Decision, Direction, FailoverRule, InboundRoute};
use crate::sipview;
use crate::types::Peer;

/// Routes a new out-of-dialog request from a source that is not a carrier; `checked` is
/// what validation parsed of it (its Request-URI and From are read there).
pub(crate) fn decide(
    cx: &Ctx<'_>,
    from: Peer,
    msg: &Message,
    method: Method,
    checked: &Checked<'_>,
) -> Decision {
    let Some(snap) = cx.state.dir.snapshot() else {
        return Decision::Reject(403, "Forbidden");
    };
    match authenticate(cx, &snap, from, msg, checked) {
        Ok((server, digest)) => route_call(cx, &snap, server, digest, msg, method, checked),
        Err(refusal) => *refusal,
    }
}

/// §3/§5.1: the IP-auth server at the packet's source address (ip, and port when its
/// `auth.port` is set; never a header), else a password server by digest. The flag says
/// the server was known by digest (its credentials are ours to consume).
fn authenticate(
    cx: &Ctx<'_>,
    snap: &Snapshot,
    from: Peer,
    msg: &Message,
    checked: &Checked<'_>,
) -> Result<(ServerId, bool), Box<Decision>> {
    if let Some(server) = snap.ip_server(from.addr) {
        return Ok((server.id, false));
    }
    // Bans, scanners and the rate limit were checked for every request on arrival
    // (`admission::screen_request`).
    let ip = from.addr.ip();
    // A 407; the realm follows the From host (§5.1).
    let again = |stale| {
        let headers = challenge(cx, snap, &checked.from, ip, stale);
        Box::new(Decision::Challenge(headers))
    };
    let Some(credentials) = msg.header(HeaderName::ProxyAuthorization) else {
        return Err(again(false));
    };
    match verify_digest(cx, snap, from, msg, credentials) {
        Digest::Server(server) => Ok((server, true)),
        Digest::Forbidden => Err(Box::new(Decision::Reject(403, "Forbidden"))),
        Digest::Challenge { stale } => Err(again(stale)),
    }
}

/// What a request's digest credentials proved (§5.1), for INVITE and REGISTER alike.
pub(crate) enum Digest {
    /// The password server they are for.
    Server(ServerId),
    /// Not usable (none we can check, a stale or replayed nonce): challenge again.
    Challenge {
        /// Say `stale=true` (the password was right).
        stale: bool,
    },
    /// Wrong password, unknown user or realm: 403, counted towards a ban.
    Forbidden,
}

/// Verifies `credentials` (a `Proxy-Authorization` or `Authorization` value of `msg`
/// from `from`) against the password servers, with the one nonce scheme, replay table
/// and ban counter of §5.1; records the success or failure with the protection layer
/// and the metrics.
pub(crate) fn verify_digest(
    cx: &Ctx<'_>,
    snap: &Snapshot,
    from: Peer,
    msg: &Message,
    credentials: &[u8],
) -> Digest {
    let ip = from.addr.ip();
    let state = cx.state;
    let req = AuthRequest {
        method: msg.method_bytes(),
        request_uri: msg.request_uri(),
        credentials,
        source: ip,
    };
    match state.auth.verify(snap, &req, now_secs(cx)) {
        AuthOutcome::Ok { server } => {
            state.protection.record_success(ip, cx.now);
            Digest::Server(server)
        }
        AuthOutcome::Forbidden(why) => {
            let banned = state.protection.record_failure(ip, false, cx.now);
            state.metrics.auth_failure();
            if banned {
                state.metrics.ban();
            }
            let method = String::from_utf8_lossy(msg.method_bytes());
            // The reason only: credentials and passwords are never logged.
            tracing::warn!(source = %from.addr, %method, reason = why.as_str(), banned, "digest auth failed");
            Digest::Forbidden
        }
        other => Digest::Challenge {
            stale: other.stale(),
        },
    }
}

/// Fresh challenges (one nonce); the realm follows the host of `realm_from` (the From of
/// an INVITE, the To of a REGISTER: §5.1).
pub(crate) fn challenge(
    cx: &Ctx<'_>,
    snap: &Snapshot,
    realm_from: &NameAddr<'_>,
    ip: IpAddr,
    stale: bool,
) -> ChallengeHeaders {
    let host = realm_from
        .sip_uri()
        .and_then(|u| u.host())
        .map_or(&b""[..], |h| h.as_bytes());
    cx.state.auth.challenge(snap, host, ip, now_secs(cx), stale)
}

/// Nonce time: seconds on the core's own clock (the nonce key is per process, so only
/// this process must agree with itself). Starts at 1 so no nonce is issued at zero.
fn now_secs(cx: &Ctx<'_>) -> u64 {
    cx.now.saturating_duration_since(cx.state.epoch).as_secs() + 1
}

/// §5.2: the destination, on-net or over the carriers, with the server's caller ID.
fn route_call(
    cx: &Ctx<'_>,
    snap: &Snapshot,
    id: ServerId,
    digest: bool,
    msg: &Message,
    method: Method,
    checked: &Checked<'_>,
) -> Decision {
    let server = snap.server(id);
    let Some(user) = checked.request_uri.user() else {
        return refuse_disabled(server).unwrap_or(Decision::Reject(404, "Not Found"));
    };
    // §2: user parameters (RFC 4694 `;npdi;rn=`) split off, `%xx` decoded.
    let dialled = match crate::dialled::parse(user) {
        Ok(d) => d,
        Err((status, reason)) => {
            return refuse_disabled(server).unwrap_or(Decision::Reject(status, reason))
        }
    };
    // Emergency numbers as dialled, before normalisation (§5.2).
    let emergency = snap.settings().is_emergency(&dialled.number);
    // §3: a disabled server places no calls, except emergency calls (issue 13 item 11).
    if !emergency {
        if let Some(refusal) = refuse_disabled(server) {
            return refusal;
        }
    } else if !server.enabled {
        log_disabled_emergency(msg, server, &dialled.number);
    }
    let number = normalize(&dialled.number);
    let own = snap.server_route(id);
    let presented = presented_did(snap, id, checked);
    let (cid, headers) = caller_id_and_headers(own, presented, emergency);
    let identity = cid
        .and_then(|c| callerid::identity_for(msg, c))
        .map(|identity| IdentityEdit {
            identity,
            side: Side::FromPbx,
            initial: true,
        });
    if let Some(r) = snap
        .did(&number)
        .filter(|r| !emergency && !r.force_outbound)
    {
        // The route from the same snapshot that authenticated the caller: one reload
        // cannot split the decision between two configurations.
        let call = OnNetCall {
            number: &number,
            params: dialled.params,
            is_invite: method == Method::Invite,
            identity,
            digest,
            media: own.inbound.media,
        };
        return on_net(cx, &r.inbound, call);
    }
    let seed = cx.state.hasher.u64(&[sipview::call_id(msg)]);
    let settings = snap.settings();
    let attempts = carrier_attempts(settings, &number, dialled.params, emergency, seed, headers);
    if attempts.is_empty() {
        return Decision::Reject(404, "No Route");
    }
    AttemptPlan {
        attempts,
        failover: FailoverRule::outbound(),
        did: Some(Arc::from(&*number)),
        account: Some(server.account.clone()),
        server: server.name.clone(),
        document: Some(server.document.clone()),
        failover_to: None,
        direction: Direction::Outbound,
        // Emergency calls are never refused for trunks and so take none (§6).
        trunk: (!emergency).then(|| server.account.clone()),
        identity,
        strip_credentials: digest,
        media: own.inbound.media,
    }
    .into()
}

/// 403 for a disabled server (§3); `None` when it is enabled.
fn refuse_disabled(server: &ServerInfo) -> Option<Decision> {
    (!server.enabled).then_some(Decision::Reject(403, "Forbidden"))
}

/// A disabled customer still reaches 911 (§3): said in the log, as operators must know.
fn log_disabled_emergency(msg: &Message, server: &ServerInfo, number: &str) {
    tracing::warn!(
        call_id = %String::from_utf8_lossy(sipview::call_id(msg)),
        account = &*server.account,
        server = server.name.as_deref().unwrap_or("-"),
        number,
        "disabled server placed an emergency call; routed to the carriers"
    );
}

/// The route of the DID the PBX presents as its From user, when it is one of its own. The
/// user is read as a dialled number is (§2: parameters split off, escapes decoded).
fn presented_did<'s>(
    snap: &'s Snapshot,
    id: ServerId,
    checked: &Checked<'_>,
) -> Option<&'s RouteInfo> {
    let user = checked.from.sip_uri()?.user()?;
    let dialled = crate::dialled::parse(user).ok()?;
    snap.did(&normalize(&dialled.number))
        .filter(|r| r.server.id == id)
}

/// §5.3: emergency caller ID (server, else account) for emergency numbers; else the
/// presented DID's cascade (DID → server → account), else the server's (server →
/// account). Headers: the presented DID's merged set, else the server's.
fn caller_id_and_headers<'r>(
    own: &'r RouteInfo,
    presented: Option<&'r RouteInfo>,
    emergency: bool,
) -> (Option<&'r CallerId>, Option<Arc<[SipHeader]>>) {
    let level = presented.unwrap_or(own);
    let cid = if emergency {
        own.emergency_caller_id.as_deref()
    } else {
        level.caller_id.as_deref()
    };
    let headers = Some(level.sip_headers.clone()).filter(|h| !h.is_empty());
    (cid, headers)
}

/// An on-net call: the number dialled (normalised), its user parameters (kept on the
/// Request-URI, §2), and what the calling server's side decided.
struct OnNetCall<'a> {
    /// The calling server anchors its media (§4.7): so does the call, whatever the
    /// callee's server says.
    media: bool,
    number: &'a str,
    params: &'a str,
    is_invite: bool,
    identity: Option<IdentityEdit>,
    digest: bool,
}

/// §5.2.1: straight to the DID's server (`route`) with every inbound rule; no trunk.
fn on_net(cx: &Ctx<'_>, route: &InboundRoute, call: OnNetCall<'_>) -> Decision {
    let rule = cx.state.cfg.failover_on;
    let (registrar, now) = (&cx.state.registrar, cx.now);
    let bindings = |aor: &str| registrar.targets(aor, now);
    let routed = route::to_route_with_params(
        call.number,
        route,
        call.is_invite,
        rule,
        call.params,
        &bindings,
    );
    match routed {
        Decision::Forward(mut plan) => {
            plan.direction = Direction::OnNet;
            plan.identity = call.identity;
            plan.strip_credentials = call.digest;
            plan.media |= call.media;
            plan.into()
        }
        other => other,
    }
}
