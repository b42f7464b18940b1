//! Counters of the proxy core for Prometheus: plain relaxed atomics bumped on the packet
//! path (no lock, no allocation, no label maps: every label set is a fixed array slot),
//! rendered as text by [`ProxyMetrics::render`] when `/metrics` is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::error::ForwardError;
use crate::media::relay::Command;
pub use crate::policy::Direction;

const DIRECTIONS: [Direction; 3] = [Direction::Inbound, Direction::Outbound, Direction::OnNet];

/// How a call attempt ended, as the caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx reached the caller.
    Answered,
    /// The caller cancelled before an answer.
    Cancelled,
    /// Refused by the proxy itself (unknown DID or source, auth, trunks, disabled...).
    Rejected,
    /// Every branch failed (error responses, timeouts, transport errors).
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Answered,
        Outcome::Cancelled,
        Outcome::Rejected,
        Outcome::Failed,
    ];
    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

/// Why a call moved on to its next target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverReason {
    /// An error response listed by `failover_on`.
    Response,
    /// No provisional response within `progress_timeout`, or timer B.
    Timeout,
    /// The transport failed (connection refused, ICMP unreachable).
    Transport,
}

impl FailoverReason {
    const ALL: [FailoverReason; 3] = [
        FailoverReason::Response,
        FailoverReason::Timeout,
        FailoverReason::Transport,
    ];
    fn label(self) -> &'static str {
        match self {
            FailoverReason::Response => "response",
            FailoverReason::Timeout => "timeout",
            FailoverReason::Transport => "transport",
        }
    }
}

/// Why the proxy itself refused a request (every local error answer is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Failed validation (400, 416, 420, 483, 505...).
    Invalid,
    /// 482: a loop, or a merged request (a call with that Call-ID and From tag is up).
    Loop,
    /// 403: not allowed (disabled server, auth refused, unknown source).
    Forbidden,
    /// 403 Preload Route denied: an out-of-dialog request with a Route not naming us.
    PreloadedRoute,
    /// 404 (unknown DID, no route) and 480 (disabled server).
    NotFound,
    /// 481: an in-dialog request that matches no dialog of its sender.
    NoDialog,
    /// 486/403 Trunk Limit Reached (§6).
    TrunkLimit,
    /// 503: `limits.max_calls` calls in progress.
    MaxCalls,
    /// 503: `limits.max_transactions` transactions in progress.
    MaxTransactions,
    /// 503 while shutting down, and anything else.
    Other,
}

impl Refusal {
    const ALL: [Refusal; 10] = [
        Refusal::Invalid,
        Refusal::Loop,
        Refusal::Forbidden,
        Refusal::PreloadedRoute,
        Refusal::NotFound,
        Refusal::NoDialog,
        Refusal::TrunkLimit,
        Refusal::MaxCalls,
        Refusal::MaxTransactions,
        Refusal::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Loop => "loop",
            Refusal::Forbidden => "forbidden",
            Refusal::PreloadedRoute => "preloaded_route",
            Refusal::NotFound => "not_found",
            Refusal::NoDialog => "no_dialog",
            Refusal::TrunkLimit => "trunk_limit",
            Refusal::MaxCalls => "max_calls",
            Refusal::MaxTransactions => "max_transactions",
            Refusal::Other => "other",
        }
    }

    /// The reason of a routing decision's refusal, by its status and reason phrase.
    pub fn of(code: u16, reason: &str) -> Refusal {
        match code {
            403 if reason == crate::policy::TRUNK_LIMIT_REASON => Refusal::TrunkLimit,
            403 if reason == PRELOAD_ROUTE_DENIED => Refusal::PreloadedRoute,
            403 => Refusal::Forbidden,
            404 | 480 => Refusal::NotFound,
            481 => Refusal::NoDialog,
            482 => Refusal::Loop,
            486 if reason == crate::policy::TRUNK_LIMIT_REASON => Refusal::TrunkLimit,
            400..=499 => Refusal::Invalid,
            _ => Refusal::Other,
        }
    }
}

