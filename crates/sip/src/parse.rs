//! Message parser: start line and header index in one pass over the head, no copies.
//!
//! `parse_head` is the core shared by datagrams ([`parse_datagram`]) and the stream
//! framer; it stops at the blank line and leaves body framing to the caller, because the
//! transports frame bodies differently (RFC 3261 §18.3).

use bytes::{Buf, Bytes};
use memchr::memchr;

use crate::error::Error;
use crate::limits::Limits;
use crate::message::{HeaderEntry, HeaderIndex, HeaderName, Message, Method, Span, StartLine};

/// The parsed head of a message, before body framing.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) start: StartLine,
    pub(crate) headers: HeaderIndex,
    /// Offset just past the blank line, where the body starts.
    pub(crate) head_len: usize,
    /// Content-Length, if present (all copies agree; the parser checked).
    pub content_length: Option<usize>,
}

/// Parses one UDP datagram (or any buffer holding exactly one message).
///
/// Leading CRLFs are skipped. The body is Content-Length bytes and anything after it is
/// discarded (RFC 3261 §18.3, RFC 4475 dblreq); without Content-Length the body is the
/// rest of the datagram. A Content-Length larger than what arrived is a 400.
pub fn parse_datagram(mut buf: Bytes, limits: &Limits) -> Result<Message, Error> {
    if buf.len() > limits.message_size() {
        return Err(Error::TooLarge("message size"));
    }
    let skip = skip_crlf(&buf);
    if skip == buf.len() {
        return Err(Error::BadSyntax("empty message"));
    }
    if skip > 0 {
        // `advance` moves the view without cloning the buffer (a slice could allocate).
        buf.advance(skip);
    }
    // The index is filled in place: it is the bulk of a Message, and every move of it
    // is a memcpy on the hot path.
    let mut headers = HeaderIndex::new();
    let head = parse_into(&buf, limits, true, &mut headers).map_err(|e| match e {
        Error::Incomplete => Error::BadSyntax("header section not terminated"),
        e => e,
    })?;
    let end = match head.content_length {
        Some(cl) => {
            let end = head.head_len.saturating_add(cl);
            if end > buf.len() {
                return Err(Error::BadSyntax("Content-Length exceeds message"));
            }
            end
        }
        None => buf.len(),
    };
    buf.truncate(end);
    Ok(Message::from_parts(
        buf,
        head.start,
        headers,
        head.head_len,
        head.content_length,
    ))
}

/// The head of a datagram whose body could not be framed (a Content-Length larger than
/// what arrived), without its body: enough to answer a request with 400, as RFC 3261
/// §18.3 asks when a response can be built. `None` when the head itself does not parse.
pub fn parse_datagram_head(mut buf: Bytes, limits: &Limits) -> Option<Message> {
    let skip = skip_crlf(&buf);
    buf.advance(skip);
    let mut headers = HeaderIndex::new();
    let head = parse_into(&buf, limits, true, &mut headers).ok()?;
    buf.truncate(head.head_len.min(buf.len()));
    Some(Message::from_parts(
        buf,
        head.start,
        headers,
        head.head_len,
        None,
    ))
}

/// What [`parse_into`] learns besides the header index.
struct HeadInfo {
    start: StartLine,
    head_len: usize,
    content_length: Option<usize>,
}

impl Head {
    /// Attaches the buffer the head was parsed from; `buf` must start with the start line
    /// and end where the body ends.
    pub(crate) fn into_message(self, buf: Bytes) -> Message {
        Message::from_parts(
            buf,
            self.start,
            self.headers,
            self.head_len,
            self.content_length,
        )
    }
}

/// Number of CR/LF bytes at the start of `buf` (keep-alives and stray line ends before the
/// start line, RFC 3261 §7.5).
pub(crate) fn skip_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// Parses the start line and the header section of `buf`, which must begin with the start
/// line. Returns `Error::Incomplete` if the blank line ending the header section is not in
/// `buf`. Does not look at the body.
pub(crate) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Head, Error> {
    let mut headers = HeaderIndex::new();
    let info = parse_into(buf, limits, false, &mut headers)?;
    Ok(Head {
        start: info.start,
        headers,
        head_len: info.head_len,
        content_length: info.content_length,
    })
}

