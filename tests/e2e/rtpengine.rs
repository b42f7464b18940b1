//! A real media relay: sipwise rtpengine (Debian package `rtpengine-daemon`, 10.5.3.5 on
//! bookworm), user space only, driven over its NG control protocol (bencode over UDP).
//! Issue 16 (media anchoring): media.rs runs the proxy against it.
//!
//! # Command line
//!
//! ```text
//! rtpengine --config-file=none --foreground --log-stderr --log-level=6 --table=-1 \
//!     --interface=127.0.0.1 --listen-ng=127.0.0.1:<ng port> \
//!     --port-min=<even a> --port-max=<a + 39> --delete-delay=0 --num-threads=2
//! ```
//!
//! - `--config-file=none`: otherwise it reads /etc/rtpengine/rtpengine.conf (the Debian
//!   service's: NG on localhost:2223, CLI 2224, HTTP 2225, ports 30000-40000, kernel
//!   table 0, recording into /var/spool/rtpengine). Nothing of the system's is touched.
//! - `--table=-1`: no kernel forwarding at all, so no kernel module and no iptables
//!   (`--no-fallback` would do the opposite: refuse to start without the module).
//! - `--foreground --log-stderr`: no fork, no syslog; the log is `rtpengine.out` in the
//!   test directory. Level 6 logs every NG command and its reply time.
//! - `--delete-delay=0`: by default a deleted call stays in `list` for 30 s.
//! - The RTP range is taken below Linux's ephemeral range (32768+) so it never holds a
//!   port [`free_port`] hands out, and outside baresip's 20000-29999 (baresip.rs) and the
//!   Debian service's 30000-40000: a block in 10000-19999 that binds right now.
//!
//! It runs as root here (the tests run as root) but needs no privilege: no kernel
//! module, ports above 1024. Start-up to a `pong` takes well under 100 ms (it generates
//! a DTLS certificate first). The package's systemd units are enabled by the install but
//! not started in this container (policy-rc.d); tests/run.sh stops and disables them
//! where systemd runs, so the tests never share a machine with the service's ports.
//!
//! # NG replies (bencoded dictionaries; every request is `<cookie> <dict>`, the reply
//! `<same cookie> <dict>`)
//!
//! - `ping` → `{result: "pong"}`.
//! - `offer` / `answer` (`call-id`, `from-tag`, [`to-tag`], `sdp`) → `{result: "ok",
//!   sdp}`: the SDP to forward, with `c=` naming the `--interface` address and `m=` ports
//!   from the range (RTP even, `a=rtcp:` the next odd port). The offer's SDP is for the
//!   callee (the port the callee sends to); the answer's is for the caller. Each side
//!   takes an RTP+RTCP pair, so a call holds 4 ports of the range.
//! - `list` → `{result: "ok", calls: [call-id…]}`.
//! - `query`, and `delete` with a `from-tag` → `{result: "ok", created, created_us,
//!   last signal, SSRC, tags: {<tag>: {medias: [{streams: [{local port, endpoint,
//!   stats…}]}]…}}, totals: {RTP: {packets, bytes, errors}, RTCP…}}`. `delete` with only the `call-id` removes the
//!   whole call too but replies a bare `{result: "ok"}` (no statistics): `query` first
//!   when the counts matter.
//! - Failures → `{result: "error", error-reason}`: e.g. "Unrecognized command",
//!   "Unknown call-id", "Failed to parse SDP".
//!
//! # Surprises
//!
//! - `flags: ["replace-origin", "replace-session-connection"]` (the old spelling, still in
//!   many Kamailio configs) is ignored by 10.5 with a log warning "Unknown flag
//!   encountered"; the current spelling is `replace: ["origin", "session-connection"]`.
//!   Without it `c=` is rewritten anyway (rtpengine always puts itself in the media path)
//!   but the `o=` line keeps the original address.
//! - The ports given out are not the lowest of the range (it picks pairs at random).
//! - RTP: with both SDPs naming the real sockets, packets flow straight away in both
//!   directions; a caller's packet sent to the port of the answer's SDP arrives at the
//!   callee from the port of the offer's SDP, and the other way round (symmetric RTP, so
//!   each side sees one peer address). No packet is needed first.
//! - Latching (endpoint learning, default `delayed`): until a side's first packet its
//!   media goes to its SDP address; its first packet from elsewhere (NAT) is taken at
//!   once as its address ("Confirmed peer address as …" in the log) and media follows
//!   it.