/// How the BYE the proxy sent for an unwanted late 2xx ended (behaviour.md §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateByeOutcome {
    /// A 2xx: the callee's leg is down.
    Answered,
    /// Another final response (481: the callee had no such dialog any more, …).
    Refused,
    /// No final response before timer F: the leg may still be up.
    Timeout,
}

impl LateByeOutcome {
    const ALL: [LateByeOutcome; 3] = [
        LateByeOutcome::Answered,
        LateByeOutcome::Refused,
        LateByeOutcome::Timeout,
    ];
    fn label(self) -> &'static str {
        match self {
            LateByeOutcome::Answered => "answered",
            LateByeOutcome::Refused => "refused",
            LateByeOutcome::Timeout => "timeout",
        }
    }
}

/// Reason phrase of an out-of-dialog request refused for its Route (as Kamailio's
/// default configuration says it).
pub const PRELOAD_ROUTE_DENIED: &str = "Preload Route denied";

/// Upper bounds of the response-time buckets, in microseconds (5 ms … 30 s: provisional
/// answers take milliseconds, final ones up to the answer timeout).
const BUCKETS_MICROS: [u64; 12] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];

/// Upper bounds of the NG round-trip buckets, in microseconds (100 µs … 5 s: rtpengine
/// answers in well under a millisecond when healthy, a retransmitted request after the
/// timeout).
const NG_BUCKETS_MICROS: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 500_000, 1_000_000, 5_000_000,
];

/// A Prometheus histogram over fixed buckets (each counts only its own range; the
/// cumulative counts are summed when rendering).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64; 12],
    buckets: [AtomicU64; 13],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::over(&BUCKETS_MICROS)
    }
}

impl Histogram {
    fn over(bounds: &'static [u64; 12]) -> Histogram {
        Histogram {
            bounds,
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = self
            .bounds
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// How a REGISTER ended (behaviour.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 200: a binding added or refreshed (or a query answered).
    Ok,
    /// 200: bindings removed (expiry 0 or `*`).
    Removed,
    /// 401: no credentials, stale or replayed nonce.
    Challenged,
    /// 403: wrong password, unknown user, an AOR not its own, a carrier or IP-auth source.
    Forbidden,
    /// 423: an expiry below `registrar.min_expires`.
    TooBrief,
    /// 400: unreadable Contact, `*` misused, out-of-order CSeq.
    Invalid,
}

impl RegisterOutcome {
    const ALL: [RegisterOutcome; 6] = [
        RegisterOutcome::Ok,
        RegisterOutcome::Removed,
        RegisterOutcome::Challenged,
        RegisterOutcome::Forbidden,
        RegisterOutcome::TooBrief,
        RegisterOutcome::Invalid,
    ];
    fn label(self) -> &'static str {
        match self {
            RegisterOutcome::Ok => "ok",
            RegisterOutcome::Removed => "removed",
            RegisterOutcome::Challenged => "challenged",
            RegisterOutcome::Forbidden => "forbidden",
            RegisterOutcome::TooBrief => "too_brief",
            RegisterOutcome::Invalid => "invalid",
        }
    }
}

impl ProxyMetrics {
    fn render_media(&self, out: &mut String) {
        family(
            out,
            "trunkstore_media_requests_total",
            "counter",
            "NG requests to rtpengine by command and outcome.",
        );
        for (c, name) in NG_COMMANDS {
            for o in NgOutcome::ALL {
                let n = self.media.requests[command_index(c)][o as usize].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "trunkstore_media_requests_total{{command=\"{name}\",outcome=\"{}\"}} {n}",
                    o.label()
                );
            }
        }
        let name = "trunkstore_media_request_seconds";
        family(
            out,
            name,
            "histogram",
            "NG request first sent to rtpengine's reply (or the last timeout).",
        );
        for (c, command) in NG_COMMANDS {
            let labels = format!("command=\"{command}\"");
            self.media.round_trip[command_index(c)].render(out, name, &labels);
        }
        for (name, help, counter) in [
            (
                "trunkstore_media_calls_anchored_total",
                "Calls whose media was anchored at rtpengine.",
                &self.media.anchored,
            ),
            (
                "trunkstore_media_calls_unanchored_total",
                "Calls of process servers that went on with their SDP untouched (no rtpengine answered, on_failure bypass).",
                &self.media.unanchored,
            ),
        ] {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
    }
}

/// How an NG request to rtpengine ended (behaviour.md §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NgOutcome {
    /// `result: ok`.
    Ok,
    /// rtpengine refused it (`result: error`, or a result other than ok).
    Error,
    /// No instance answered in time, retries and failover included.
    Timeout,
    /// No instance was up (or none is configured): nothing was sent.
    Unavailable,
}