/// `eof_ends_head`: a buffer ending right after a complete header line counts as having
/// its blank line. Only for datagrams, whose end is authoritative: some senders (and
/// rfc4475 `baddn`) omit the empty line when there is no body.
fn parse_into(
    buf: &[u8],
    limits: &Limits,
    eof_ends_head: bool,
    headers: &mut HeaderIndex,
) -> Result<HeadInfo, Error> {
    if buf.len() > limits.message_size() {
        return Err(Error::TooLarge("message size"));
    }
    let mut lfs = LineEnds::new(buf);
    let (line_end, next) = next_line(buf, &mut lfs, 0).ok_or(Error::Incomplete)?;
    let start = parse_start_line(buf, line_end, limits)?;
    // Each header line goes into the index as soon as it is read; a continuation line
    // extends the last one in place (no entry held back per line for a fold that rarely
    // comes).
    let mut pos = next;
    loop {
        let (line_end, next) = match next_line(buf, &mut lfs, pos) {
            Some(l) => l,
            None if eof_ends_head && pos == buf.len() => (pos, pos),
            None => return Err(Error::Incomplete),
        };
        if line_end == pos {
            // Content-Length is usually the last line: start at its first one.
            let content_length =
                content_length(buf, headers.lines_from_first(HeaderName::ContentLength))?;
            return Ok(HeadInfo {
                start,
                head_len: next,
                content_length,
            });
        }
        let first = buf.get(pos).copied().unwrap_or(b'\r');
        if first == b' ' || first == b'\t' {
            let e = headers
                .last_mut()
                .ok_or(Error::BadSyntax("continuation line before first header"))?;
            extend_folded(buf, e, pos, line_end);
            if line_end - e.name_start as usize > limits.max_header_line {
                return Err(Error::TooLarge("header line"));
            }
        } else {
            if line_end - pos > limits.max_header_line {
                return Err(Error::TooLarge("header line"));
            }
            let e = parse_header_line(buf, pos, line_end)?;
            push_header(headers, e, limits)?;
        }
        pos = next;
    }
}

/// Finds the line starting at `pos`: returns (end of content, start of next line). A line
/// ends at LF; a CR right before the LF is not content. `None` if no LF follows `pos`.
/// `lfs` must have returned every LF before `pos` and none after it (lines are read in
/// order, `pos` just past the previous LF).
#[inline]
fn next_line(buf: &[u8], lfs: &mut LineEnds<'_>, pos: usize) -> Option<(usize, usize)> {
    let lf = lfs.next_lf()?;
    let end = if lf > pos && buf.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// Bytes classified per step of [`LineEnds`].
const BLOCK: usize = 64;

/// The LF bytes of a buffer, in order. One pass classifies 64 bytes at a time into a bit
/// mask and each line end is then a `trailing_zeros`: a header line is ~30 bytes, where a
/// `memchr` call per line cost more in its dispatch than in its search.
struct LineEnds<'a> {
    buf: &'a [u8],
    /// Offset of the block `mask` describes.
    block: usize,
    /// Bit `i` set: byte `block + i` is an LF not yet returned.
    mask: u64,
}

impl<'a> LineEnds<'a> {
    fn new(buf: &'a [u8]) -> LineEnds<'a> {
        LineEnds {
            buf,
            block: 0,
            mask: block_lf_mask(buf, 0),
        }
    }

    /// The next LF's offset; `None` once every LF has been returned.
    #[inline]
    fn next_lf(&mut self) -> Option<usize> {
        // Bounded: each round moves one block on and stops at the buffer's end.
        while self.mask == 0 {
            self.block += BLOCK;
            if self.block >= self.buf.len() {
                return None;
            }
            self.mask = block_lf_mask(self.buf, self.block);
        }
        let at = self.block + self.mask.trailing_zeros() as usize;
        // Clears the lowest set bit: that LF is returned.
        self.mask &= self.mask - 1;
        Some(at)
    }
}

/// LF mask of the 64 bytes at `at`; past the buffer's end counts as not LF.
#[inline]
fn block_lf_mask(buf: &[u8], at: usize) -> u64 {
    match buf.get(at..at + BLOCK) {
        Some(block) => lf_mask(block.try_into().unwrap_or(&[0; BLOCK])),
        None => {
            // The last, partial block: zero padding holds no LF.
            let tail = buf.get(at..).unwrap_or(b"");
            let mut padded = [0u8; BLOCK];
            padded[..tail.len()].copy_from_slice(tail);
            lf_mask(&padded)
        }
    }
}

/// Bit `i` set where `block[i]` is LF.
#[inline]
fn lf_mask(block: &[u8; BLOCK]) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: `lf_mask_sse2` only needs SSE2, which the cfg above proves this build
        // targets (it is part of the x86_64 baseline); it touches no memory but `block`.
        unsafe { lf_mask_sse2(block) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        lf_mask_swar(block)
    }
}

/// Four 16-byte compares, each folded to 16 bits by `movemask` (~20 instructions).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn lf_mask_sse2(block: &[u8; BLOCK]) -> u64 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x};
    let lf = _mm_set1_epi8(b'\n' as i8);
    let mut mask = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // Two safe word loads; the compiler merges them into one unaligned vector load.
        let lo = u64::from_le_bytes(chunk[..8].try_into().unwrap_or([0; 8]));
        let hi = u64::from_le_bytes(chunk[8..].try_into().unwrap_or([0; 8]));
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let bits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, lf)) as u16;
        mask |= u64::from(bits) << (16 * i);
    }
    mask
}

/// Portable version: eight bytes a word, exact zero-byte test (no borrow between
/// bytes), then the eight flags gathered into eight bits by one multiply.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn lf_mask_swar(block: &[u8; BLOCK]) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    // Byte k's bit 0 lands in bit 56 + k (no two partial products overlap).
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut mask = 0u64;
    for (i, chunk) in block.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ LFS;
        // High bit of each byte set iff the byte is zero, i.e. was LF.
        let zero = !(((x & LOW7) + LOW7) | x) & !LOW7;
        let bits = (zero >> 7).wrapping_mul(GATHER) >> 56;
        mask |= bits << (8 * i);
    }
    mask
}

