//! The failover of an attempt plan (behaviour.md §4.8), resolved only when every attempt
//! failed: a routing decision above the routing model ([`crate::route`]) and the carrier
//! order ([`crate::carriers`]).

use std::sync::Arc;

use bytes::Bytes;
use trunkstore_config::numbers::normalize;
use trunkstore_config::FailoverTarget;
use trunkstore_sip::uri::Uri;

use crate::route::{attempts_to_route, Attempt, AttemptPlan, Bindings, Directory};

/// The failover of a plan whose attempts all failed (§4.8), resolved now because it is
/// rarely needed. Always at least one attempt: one that cannot be sent (no next hop)
/// fails at once as unreachable, so the caller still gets an answer.
///
/// * `sip`: the INVITE goes to that URI (its host must be an IP literal: the core does no
///   DNS), with the primary attempt's timers, headers and early-media rule.
/// * `e164`: the number, normalised, routed like an outbound call of the account: to our
///   own server when it is one of our DIDs (and not `force_outbound`), else over the
///   carriers ([`outbound_targets`]).
pub(crate) fn failover_attempts(
    dir: &dyn Directory,
    plan: &AttemptPlan,
    bindings: Bindings<'_>,
) -> Vec<Attempt> {
    let Some(failover) = plan.failover_to.as_deref() else {
        return Vec::new();
    };
    let mut out = match failover.target() {
        FailoverTarget::Uri(uri) => vec![uri_attempt(uri, plan.attempts.first())],
        FailoverTarget::Number(number) => number_attempts(dir, plan, number, bindings),
    };
    if out.is_empty() {
        out.push(Attempt::to(None, None));
    }
    for a in &mut out {
        a.is_failover = true;
    }
    out
}

fn uri_attempt(uri: &str, primary: Option<&Attempt>) -> Attempt {
    let parsed = Uri::parse(uri.as_bytes()).ok();
    let next_hop = parsed.as_ref().and_then(crate::sipview::uri_next_hop);
    let mut a = Attempt::to(Some(Bytes::copy_from_slice(uri.as_bytes())), next_hop);
    if next_hop.is_none() {
        a.resolve = parsed
            .as_ref()
            .and_then(crate::dns::Target::of_uri)
            .map(Arc::new);
    }
    if let Some(p) = primary {
        a.progress_timeout = p.progress_timeout;
        a.answer_timeout = p.answer_timeout;
        a.headers = p.headers.clone();
        a.ignore_early_media = p.ignore_early_media;
    }
    a
}

fn number_attempts(
    dir: &dyn Directory,
    plan: &AttemptPlan,
    number: &str,
    bindings: Bindings<'_>,
) -> Vec<Attempt> {
    let number = normalize(number);
    match dir.inbound(&number) {
        Some(route) if !route.force_outbound => {
            if !route.enabled {
                return vec![Attempt::to(None, None)];
            }
            attempts_to_route(&number, &route, "", bindings)
        }
        _ => outbound_targets(dir, plan.account.as_deref(), &number),
    }
}

/// The carrier attempts (behaviour.md §5.2) for a call of `account` to `number`
/// (normalised), in priority order: the e164 failover of an inbound call. Emergency
/// numbers are recognised as dialled; the weighted order within a priority is seeded by
/// the number (deterministic).
pub(crate) fn outbound_targets(
    dir: &dyn Directory,
    _account: Option<&str>,
    number: &str,
) -> Vec<Attempt> {
    let Some(snap) = dir.snapshot() else {
        return Vec::new();
    };
    let settings = snap.settings();
    let emergency = settings.is_emergency(number);
    let seed = number.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    crate::carriers::carrier_attempts(settings, number, "", emergency, seed, None)
}