use std::collections::{BTreeMap, HashSet};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{addr, free_port, Proc, TestDir, LOOPBACK};

/// How long rtpengine may take to answer its first `ping`.
const START_LIMIT: Duration = Duration::from_secs(10);

/// How long one NG exchange may take (retransmissions included; rtpengine answers a
/// retransmitted cookie from its cache instead of running the command twice).
const NG_LIMIT: Duration = Duration::from_secs(3);

/// One NG attempt before the request is sent again.
const NG_RETRY: Duration = Duration::from_millis(500);

/// Ports in an RTP range: 10 calls of 4 ports each.
const RANGE_PORTS: u16 = 40;

/// Where RTP ranges are looked for (see the module doc).
const RANGE_AREA: std::ops::Range<u16> = 10_000..20_000;

/// The `rtpengine` binary. Missing rtpengine is a failure, never a skip (as SIPp).
pub fn rtpengine_binary() -> &'static Path {
    static RTPENGINE: OnceLock<Option<PathBuf>> = OnceLock::new();
    RTPENGINE
        .get_or_init(find_rtpengine)
        .as_deref()
        .unwrap_or_else(|| {
            panic!(
                "rtpengine (Debian package rtpengine-daemon) is not installed: run \
                 ./tests/run.sh, which installs it, or `apt-get install rtpengine-daemon`"
            )
        })
}

fn find_rtpengine() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // Debian puts it in /usr/bin; /usr/sbin in case PATH is a non-root one.
    dirs.push("/usr/sbin".into());
    dirs.into_iter()
        .map(|dir| dir.join("rtpengine"))
        .find(|candidate| candidate.is_file())
}

/// A running rtpengine on loopback, killed when dropped.
pub struct Rtpengine {
    proc: Proc,
    pub ng_port: u16,
    /// The RTP range, both ends included.
    pub port_min: u16,
    pub port_max: u16,
}

impl Rtpengine {
    /// Starts rtpengine in `dir` (log `rtpengine.out`) and waits (bounded) until its NG
    /// port answers `ping` with `pong`.
    pub fn start(dir: &TestDir) -> Rtpengine {
        let ng_port = free_port();
        let port_min = free_rtp_range();
        let port_max = port_min + RANGE_PORTS - 1;
        let mut cmd = Command::new(rtpengine_binary());
        cmd.args(["--config-file=none", "--foreground", "--log-stderr"])
            .args(["--log-level=6", "--table=-1", "--interface=127.0.0.1"])
            .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
            .arg(format!("--port-min={port_min}"))
            .arg(format!("--port-max={port_max}"))
            .args(["--delete-delay=0", "--num-threads=2"]);
        let proc = Proc::spawn("rtpengine", cmd, dir.path());
        let mut engine = Rtpengine {
            proc,
            ng_port,
            port_min,
            port_max,
        };
        engine.wait_ready();
        engine
    }

    /// Pings until `pong`; fails early if rtpengine exits.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self.proc.try_exit() {
                panic!(
                    "rtpengine exited ({status}) before answering ping:\n{}",
                    self.proc.output_tail(4000)
                );
            }
            let socket = ng_socket();
            let reply = exchange(&socket, self.ng_port, b"ready", &ping(), NG_RETRY);
            if reply.is_ok_and(|r| r.text("result") == Some("pong")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rtpengine did not answer ping within {START_LIMIT:?}:\n{}",
                self.proc.output_tail(4000)
            );
        }
    }

    /// One NG command: `request` (a dictionary) with a fresh cookie; the reply
    /// dictionary, or why there is none within [`NG_LIMIT`].
    pub fn ng(&self, request: &Bencode) -> Result<Bencode, String> {
        static COOKIES: AtomicU64 = AtomicU64::new(1);
        let cookie = format!("t{}", COOKIES.fetch_add(1, Ordering::Relaxed));
        let socket = ng_socket();
        let deadline = Instant::now() + NG_LIMIT;
        loop {
            match exchange(&socket, self.ng_port, cookie.as_bytes(), request, NG_RETRY) {
                Ok(reply) => return Ok(reply),
                Err(why) if Instant::now() >= deadline => {
                    return Err(format!(
                        "NG {request}: {why}\n{}",
                        self.proc.output_tail(4000)
                    ))
                }
                Err(_) => continue,
            }
        }
    }

    /// The file its log goes to (`rtpengine.out` in the test directory).
    pub fn log_path(&self) -> &Path {
        &self.proc.output
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        self.proc.output_tail(8000)
    }
}

