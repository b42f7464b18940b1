//! rtpengine's NG control protocol: one UDP datagram per request, `<cookie> <bencoded
//! dictionary>`, answered by `<same cookie> <bencoded dictionary>` whose `result` is
//! `ok`, `pong` or `error` (with `error-reason`).
//!
//! This module only builds request bodies and reads replies; the cookie, the instance and
//! the retransmissions are the client's (`client.rs`).

use bytes::Bytes;

use super::bencode::{DecodeError, Value};

/// Longest `error-reason` kept from a reply (it ends up in logs): rtpengine's reasons are
/// one short sentence.
const MAX_REASON: usize = 200;

/// Options of an offer or answer beyond the session identifiers; empty ones are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// `flags`, e.g. `trust-address`, `symmetric`.
    pub(crate) flags: Vec<String>,
    /// `replace`, e.g. `origin`, `session-connection`.
    pub(crate) replace: Vec<String>,
    /// `ICE`, e.g. `remove`.
    pub(crate) ice: Option<String>,
    /// `direction`: the two interfaces, e.g. `["external", "internal"]`.
    pub(crate) direction: Vec<String>,
}

/// The dialog a media request is about: its Call-ID and tags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session<'a> {
    /// The Call-ID.
    pub(crate) call_id: &'a [u8],
    /// The caller's tag.
    pub(crate) from_tag: &'a [u8],
}

/// `ping`: asks an instance whether it is alive (answered `pong`).
#[cfg(test)]
pub(crate) fn ping() -> Vec<u8> {
    body(vec![entry("command", Value::bytes("ping"))])
}

/// `offer`: the caller's SDP, rewritten by rtpengine to point at itself.
pub(crate) fn offer(session: Session<'_>, sdp: &[u8], options: &Options) -> Vec<u8> {
    let mut entries = session_entries("offer", session);
    entries.push(entry("sdp", Value::bytes(sdp)));
    push_options(&mut entries, options);
    body(entries)
}

/// `answer`: the callee's SDP for the dialog the offer opened, identified by `to_tag`.
pub(crate) fn answer(
    session: Session<'_>,
    to_tag: &[u8],
    sdp: &[u8],
    options: &Options,
) -> Vec<u8> {
    let mut entries = session_entries("answer", session);
    entries.push(entry("to-tag", Value::bytes(to_tag)));
    entries.push(entry("sdp", Value::bytes(sdp)));
    push_options(&mut entries, options);
    body(entries)
}

/// `delete`: the call is over; rtpengine frees its ports.
pub(crate) fn delete(session: Session<'_>) -> Vec<u8> {
    body(session_entries("delete", session))
}

/// `delete` of one branch of the call (the dialogue with `to_tag`): a callee that is not
/// the call's any more (the plan failed over) frees its ports; the caller's stay.
pub(crate) fn delete_branch(session: Session<'_>, to_tag: &[u8]) -> Vec<u8> {
    let mut entries = session_entries("delete", session);
    entries.push(entry("to-tag", Value::bytes(to_tag)));
    body(entries)
}

fn entry(key: &str, value: Value) -> (Vec<u8>, Value) {
    (key.as_bytes().to_vec(), value)
}

fn session_entries(command: &str, s: Session<'_>) -> Vec<(Vec<u8>, Value)> {
    vec![
        entry("command", Value::bytes(command)),
        entry("call-id", Value::bytes(s.call_id)),
        entry("from-tag", Value::bytes(s.from_tag)),
    ]
}

fn push_options(entries: &mut Vec<(Vec<u8>, Value)>, o: &Options) {
    if !o.flags.is_empty() {
        entries.push(entry("flags", Value::strings(&o.flags)));
    }
    if !o.replace.is_empty() {
        entries.push(entry("replace", Value::strings(&o.replace)));
    }
    if let Some(ice) = &o.ice {
        entries.push(entry("ICE", Value::bytes(ice)));
    }
    if !o.direction.is_empty() {
        entries.push(entry("direction", Value::strings(&o.direction)));
    }
}

fn body(entries: Vec<(Vec<u8>, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    Value::Dict(entries).encode(&mut out);
    out
}

/// The datagram: `<cookie> <body>`.
pub(crate) fn datagram(cookie: &[u8], body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(cookie.len() + 1 + body.len());
    out.extend_from_slice(cookie);
    out.push(b' ');
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// A reply, matched to its request by the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The cookie of the request answered.
    pub(crate) cookie: Bytes,
    /// What rtpengine said.
    pub(crate) result: Outcome,
}

/// The `result` of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `ok`, with the rewritten SDP for an offer or answer.
    Ok {
        /// `sdp`, when the reply has one.
        sdp: Option<Bytes>,
    },
    /// `pong`: the answer to a ping.
    Pong,
    /// `error` (its `error-reason`, cut to 200 bytes), or any other result rtpengine may
    /// give (`load limit`): the request was not carried out.
    Error(String),
}

/// Why a datagram is not an NG reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyError {
    /// No space separating a non-empty cookie from the body.
    NoCookie,
    /// The body is not bencode.
    Bencode(DecodeError),
    /// The body is not a dictionary with a byte-string `result`.
    NoResult,
}

/// Splits `<cookie> <body>` at the first space; the cookie must not be empty.
pub(crate) fn split_cookie(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = datagram.iter().position(|&b| b == b' ')?;
    (space > 0).then(|| (&datagram[..space], &datagram[space + 1..]))
}

