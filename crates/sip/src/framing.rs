//! Message framing on streams (TCP/TLS), sans-IO.
//!
//! Datagrams are framed by [`parse_datagram`](crate::parse::parse_datagram). On a stream
//! Content-Length is the only delimiter (RFC 3261 §18.3). A message without it is taken
//! to have an empty body: the RFC makes the header mandatory on streams, and reading "the
//! rest of the stream" as body would let one bad peer wedge the connection.
//!
//! CR and LF bytes between messages are skipped: lone CRLFs and the RFC 5626 double-CRLF
//! ping. Pings are counted so the transport can answer each with a CRLF pong.

use bytes::BytesMut;
use memchr::memchr;

use crate::error::Error;
use crate::limits::Limits;
use crate::message::Message;
use crate::parse::{parse_head, Head};

/// True if a datagram is only a keep-alive (CRLFs, RFC 5626 §4.4.2 STUN aside).
pub fn is_keepalive(datagram: &[u8]) -> bool {
    !datagram.is_empty() && datagram.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// Splits a byte stream into messages.
///
/// Feed bytes with [`push`](Self::push) (or read straight into
/// [`buffer_mut`](Self::buffer_mut)), then call [`next_message`](Self::next_message) until
/// it returns `Ok(None)`. Any error is fatal for the connection: the framer stays failed
/// and keeps returning the error, since the position of the next message is unknown.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    /// How far the search for the blank line has got, so a partial read does not rescan.
    scanned: usize,
    /// Head of the message whose body is still arriving.
    pending: Option<Head>,
    /// State of the CR/LF run between messages: number of bytes of "\r\n\r\n" matched.
    ping_state: u8,
    pings: usize,
    failed: Option<Error>,
}

impl StreamFramer {
    /// An empty framer enforcing `limits` on every message it frames.
    pub fn new(limits: Limits) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::with_capacity(4096),
            limits,
            scanned: 0,
            pending: None,
            ping_state: 0,
            pings: 0,
            failed: None,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, for reading directly into it (`read_buf`). Only append.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received and not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Number of RFC 5626 double-CRLF pings seen since the last call; answer each with CRLF.
    pub fn take_pings(&mut self) -> usize {
        std::mem::take(&mut self.pings)
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.frame();
        if let Err(e) = r {
            self.failed = Some(e);
            self.buf.clear();
            self.pending = None;
        }
        r
    }

    fn frame(&mut self) -> Result<Option<Message>, Error> {
        if self.pending.is_none() {
            if !self.skip_keepalives() {
                return Ok(None);
            }
            let Some(head_len) = self.find_head_end()? else {
                return Ok(None);
            };
            let head = parse_head(self.buf.get(..head_len).unwrap_or(b""), &self.limits)?;
            let total = head_len.saturating_add(head.content_length.unwrap_or(0));
            if total > self.limits.message_size() {
                return Err(Error::TooLarge("message size"));
            }
            self.pending = Some(head);
        }
        let Some(head) = self.pending.as_ref() else {
            return Ok(None);
        };
        let total = head.head_len + head.content_length.unwrap_or(0);
        if self.buf.len() < total {
            // Make room for the rest of the body in one step rather than growing per read.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let Some(head) = self.pending.take() else {
            return Ok(None);
        };
        self.scanned = 0;
        let bytes = self.buf.split_to(total).freeze();
        Ok(Some(head.into_message(bytes)))
    }

    /// Drops CR/LF bytes before a message, counting "\r\n\r\n" pings. Returns true if a
    /// message start is at the front of the buffer.
    fn skip_keepalives(&mut self) -> bool {
        let mut n = 0;
        for &b in self.buf.iter() {
            match (self.ping_state, b) {
                (0 | 2, b'\r') => self.ping_state += 1,
                (1 | 3, b'\n') => {
                    self.ping_state += 1;
                    if self.ping_state == 4 {
                        self.pings += 1;
                        self.ping_state = 0;
                    }
                }
                (_, b'\r') => self.ping_state = 1,
                (_, b'\n') => self.ping_state = 0,
                _ => break,
            }
            n += 1;
        }
        if n > 0 {
            let _ = self.buf.split_to(n);
            self.scanned = 0;
        }
        if self.buf.is_empty() {
            return false;
        }
        self.ping_state = 0;
        true
    }

