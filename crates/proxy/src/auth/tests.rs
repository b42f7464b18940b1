//! Authentication and protection on a virtual clock, with real digest computation.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trunkstore_config::{validate_document, Catalog, Settings};
use trunkstore_routing::Snapshot;
use trunkstore_sip::digest::{
    expected_response, Algorithm, Challenge, Credentials, ResponseParams,
};

use super::nonce::NonceKey;
use super::verify::Forbidden;
use super::*;

const PBX: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 21));
const URI: &[u8] = b"sip:+14155550000@proxy.example";
const T0: u64 = 1_700_000_000;

/// The default settings: MD5 challenges alone.
fn snapshot() -> Snapshot {
    snapshot_with(json!({}))
}

/// Settings offering `algorithms` (`auth.algorithms`, written in this order).
fn snapshot_offering(algorithms: &[&str]) -> Snapshot {
    snapshot_with(json!({"algorithms": algorithms}))
}

fn snapshot_with(auth: Value) -> Snapshot {
    let settings = Settings::from_value(
        &json!({"default_realm": "trunks.example", "nonce_ttl": 300, "auth": auth}),
        Path::new("/tmp"),
    )
    .expect("settings");
    let docs: [(&str, &str, Value); 2] = [
        (
            "acme",
            "main",
            json!({
                "account": {"auth_realm": "acme.example"},
                "servers": [
                    {"auth": {"auth_method": "password", "auth_user": "Alice", "auth_password": "s3cret"},
                     "DIDs": {"4155551001": {}}},
                    {"auth": {"auth_method": "password", "auth_user": "off", "auth_password": "pw"},
                     "options": {"enabled": false},
                     "DIDs": {"4155551002": {}}}
                ]
            }),
        ),
        (
            "plain",
            "main",
            json!({
                "account": {},
                "servers": [
                    {"auth": {"auth_method": "password", "auth_user": "bob", "auth_password": "hunter2"},
                     "DIDs": {"4155552001": {}}}
                ]
            }),
        ),
    ];
    let docs = docs
        .iter()
        .map(|(a, id, v)| validate_document(a, id, v).expect("valid document"));
    Snapshot::build(&Catalog::build(settings, docs).expect("catalog"))
}

fn auth() -> Authenticator {
    Authenticator::new(NonceKey::from_secret(&[42; 32]), 1024)
}

/// What a UAC does with a 407: picks the challenge for `alg` and answers it.
struct Answer<'a> {
    alg: Algorithm,
    user: &'a str,
    password: &'a str,
    qop: bool,
    nc: u32,
    uri: &'a [u8],
}

impl Default for Answer<'_> {
    fn default() -> Self {
        Answer {
            alg: Algorithm::Md5,
            user: "Alice",
            password: "s3cret",
            qop: true,
            nc: 1,
            uri: URI,
        }
    }
}

fn answer(headers: &ChallengeHeaders, a: &Answer<'_>) -> Vec<u8> {
    let value = headers
        .values()
        .into_iter()
        .find(|v| Challenge::parse(v).unwrap().algorithm() == a.alg)
        .expect("challenge for that algorithm");
    let ch = Challenge::parse(value).unwrap();
    answer_challenge(&ch, a)
}

fn answer_challenge(ch: &Challenge<'_>, a: &Answer<'_>) -> Vec<u8> {
    let nc = format!("{:08x}", a.nc);
    let qop = a.qop.then_some(&b"auth"[..]);
    let params = ResponseParams {
        method: b"INVITE",
        uri: a.uri,
        nonce: ch.nonce,
        nc: nc.as_bytes(),
        cnonce: b"0a4f113b",
        qop,
        body: b"",
    };
    let resp = expected_response(
        a.alg,
        a.user.as_bytes(),
        ch.realm,
        a.password.as_bytes(),
        &params,
    );
    let creds = Credentials {
        username: a.user.as_bytes(),
        realm: ch.realm,
        nonce: ch.nonce,
        uri: a.uri,
        response: resp.as_bytes(),
        algorithm: ch.algorithm,
        cnonce: a.qop.then_some(&b"0a4f113b"[..]),
        qop,
        nc: a.qop.then_some(nc.as_bytes()),
        opaque: None,
    };
    let mut buf = Vec::new();
    creds.write_value(&mut buf);
    buf
}