impl NgOutcome {
    const ALL: [NgOutcome; 4] = [
        NgOutcome::Ok,
        NgOutcome::Error,
        NgOutcome::Timeout,
        NgOutcome::Unavailable,
    ];
    fn label(self) -> &'static str {
        match self {
            NgOutcome::Ok => "ok",
            NgOutcome::Error => "error",
            NgOutcome::Timeout => "timeout",
            NgOutcome::Unavailable => "unavailable",
        }
    }
}

const NG_COMMANDS: [(Command, &str); 3] = [
    (Command::Offer, "offer"),
    (Command::Answer, "answer"),
    (Command::Delete, "delete"),
];

fn command_index(c: Command) -> usize {
    match c {
        Command::Offer => 0,
        Command::Answer => 1,
        Command::Delete => 2,
    }
}

/// The media relay's counters: NG requests by command and outcome, their round trips,
/// calls anchored.
#[derive(Debug)]
struct MediaMetrics {
    requests: [[AtomicU64; 4]; 3],
    round_trip: [Histogram; 3],
    anchored: AtomicU64,
    unanchored: AtomicU64,
}

impl Default for MediaMetrics {
    fn default() -> Self {
        MediaMetrics {
            requests: Default::default(),
            round_trip: std::array::from_fn(|_| Histogram::over(&NG_BUCKETS_MICROS)),
            anchored: AtomicU64::new(0),
            unanchored: AtomicU64::new(0),
        }
    }
}

/// Every counter of the core. Shared by all workers (`Sync`).
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    calls: [[AtomicU64; 4]; 3],
    failovers: [AtomicU64; 3],
    auth_failures: AtomicU64,
    challenges: AtomicU64,
    bans: AtomicU64,
    /// [sent by our timers, received from a peer and absorbed].
    retransmissions: [AtomicU64; 2],
    parse_errors: AtomicU64,
    refusals: [AtomicU64; Refusal::ALL.len()],
    /// Responses that matched no client transaction of ours: dropped, never relayed.
    stray_responses: AtomicU64,
    /// Forwards (and messages built for a branch) that failed, by reason.
    forward_errors: [AtomicU64; ForwardError::REASONS.len()],
    /// INVITE sent on a branch → its first provisional response (100 excluded: it is
    /// hop-by-hop).
    first_provisional: [Histogram; 3],
    /// INVITE sent on a branch → its final response.
    final_response: [Histogram; 3],
    /// Late 2xx dialogs the proxy ACKed and BYEd itself, and their BYEs' outcomes.
    late_2xx: AtomicU64,
    late_byes: [AtomicU64; 3],
    registrations: [AtomicU64; RegisterOutcome::ALL.len()],
    /// Keep-alives sent to bindings behind NAT.
    keepalives: AtomicU64,
    media: MediaMetrics,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
        Direction::OnNet => 2,
    }
}

impl ProxyMetrics {
    /// An NG request ended with `outcome`; `took` since it was first sent when a reply
    /// (or the last timeout) ended it.
    pub(crate) fn media_request(
        &self,
        command: Command,
        outcome: NgOutcome,
        took: Option<Duration>,
    ) {
        let c = command_index(command);
        bump(&self.media.requests[c][outcome as usize]);
        if let Some(took) = took {
            self.media.round_trip[c].observe(took);
        }
    }

    /// NG requests of `command` (offer, answer, delete) that ended with `outcome`.
    pub fn media_requests(&self, command: &str, outcome: NgOutcome) -> u64 {
        NG_COMMANDS
            .iter()
            .find(|(_, name)| *name == command)
            .map_or(0, |(c, _)| {
                self.media.requests[command_index(*c)][outcome as usize].load(Ordering::Relaxed)
            })
    }