impl Reply {
    /// Reads a reply datagram.
    pub(crate) fn parse(datagram: &[u8]) -> Result<Reply, ReplyError> {
        let (cookie, body) = split_cookie(datagram).ok_or(ReplyError::NoCookie)?;
        let value = Value::decode(body).map_err(ReplyError::Bencode)?;
        let result = value
            .get(b"result")
            .and_then(Value::as_bytes)
            .ok_or(ReplyError::NoResult)?;
        let result = match result {
            b"ok" => Outcome::Ok {
                sdp: value
                    .get(b"sdp")
                    .and_then(Value::as_bytes)
                    .map(Bytes::copy_from_slice),
            },
            b"pong" => Outcome::Pong,
            b"error" => Outcome::Error(reason(value.get(b"error-reason"))),
            other => Outcome::Error(format!("result {}", text(other))),
        };
        Ok(Reply {
            cookie: Bytes::copy_from_slice(cookie),
            result,
        })
    }
}

fn reason(v: Option<&Value>) -> String {
    match v.and_then(Value::as_bytes) {
        Some(r) => text(r),
        None => "no error-reason".into(),
    }
}

/// Printable text of at most [`MAX_REASON`] bytes: the reason goes to logs.
fn text(b: &[u8]) -> String {
    let b = &b[..b.len().min(MAX_REASON)];
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Session<'static> = Session {
        call_id: b"abc@host",
        from_tag: b"ft1",
    };

    #[test]
    fn ping_body() {
        assert_eq!(ping(), b"d7:command4:pinge");
        assert_eq!(&datagram(b"5_1", &ping())[..], b"5_1 d7:command4:pinge");
    }

    #[test]
    fn offer_carries_session_sdp_and_options() {
        let options = Options {
            flags: vec!["trust-address".into()],
            replace: vec!["origin".into(), "session-connection".into()],
            ice: Some("remove".into()),
            direction: vec!["external".into(), "internal".into()],
        };
        let v = Value::decode(&offer(S, b"v=0\r\n", &options)).unwrap();
        let get = |k: &[u8]| v.get(k).cloned();
        assert_eq!(get(b"command"), Some(Value::bytes("offer")));
        assert_eq!(get(b"call-id"), Some(Value::bytes("abc@host")));
        assert_eq!(get(b"from-tag"), Some(Value::bytes("ft1")));
        assert_eq!(get(b"sdp"), Some(Value::bytes("v=0\r\n")));
        assert_eq!(get(b"flags"), Some(Value::strings(["trust-address"])));
        assert_eq!(
            get(b"replace"),
            Some(Value::strings(["origin", "session-connection"]))
        );
        assert_eq!(get(b"ICE"), Some(Value::bytes("remove")));
        assert_eq!(
            get(b"direction"),
            Some(Value::strings(["external", "internal"]))
        );
        assert_eq!(get(b"to-tag"), None);
    }

    #[test]
    fn empty_options_are_not_sent() {
        assert_eq!(
            offer(S, b"x", &Options::default()),
            b"d7:call-id8:abc@host7:command5:offer8:from-tag3:ft13:sdp1:xe"
        );
    }

    #[test]
    fn answer_adds_the_to_tag_and_delete_names_the_session() {
        let v = Value::decode(&answer(S, b"tt9", b"v=0", &Options::default())).unwrap();
        assert_eq!(v.get(b"command"), Some(&Value::bytes("answer")));
        assert_eq!(v.get(b"to-tag"), Some(&Value::bytes("tt9")));
        assert_eq!(
            delete(S),
            b"d7:call-id8:abc@host7:command6:delete8:from-tag3:ft1e"
        );
    }

    #[test]
    fn replies_are_read() {
        let ok = Reply::parse(b"c1 d3:sdp3:v=06:result2:oke").unwrap();
        assert_eq!(&ok.cookie[..], b"c1");
        assert_eq!(
            ok.result,
            Outcome::Ok {
                sdp: Some(Bytes::from_static(b"v=0"))
            }
        );
        let no_sdp = Reply::parse(b"c1 d6:result2:oke").unwrap();
        assert_eq!(no_sdp.result, Outcome::Ok { sdp: None });
        let pong = Reply::parse(b"c2 d6:result4:ponge").unwrap();
        assert_eq!(pong.result, Outcome::Pong);
        let err = Reply::parse(b"c3 d12:error-reason15:Unknown call-id6:result5:errore").unwrap();
        assert_eq!(err.result, Outcome::Error("Unknown call-id".into()));
        let load = Reply::parse(b"c4 d6:result10:load limite").unwrap();
        assert_eq!(load.result, Outcome::Error("result load limit".into()));
    }

    #[test]
    fn hostile_replies_are_refused() {
        assert_eq!(Reply::parse(b"nocookie"), Err(ReplyError::NoCookie));
        assert_eq!(Reply::parse(b" d6:result2:oke"), Err(ReplyError::NoCookie));
        assert_eq!(
            Reply::parse(b"c1 d6:result2:ok"),
            Err(ReplyError::Bencode(DecodeError::Truncated))
        );
        assert_eq!(Reply::parse(b"c1 d3:sdp1:xe"), Err(ReplyError::NoResult));
        assert_eq!(Reply::parse(b"c1 l2:oke"), Err(ReplyError::NoResult));
        assert_eq!(
            Reply::parse(b"c1 di1ee"),
            Err(ReplyError::Bencode(DecodeError::Key))
        );
        // A long reason with control characters is cut and made printable.
        let reason = [b'\n'; 500];
        let mut d = b"c1 d12:error-reason500:".to_vec();
        d.extend_from_slice(&reason);
        d.extend_from_slice(b"6:result5:errore");
        let Outcome::Error(r) = Reply::parse(&d).unwrap().result else {
            panic!("not an error");
        };
        assert_eq!(r, "?".repeat(MAX_REASON));
    }
}