fn verify_at(
    a: &Authenticator,
    snap: &Snapshot,
    creds: &[u8],
    source: IpAddr,
    now: u64,
) -> AuthOutcome {
    a.verify(
        snap,
        &AuthRequest {
            method: b"INVITE",
            request_uri: URI,
            credentials: creds,
            source,
        },
        now,
    )
}

fn server_name(snap: &Snapshot, outcome: AuthOutcome) -> String {
    match outcome {
        AuthOutcome::Ok { server } => snap
            .server(server)
            .auth_user
            .as_deref()
            .unwrap()
            .to_string(),
        other => panic!("not authenticated: {other:?}"),
    }
}

/// One of each is shared by every worker thread.
#[test]
fn auth_types_are_shared_between_threads() {
    fn sync_send<T: Sync + Send>() {}
    sync_send::<Authenticator>();
    sync_send::<Protection>();
    let (a, snap) = (std::sync::Arc::new(auth()), std::sync::Arc::new(snapshot()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (a, snap) = (a.clone(), snap.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
                    let creds = answer(&h, &Answer::default());
                    assert!(matches!(
                        verify_at(&a, &snap, &creds, PBX, T0),
                        AuthOutcome::Ok { .. }
                    ));
                    assert_eq!(verify_at(&a, &snap, &creds, PBX, T0), AuthOutcome::Replay);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(a.tracked_nonces(), 200);
}

/// The algorithms of a 407's challenges, in the order sent.
fn offered(h: &ChallengeHeaders) -> Vec<Algorithm> {
    h.values()
        .into_iter()
        .map(|v| Challenge::parse(v).unwrap().algorithm())
        .collect()
}

#[test]
fn auth_challenge_offers_md5_alone_by_default() {
    let (a, snap) = (auth(), snapshot());
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    // One challenge: libre (baresip) fails a 407 on any algorithm it does not know.
    assert_eq!(offered(&h), [Algorithm::Md5]);
    assert_eq!(h.headers().len(), 1);
    let c = Challenge::parse(h.values()[0]).unwrap();
    assert_eq!(c.algorithm, Some(&b"MD5"[..]), "written out, not implied");
    assert!(c.offers_auth());
}

#[test]
fn auth_challenge_offers_sha256_alone_when_set() {
    let (a, snap) = (auth(), snapshot_offering(&["SHA-256"]));
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    assert_eq!(offered(&h), [Algorithm::Sha256]);
}

#[test]
fn auth_challenge_offers_sha256_then_md5_with_qop_when_both_are_set() {
    // Written MD5 first: the 407 still follows RFC 8760's order of preference.
    let (a, snap) = (auth(), snapshot_offering(&["MD5", "SHA-256"]));
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    assert_eq!(offered(&h), [Algorithm::Sha256, Algorithm::Md5]);
    let [sha, md5] = h.values()[..] else {
        panic!("two challenges");
    };
    let (sha, md5) = (
        Challenge::parse(sha).unwrap(),
        Challenge::parse(md5).unwrap(),
    );
    assert_eq!(md5.realm, b"acme.example");
    assert_eq!(sha.realm, b"acme.example");
    assert!(md5.offers_auth() && sha.offers_auth());
    assert!(!md5.stale && !sha.stale);
    let headers = h.headers();
    assert_eq!(headers.len(), 2);
    assert!(headers
        .iter()
        .all(|(name, _)| *name == b"Proxy-Authenticate"));
    // Unknown From host: the default realm. Stale on request.
    let h = a.challenge(&snap, b"203.0.113.9", PBX, T0, true);
    let c = Challenge::parse(h.values()[0]).unwrap();
    assert_eq!(c.realm, b"trunks.example");
    assert!(c.stale);
    // Each challenge has its own nonce.
    let h2 = a.challenge(&snap, b"203.0.113.9", PBX, T0, true);
    assert_ne!(Challenge::parse(h2.values()[0]).unwrap().nonce, c.nonce);
}

#[test]
fn auth_full_flow_md5_and_sha256_with_and_without_qop() {
    let (a, snap) = (auth(), snapshot_offering(&["SHA-256", "MD5"]));
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        for qop in [true, false] {
            let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
            // No credentials yet / garbage: a fresh challenge.
            assert_eq!(verify_at(&a, &snap, b"", PBX, T0), AuthOutcome::Challenge);
            let creds = answer(
                &h,
                &Answer {
                    alg,
                    qop,
                    ..Default::default()
                },
            );
            let out = verify_at(&a, &snap, &creds, PBX, T0 + 1);
            assert_eq!(server_name(&snap, out), "Alice", "{alg:?} qop={qop}");
            assert_eq!(out.status(), None);
        }
    }
}

/// Right password, right nonce, but an algorithm the settings do not offer: refused (and
/// counted towards a ban), so turning an algorithm off really turns it off.
#[test]
fn auth_algorithm_not_offered_is_forbidden() {
    let a = auth();
    for (offers, answers) in [
        (&["MD5"][..], [Some(&b"SHA-256"[..])]),
        (&["SHA-256"][..], [Some(&b"MD5"[..])]),
        // No `algorithm` parameter means MD5 (RFC 2617).
        (&["SHA-256"][..], [None]),
    ] {
        let snap = snapshot_offering(offers);
        let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
        let ch = Challenge::parse(h.values()[0]).unwrap();
        for algorithm in answers {
            let other = Challenge { algorithm, ..ch };
            let creds = answer_challenge(
                &other,
                &Answer {
                    alg: other.algorithm(),
                    ..Default::default()
                },
            );
            let out = verify_at(&a, &snap, &creds, PBX, T0);
            assert_eq!(
                out,
                AuthOutcome::Forbidden(Forbidden::UnsupportedAlgorithm),
                "offers {offers:?}, answered {:?}",
                other.algorithm()
            );
            assert!(out.is_failure());
        }
        // The offered one with the same nonce still passes.
        let alg = ch.algorithm();
        let creds = answer(
            &h,
            &Answer {
                alg,
                ..Default::default()
            },
        );
        assert_eq!(
            server_name(&snap, verify_at(&a, &snap, &creds, PBX, T0)),
            "Alice"
        );
    }
}

#[test]
fn auth_username_is_case_insensitive() {
    let (a, snap) = (auth(), snapshot());
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let creds = answer(
        &h,
        &Answer {
            user: "aLiCe",
            ..Default::default()
        },
    );
    assert_eq!(
        server_name(&snap, verify_at(&a, &snap, &creds, PBX, T0)),
        "Alice"
    );
}

#[test]
fn auth_wrong_password_unknown_user_are_forbidden() {
    let (a, snap) = (auth(), snapshot());
    let cases = [
        (
            Answer {
                password: "S3CRET",
                ..Default::default()
            },
            Forbidden::WrongPassword,
        ),
        (
            Answer {
                user: "mallory",
                ..Default::default()
            },
            Forbidden::UnknownUser,
        ),
        (
            Answer {
                uri: b"sip:other@proxy.example",
                ..Default::default()
            },
            Forbidden::UriMismatch,
        ),
    ];
    for (ans, why) in cases {
        let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
        let out = verify_at(&a, &snap, &answer(&h, &ans), PBX, T0);
        assert_eq!(out, AuthOutcome::Forbidden(why));
        assert_eq!(out.status(), Some(403));
        assert!(out.is_failure());
    }
    // Not counted in the replay table: only successes are.
    assert_eq!(a.tracked_nonces(), 0);
    // A disabled server with the right password is authenticated (not an auth failure,
    // never a ban): the routing refuses its calls, except emergency calls (§3).
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let off = Answer {
        user: "off",
        password: "pw",
        ..Default::default()
    };
    let out = verify_at(&a, &snap, &answer(&h, &off), PBX, T0);
    assert!(matches!(out, AuthOutcome::Ok { .. }), "{out:?}");
    assert!(!out.is_failure());
}

#[test]
fn auth_realm_must_be_ours_and_match_the_user() {
    let (a, snap) = (auth(), snapshot());
    let nonce = a.challenge(&snap, b"x", PBX, T0, false);
    let nonce = Challenge::parse(nonce.values()[0]).unwrap().nonce.to_vec();
    let ch = |realm: &'static [u8]| Challenge {
        realm,
        nonce: &nonce,
        ..Default::default()
    };
    // A realm we never issue.
    let creds = answer_challenge(&ch(b"evil.example"), &Answer::default());
    assert_eq!(
        verify_at(&a, &snap, &creds, PBX, T0),
        AuthOutcome::Forbidden(Forbidden::UnknownRealm)
    );
    // bob is in the default realm, not in acme's.
    let bob = Answer {
        user: "bob",
        password: "hunter2",
        ..Default::default()
    };
    assert_eq!(
        verify_at(
            &a,
            &snap,
            &answer_challenge(&ch(b"acme.example"), &bob),
            PBX,
            T0
        ),
        AuthOutcome::Forbidden(Forbidden::UnknownUser)
    );
    let out = verify_at(
        &a,
        &snap,
        &answer_challenge(&ch(b"trunks.example"), &bob),
        PBX,
        T0,
    );
    assert_eq!(server_name(&snap, out), "bob");
    // Alice's PBX sent a From host that is not her realm, so was challenged with the
    // default realm: her password still identifies her.
    let nonce2 = a.challenge(&snap, b"x", PBX, T0, false);
    let nonce2 = Challenge::parse(nonce2.values()[0]).unwrap().nonce.to_vec();
    let ch2 = Challenge {
        realm: b"TRUNKS.example",
        nonce: &nonce2,
        ..Default::default()
    };
    let out = verify_at(
        &a,
        &snap,
        &answer_challenge(&ch2, &Answer::default()),
        PBX,
        T0,
    );
    assert_eq!(server_name(&snap, out), "Alice");
}

#[test]
fn auth_expired_nonce_is_stale_only_with_the_right_password() {
    let (a, snap) = (auth(), snapshot());
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let good = answer(&h, &Answer::default());
    let bad = answer(
        &h,
        &Answer {
            password: "guess",
            ..Default::default()
        },
    );
    let late = T0 + 300;
    let out = verify_at(&a, &snap, &good, PBX, late);
    assert_eq!(out, AuthOutcome::Stale);
    assert!(out.stale() && out.status() == Some(407) && !out.is_failure());
    assert_eq!(
        verify_at(&a, &snap, &bad, PBX, late),
        AuthOutcome::Forbidden(Forbidden::WrongPassword)
    );
    // Just before expiry it is fine.
    assert!(matches!(
        verify_at(&a, &snap, &good, PBX, late - 1),
        AuthOutcome::Ok { .. }
    ));
}

#[test]
fn auth_tampered_or_foreign_nonce_gets_a_fresh_challenge() {
    let (a, snap) = (auth(), snapshot());
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let ch = Challenge::parse(h.values()[0]).unwrap();
    let mut nonce = ch.nonce.to_vec();
    nonce[3] = if nonce[3] == b'a' { b'b' } else { b'a' };
    let tampered = Challenge {
        nonce: &nonce,
        ..ch
    };
    let creds = answer_challenge(&tampered, &Answer::default());
    assert_eq!(
        verify_at(&a, &snap, &creds, PBX, T0),
        AuthOutcome::Challenge
    );
    // Issued to PBX, presented by OTHER (right password or not).
    let creds = answer(&h, &Answer::default());
    assert_eq!(
        verify_at(&a, &snap, &creds, OTHER, T0),
        AuthOutcome::Challenge
    );
    // Another process's secret.
    let b = Authenticator::new(NonceKey::from_secret(&[1; 32]), 16);
    assert_eq!(
        verify_at(&b, &snap, &creds, PBX, T0),
        AuthOutcome::Challenge
    );
    // Unparseable and non-Digest credentials.
    for junk in [
        &b"Basic YWxpY2U6c2VjcmV0"[..],
        b"Digest username=",
        b"\xff\xfe",
    ] {
        assert_eq!(verify_at(&a, &snap, junk, PBX, T0), AuthOutcome::Challenge);
    }
}

#[test]
fn auth_replayed_nonce_count_is_refused_and_next_count_passes() {
    let (a, snap) = (auth(), snapshot());
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let nc1 = answer(&h, &Answer::default());
    assert!(matches!(
        verify_at(&a, &snap, &nc1, PBX, T0),
        AuthOutcome::Ok { .. }
    ));
    let out = verify_at(&a, &snap, &nc1, PBX, T0 + 1);
    assert_eq!(out, AuthOutcome::Replay);
    assert!(out.stale() && !out.is_failure());
    let nc2 = answer(
        &h,
        &Answer {
            nc: 2,
            ..Default::default()
        },
    );
    assert!(matches!(
        verify_at(&a, &snap, &nc2, PBX, T0 + 2),
        AuthOutcome::Ok { .. }
    ));
    assert_eq!(verify_at(&a, &snap, &nc2, PBX, T0 + 2), AuthOutcome::Replay);
    // RFC 2069 form: one use per nonce.
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let plain = answer(
        &h,
        &Answer {
            qop: false,
            ..Default::default()
        },
    );
    assert!(matches!(
        verify_at(&a, &snap, &plain, PBX, T0),
        AuthOutcome::Ok { .. }
    ));
    assert_eq!(verify_at(&a, &snap, &plain, PBX, T0), AuthOutcome::Replay);
}

#[test]
fn auth_replay_table_is_bounded_under_many_authentications() {
    let snap = snapshot();
    let a = Authenticator::new(NonceKey::from_secret(&[3; 32]), 256);
    let mut first = None;
    for i in 0..2000 {
        let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
        let creds = answer(&h, &Answer::default());
        assert!(
            matches!(
                verify_at(&a, &snap, &creds, PBX, T0 + 1),
                AuthOutcome::Ok { .. }
            ),
            "{i}"
        );
        first.get_or_insert(creds);
    }
    assert!(a.tracked_nonces() <= 256);
    assert!(a.nonce_evictions() > 0);
    // The evicted first nonce is not accepted again: the client is sent a fresh one.
    assert_eq!(
        verify_at(&a, &snap, &first.unwrap(), PBX, T0 + 2),
        AuthOutcome::Stale
    );
}

#[test]
fn auth_unsupported_algorithm_and_qop_are_forbidden() {
    let (a, snap) = (auth(), snapshot());
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let ch = Challenge::parse(h.values()[0]).unwrap();
    let sess = Challenge {
        algorithm: Some(b"MD5-sess"),
        ..ch
    };
    let creds = answer_challenge(
        &sess,
        &Answer {
            alg: Algorithm::Md5Sess,
            ..Default::default()
        },
    );
    assert_eq!(
        verify_at(&a, &snap, &creds, PBX, T0),
        AuthOutcome::Forbidden(Forbidden::UnsupportedAlgorithm)
    );
    let creds = answer(&h, &Answer::default());
    let auth_int = String::from_utf8(creds)
        .unwrap()
        .replace("qop=auth", "qop=auth-int");
    assert_eq!(
        verify_at(&a, &snap, auth_int.as_bytes(), PBX, T0),
        AuthOutcome::Forbidden(Forbidden::UnsupportedQop)
    );
}

// ---------------------------------------------------------------------------------------
// Protection
// ---------------------------------------------------------------------------------------

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn protection(config: ProtectionConfig) -> (Protection, Instant) {
    let t0 = Instant::now(); // the test's virtual epoch; the code never reads the clock
    (Protection::new(config, t0), t0)
}

#[test]
fn auth_ban_after_failures_and_unban_after_ban_time() {
    let (p, t0) = protection(ProtectionConfig::default());
    let src = ip(1);
    for i in 0..9 {
        assert!(!p.record_failure(src, false, t0 + Duration::from_secs(i)));
    }
    assert!(!p.is_banned(src, t0 + Duration::from_secs(9)));
    assert!(p.record_failure(src, false, t0 + Duration::from_secs(9)));
    let banned_at = t0 + Duration::from_secs(9);
    assert_eq!(
        p.check_request(src, false, None, banned_at),
        Verdict::Drop(DropReason::Banned)
    );
    assert_eq!(
        p.check_request(ip(2), false, None, banned_at),
        Verdict::Allow
    );
    let s = p.stats(banned_at);
    assert_eq!(
        (
            s.auth_failures,
            s.bans_total,
            s.bans_active,
            s.dropped_banned
        ),
        (10, 1, 1, 1)
    );
    let unban = banned_at + Duration::from_secs(600);
    assert!(p.is_banned(src, unban - Duration::from_millis(1)));
    assert!(!p.is_banned(src, unban));
    assert_eq!(p.check_request(src, false, None, unban), Verdict::Allow);
    assert_eq!(p.stats(unban).bans_active, 0);
}

#[test]
fn auth_published_bans_forget_expired_ones_and_cover_an_ipv6_64() {
    let config = ProtectionConfig {
        ban_threshold: 1,
        ban_secs: 10,
        ..ProtectionConfig::default()
    };
    let (p, t0) = protection(config);
    assert!(p.record_failure(ip(1), false, t0));
    assert!(p.record_failure(ip(2), false, t0 + Duration::from_secs(5)));
    assert_eq!(p.published_bans(), 2);
    // ip(1)'s ban is over when ip(3) is banned: the new set leaves it out.
    let later = t0 + Duration::from_secs(12);
    assert!(p.record_failure(ip(3), false, later));
    assert_eq!(p.published_bans(), 2);
    assert!(!p.is_banned(ip(1), later));
    assert!(p.is_banned(ip(2), later) && p.is_banned(ip(3), later));
    // IPv6: the whole /64, not its neighbour.
    let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(p.record_failure(v6("2001:db8::1"), false, later));
    assert!(p.is_banned(v6("2001:db8::ffff:1"), later));
    assert!(!p.is_banned(v6("2001:db8:0:1::1"), later));
    assert_eq!(p.stats(later).bans_active, 3);
}

#[test]
fn auth_failures_outside_the_window_do_not_ban() {
    let (p, t0) = protection(ProtectionConfig::default());
    for i in 0..30 {
        // One failure every 7 s: never 10 within 60 s.
        assert!(!p.record_failure(ip(1), false, t0 + Duration::from_secs(7 * i)));
    }
    assert!(!p.is_banned(ip(1), t0 + Duration::from_secs(210)));
}

#[test]
fn auth_exempt_sources_are_never_banned_or_limited() {
    let (p, t0) = protection(ProtectionConfig::default());
    for _ in 0..100 {
        assert!(!p.record_failure(ip(1), true, t0));
    }
    assert!(!p.is_banned(ip(1), t0));
    for _ in 0..10_000 {
        assert_eq!(
            p.check_request(ip(1), true, Some(b"friendly-scanner"), t0),
            Verdict::Allow
        );
    }
    assert_eq!(p.stats(t0).tracked_sources, 0);
}

#[test]
fn auth_token_bucket_refills_at_the_rate() {
    let (p, t0) = protection(ProtectionConfig::default());
    let src = ip(7);
    for i in 0..100 {
        assert_eq!(p.check_request(src, false, None, t0), Verdict::Allow, "{i}");
    }
    assert_eq!(
        p.check_request(src, false, None, t0),
        Verdict::Drop(DropReason::RateLimited)
    );
    // 50/s: one token every 20 ms.
    let t = t0 + Duration::from_millis(20);
    assert_eq!(p.check_request(src, false, None, t), Verdict::Allow);
    assert_ne!(p.check_request(src, false, None, t), Verdict::Allow);
    // After a long pause, the burst again, not more.
    let t = t0 + Duration::from_secs(60);
    let allowed = (0..200)
        .filter(|_| p.check_request(src, false, None, t) == Verdict::Allow)
        .count();
    assert_eq!(allowed, 100);
    assert_eq!(p.stats(t).dropped_rate_limited, 102);
    // A source that authenticated is not limited.
    p.record_success(src, t);
    assert!((0..1000).all(|_| p.check_request(src, false, None, t) == Verdict::Allow));
    let later = t + Duration::from_secs(protect::TRUSTED_SECS + 60);
    let allowed = (0..200)
        .filter(|_| p.check_request(src, false, None, later) == Verdict::Allow)
        .count();
    assert_eq!(allowed, 100);
}

#[test]
fn auth_scanner_user_agents_are_dropped() {
    let (p, t0) = protection(ProtectionConfig::default());
    for ua in [
        &b"friendly-scanner"[..],
        b"SIPVicious 0.3.4",
        b"sipcli/v1.8",
        b"VaxSIPUserAgent/3.1",
        b"pplsip",
        b"Sundayddr Scanner",
        b"iWar",
        b"x sip-scan y",
    ] {
        assert_eq!(
            p.check_request(ip(1), false, Some(ua), t0),
            Verdict::Drop(DropReason::Scanner),
            "{}",
            String::from_utf8_lossy(ua)
        );
    }
    for ua in [
        &b"Asterisk PBX 20.5.0"[..],
        b"sipsak 0.9.8",
        b"FreeSWITCH",
        b"",
    ] {
        assert_eq!(p.check_request(ip(1), false, Some(ua), t0), Verdict::Allow);
    }
    let custom = ProtectionConfig {
        scanner_user_agents: vec!["EvilBot".into()],
        ..Default::default()
    };
    let (p, t0) = protection(custom);
    assert!(p.is_scanner(b"xx evilbot/2"));
    assert!(!p.is_scanner(b"friendly-scanner"));
    assert_eq!(p.stats(t0).dropped_scanner, 0);
}

#[test]
fn auth_ipv6_sources_are_tracked_per_64() {
    let (p, t0) = protection(ProtectionConfig::default());
    for i in 0..10u16 {
        let a: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
        p.record_failure(a, false, t0);
    }
    let other_host: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
    assert!(p.is_banned(other_host, t0));
    assert!(!p.is_banned("2001:db8:1:3::1".parse().unwrap(), t0));
}

#[test]
fn auth_memory_is_bounded_under_a_million_sources() {
    let config = ProtectionConfig {
        max_sources: 10_000,
        ..Default::default()
    };
    let (p, t0) = protection(config);
    // A few bans made before the flood survive it.
    for _ in 0..10 {
        p.record_failure(ip(0xff_0000), false, t0);
    }
    let mut max_seen = 0;
    for n in 0..1_000_000u32 {
        // 1 M distinct sources over 100 s of virtual time.
        let now = t0 + Duration::from_micros(u64::from(n) * 100);
        p.check_request(ip(n), false, None, now);
        if n % 4096 == 0 {
            max_seen = max_seen.max(p.stats(now).tracked_sources);
        }
    }
    let end = t0 + Duration::from_secs(100);
    let s = p.stats(end);
    assert!(s.tracked_sources <= 10_000 + 16, "{}", s.tracked_sources);
    assert!(max_seen <= 10_000 + 16, "{max_seen}");
    assert!(p.is_banned(ip(0xff_0000), end));
    // Sources that found the table full were still rate limited (shared bucket), and
    // were not all refused.
    assert!(s.dropped_rate_limited > 0);
}

// ---------------------------------------------------------------------------------------
// Several nodes (issue 18)
// ---------------------------------------------------------------------------------------

fn node(id: &str) -> Authenticator {
    Authenticator::new(NonceKey::for_node("cluster-secret-0123456", id), 1024)
}

/// A PBX challenged by node A whose answer reaches node B (SRV spreading): B knows the
/// nonce is the cluster's (stale=true with the right password, so the PBX retries at once
/// without asking its user), never accepts it (its uses are counted on A), and a wrong
/// password is still a failure. A captured answer replayed to B is never a call.
#[test]
fn cluster_another_nodes_nonce_is_stale_never_accepted() {
    let (a, b, snap) = (node("edge-a"), node("edge-b"), snapshot());
    let h = a.challenge(&snap, b"acme.example", PBX, T0, false);
    let good = answer(&h, &Answer::default());
    let out = verify_at(&b, &snap, &good, PBX, T0);
    assert_eq!(out, AuthOutcome::Stale);
    assert!(!out.is_failure());
    let bad = answer(
        &h,
        &Answer {
            password: "guess",
            ..Default::default()
        },
    );
    assert_eq!(
        verify_at(&b, &snap, &bad, PBX, T0),
        AuthOutcome::Forbidden(Forbidden::WrongPassword)
    );
    // A accepts its own nonce once; the replay is refused on A and stale on B.
    assert!(matches!(
        verify_at(&a, &snap, &good, PBX, T0),
        AuthOutcome::Ok { .. }
    ));
    assert_eq!(verify_at(&a, &snap, &good, PBX, T0), AuthOutcome::Replay);
    assert_eq!(verify_at(&b, &snap, &good, PBX, T0), AuthOutcome::Stale);
    // B's own nonce after the stale answer: accepted on B.
    let hb = b.challenge(&snap, b"acme.example", PBX, T0, true);
    let retry = answer(&hb, &Answer::default());
    assert!(matches!(
        verify_at(&b, &snap, &retry, PBX, T0),
        AuthOutcome::Ok { .. }
    ));
}

/// Every node counts every node's failures: a guesser spreading 10 tries over two nodes
/// is banned on both at the 10th; a ban made on one holds on the other until it ends;
/// nothing applied from another node is queued to be passed on again.
#[test]
fn cluster_failures_and_bans_are_shared() {
    let t0 = Instant::now();
    let a = Protection::new(ProtectionConfig::default(), t0).share();
    let b = Protection::new(ProtectionConfig::default(), t0).share();
    let src = ip(7);
    let mut banned_on = Vec::new();
    for i in 0..10u64 {
        let now = t0 + Duration::from_secs(i);
        let (here, there) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        if here.record_failure(src, false, now) {
            banned_on.push("here");
        }
        for event in here.drain_shared() {
            if there.apply_shared(event, now) {
                banned_on.push("there");
            }
        }
    }
    assert_eq!(
        banned_on,
        ["here", "there"],
        "both banned at the 10th failure"
    );
    let now = t0 + Duration::from_secs(10);
    assert!(a.is_banned(src, now) && b.is_banned(src, now));
    assert!(a.drain_shared().is_empty() && b.drain_shared().is_empty());
    // A ban from another node with 30 s left ends here 30 s later.
    let c = Protection::new(ProtectionConfig::default(), t0).share();
    let ban = SecurityEvent::Ban {
        source: ip(8),
        remaining: Duration::from_secs(30),
    };
    assert!(c.apply_shared(ban, now));
    assert!(
        !c.apply_shared(ban, now),
        "the same ban again is not a new one"
    );
    assert!(c.is_banned(ip(8), now + Duration::from_secs(29)));
    assert!(!c.is_banned(ip(8), now + Duration::from_secs(30)));
    assert!(c.drain_shared().is_empty());
    // Exempt sources and a node alone queue nothing.
    assert!(!c.record_failure(ip(9), true, now));
    assert!(c.drain_shared().is_empty());
    let alone = Protection::new(ProtectionConfig::default(), t0);
    alone.record_failure(ip(9), false, now);
    assert!(alone.drain_shared().is_empty());
}
