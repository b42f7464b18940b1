//! Why the proxy could not forward a message, or build one it owes a peer (CANCEL, ACK,
//! a relayed response, a local answer). Counted in `/metrics` by [`ForwardError::reason`]
//! and logged at warn with the Call-ID. Base layer: it uses no other module.

use std::fmt;

/// The edit of the splice editor that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Setting the attempt's (or the strict router's) Request-URI.
    RequestUri,
    /// Popping our Route, or removing a strict router's.
    Route,
    /// `received`/`rport` on the sender's Via.
    ViaReceived,
    /// Pushing our Via.
    PushVia,
    /// Decrementing Max-Forwards.
    MaxForwards,
    /// Prepending our Record-Route.
    RecordRoute,
    /// Removing identity headers or credentials by the trust rules (§5.3).
    Trust,
    /// The caller-ID rewrite (§5.3).
    CallerId,
    /// Consuming our own realm's `Proxy-Authorization` (RFC 3261 §22.3).
    Credentials,
    /// Adding the route's `sip_headers` (§4.4).
    SipHeaders,
    /// Removing our Via from a response.
    TopVia,
    /// Turning early media into a plain 180 (§4.6).
    PlainRinging,
    /// Putting rtpengine's SDP in place of the body (§4.7).
    Sdp,
}

impl Edit {
    fn name(self) -> &'static str {
        match self {
            Edit::RequestUri => "request-uri",
            Edit::Route => "route",
            Edit::ViaReceived => "via received",
            Edit::PushVia => "push via",
            Edit::MaxForwards => "max-forwards",
            Edit::RecordRoute => "record-route",
            Edit::Trust => "trust rules",
            Edit::CallerId => "caller id",
            Edit::Credentials => "credentials",
            Edit::SipHeaders => "sip_headers",
            Edit::TopVia => "top via",
            Edit::PlainRinging => "plain ringing",
            Edit::Sdp => "sdp",
        }
    }
}

/// Why a forward failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardError {
    /// The attempt's target has no address (the core does no DNS): 480 upstream.
    NoNextHop,
    /// The transaction already has as many branches as a branch index can name.
    TooManyBranches,
    /// Our Via does not fit its buffer (an advertised host far too long).
    ViaTooLong,
    /// An edit of the message failed: which one, and the codec's error.
    Edit(Edit, trunkstore_sip::Error),
    /// The request sent on a branch could not be read again to build its CANCEL or
    /// ACK (or is no longer kept).
    RequestUnparseable,
    /// The codec's builder refused: which message.
    Build(&'static str),
    /// A response with no Via left once ours is removed: it was meant for the proxy
    /// (§16.7 step 3), so it is not relayed.
    NoViaLeft,
    /// A `sips:` Request-URI whose next hop is not TLS (RFC 5630: never downgraded):
    /// 480 upstream.
    InsecureHop,
}

impl ForwardError {
    /// Every reason label, in `/metrics` order.
    pub const REASONS: [&'static str; 8] = [
        "no_next_hop",
        "too_many_branches",
        "via_too_long",
        "edit",
        "request_unparseable",
        "build",
        "no_via_left",
        "sips_not_tls",
    ];

    /// Its `/metrics` label (an index into [`ForwardError::REASONS`]).
    pub fn reason_index(self) -> usize {
        match self {
            ForwardError::NoNextHop => 0,
            ForwardError::TooManyBranches => 1,
            ForwardError::ViaTooLong => 2,
            ForwardError::Edit(..) => 3,
            ForwardError::RequestUnparseable => 4,
            ForwardError::Build(_) => 5,
            ForwardError::NoViaLeft => 6,
            ForwardError::InsecureHop => 7,
        }
    }

    /// Its `/metrics` label.
    pub fn reason(self) -> &'static str {
        Self::REASONS[self.reason_index()]
    }
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::NoNextHop => write!(f, "no next hop"),
            ForwardError::TooManyBranches => write!(f, "too many branches"),
            ForwardError::ViaTooLong => write!(f, "our Via does not fit"),
            ForwardError::Edit(e, why) => write!(f, "edit {} failed: {why}", e.name()),
            ForwardError::RequestUnparseable => write!(f, "our own request is unreadable"),
            ForwardError::Build(what) => write!(f, "cannot build the {what}"),
            ForwardError::NoViaLeft => write!(f, "no Via left once ours is removed"),
            ForwardError::InsecureHop => write!(f, "a sips: target over a transport not TLS"),
        }
    }
}

impl std::error::Error for ForwardError {}

/// `Result` of an edit, naming the edit on failure.
pub(crate) trait EditResult<T> {
    /// The codec's error, as a failed `edit`.
    fn edit(self, edit: Edit) -> Result<T, ForwardError>;
}

impl<T> EditResult<T> for Result<T, trunkstore_sip::Error> {
    fn edit(self, edit: Edit) -> Result<T, ForwardError> {
        self.map_err(|e| ForwardError::Edit(edit, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_text() {
        let e = ForwardError::Edit(Edit::PushVia, trunkstore_sip::Error::TooLarge("headers"));
        assert_eq!(e.reason(), "edit");
        assert!(e.to_string().starts_with("edit push via failed"), "{e}");
        assert_eq!(ForwardError::NoNextHop.reason(), "no_next_hop");
        for (i, r) in ForwardError::REASONS.iter().enumerate() {
            assert!(!r.is_empty() && ForwardError::REASONS[..i].iter().all(|o| o != r));
        }
    }
}