#[inline]
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 3261 token characters.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    // One table load: header names are checked byte by byte on every message.
    crate::scan::is_token_char(b)
}

fn push_header(headers: &mut HeaderIndex, e: HeaderEntry, limits: &Limits) -> Result<(), Error> {
    if headers.len() >= limits.max_headers {
        return Err(Error::TooLarge("header count"));
    }
    headers.push(e);
    Ok(())
}

/// `Name *WS ":" *WS value`, value trimmed at the end.
fn parse_header_line(buf: &[u8], pos: usize, end: usize) -> Result<HeaderEntry, Error> {
    let line = buf.get(pos..end).unwrap_or(b"");
    let (name, colon, kind) = match name_and_colon(line) {
        Some(found) => found,
        None => return Err(header_name_error(line)),
    };
    let name_len = u16::try_from(name.len()).map_err(|_| Error::TooLarge("header line"))?;
    let after = line.get(colon + 1..).unwrap_or(b"");
    let lead = leading_ws(after);
    let value = trim_end(after.get(lead..).unwrap_or(b""));
    let value_start = pos + colon + 1 + lead;
    // An empty first-line value starts where the line ends, so a fold can move it.
    let value_start = if value.is_empty() { end } else { value_start };
    Ok(HeaderEntry {
        name_start: pos as u32,
        value_start: value_start as u32,
        value_end: (value_start + value.len()) as u32,
        name_len,
        kind,
    })
}

/// `token *WS ":"` at the start of `line`: the name, the index of the colon (a token
/// cannot hold a colon, so it is the line's first) and the name's kind.
///
/// The colon is found eight bytes a step and the name classified first: a known name
/// matched one of the canonical spellings (letters and '-', compared case-insensitively)
/// or a compact letter, so it is a token and needs no check byte by byte; only `Other`
/// names are checked.
#[inline]
fn name_and_colon(line: &[u8]) -> Option<(&[u8], usize, HeaderName)> {
    let colon = find_colon(line)?;
    let before = &line[..colon];
    let name = trim_end(before);
    let kind = HeaderName::from_bytes(name);
    let is_token_name =
        kind != HeaderName::Other || (!name.is_empty() && name.iter().all(|&b| is_token(b)));
    is_token_name.then_some((name, colon, kind))
}

/// Index of the first `:` in `line`: a header name is 2 to 20 bytes, where a `memchr`
/// call costs more than two word-sized steps.
#[inline]
fn find_colon(line: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const COLONS: u64 = u64::from_ne_bytes([b':'; 8]);
    let mut chunks = line.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ COLONS;
        // The lowest set bit marks the first zero byte, i.e. the first colon (borrows
        // only make false marks above a true one).
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b':')
        .map(|i| at + i)
}

/// Why a header line has no `token *WS ":"` start.
fn header_name_error(line: &[u8]) -> Error {
    let Some(colon) = memchr(b':', line) else {
        return Error::BadSyntax("header line without colon");
    };
    let name = trim_end(line.get(..colon).unwrap_or(b""));
    if name.is_empty() {
        Error::BadSyntax("empty header name")
    } else {
        Error::BadSyntax("invalid header name")
    }
}

/// A continuation line (starting with SP/HTAB) extends the previous value; the value range
/// then covers the CRLF and indentation, which views read as LWS.
fn extend_folded(buf: &[u8], e: &mut HeaderEntry, pos: usize, end: usize) {
    let line = buf.get(pos..end).unwrap_or(b"");
    let Some(first) = line.iter().position(|&b| !is_ws(b)) else {
        return;
    };
    let last = trim_end(line).len();
    if e.value_start == e.value_end {
        e.value_start = (pos + first) as u32;
    }
    e.value_end = (pos + last) as u32;
}

/// SP/HTAB bytes at the start of `s`.
#[inline]
fn leading_ws(s: &[u8]) -> usize {
    // `Name: value`, one space, is the usual spelling: no scan for it.
    match s {
        [b' ', b, ..] if !is_ws(*b) => 1,
        _ => s.iter().take_while(|&&b| is_ws(b)).count(),
    }
}

#[inline]
fn trim_end(s: &[u8]) -> &[u8] {
    // Names and values almost always end in a non-blank byte: one compare, no scan.
    if s.last().is_some_and(|&b| !is_ws(b)) {
        return s;
    }
    let n = s.iter().rposition(|&b| !is_ws(b)).map_or(0, |i| i + 1);
    s.get(..n).unwrap_or(b"")
}

/// All Content-Length headers must agree (RFC 4475 mcl01) and be numeric (ncl).
fn content_length(buf: &[u8], headers: &[HeaderEntry]) -> Result<Option<usize>, Error> {
    let mut found: Option<usize> = None;
    for e in headers
        .iter()
        .filter(|e| e.kind == HeaderName::ContentLength)
    {
        let v = buf.get(e.value_span().range()).unwrap_or(b"");
        let n = parse_decimal(v).ok_or(Error::BadSyntax("invalid Content-Length"))?;
        match found {
            Some(prev) if prev != n => {
                return Err(Error::BadSyntax("conflicting Content-Length values"))
            }
            _ => found = Some(n),
        }
    }
    Ok(found)
}