fn ng_socket() -> UdpSocket {
    UdpSocket::bind((LOOPBACK, 0)).expect("bind NG client socket")
}

/// Sends `<cookie> <request>` once and waits up to `wait` for the reply with that
/// cookie (other datagrams, e.g. late replies to an earlier attempt, are skipped).
fn exchange(
    socket: &UdpSocket,
    ng_port: u16,
    cookie: &[u8],
    request: &Bencode,
    wait: Duration,
) -> Result<Bencode, String> {
    let mut datagram = cookie.to_vec();
    datagram.push(b' ');
    request.encode_into(&mut datagram);
    socket
        .send_to(&datagram, addr(ng_port))
        .map_err(|e| format!("send: {e}"))?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no reply within {wait:?}"));
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let Ok(n) = socket.recv(&mut buf) else {
            // Timed out, or ICMP port unreachable while rtpengine is still starting.
            return Err(format!("no reply within {wait:?}"));
        };
        let Some(body) = buf[..n]
            .strip_prefix(cookie)
            .and_then(|rest| rest.strip_prefix(b" "))
        else {
            continue;
        };
        return Bencode::decode(body).map_err(|why| {
            format!(
                "undecodable reply ({why}): {}",
                String::from_utf8_lossy(body)
            )
        });
    }
}

/// The first port (even) of [`RANGE_PORTS`] ports that all bind on loopback right now,
/// not given to another rtpengine of this process. The search starts at a spot that
/// depends on the process id, so two test processes rarely probe the same block.
fn free_rtp_range() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    let blocks = (RANGE_AREA.end - RANGE_AREA.start) / RANGE_PORTS;
    let first = (std::process::id() % u32::from(blocks)) as u16;
    for i in 0..blocks {
        let start = RANGE_AREA.start + (first + i) % blocks * RANGE_PORTS;
        if !taken.contains(&start) && block_binds(start) {
            taken.insert(start);
            return start;
        }
    }
    panic!("no {RANGE_PORTS} free UDP ports in a row in {RANGE_AREA:?}");
}

/// Whether every port of the block binds (released again at once).
fn block_binds(start: u16) -> bool {
    let sockets: Result<Vec<UdpSocket>, _> = (start..start + RANGE_PORTS)
        .map(|port| UdpSocket::bind((LOOPBACK, port)))
        .collect();
    sockets.is_ok()
}

/// A bencode value (BitTorrent's encoding, which NG uses). Test-only: strings are bytes,
/// dictionaries keep keys sorted as the encoding requires.
#[derive(Clone, Debug, PartialEq)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

/// Nesting deeper than this is refused (rtpengine's replies nest about 8 deep).
const MAX_DEPTH: usize = 32;