    /// A call's media was anchored (its offer answered).
    pub(crate) fn call_anchored(&self) {
        bump(&self.media.anchored);
    }

    /// A `process` call went on without anchoring (relay failed, `on_failure: bypass`).
    pub(crate) fn call_unanchored(&self) {
        bump(&self.media.unanchored);
    }

    /// Calls anchored since start.
    pub fn calls_anchored(&self) -> u64 {
        self.media.anchored.load(Ordering::Relaxed)
    }

    /// A call ended with `outcome`.
    pub fn call_ended(&self, direction: Direction, outcome: Outcome) {
        bump(&self.calls[dir_index(direction)][outcome as usize]);
    }

    /// An attempt failed and the next one started, for `reason`.
    pub fn failover(&self, reason: FailoverReason) {
        bump(&self.failovers[reason as usize]);
    }

    /// A REGISTER ended with `outcome`.
    pub fn registration(&self, outcome: RegisterOutcome) {
        bump(&self.registrations[outcome as usize]);
    }

    /// REGISTERs that ended with `outcome` so far (tests).
    pub fn registrations(&self, outcome: RegisterOutcome) -> u64 {
        self.registrations[outcome as usize].load(Ordering::Relaxed)
    }

    /// A keep-alive was sent to a binding behind NAT.
    pub fn keepalive_sent(&self) {
        bump(&self.keepalives);
    }

    /// A digest authentication failed.
    pub fn auth_failure(&self) {
        bump(&self.auth_failures);
    }

    /// A 407 sent to a request (no credentials, stale or replayed nonce).
    pub fn challenge(&self) {
        bump(&self.challenges);
    }

    /// A source was banned.
    pub fn ban(&self) {
        bump(&self.bans);
    }

    /// A request or response we sent again (timer A/E/G).
    pub fn retransmission_sent(&self) {
        bump(&self.retransmissions[0]);
    }

    /// A peer's retransmission absorbed by a transaction (request, or a final response
    /// ACKed again).
    pub fn retransmission_received(&self) {
        bump(&self.retransmissions[1]);
    }

    /// A message could not be parsed.
    pub fn parse_error(&self) {
        bump(&self.parse_errors);
    }

    /// A request was refused by the proxy itself, for `why`.
    pub fn refusal(&self, why: Refusal) {
        bump(&self.refusals[why as usize]);
    }

    /// A response matched no client transaction of ours and was dropped.
    pub fn stray_response(&self) {
        bump(&self.stray_responses);
    }

    /// A forward failed (counted by [`ForwardError::reason`]).
    pub fn forward_error(&self, why: ForwardError) {
        bump(&self.forward_errors[why.reason_index()]);
    }

    /// Forwards failed with the reason `label` so far (for tests).
    pub fn forward_errors(&self, label: &str) -> u64 {
        ForwardError::REASONS
            .iter()
            .position(|r| *r == label)
            .map_or(0, |i| self.forward_errors[i].load(Ordering::Relaxed))
    }

    /// Requests refused for `why` so far (for tests).
    pub fn refusals(&self, why: Refusal) -> u64 {
        self.refusals[why as usize].load(Ordering::Relaxed)
    }

    /// Stray responses so far (for tests).
    pub fn stray_responses(&self) -> u64 {
        self.stray_responses.load(Ordering::Relaxed)
    }

    /// A 2xx on a branch the proxy cancelled itself: a dialog it ACKs and BYEs.
    pub fn late_2xx_hung_up(&self) {
        bump(&self.late_2xx);
    }

    /// A BYE the proxy sent to end a late 2xx dialog ended with `outcome`.
    pub fn late_bye_ended(&self, outcome: LateByeOutcome) {
        bump(&self.late_byes[outcome as usize]);
    }

    /// Late 2xx dialogs hung up so far (for tests).
    pub fn late_2xx(&self) -> u64 {
        self.late_2xx.load(Ordering::Relaxed)
    }