    /// Looks for the blank line ending the head from where the last search stopped.
    /// Returns the head length including the blank line.
    fn find_head_end(&mut self) -> Result<Option<usize>, Error> {
        let buf = &self.buf[..];
        let mut pos = self.scanned;
        while let Some(i) = buf.get(pos..).and_then(|rest| memchr(b'\n', rest)) {
            let lf = pos + i;
            match (buf.get(lf + 1), buf.get(lf + 2)) {
                (Some(b'\n'), _) => return Ok(Some(lf + 2)),
                (Some(b'\r'), Some(b'\n')) => return Ok(Some(lf + 3)),
                // Not enough bytes to decide: look at this LF again next time.
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = lf;
                    return self.check_unterminated_head();
                }
                _ => pos = lf + 1,
            }
        }
        // Every LF so far is classified; only newly arriving bytes can end the head.
        self.scanned = buf.len();
        self.check_unterminated_head()
    }

    fn check_unterminated_head(&self) -> Result<Option<usize>, Error> {
        if self.buf.len() > self.limits.message_size() {
            return Err(Error::TooLarge("message size"));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::HeaderName;

    const A: &[u8] = b"OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 3\r\n\r\nabc";
    const B: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: 2\r\nl: 0\r\n\r\n";

    fn all(f: &mut StreamFramer) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = f.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn frames_back_to_back_messages_with_keepalives() {
        let mut f = StreamFramer::new(Limits::default());
        let mut s = b"\r\n\r\n".to_vec();
        s.extend_from_slice(A);
        s.extend_from_slice(b"\r\n");
        s.extend_from_slice(B);
        s.extend_from_slice(b"\r\n\r\n\r\n\r\n");
        s.extend_from_slice(A);
        f.push(&s);
        let msgs = all(&mut f);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].bytes(), A);
        assert_eq!(msgs[0].body(), b"abc");
        assert_eq!(msgs[1].bytes(), B);
        assert_eq!(msgs[1].status(), Some(200));
        assert_eq!(msgs[2].header(HeaderName::CallId), Some(&b"1"[..]));
        assert_eq!(f.take_pings(), 3);
        assert_eq!(f.take_pings(), 0);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn byte_at_a_time() {
        let mut f = StreamFramer::new(Limits::default());
        let mut s = A.to_vec();
        s.extend_from_slice(b"\r\n\r\n");
        s.extend_from_slice(B);
        let mut got = Vec::new();
        for &b in &s {
            f.push(&[b]);
            while let Some(m) = f.next_message().unwrap() {
                got.push(m.bytes().clone());
            }
        }
        assert_eq!(got, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(f.take_pings(), 1);
    }

    #[test]
    fn split_ping_is_counted_once() {
        let mut f = StreamFramer::new(Limits::default());
        for chunk in [&b"\r"[..], b"\n\r", b"\n"] {
            f.push(chunk);
            assert!(f.next_message().unwrap().is_none());
        }
        assert_eq!(f.take_pings(), 1);
    }

    #[test]
    fn missing_content_length_means_empty_body() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\n\r\nOPTIONS sip:b SIP/2.0\r\n\r\n");
        let msgs = all(&mut f);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].body(), b"");
        assert_eq!(msgs[1].request_uri(), b"sip:b");
    }

    #[test]
    fn bare_lf_blank_line() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"OPTIONS sip:a SIP/2.0\nl: 1\n\nxOPTIONS sip:b SIP/2.0\n\n");
        let msgs = all(&mut f);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].body(), b"x");
    }

    #[test]
    fn waits_for_the_body() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(&A[..A.len() - 2]);
        assert!(f.next_message().unwrap().is_none());
        assert!(f.next_message().unwrap().is_none());
        f.push(&A[A.len() - 2..]);
        assert_eq!(f.next_message().unwrap().unwrap().body(), b"abc");
    }

    #[test]
    fn overlong_head_is_fatal() {
        let limits = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        let mut f = StreamFramer::new(limits);
        f.push(b"OPTIONS sip:a SIP/2.0\r\n");
        assert!(f.next_message().unwrap().is_none());
        f.push(&[b'X'; 100]);
        assert_eq!(
            f.next_message().unwrap_err(),
            Error::TooLarge("message size")
        );
        f.push(B);
        assert!(f.next_message().is_err(), "framer stays failed");
    }

    #[test]
    fn overlong_body_is_fatal_before_it_arrives() {
        let limits = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        let mut f = StreamFramer::new(limits);
        f.push(b"OPTIONS sip:a SIP/2.0\r\nl: 1000\r\n\r\n");
        assert_eq!(f.next_message().unwrap_err().status(), 513);
    }

    #[test]
    fn bad_head_is_fatal() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"garbage\r\n\r\n");
        assert_eq!(f.next_message().unwrap_err().status(), 400);
        f.push(B);
        assert!(f.next_message().is_err());
    }

    #[test]
    fn keepalive_datagrams() {
        assert!(is_keepalive(b"\r\n\r\n"));
        assert!(is_keepalive(b"\r\n"));
        assert!(!is_keepalive(b""));
        assert!(!is_keepalive(b"\r\nX"));
    }
}