impl Bencode {
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Bencode::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(items) => {
                out.push(b'l');
                items.iter().for_each(|item| item.encode_into(out));
                out.push(b'e');
            }
            Bencode::Dict(entries) => {
                out.push(b'd');
                for (key, value) in entries {
                    Bencode::Bytes(key.clone()).encode_into(out);
                    value.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value filling `input`.
    pub fn decode(input: &[u8]) -> Result<Bencode, String> {
        let (value, rest) = decode_value(input, 0)?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(format!("{} bytes after the value", rest.len()))
        }
    }
}

impl std::fmt::Display for Bencode {
    /// The encoded form, lossily as text (for messages).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

fn decode_value(input: &[u8], depth: usize) -> Result<(Bencode, &[u8]), String> {
    if depth > MAX_DEPTH {
        return Err("nested too deep".into());
    }
    match input.first() {
        Some(b'i') => {
            let (digits, rest) = split_at_byte(&input[1..], b'e')?;
            let i = parse_number(digits)?;
            Ok((Bencode::Int(i), rest))
        }
        Some(b'l') => {
            let mut items = Vec::new();
            let mut rest = &input[1..];
            while rest.first() != Some(&b'e') {
                let (item, after) = decode_value(rest, depth + 1)?;
                items.push(item);
                rest = after;
            }
            Ok((Bencode::List(items), &rest[1..]))
        }
        Some(b'd') => {
            let mut entries = BTreeMap::new();
            let mut rest = &input[1..];
            while rest.first() != Some(&b'e') {
                let (key, after) = decode_bytes(rest)?;
                let (value, after) = decode_value(after, depth + 1)?;
                entries.insert(key, value);
                rest = after;
            }
            Ok((Bencode::Dict(entries), &rest[1..]))
        }
        Some(b'0'..=b'9') => {
            let (bytes, rest) = decode_bytes(input)?;
            Ok((Bencode::Bytes(bytes), rest))
        }
        Some(other) => Err(format!("unexpected byte {:?}", char::from(*other))),
        None => Err("unexpected end".into()),
    }
}

/// `<length>:<bytes>`.
fn decode_bytes(input: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let (digits, rest) = split_at_byte(input, b':')?;
    let len = usize::try_from(parse_number(digits)?).map_err(|_| "negative length")?;
    if rest.len() < len {
        return Err(format!("string of {len} bytes, {} left", rest.len()));
    }
    Ok((rest[..len].to_vec(), &rest[len..]))
}

fn split_at_byte(input: &[u8], end: u8) -> Result<(&[u8], &[u8]), String> {
    let at = input
        .iter()
        .position(|&b| b == end)
        .ok_or_else(|| format!("missing {:?}", char::from(end)))?;
    Ok((&input[..at], &input[at + 1..]))
}

fn parse_number(digits: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(digits)))
}

/// A bencode string.
pub fn s(text: &str) -> Bencode {
    Bencode::Bytes(text.as_bytes().to_vec())
}

/// A bencode list of strings.
pub fn strings(items: &[&str]) -> Bencode {
    Bencode::List(items.iter().map(|item| s(item)).collect())
}

/// A bencode dictionary.
pub fn dict<const N: usize>(entries: [(&str, Bencode); N]) -> Bencode {
    Bencode::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

fn ping() -> Bencode {
    dict([("command", s("ping"))])
}

// Tests: a real rtpengine per test, real UDP on loopback.

/// A minimal audio offer/answer body: PCMU from 127.0.0.1:`port`, origin `origin`.
fn audio_sdp(origin: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {origin}\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\n"
    )
}

/// `sdp`'s line starting with `prefix`, without the prefix.
fn sdp_line<'a>(sdp: &'a str, prefix: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| l.strip_prefix(prefix))
}

/// The audio port of `sdp`'s `m=` line.
fn audio_port(sdp: &str) -> Option<u16> {
    sdp_line(sdp, "m=audio ")?.split(' ').next()?.parse().ok()
}

/// Sends `request` and checks `result: ok`; the reply.
fn ok(engine: &Rtpengine, request: &Bencode) -> Bencode {
    let reply = engine.ng(request).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(
        reply.text("result"),
        Some("ok"),
        "{request} → {reply}\n{}",
        engine.log()
    );
    reply
}

/// The SDP of an offer/answer reply, checked: rtpengine's address, a port of its
/// range other than `original`. The port.
fn relayed_port(engine: &Rtpengine, reply: &Bencode, original: u16) -> u16 {
    let sdp = reply.text("sdp").expect("reply has an sdp");
    assert_eq!(sdp_line(sdp, "c="), Some("IN IP4 127.0.0.1"), "{sdp}");
    assert_eq!(sdp_line(sdp, "o="), Some("- 1 1 IN IP4 127.0.0.1"), "{sdp}");
    let port = audio_port(sdp).expect("m=audio port");
    assert_ne!(port, original, "{sdp}");
    assert!(
        (engine.port_min..=engine.port_max).contains(&port),
        "{port} not in {}-{}: {sdp}",
        engine.port_min,
        engine.port_max
    );
    port
}