    /// Late-2xx BYEs that ended with `outcome` so far (for tests).
    pub fn late_byes(&self, outcome: LateByeOutcome) -> u64 {
        self.late_byes[outcome as usize].load(Ordering::Relaxed)
    }

    /// An INVITE branch had its first provisional other than 100 after `took`.
    pub fn first_provisional(&self, direction: Direction, took: Duration) {
        self.first_provisional[dir_index(direction)].observe(took);
    }

    /// An INVITE branch had its final response after `took`.
    pub fn final_response(&self, direction: Direction, took: Duration) {
        self.final_response[dir_index(direction)].observe(took);
    }

    /// Calls that ended `direction`/`outcome` so far (for tests).
    pub fn calls(&self, direction: Direction, outcome: Outcome) -> u64 {
        self.calls[dir_index(direction)][outcome as usize].load(Ordering::Relaxed)
    }

    /// Failovers for `reason` so far (for tests).
    pub fn failovers(&self, reason: FailoverReason) -> u64 {
        self.failovers[reason as usize].load(Ordering::Relaxed)
    }

    /// Failed authentications so far (for tests).
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    /// 407 challenges sent so far (for tests).
    pub fn challenges(&self) -> u64 {
        self.challenges.load(Ordering::Relaxed)
    }

    /// Bans so far (for tests).
    pub fn bans(&self) -> u64 {
        self.bans.load(Ordering::Relaxed)
    }

    /// (sent, received) retransmissions.
    pub fn retransmissions(&self) -> (u64, u64) {
        (
            self.retransmissions[0].load(Ordering::Relaxed),
            self.retransmissions[1].load(Ordering::Relaxed),
        )
    }

    /// Unparseable messages so far (for tests).
    pub fn parse_errors(&self) -> u64 {
        self.parse_errors.load(Ordering::Relaxed)
    }

    /// Observations of the first-provisional and final-response histograms.
    pub fn response_times_observed(&self, direction: Direction) -> (u64, u64) {
        let i = dir_index(direction);
        (
            self.first_provisional[i].count(),
            self.final_response[i].count(),
        )
    }