/// `1*DIGIT`, saturating at `usize::MAX` so a huge value is "too big", never a wrap.
pub(crate) fn parse_decimal(v: &[u8]) -> Option<usize> {
    if v.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.saturating_mul(10).saturating_add((b - b'0') as usize);
    }
    Some(n)
}

fn parse_start_line(buf: &[u8], end: usize, limits: &Limits) -> Result<StartLine, Error> {
    let line = buf.get(..end).unwrap_or(b"");
    if line.len() > limits.max_header_line.max(limits.max_uri_len + 64) {
        return Err(Error::TooLarge("start line"));
    }
    // A method is a token and tokens cannot contain '/', so "SIP/" starts a status line.
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        parse_status_line(line)
    } else {
        parse_request_line(line, limits)
    }
}

/// `Method SP Request-URI SP SIP-Version`, single spaces only (RFC 4475 lwsstart, lwsruri,
/// trws are all rejected here).
fn parse_request_line(line: &[u8], limits: &Limits) -> Result<StartLine, Error> {
    // The method is a few bytes: a plain loop beats a `memchr` call's dispatch.
    let sp1 = first_space(line).ok_or(Error::BadSyntax("malformed request line"))?;
    let method = line.get(..sp1).unwrap_or(b"");
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(Error::BadSyntax("invalid method"));
    }
    let rest = line.get(sp1 + 1..).unwrap_or(b"");
    let sp2 = uri_end(rest)?;
    let uri = rest.get(..sp2).unwrap_or(b"");
    if uri.is_empty() {
        return Err(Error::BadSyntax("invalid Request-URI"));
    }
    if uri.len() > limits.max_uri_len {
        return Err(Error::TooLarge("Request-URI"));
    }
    check_version(rest.get(sp2 + 1..).unwrap_or(b""))?;
    let uri_start = sp1 + 1;
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        method_span: Span::new(0, sp1),
        uri: Span::new(uri_start, uri_start + sp2),
    })
}

/// Offset of the first SP in `s`.
#[inline]
fn first_space(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b' ')
}

/// The Request-URI's length in `rest` (what follows the method's SP): the URI's bytes are
/// checked in the same pass that looks for the SP ending it. A URI holding a byte that is
/// not visible ASCII is "invalid Request-URI"; no SP after it, "malformed request line"
/// (the verdicts of finding the SP first and checking the URI's bytes after).
#[inline]
fn uri_end(rest: &[u8]) -> Result<usize, Error> {
    match first_not_visible(rest) {
        Some(i) if rest.get(i) == Some(&b' ') => Ok(i),
        // The bad byte comes before any SP, so it is inside the URI if an SP follows.
        Some(_) if first_space(rest).is_some() => Err(Error::BadSyntax("invalid Request-URI")),
        _ => Err(Error::BadSyntax("malformed request line")),
    }
}