fn listed_calls(engine: &Rtpengine) -> Vec<Bencode> {
    let reply = ok(engine, &dict([("command", s("list"))]));
    match reply.get("calls") {
        Some(Bencode::List(calls)) => calls.clone(),
        _ => panic!("list without calls: {reply}"),
    }
}

/// Offer from A (media at `caller_port`) and answer from B (`callee_port`) for
/// `call_id`; the ports rtpengine gave: (for the callee, for the caller).
fn offer_answer(
    engine: &Rtpengine,
    call_id: &str,
    caller_port: u16,
    callee_port: u16,
) -> (u16, u16) {
    // The origin is another loopback address so that its rewrite shows.
    let offer = ok(
        engine,
        &dict([
            ("command", s("offer")),
            ("call-id", s(call_id)),
            ("from-tag", s("A")),
            ("sdp", s(&audio_sdp("127.0.0.2", caller_port))),
            ("replace", strings(&["origin", "session-connection"])),
        ]),
    );
    let for_callee = relayed_port(engine, &offer, caller_port);
    let answer = ok(
        engine,
        &dict([
            ("command", s("answer")),
            ("call-id", s(call_id)),
            ("from-tag", s("A")),
            ("to-tag", s("B")),
            ("sdp", s(&audio_sdp("127.0.0.2", callee_port))),
            ("replace", strings(&["origin", "session-connection"])),
        ]),
    );
    let for_caller = relayed_port(engine, &answer, callee_port);
    assert_ne!(for_callee, for_caller);
    (for_callee, for_caller)
}

#[test]
fn bencode_round_trip() {
    let value = dict([
        ("command", s("offer")),
        ("flags", strings(&["a", "b"])),
        ("n", Bencode::Int(-3)),
    ]);
    let mut bytes = Vec::new();
    value.encode_into(&mut bytes);
    assert_eq!(bytes, b"d7:command5:offer5:flagsl1:a1:be1:ni-3ee".to_vec());
    assert_eq!(Bencode::decode(&bytes), Ok(value));
    assert!(Bencode::decode(b"d3:key").is_err());
    assert!(Bencode::decode(b"5:abc").is_err());
    assert!(Bencode::decode(b"i1ei2e").is_err());
}

#[test]
fn ping_answers_pong() {
    let dir = TestDir::new("rtpengine-ping");
    let engine = Rtpengine::start(&dir);
    let reply = engine.ng(&ping()).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(reply, dict([("result", s("pong"))]));
}

#[test]
fn unknown_command_is_an_error() {
    let dir = TestDir::new("rtpengine-unknown");
    let engine = Rtpengine::start(&dir);
    let reply = engine
        .ng(&dict([("command", s("bogus"))]))
        .unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(reply.text("result"), Some("error"), "{reply}");
    assert_eq!(
        reply.text("error-reason"),
        Some("Unrecognized command"),
        "{reply}"
    );
}

/// Offer, answer, list, delete, list: the call's whole life in rtpengine.
#[test]
fn offer_answer_list_delete() {
    let dir = TestDir::new("rtpengine-call");
    let engine = Rtpengine::start(&dir);
    offer_answer(&engine, "X", 40_000, 40_002);
    assert_eq!(listed_calls(&engine), vec![s("X")]);
    let deleted = ok(
        &engine,
        &dict([
            ("command", s("delete")),
            ("call-id", s("X")),
            ("from-tag", s("A")),
        ]),
    );
    assert!(deleted.get("totals").is_some(), "{deleted}");
    assert_eq!(listed_calls(&engine), Vec::<Bencode>::new());
    // An answer for a call it does not know.
    let reply = engine
        .ng(&dict([
            ("command", s("answer")),
            ("call-id", s("X")),
            ("from-tag", s("A")),
            ("to-tag", s("B")),
            ("sdp", s(&audio_sdp("127.0.0.1", 40_002))),
        ]))
        .unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(reply.text("error-reason"), Some("Unknown call-id"));
}