    /// The Prometheus text of every counter.
    pub fn render(&self, out: &mut String) {
        self.render_media(out);
        family(
            out,
            "trunkstore_calls_total",
            "counter",
            "Calls by direction and outcome.",
        );
        for d in DIRECTIONS {
            for o in Outcome::ALL {
                let n = self.calls(d, o);
                let _ = writeln!(
                    out,
                    "trunkstore_calls_total{{direction=\"{}\",outcome=\"{}\"}} {n}",
                    d.as_str(),
                    o.label()
                );
            }
        }
        family(
            out,
            "trunkstore_failovers_total",
            "counter",
            "Failovers by reason.",
        );
        for r in FailoverReason::ALL {
            let n = self.failovers[r as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "trunkstore_failovers_total{{reason=\"{}\"}} {n}",
                r.label()
            );
        }
        family(
            out,
            "trunkstore_registrations_total",
            "counter",
            "REGISTER requests by outcome.",
        );
        for o in RegisterOutcome::ALL {
            let n = self.registrations[o as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "trunkstore_registrations_total{{outcome=\"{}\"}} {n}",
                o.label()
            );
        }
        for (name, help, counter) in [
            (
                "trunkstore_registrar_keepalives_total",
                "Keep-alives (OPTIONS over UDP, CRLF over TCP) sent to bindings behind NAT.",
                &self.keepalives,
            ),
            (
                "trunkstore_auth_failures_total",
                "Failed authentications.",
                &self.auth_failures,
            ),
            (
                "trunkstore_auth_challenges_total",
                "407 challenges sent (no credentials, stale or replayed nonce).",
                &self.challenges,
            ),
            (
                "trunkstore_bans_total",
                "Sources banned after repeated failures.",
                &self.bans,
            ),
            (
                "trunkstore_parse_errors_total",
                "Messages that could not be parsed.",
                &self.parse_errors,
            ),
            (
                "trunkstore_stray_responses_total",
                "Responses matching no transaction of ours: dropped.",
                &self.stray_responses,
            ),
        ] {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
        family(
            out,
            "trunkstore_refusals_total",
            "counter",
            "Requests the proxy refused itself, by reason.",
        );
        for r in Refusal::ALL {
            let _ = writeln!(
                out,
                "trunkstore_refusals_total{{reason=\"{}\"}} {}",
                r.label(),
                self.refusals[r as usize].load(Ordering::Relaxed)
            );
        }
        family(
            out,
            "trunkstore_forward_errors_total",
            "counter",
            "Forwards that failed inside the proxy (nothing or a local error sent), by reason.",
        );
        for (reason, counter) in ForwardError::REASONS.iter().zip(&self.forward_errors) {
            let _ = writeln!(
                out,
                "trunkstore_forward_errors_total{{reason=\"{reason}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        family(
            out,
            "trunkstore_retransmissions_total",
            "counter",
            "SIP retransmissions sent by our timers or received and absorbed.",
        );
        for (kind, counter) in ["sent", "received"].iter().zip(&self.retransmissions) {
            let _ = writeln!(
                out,
                "trunkstore_retransmissions_total{{kind=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        family(
            out,
            "trunkstore_late_2xx_total",
            "counter",
            "2xx answers on branches the proxy had cancelled itself, ACKed and hung up with a BYE.",
        );
        let _ = writeln!(
            out,
            "trunkstore_late_2xx_total {}",
            self.late_2xx.load(Ordering::Relaxed)
        );
        family(
            out,
            "trunkstore_late_2xx_byes_total",
            "counter",
            "BYEs for late 2xx answers by outcome (answered, refused, timeout: no answer by timer F).",
        );
        for o in LateByeOutcome::ALL {
            let _ = writeln!(
                out,
                "trunkstore_late_2xx_byes_total{{outcome=\"{}\"}} {}",
                o.label(),
                self.late_byes(o)
            );
        }
        for (name, help, hists) in [
            (
                "trunkstore_first_provisional_seconds",
                "INVITE sent to a branch to its first provisional response (not 100).",
                &self.first_provisional,
            ),
            (
                "trunkstore_final_response_seconds",
                "INVITE sent to a branch to its final response.",
                &self.final_response,
            ),
        ] {
            family(out, name, "histogram", help);
            for d in DIRECTIONS {
                let labels = format!("direction=\"{}\"", d.as_str());
                hists[dir_index(d)].render(out, name, &labels);
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render() {
        let m = ProxyMetrics::default();
        m.call_ended(Direction::Inbound, Outcome::Answered);
        m.call_ended(Direction::Inbound, Outcome::Answered);
        m.call_ended(Direction::Outbound, Outcome::Rejected);
        m.failover(FailoverReason::Timeout);
        m.auth_failure();
        m.first_provisional(Direction::Inbound, Duration::from_millis(3));
        m.first_provisional(Direction::Inbound, Duration::from_millis(70));
        m.final_response(Direction::Inbound, Duration::from_secs(60));
        m.late_2xx_hung_up();
        m.late_bye_ended(LateByeOutcome::Timeout);
        let mut page = String::new();
        m.render(&mut page);
        for line in [
            "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"} 2",
            "trunkstore_calls_total{direction=\"outbound\",outcome=\"rejected\"} 1",
            "trunkstore_failovers_total{reason=\"timeout\"} 1",
            "trunkstore_auth_failures_total 1",
            "trunkstore_late_2xx_total 1",
            "trunkstore_late_2xx_byes_total{outcome=\"timeout\"} 1",
            "trunkstore_late_2xx_byes_total{outcome=\"answered\"} 0",
            "trunkstore_first_provisional_seconds_bucket{direction=\"inbound\",le=\"0.005\"} 1",
            "trunkstore_first_provisional_seconds_bucket{direction=\"inbound\",le=\"0.1\"} 2",
            "trunkstore_first_provisional_seconds_count{direction=\"inbound\"} 2",
            "trunkstore_final_response_seconds_bucket{direction=\"inbound\",le=\"30\"} 0",
            "trunkstore_final_response_seconds_bucket{direction=\"inbound\",le=\"+Inf\"} 1",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line}:\n{page}");
        }
    }
}
