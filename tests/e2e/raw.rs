//! Hand-written SIP over UDP, for what SIPp cannot express: probing readiness without a
//! scenario, and byte-exact malformed requests.

use std::net::UdpSocket;
use std::time::Duration;

use crate::harness::{addr, LOOPBACK};

/// Sends `request` from 127.0.0.1:`from_port` (0 = any) to the proxy and returns the
/// first datagram received within `wait`, as text.
pub fn exchange(from_port: u16, proxy_port: u16, request: &str, wait: Duration) -> Option<String> {
    let socket = UdpSocket::bind((LOOPBACK, from_port)).ok()?;
    socket.send_to(request.as_bytes(), addr(proxy_port)).ok()?;
    receive(&socket, wait)
}

/// The first datagram within `wait`; `None` on timeout or socket error.
fn receive(socket: &UdpSocket, wait: Duration) -> Option<String> {
    socket.set_read_timeout(Some(wait)).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// An OPTIONS to the proxy itself from 127.0.0.1:`from_port`; the reply if any.
pub fn options_ping(from_port: u16, proxy_port: u16, wait: Duration) -> Option<String> {
    let ruri = format!("sip:127.0.0.1:{proxy_port}");
    let request = request_text("OPTIONS", &ruri, from_port, proxy_port, &[]);
    exchange(from_port, proxy_port, &request, wait)
}

/// A complete, well-formed request to the proxy, with `overrides` replacing (by name)
/// or adding headers: tests break exactly one thing at a time.
pub fn request_text(
    method: &str,
    ruri: &str,
    from_port: u16,
    proxy_port: u16,
    overrides: &[(&str, &str)],
) -> String {
    let branch = format!("z9hG4bK-e2e-{from_port}-{}", std::process::id());
    let mut headers: Vec<(String, String)> = [
        (
            "Via",
            format!("SIP/2.0/UDP 127.0.0.1:{from_port};branch={branch};rport"),
        ),
        ("Max-Forwards", "70".to_string()),
        ("From", format!("<sip:e2e@127.0.0.1:{from_port}>;tag=e2e")),
        ("To", format!("<sip:127.0.0.1:{proxy_port}>")),
        ("Call-ID", format!("e2e-{method}-{from_port}@127.0.0.1")),
        ("CSeq", format!("1 {method}")),
        ("Content-Length", "0".to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    for (name, value) in overrides {
        match headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(header) => header.1 = value.to_string(),
            None => headers.insert(headers.len() - 1, (name.to_string(), value.to_string())),
        }
    }
    let mut text = format!("{method} {ruri} SIP/2.0\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text
}

/// The status code of a response's status line.
pub fn status_code(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    let mut parts = line.split(' ');
    (parts.next()? == "SIP/2.0").then_some(())?;
    parts.next()?.parse().ok()
}