/// One RTP packet each way through the relay, between two real sockets whose
/// addresses are the ones in their SDPs.
#[test]
fn rtp_flows_both_ways_through_the_relay() {
    let dir = TestDir::new("rtpengine-rtp");
    let engine = Rtpengine::start(&dir);
    let caller = media_socket();
    let callee = media_socket();
    let caller_port = caller.local_addr().unwrap().port();
    let callee_port = callee.local_addr().unwrap().port();
    let (for_callee, for_caller) = offer_answer(&engine, "rtp", caller_port, callee_port);

    let packet = rtp_packet(1);
    callee.send_to(&packet, addr(for_callee)).unwrap();
    let (got, from) = receive(&caller).unwrap_or_else(|| panic!("{}", engine.log()));
    assert_eq!((got, from), (packet.clone(), for_caller), "callee → caller");

    let packet = rtp_packet(2);
    caller.send_to(&packet, addr(for_caller)).unwrap();
    let (got, from) = receive(&callee).unwrap_or_else(|| panic!("{}", engine.log()));
    assert_eq!((got, from), (packet, for_callee), "caller → callee");

    let query = dict([("command", s("query")), ("call-id", s("rtp"))]);
    let stats = ok(&engine, &query);
    let rtp_packets = stats
        .get("totals")
        .and_then(|t| t.get("RTP"))
        .and_then(|r| r.get("packets"));
    assert_eq!(rtp_packets, Some(&Bencode::Int(2)), "{stats}");
    // Without a from-tag the whole call goes, and the reply carries no statistics.
    let deleted = ok(
        &engine,
        &dict([("command", s("delete")), ("call-id", s("rtp"))]),
    );
    assert_eq!(deleted, dict([("result", s("ok"))]));
    assert_eq!(listed_calls(&engine), Vec::<Bencode>::new());
}

/// Latching (NAT): the callee's SDP names one socket but it sends from another. Until
/// its first packet the caller's media goes to the SDP address; from then on to the
/// address it sent from.
#[test]
fn rtp_latches_to_where_the_callee_sends_from() {
    let dir = TestDir::new("rtpengine-latch");
    let engine = Rtpengine::start(&dir);
    let caller = media_socket();
    let callee_in_sdp = media_socket();
    let callee_behind_nat = media_socket();
    let caller_port = caller.local_addr().unwrap().port();
    let sdp_port = callee_in_sdp.local_addr().unwrap().port();
    let (for_callee, for_caller) = offer_answer(&engine, "latch", caller_port, sdp_port);

    caller.send_to(&rtp_packet(1), addr(for_caller)).unwrap();
    let got = receive(&callee_in_sdp).map(|(p, _)| p);
    assert_eq!(
        got,
        Some(rtp_packet(1)),
        "before latching: to the SDP address"
    );

    callee_behind_nat
        .send_to(&rtp_packet(2), addr(for_callee))
        .unwrap();
    let got = receive(&caller).map(|(p, _)| p);
    assert_eq!(
        got,
        Some(rtp_packet(2)),
        "callee → caller from its NAT address"
    );

    caller.send_to(&rtp_packet(3), addr(for_caller)).unwrap();
    let got = receive(&callee_behind_nat).map(|(p, _)| p);
    assert_eq!(
        got,
        Some(rtp_packet(3)),
        "after latching: to where it sent from"
    );
    assert_eq!(
        quick_receive(&callee_in_sdp),
        None,
        "the SDP address gets nothing once latched"
    );
}

/// A datagram already there or arriving within 200 ms.
fn quick_receive(socket: &UdpSocket) -> Option<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    receive(socket).map(|(p, _)| p)
}

fn media_socket() -> UdpSocket {
    let socket = UdpSocket::bind((LOOPBACK, 0)).expect("bind media socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

/// A PCMU packet: version 2, payload type 0, sequence `seq`, 160 bytes of silence.
fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend_from_slice(&[0xff; 160]);
    packet
}

/// One datagram within the socket's read timeout: (bytes, source port).
fn receive(socket: &UdpSocket) -> Option<(Vec<u8>, u16)> {
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from.port()))
}