/// Offset of the first byte of `s` that is a control byte, SP or DEL (not allowed in a
/// Request-URI; bytes from 0x80 are). Eight bytes a step: a URI is 20 to 60 bytes, where a
/// byte loop cost ~9 instructions a byte.
#[inline]
fn first_not_visible(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const BANG: u64 = u64::from_ne_bytes([b'!'; 8]);
    const DEL: u64 = u64::from_ne_bytes([0x7f; 8]);
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // High bit of a byte below '!' (`!x` drops bytes from 0x80), and of a DEL (zero
        // after the xor). A borrow only marks bytes above a true mark, so the lowest mark
        // of either is exact.
        let below = x.wrapping_sub(BANG) & !x & HIGHS;
        let d = x ^ DEL;
        let del = d.wrapping_sub(ONES) & !d & HIGHS;
        let marks = below | del;
        if marks != 0 {
            return Some(at + (marks.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b <= b' ' || b == 0x7f)
        .map(|i| at + i)
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`; the reason may be empty and any bytes.
/// A missing SP after the code is tolerated.
fn parse_status_line(line: &[u8]) -> Result<StartLine, Error> {
    let sp = first_space(line).ok_or(Error::BadSyntax("malformed status line"))?;
    check_version(line.get(..sp).unwrap_or(b""))?;
    let rest = line.get(sp + 1..).unwrap_or(b"");
    let code = match rest {
        [a, b, c, tail @ ..]
            if a.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            (a - b'0') as u16 * 100 + (b - b'0') as u16 * 10 + (c - b'0') as u16
        }
        _ => return Err(Error::BadSyntax("invalid status code")),
    };
    if !(100..=699).contains(&code) {
        return Err(Error::BadSyntax("invalid status code"));
    }
    let reason_start = (sp + 1 + 4).min(line.len());
    Ok(StartLine::Response {
        code,
        reason: Span::new(reason_start, line.len()),
    })
}

/// Only SIP/2.0 (case-insensitive) is accepted. Something shaped like a SIP version is a
/// 505; anything else is a syntax error.
fn check_version(v: &[u8]) -> Result<(), Error> {
    // Spelled in upper case almost always: two word compares before the case-folding loop.
    if v == b"SIP/2.0" || v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    if v.len() > 4 && v[..4].eq_ignore_ascii_case(b"SIP/") {
        let num = &v[4..];
        if let Some(dot) = memchr(b'.', num) {
            let (major, minor) = (&num[..dot], &num[dot + 1..]);
            let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
            if digits(major) && digits(minor) {
                return Err(Error::VersionNotSupported);
            }
        }
    }
    Err(Error::BadSyntax("invalid SIP version"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::INLINE_HEADERS;

    fn parse(s: &[u8]) -> Result<Message, Error> {
        parse_datagram(Bytes::copy_from_slice(s), &Limits::default())
    }

    /// The byte-by-byte reading `name_and_colon` replaced: the token run, then SP/HT,
    /// then the colon.
    fn reference_name_and_colon(line: &[u8]) -> Option<(&[u8], usize, HeaderName)> {
        let n = line.iter().position(|&b| !is_token(b))?;
        let colon = n + line[n..].iter().position(|&b| !is_ws(b))?;
        (n > 0 && line[colon] == b':')
            .then(|| (&line[..n], colon, HeaderName::from_bytes(&line[..n])))
    }

    #[test]
    fn header_name_fast_path_agrees_with_reference() {
        for line in [
            &b"Via: SIP/2.0/UDP h"[..],
            b"Content-Length: 0",
            b"Content-Length : 0",
            b"content-length\t:0",
            b"X-Very-Long-Custom-Header-Name-Here: x",
            b"v:x",
            b"Call ID: x",
            b"Call-ID x: y",
            b"Via\r: x",
            b"To\x00: x",
            b": x",
            b" : x",
            b"NoColonHere",
            b"Subject:",
            b"Max-Forwards:70",
            b"Record-Route:: x",
            b"Fro\xc3\xa9: x",
        ] {
            assert_eq!(
                name_and_colon(line),
                reference_name_and_colon(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// Every LF offset in order, found the plain way.
    fn reference_lfs(buf: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(i) = buf.get(pos..).and_then(|rest| memchr(b'\n', rest)) {
            out.push(pos + i);
            pos += i + 1;
        }
        out
    }

    fn all_lfs(buf: &[u8]) -> Vec<usize> {
        let mut lfs = LineEnds::new(buf);
        // Bounded: one LF per byte at most, then `None` (asked twice: it stays `None`).
        let out: Vec<usize> = std::iter::from_fn(|| lfs.next_lf())
            .take(buf.len() + 1)
            .collect();
        assert_eq!(lfs.next_lf(), None);
        out
    }

    /// The request-line reading `uri_end` replaced: the SP first, then the URI's bytes.
    fn reference_uri_end(rest: &[u8]) -> Result<usize, Error> {
        let sp2 = memchr(b' ', rest).ok_or(Error::BadSyntax("malformed request line"))?;
        if !rest[..sp2].iter().all(|&b| b > b' ' && b != 0x7f) {
            return Err(Error::BadSyntax("invalid Request-URI"));
        }
        Ok(sp2)
    }

    #[test]
    fn line_ends_at_block_edges() {
        for len in [0, 1, 63, 64, 65, 127, 128, 129, 200] {
            for lf_at in [0, 62, 63, 64, 65, 127, 128] {
                let mut buf = vec![b'a'; len];
                if let Some(b) = buf.get_mut(lf_at) {
                    *b = b'\n';
                }
                assert_eq!(all_lfs(&buf), reference_lfs(&buf), "{len} {lf_at}");
            }
            let all = vec![b'\n'; len];
            assert_eq!(all_lfs(&all), (0..len).collect::<Vec<_>>());
        }
    }

    proptest::proptest! {
        #[test]
        fn line_ends_agree_with_memchr(
            buf in proptest::collection::vec(
                proptest::sample::select(b"\n\r:a \x8a\x0b\x09".to_vec()), 0..300)
        ) {
            proptest::prop_assert_eq!(all_lfs(&buf), reference_lfs(&buf));
        }

        #[test]
        fn uri_end_agrees_with_reference(
            rest in proptest::collection::vec(
                proptest::sample::select(b"sip:a@b \t\x7f\x00\xc3SIP/2.0".to_vec()), 0..40)
        ) {
            proptest::prop_assert_eq!(uri_end(&rest), reference_uri_end(&rest));
        }

        #[test]
        fn first_not_visible_agrees_with_bytes(
            s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            visible in proptest::collection::vec(0x21u8..0x7f, 0..40),
            at in 0..40usize,
            b in proptest::prelude::any::<u8>(),
        ) {
            let want = |s: &[u8]| s.iter().position(|&b| b <= b' ' || b == 0x7f);
            proptest::prop_assert_eq!(first_not_visible(&s), want(&s));
            // A mostly visible URI with one arbitrary byte somewhere.
            let mut v = visible;
            if let Some(x) = v.get_mut(at) {
                *x = b;
            }
            proptest::prop_assert_eq!(first_not_visible(&v), want(&v));
        }

        #[test]
        fn lf_masks_agree_with_bytes(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"\n\x00\x0b\x09\x8a\xff\x7fa".to_vec()), 64)
        ) {
            let block: [u8; BLOCK] = bytes.as_slice().try_into().unwrap();
            let want = block
                .iter()
                .enumerate()
                .fold(0u64, |m, (i, &b)| m | (u64::from(b == b'\n') << i));
            proptest::prop_assert_eq!(lf_mask_swar(&block), want);
            proptest::prop_assert_eq!(lf_mask(&block), want);
        }

        #[test]
        fn header_name_agrees_with_reference(
            line in proptest::collection::vec(
                proptest::sample::select(b"ViaToCcSLlf-:: \t\r\x00\xe9x".to_vec()), 0..40)
        ) {
            proptest::prop_assert_eq!(name_and_colon(&line), reference_name_and_colon(&line));
        }

        #[test]
        fn blank_trims_agree_with_scans(
            s in proptest::collection::vec(proptest::sample::select(b" \tab\r:".to_vec()), 0..12)
        ) {
            let lead = s.iter().take_while(|&&b| is_ws(b)).count();
            proptest::prop_assert_eq!(leading_ws(&s), lead);
            let n = s.iter().rposition(|&b| !is_ws(b)).map_or(0, |i| i + 1);
            proptest::prop_assert_eq!(trim_end(&s), &s[..n]);
        }

        #[test]
        fn known_names_in_any_case_agree(
            i in 0..HeaderName::ALL.len(), upper in proptest::collection::vec(proptest::bool::ANY, 20), ws in 0..3usize
        ) {
            let mut line: Vec<u8> = HeaderName::ALL[i].as_str().bytes().zip(upper.iter().cycle())
                .map(|(b, &u)| if u { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() })
                .collect();
            line.resize(line.len() + ws, b' ');
            line.extend_from_slice(b": value");
            let got = name_and_colon(&line);
            proptest::prop_assert_eq!(got, reference_name_and_colon(&line));
            proptest::prop_assert_eq!(got.map(|g| g.2), Some(HeaderName::ALL[i]));
        }
    }

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: abc@host\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
body";

    #[test]
    fn head_of_a_datagram_with_a_short_body() {
        let raw = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                   Content-Length: 99\r\n\r\nv=0\r\n";
        let limits = Limits::default();
        assert!(parse_datagram(Bytes::from(raw), &limits).is_err());
        let m = parse_datagram_head(Bytes::from(raw), &limits).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert!(m.body().is_empty());
        assert!(parse_datagram_head(Bytes::from_static(b"garbage"), &limits).is_none());
    }

    #[test]
    fn parses_a_request() {
        let m = parse(INVITE).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.method_bytes(), b"INVITE");
        assert_eq!(m.request_uri(), b"sip:bob@example.com");
        assert_eq!(m.status(), None);
        assert_eq!(m.header(HeaderName::CallId), Some(&b"abc@host"[..]));
        assert_eq!(m.header(HeaderName::CSeq), Some(&b"1 INVITE"[..]));
        assert_eq!(m.body(), b"body");
        assert_eq!(m.content_length(), Some(4));
        assert_eq!(m.field_count(), 7);
    }

    #[test]
    fn parses_a_response_with_and_without_reason() {
        let m = parse(b"SIP/2.0 180 Ringing\r\nCall-ID: x\r\n\r\n").unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), b"Ringing");
        assert_eq!(m.method(), None);
        assert_eq!(m.request_uri(), b"");
        let m = parse(b"SIP/2.0 100 \r\n\r\n").unwrap();
        assert_eq!(m.reason(), b"");
        let m = parse(b"SIP/2.0 100\r\n\r\n").unwrap();
        assert_eq!((m.status(), m.reason()), (Some(100), &b""[..]));
        let m = parse(b"sip/2.0 200 OK \xff\xfe\r\n\r\n").unwrap();
        assert_eq!(m.reason(), b"OK \xff\xfe");
    }

    #[test]
    fn rejects_impossible_status_codes() {
        for line in [
            &b"SIP/2.0 4294967301 big\r\n\r\n"[..],
            b"SIP/2.0 099 low\r\n\r\n",
            b"SIP/2.0 700 high\r\n\r\n",
            b"SIP/2.0 20 short\r\n\r\n",
            b"SIP/2.0 2000\r\n\r\n",
            b"SIP/2.0 abc x\r\n\r\n",
        ] {
            assert_eq!(parse(line).unwrap_err().status(), 400, "{line:?}");
        }
    }

    #[test]
    fn version_errors() {
        assert_eq!(
            parse(b"OPTIONS sip:a SIP/7.0\r\n\r\n").unwrap_err(),
            Error::VersionNotSupported
        );
        assert_eq!(
            parse(b"SIP/3.1 200 OK\r\n\r\n").unwrap_err(),
            Error::VersionNotSupported
        );
        assert!(parse(b"OPTIONS sip:a sip/2.0\r\n\r\n").is_ok());
        for bad in [
            &b"OPTIONS sip:a HTTP/1.1\r\n\r\n"[..],
            b"OPTIONS sip:a SIP/2\r\n\r\n",
            b"OPTIONS sip:a SIP/x.0\r\n\r\n",
        ] {
            assert_eq!(parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn request_line_needs_single_spaces() {
        for bad in [
            &b"INVITE  sip:a SIP/2.0\r\n\r\n"[..],
            b"INVITE sip:a  SIP/2.0\r\n\r\n",
            b"INVITE sip:a SIP/2.0 \r\n\r\n",
            b"INVITE sip:a; lr SIP/2.0\r\n\r\n",
            b"INVITE sip:a\r\n\r\n",
            b" INVITE sip:a SIP/2.0\r\n\r\n",
            b"INV@TE sip:a SIP/2.0\r\n\r\n",
            b"INVITE sip:a\tb SIP/2.0\r\n\r\n",
        ] {
            assert_eq!(parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn extension_methods_are_other_with_spelling() {
        let m = parse(b"FOO.bar sip:a SIP/2.0\r\n\r\n").unwrap();
        assert_eq!(m.method(), Some(Method::Other));
        assert_eq!(m.method_bytes(), b"FOO.bar");
    }

    #[test]
    fn header_names_compact_case_and_space_before_colon() {
        let m = parse(
            b"OPTIONS sip:a SIP/2.0\r\nv: SIP/2.0/UDP h\r\nTO :\tx\r\nmax-FORWARDS:70\r\nX-Foo: 1\r\nx-foo: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.header(HeaderName::Via), Some(&b"SIP/2.0/UDP h"[..]));
        assert_eq!(m.header(HeaderName::To), Some(&b"x"[..]));
        assert_eq!(m.header(HeaderName::MaxForwards), Some(&b"70"[..]));
        let foos: Vec<_> = m.headers_named(b"X-FOO").collect();
        assert_eq!(foos, vec![&b"1"[..], b"2"]);
        assert_eq!(m.header_named(b"t"), Some(&b"x"[..]));
        assert_eq!(m.header(HeaderName::Other), Some(&b"1"[..]));
        let names: Vec<_> = m.fields().map(|f| f.name).collect();
        assert_eq!(
            names,
            vec![&b"v"[..], b"TO", b"max-FORWARDS", b"X-Foo", b"x-foo"]
        );
    }

    #[test]
    fn folded_values_span_the_fold() {
        let m = parse(
            b"OPTIONS sip:a SIP/2.0\r\nTo :\r\n sip:a@b ;tag=1\r\nSubject: one\r\n\t two  \r\n   \r\nVia: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.header(HeaderName::To), Some(&b"sip:a@b ;tag=1"[..]));
        assert_eq!(m.header(HeaderName::Subject), Some(&b"one\r\n\t two"[..]));
        assert_eq!(m.header(HeaderName::Via), Some(&b"x"[..]));
    }

    #[test]
    fn empty_values_are_kept() {
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\ns :\r\nSubject:\r\nTo: a\r\n\r\n").unwrap();
        let subjects: Vec<_> = m.headers(HeaderName::Subject).collect();
        assert_eq!(subjects, vec![&b""[..], b""]);
        assert_eq!(m.header(HeaderName::To), Some(&b"a"[..]));
    }

    #[test]
    fn bare_lf_line_ends() {
        let m = parse(b"OPTIONS sip:a SIP/2.0\nTo: a\nFrom: b\r\n\nxyz").unwrap();
        assert_eq!(m.header(HeaderName::To), Some(&b"a"[..]));
        assert_eq!(m.header(HeaderName::From), Some(&b"b"[..]));
        assert_eq!(m.body(), b"xyz");
    }

    #[test]
    fn malformed_header_lines() {
        for bad in [
            &b"OPTIONS sip:a SIP/2.0\r\nFoobar roobar\r\n\r\n"[..],
            b"OPTIONS sip:a SIP/2.0\r\n: value\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\n  : value\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\n fold first\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nBad Name: v\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nTo: a",
            b"OPTIONS sip:a SIP/2.0\r\nTo: a\r",
            b"OPTIONS sip:a SIP/2.0",
        ] {
            assert_eq!(parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn body_framing_over_datagrams() {
        // Trailing bytes beyond Content-Length are not part of the message.
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nl: 2\r\n\r\nabcdef").unwrap();
        assert_eq!(m.body(), b"ab");
        assert_eq!(
            m.bytes().len(),
            b"OPTIONS sip:a SIP/2.0\r\nl: 2\r\n\r\nab".len()
        );
        // No Content-Length: rest of the datagram.
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\n\r\nabc\r\n").unwrap();
        assert_eq!(m.body(), b"abc\r\n");
        assert_eq!(m.content_length(), None);
        // Too long, non-numeric, negative, conflicting.
        for bad in [
            &b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 9\r\n\r\nabc"[..],
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length:\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab",
            b"OPTIONS sip:a SIP/2.0\r\nl: 99999999999999999999999999\r\n\r\nab",
        ] {
            assert_eq!(parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
        // Agreeing duplicates and a folded value are fine.
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-Length:\r\n 1\r\n\r\nab").unwrap();
        assert_eq!(m.body(), b"a");
    }

    #[test]
    fn datagram_may_end_without_blank_line() {
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nTo: a\r\n").unwrap();
        assert_eq!(m.header(HeaderName::To), Some(&b"a"[..]));
        assert_eq!(m.body(), b"");
        let m = parse(b"OPTIONS sip:a SIP/2.0\n").unwrap();
        assert_eq!(m.field_count(), 0);
        // ...but then there is no body for a Content-Length to count.
        assert!(parse(b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\n").is_err());
        // Streams still wait for the blank line.
        let l = Limits::default();
        assert_eq!(
            parse_head(b"OPTIONS sip:a SIP/2.0\r\nTo: a\r\n", &l).unwrap_err(),
            Error::Incomplete
        );
    }

    #[test]
    fn leading_crlf_is_skipped() {
        let m = parse(b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\n\r\n").unwrap();
        assert_eq!(m.request_uri(), b"sip:a");
        assert!(m.bytes().starts_with(b"OPTIONS"));
        assert_eq!(parse(b"\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"").unwrap_err().status(), 400);
    }

    #[test]
    fn limits_are_enforced() {
        let small = Limits {
            max_message_size: 40,
            ..Limits::default()
        };
        let e = parse_datagram(Bytes::from_static(INVITE), &small).unwrap_err();
        assert_eq!(e, Error::TooLarge("message size"));
        assert_eq!(e.status(), 513);

        let few = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let e = parse_datagram(Bytes::from_static(INVITE), &few).unwrap_err();
        assert_eq!(e, Error::TooLarge("header count"));

        let short = Limits {
            max_header_line: 20,
            ..Limits::default()
        };
        let e = parse_datagram(Bytes::from_static(INVITE), &short).unwrap_err();
        assert_eq!(e, Error::TooLarge("header line"));
        // A fold counts towards the same field.
        let folded = b"OPTIONS sip:a SIP/2.0\r\nSubject: 0123456789\r\n 0123456789\r\n\r\n";
        let e = parse_datagram(Bytes::from_static(folded), &short).unwrap_err();
        assert_eq!(e, Error::TooLarge("header line"));

        let uri = Limits {
            max_uri_len: 10,
            ..Limits::default()
        };
        let e = parse_datagram(Bytes::from_static(INVITE), &uri).unwrap_err();
        assert_eq!(e, Error::TooLarge("Request-URI"));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn folds_extend_the_last_line_inline_and_spilled() {
        // Lines are indexed as they are read: a fold extends the last one, whether the
        // index is still inline or has spilled to the heap.
        for before in [0, INLINE_HEADERS, INLINE_HEADERS + 3] {
            let mut m = b"OPTIONS sip:a SIP/2.0\r\n".to_vec();
            for i in 0..before {
                m.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            m.extend_from_slice(b"Subject: one\r\n \t two\r\nContent-Length: 0\r\n\r\n");
            let msg = parse(&m).unwrap();
            assert_eq!(
                msg.header(HeaderName::Subject),
                Some(&b"one\r\n \t two"[..])
            );
            assert_eq!(msg.content_length(), Some(0));
        }
    }

    #[test]
    fn header_count_limit_holds_inline_and_spilled() {
        for n in [
            INLINE_HEADERS - 1,
            INLINE_HEADERS,
            INLINE_HEADERS + 1,
            INLINE_HEADERS + 5,
        ] {
            let mut s = b"OPTIONS sip:a SIP/2.0\r\n".to_vec();
            for i in 0..n {
                s.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            s.extend_from_slice(b"\r\n");
            for max in [n - 1, n, n + 1] {
                let l = Limits {
                    max_headers: max,
                    ..Limits::default()
                };
                let got = parse_datagram(Bytes::copy_from_slice(&s), &l).map(|m| m.field_count());
                let want = if n > max {
                    Err(Error::TooLarge("header count"))
                } else {
                    Ok(n)
                };
                assert_eq!(got, want, "{n} lines, at most {max}");
            }
        }
    }

    #[test]
    fn many_headers_spill_and_still_read_back() {
        let mut s = b"OPTIONS sip:a SIP/2.0\r\n".to_vec();
        for i in 0..100 {
            s.extend_from_slice(format!("X-H{i}: v{i}\r\n").as_bytes());
        }
        s.extend_from_slice(b"\r\n");
        let m = parse(&s).unwrap();
        assert_eq!(m.field_count(), 100);
        assert_eq!(m.header_named(b"x-h99"), Some(&b"v99"[..]));
    }

    #[test]
    fn head_reports_incomplete_until_blank_line() {
        let l = Limits::default();
        assert_eq!(
            parse_head(b"OPTIONS sip:a SIP/2.0\r\nTo: a\r\n", &l).unwrap_err(),
            Error::Incomplete
        );
        let h = parse_head(b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nab", &l).unwrap();
        assert_eq!(h.head_len, 31);
        assert_eq!(h.content_length, Some(3));
    }

    #[test]
    fn no_prefix_panics() {
        for i in 0..=INVITE.len() {
            let _ = parse(&INVITE[..i]);
            let _ = parse_head(&INVITE[..i], &Limits::default());
        }
    }
}
