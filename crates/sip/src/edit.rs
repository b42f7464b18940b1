//! Editing by splicing: edits are recorded as (range of the original, replacement pieces)
//! and the result is written into one buffer sized up front. Bytes no edit touches are
//! copied verbatim, so whatever a peer wrote that the proxy does not care about survives.
//!
//! Positions always refer to the message as received: "the top Via" is the sender's Via
//! even after [`Editor::push_via`]. Edits are kept in a fixed array, so recording them
//! allocates nothing; [`Editor::finish`] allocates the output once.
//!
//! Content-Length is owned by the editor: it is always emitted, rewritten if the body
//! changes, and inserted if the message had none (streams need it, RFC 3261 §18.3).

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;

use crate::error::Error;
use crate::message::{HeaderEntry, HeaderName, Message};
use crate::params::Params;
use crate::parse::parse_decimal;
use crate::scan::{find_unquoted, list_removal_range, split_list};

/// Edits one [`Editor`] can hold.
pub(crate) const MAX_EDITS: usize = 16;

/// A piece of replacement text.
#[derive(Debug, Clone, Copy, Default)]
enum Part<'a> {
    #[default]
    Empty,
    Bytes(&'a [u8]),
    /// Written in decimal; saves callers formatting numbers into a buffer of their own.
    Num(u32),
}

impl Part<'_> {
    fn len(&self) -> usize {
        match self {
            Part::Empty => 0,
            Part::Bytes(b) => b.len(),
            Part::Num(n) => decimal_len(*n),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        match self {
            Part::Empty => {}
            Part::Bytes(b) => out.put_slice(b),
            Part::Num(n) => put_decimal(out, *n),
        }
    }
}

/// Replace `start..end` of the original (empty range: insert at `start`) with `parts`.
#[derive(Debug, Clone, Copy, Default)]
struct Splice<'a> {
    start: u32,
    end: u32,
    parts: [Part<'a>; 4],
}

impl Splice<'_> {
    fn added_len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }
}

/// User edits plus Content-Length fix-ups one output can hold.
const MAX_OPS: usize = MAX_EDITS + 4;

/// An edit the editor makes itself when writing (see [`Editor::finish`]); the number it
/// writes is the body length.
#[derive(Debug, Clone, Copy)]
enum Fixup {
    /// Replace a Content-Length value.
    Rewrite { start: u32, end: u32 },
    /// Insert a whole Content-Length line.
    Insert { at: u32 },
    /// Insert the blank line ending the head.
    BlankLine { at: u32 },
}

impl Fixup {
    const LINE_PREFIX: &'static [u8] = b"Content-Length: ";

    fn start(&self) -> u32 {
        match *self {
            Fixup::Rewrite { start, .. } => start,
            Fixup::Insert { at } | Fixup::BlankLine { at } => at,
        }
    }

    fn end(&self) -> u32 {
        match *self {
            Fixup::Rewrite { end, .. } => end,
            Fixup::Insert { at } | Fixup::BlankLine { at } => at,
        }
    }

    fn removed_len(&self) -> usize {
        (self.end() - self.start()) as usize
    }

    /// Bytes written, for a body length of `cl_len` digits.
    fn added_len(&self, cl_len: usize) -> usize {
        match self {
            Fixup::Rewrite { .. } => cl_len,
            Fixup::Insert { .. } => Self::LINE_PREFIX.len() + cl_len + 2,
            Fixup::BlankLine { .. } => 2,
        }
    }

    fn write(&self, len: u32, out: &mut BytesMut) {
        match self {
            Fixup::Rewrite { .. } => put_decimal(out, len),
            Fixup::Insert { .. } => {
                out.put_slice(Self::LINE_PREFIX);
                put_decimal(out, len);
                out.put_slice(b"\r\n");
            }
            Fixup::BlankLine { .. } => out.put_slice(b"\r\n"),
        }
    }
}

/// Collects edits on a parsed message and serializes the result.
#[derive(Debug)]
pub struct Editor<'a> {
    msg: &'a Message,
    splices: [Splice<'a>; MAX_EDITS],
    n: usize,
    /// Length of the body after edits.
    body_len: usize,
}

impl<'a> Editor<'a> {
    /// An editor with no edits yet over `msg`.
    pub fn new(msg: &'a Message) -> Editor<'a> {
        Editor {
            msg,
            splices: [Splice::default(); MAX_EDITS],
            n: 0,
            body_len: msg.body().len(),
        }
    }

    /// The message being edited (as received).
    pub fn message(&self) -> &'a Message {
        self.msg
    }

    /// Replaces the Request-URI. Error on a response.
    pub fn set_request_uri(&mut self, uri: &'a [u8]) -> Result<(), Error> {
        let span = match self.msg.start_line() {
            crate::message::StartLine::Request { uri, .. } => uri,
            crate::message::StartLine::Response { .. } => {
                return Err(Error::BadSyntax("no Request-URI in a response"))
            }
        };
        self.add(
            span.start,
            span.end,
            [Part::Bytes(uri), Part::Empty, Part::Empty, Part::Empty],
        )
    }

    /// Adds `Via: value` above the first Via line (RFC 3261 §16.6 step 8).
    pub fn push_via(&mut self, value: &'a [u8]) -> Result<(), Error> {
        let at = self
            .first(HeaderName::Via)
            .map_or_else(|| self.first_line_start(), |e| e.name_start as usize);
        self.insert_line(at, b"Via: ", value)
    }

    /// Removes the top Via value: the whole line if it holds one value, else just the first
    /// value of the list (`Via: a, b` becomes `Via: b`).
    pub fn remove_top_via(&mut self) -> Result<(), Error> {
        let e = self
            .first(HeaderName::Via)
            .ok_or(Error::BadSyntax("missing Via"))?;
        self.remove_first_value(&e)
    }

    /// Removes the first Route value (loose routing, RFC 3261 §16.4). Returns false if the
    /// message has no Route.
    pub fn pop_route(&mut self) -> Result<bool, Error> {
        match self.first(HeaderName::Route) {
            Some(e) => self.remove_first_value(&e).map(|()| true),
            None => Ok(false),
        }
    }

    /// Removes the first `n` Route values, across lines and within comma-separated lines
    /// (the two entries a proxy records when it changes transport, RFC 5658). Returns
    /// how many were removed (fewer when the message has fewer).
    pub fn pop_routes(&mut self, n: usize) -> Result<usize, Error> {
        let msg = self.msg;
        let mut left = n;
        for e in msg
            .entries_from(HeaderName::Route)
            .iter()
            .filter(|e| e.kind == HeaderName::Route)
        {
            if left == 0 {
                break;
            }
            let value = msg.span(e.value_span());
            let items = split_list(value).count();
            if items == 0 {
                continue;
            }
            if items <= left {
                self.remove_line(e)?;
                left -= items;
                continue;
            }
            // Keep the values from the `left`-th on: cut from the first to it.
            let (Some(first), Some(keep)) = (split_list(value).next(), split_list(value).nth(left))
            else {
                break;
            };
            let base = e.value_start;
            self.add(
                base + first.range.start as u32,
                base + keep.range.start as u32,
                Default::default(),
            )?;
            left = 0;
        }
        Ok(n - left)
    }

    /// Adds `Record-Route: value` above the existing Record-Route lines, so it is the first
    /// value (RFC 3261 §16.6 step 4); at the end of the header section if there are none.
    pub fn prepend_record_route(&mut self, value: &'a [u8]) -> Result<(), Error> {
        let at = self
            .first(HeaderName::RecordRoute)
            .map_or_else(|| self.head_end(), |e| e.name_start as usize);
        self.insert_line(at, b"Record-Route: ", value)
    }

    /// Appends a header line at the end of the header section.
    pub fn add_header(&mut self, name: &'a [u8], value: &'a [u8]) -> Result<(), Error> {
        check_not_content_length(name)?;
        let at = self.head_end() as u32;
        self.add(
            at,
            at,
            [
                Part::Bytes(name),
                Part::Bytes(b": "),
                Part::Bytes(value),
                Part::Bytes(b"\r\n"),
            ],
        )
    }

    /// Sets a header: the first line's value is replaced and other lines of that name are
    /// removed; added at the end if absent. Compact forms match their long names.
    pub fn set_header(&mut self, name: &'a [u8], value: &'a [u8]) -> Result<(), Error> {
        check_not_content_length(name)?;
        let mut first = true;
        let msg = self.msg;
        for e in msg.entries().iter().filter(|e| name_matches(msg, e, name)) {
            if first {
                first = false;
                self.replace_value(e, value)?;
            } else {
                self.remove_line(e)?;
            }
        }
        if first {
            self.add_header(name, value)?;
        }
        Ok(())
    }

    /// Removes every line of a header. Returns how many lines were removed.
    pub fn remove_header(&mut self, name: &[u8]) -> Result<usize, Error> {
        self.remove_headers(&[name])
    }

    /// Removes every line of each of `names` (at most [`MAX_REMOVED_NAMES`]) in one pass
    /// over the header index. Returns how many lines were removed.
    pub fn remove_headers(&mut self, names: &[&[u8]]) -> Result<usize, Error> {
        let mut kinds = [HeaderName::Other; MAX_REMOVED_NAMES];
        if names.len() > kinds.len() {
            return Err(Error::TooLarge("header names removed at once"));
        }
        if names.is_empty() {
            return Ok(0);
        }
        // One classification per name serves both the Content-Length check and matching.
        for (kind, name) in kinds.iter_mut().zip(names) {
            *kind = HeaderName::from_bytes(name);
            if *kind == HeaderName::ContentLength {
                return Err(CONTENT_LENGTH_IS_OURS);
            }
        }
        let wanted = || kinds.iter().zip(names);
        let mut n = 0;
        let msg = self.msg;
        // Lines before the first of any wanted kind cannot match: usually none is there.
        let all = msg.entries();
        let from = wanted()
            .map(|(&kind, _)| all.len() - msg.entries_from(kind).len())
            .min()
            .unwrap_or(all.len());
        for e in all.get(from..).unwrap_or(&[]) {
            if wanted().any(|(&kind, name)| kind_matches(msg, e, kind, name)) {
                self.remove_line(e)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sets Max-Forwards to `n`, adding the header if absent.
    pub(crate) fn set_max_forwards(&mut self, n: u8) -> Result<(), Error> {
        match self.first(HeaderName::MaxForwards) {
            Some(e) => self.add(
                e.value_start,
                e.value_end,
                [Part::Num(n as u32), Part::Empty, Part::Empty, Part::Empty],
            ),
            None => {
                let at = self.head_end() as u32;
                self.add(
                    at,
                    at,
                    [
                        Part::Bytes(b"Max-Forwards: "),
                        Part::Num(n as u32),
                        Part::Bytes(b"\r\n"),
                        Part::Empty,
                    ],
                )
            }
        }
    }

    /// RFC 3261 §16.6 step 3: decrements Max-Forwards, or adds `Max-Forwards: 70` if
    /// absent. Returns the new value. Fails on 0 (the caller answers 483 before forwarding)
    /// and on a value that is not 0..=255.
    pub fn decrement_max_forwards(&mut self) -> Result<u8, Error> {
        let Some(v) = self.msg.header(HeaderName::MaxForwards) else {
            self.set_max_forwards(70)?;
            return Ok(70);
        };
        let n = parse_decimal(v)
            .filter(|&n| n <= 255)
            .ok_or(Error::BadSyntax("invalid Max-Forwards"))?;
        let n = u8::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or(Error::BadSyntax("Max-Forwards exhausted"))?;
        self.set_max_forwards(n)?;
        Ok(n)
    }

    /// Replaces the body; Content-Length follows.
    pub fn set_body(&mut self, body: &'a [u8]) -> Result<(), Error> {
        let start = self.msg.head_len() as u32;
        let end = self.msg.bytes().len() as u32;
        self.add(
            start,
            end,
            [Part::Bytes(body), Part::Empty, Part::Empty, Part::Empty],
        )?;
        self.body_len = body.len();
        Ok(())
    }

    /// Records where a request came from in the top Via (RFC 3261 §18.2.1, RFC 3581 §4):
    /// if the Via has `rport`, it gets the source `port` and `received` is always set;
    /// otherwise `received` is set only when `ip` differs from the sent-by host. An
    /// existing `received` value is replaced. `ip` is the bare address text (IPv6 without
    /// brackets, as RFC 5118 §4.5 writes `received`).
    pub fn set_via_received(&mut self, ip: &'a [u8], port: u16) -> Result<(), Error> {
        let e = self
            .first(HeaderName::Via)
            .ok_or(Error::BadSyntax("missing Via"))?;
        let value = self.msg.span(e.value_span());
        let item = split_list(value)
            .next()
            .ok_or(Error::BadSyntax("empty Via"))?;
        let base = e.value_start as usize + item.range.start;
        let item_end = (base + item.value.len()) as u32;
        let semi = find_unquoted(item.value, b';').unwrap_or(item.value.len());
        let sent_by = item.value.get(..semi).unwrap_or(b"");
        let params = Params::new(item.value.get(semi..).unwrap_or(b""));
        let buf_start = self.msg.bytes().as_ptr() as usize;
        let off = |s: &[u8]| (s.as_ptr() as usize - buf_start) as u32;
        let mut has_rport = false;
        let mut received_done = false;
        for p in params.iter() {
            let name_end = off(p.name) + p.name.len() as u32;
            if p.is(b"rport") {
                has_rport = true;
                let (s, e) = p.value.map_or((name_end, name_end), |v| {
                    (name_end, off(v) + v.len() as u32)
                });
                self.add(
                    s,
                    e,
                    [
                        Part::Bytes(b"="),
                        Part::Num(port as u32),
                        Part::Empty,
                        Part::Empty,
                    ],
                )?;
            } else if p.is(b"received") && !received_done {
                received_done = true;
                let (s, e) = p.value.map_or((name_end, name_end), |v| {
                    (name_end, off(v) + v.len() as u32)
                });
                self.add(
                    s,
                    e,
                    [Part::Bytes(b"="), Part::Bytes(ip), Part::Empty, Part::Empty],
                )?;
            }
        }
        if !received_done && (has_rport || !host_matches(sent_by_host(sent_by), ip)) {
            self.add(
                item_end,
                item_end,
                [
                    Part::Bytes(b";received="),
                    Part::Bytes(ip),
                    Part::Empty,
                    Part::Empty,
                ],
            )?;
        }
        Ok(())
    }

    /// Length of the output.
    pub fn output_len(&self) -> usize {
        let (fixups, n) = self.content_length_fixups();
        self.len_with(&fixups[..n])
    }

    /// Writes the edited message into one new buffer.
    pub fn finish(&self) -> Bytes {
        // The fix-ups are a few bytes each and the user edits are read in place: copying
        // every splice into one list to sort it cost a 2 KB memcpy per output.
        let (fixups, n) = self.content_length_fixups();
        let fixups = &fixups[..n];
        let mut out = BytesMut::with_capacity(self.len_with(fixups));
        self.write_ops(fixups, &mut out);
        out.freeze()
    }

    fn len_with(&self, fixups: &[Fixup]) -> usize {
        let mut len = self.msg.bytes().len();
        for s in &self.splices[..self.n] {
            len = len + s.added_len() - (s.end - s.start) as usize;
        }
        let cl_len = decimal_len(self.content_length_value());
        for f in fixups {
            len = len + f.added_len(cl_len) - f.removed_len();
        }
        len
    }

    /// The body length as written into Content-Length.
    fn content_length_value(&self) -> u32 {
        u32::try_from(self.body_len).unwrap_or(u32::MAX)
    }

    /// The user edits (`0..n`) then the fix-ups (`n..`), by start position; stable, so
    /// insertions at one point keep the order they were made in, fix-ups last.
    fn op_order(&self, fixups: &[Fixup]) -> ([u8; MAX_OPS], usize) {
        let mut order = [0u8; MAX_OPS];
        let count = self.n + fixups.len();
        for (i, slot) in order[..count].iter_mut().enumerate() {
            *slot = i as u8;
        }
        let start_of = |i: u8| {
            let i = usize::from(i);
            match self.splices[..self.n].get(i) {
                Some(s) => s.start,
                None => fixups[i - self.n].start(),
            }
        };
        order[..count].sort_by_key(|&i| start_of(i));
        (order, count)
    }

    fn write_ops(&self, fixups: &[Fixup], out: &mut BytesMut) {
        let (order, count) = self.op_order(fixups);
        let src = &self.msg.bytes()[..];
        let len = self.content_length_value();
        let mut cursor = 0usize;
        for &i in &order[..count] {
            let i = usize::from(i);
            let (start, end) = match self.splices[..self.n].get(i) {
                Some(s) => (s.start, s.end),
                None => {
                    let f = &fixups[i - self.n];
                    (f.start(), f.end())
                }
            };
            let start = start as usize;
            if start > cursor {
                out.put_slice(src.get(cursor..start).unwrap_or(b""));
                cursor = start;
            }
            match self.splices[..self.n].get(i) {
                Some(s) => {
                    for p in &s.parts {
                        p.write(out);
                    }
                }
                None => fixups[i - self.n].write(len, out),
            }
            cursor = cursor.max(end as usize);
        }
        out.put_slice(src.get(cursor..).unwrap_or(b""));
    }

    /// The Content-Length fix-ups: every Content-Length value that differs from the
    /// body's length rewritten, one inserted if there is none, and the blank line a
    /// datagram may have come without. At most `MAX_OPS` edits in all, as before.
    fn content_length_fixups(&self) -> ([Fixup; MAX_OPS], usize) {
        let mut fixups = [Fixup::BlankLine { at: 0 }; MAX_OPS];
        let room = MAX_OPS - self.n;
        let mut n = 0;
        let mut seen = false;
        for e in self
            .msg
            .entries()
            .iter()
            .filter(|e| e.kind == HeaderName::ContentLength)
        {
            seen = true;
            let current = parse_decimal(self.msg.span(e.value_span()));
            if current != Some(self.body_len) && n < room {
                fixups[n] = Fixup::Rewrite {
                    start: e.value_start,
                    end: e.value_end,
                };
                n += 1;
            }
        }
        if !seen && n < room {
            fixups[n] = Fixup::Insert {
                at: self.head_end() as u32,
            };
            n += 1;
        }
        if self.lacks_blank_line() && n < room {
            // Added last, so the stable sort keeps it after other insertions there.
            fixups[n] = Fixup::BlankLine {
                at: self.head_end() as u32,
            };
            n += 1;
        }
        (fixups, n)
    }

    fn add(&mut self, start: u32, end: u32, parts: [Part<'a>; 4]) -> Result<(), Error> {
        let new = Splice { start, end, parts };
        for s in &mut self.splices[..self.n] {
            if start < end && s.start == start && s.end == end {
                // Setting the same thing twice: the last edit wins.
                *s = new;
                return Ok(());
            }
            if overlaps(s, &new) {
                return Err(Error::BadSyntax("overlapping edits"));
            }
        }
        let slot = self
            .splices
            .get_mut(self.n)
            .ok_or(Error::TooLarge("edit count"))?;
        *slot = new;
        self.n += 1;
        Ok(())
    }

    fn insert_line(
        &mut self,
        at: usize,
        prefix: &'static [u8],
        value: &'a [u8],
    ) -> Result<(), Error> {
        let at = at as u32;
        self.add(
            at,
            at,
            [
                Part::Bytes(prefix),
                Part::Bytes(value),
                Part::Bytes(b"\r\n"),
                Part::Empty,
            ],
        )
    }

    fn replace_value(&mut self, e: &HeaderEntry, value: &'a [u8]) -> Result<(), Error> {
        // An empty value sits right after the colon; keep the conventional space.
        let lead: &'static [u8] = if e.value_start == e.value_end {
            b" "
        } else {
            b""
        };
        self.add(
            e.value_start,
            e.value_end,
            [
                Part::Bytes(lead),
                Part::Bytes(value),
                Part::Empty,
                Part::Empty,
            ],
        )
    }

    fn remove_line(&mut self, e: &HeaderEntry) -> Result<(), Error> {
        let end = self.line_end(e) as u32;
        self.add(e.name_start, end, Default::default())
    }

    fn remove_first_value(&mut self, e: &HeaderEntry) -> Result<(), Error> {
        let value = self.msg.span(e.value_span());
        let Some(first) = split_list(value).next() else {
            return self.remove_line(e);
        };
        let r = list_removal_range(value, first.range);
        if r.start == 0 && r.end >= value.len() {
            return self.remove_line(e);
        }
        let base = e.value_start;
        self.add(
            base + r.start as u32,
            base + r.end as u32,
            Default::default(),
        )
    }

    fn first(&self, kind: HeaderName) -> Option<HeaderEntry> {
        let from = self.msg.entries_from(kind);
        from.iter().find(|e| e.kind == kind).copied()
    }

    /// Offset just past the line terminator ending header `e` (after any folds).
    fn line_end(&self, e: &HeaderEntry) -> usize {
        let buf = &self.msg.bytes()[..];
        let from = e.value_end as usize;
        buf.get(from..)
            .and_then(|rest| memchr(b'\n', rest))
            .map_or(buf.len(), |i| from + i + 1)
    }

    /// Where the first header line starts (just after the start line).
    fn first_line_start(&self) -> usize {
        match self.msg.entries().first() {
            Some(e) => e.name_start as usize,
            None => self.head_end(),
        }
    }

    /// Offset of the blank line ending the header section (the end of the head if a
    /// datagram came without one).
    fn head_end(&self) -> usize {
        let h = self.msg.head();
        if h.ends_with(b"\n\r\n") {
            h.len() - 2
        } else if h.ends_with(b"\n\n") {
            h.len() - 1
        } else {
            h.len()
        }
    }

    /// A datagram without the blank line after its headers; the output gets one.
    fn lacks_blank_line(&self) -> bool {
        let h = self.msg.head();
        !(h.ends_with(b"\n\r\n") || h.ends_with(b"\n\n"))
    }
}

fn name_matches(msg: &Message, e: &HeaderEntry, name: &[u8]) -> bool {
    kind_matches(msg, e, HeaderName::from_bytes(name), name)
}

/// `name_matches` with `name` already classified as `kind`.
fn kind_matches(msg: &Message, e: &HeaderEntry, kind: HeaderName, name: &[u8]) -> bool {
    match kind {
        HeaderName::Other => {
            e.kind == HeaderName::Other && msg.span(e.name_span()).eq_ignore_ascii_case(name)
        }
        kind => e.kind == kind,
    }
}

/// Header names [`Editor::remove_headers`] takes at once.
pub const MAX_REMOVED_NAMES: usize = 4;

const CONTENT_LENGTH_IS_OURS: Error = Error::BadSyntax("Content-Length is set by the editor");

fn check_not_content_length(name: &[u8]) -> Result<(), Error> {
    if HeaderName::from_bytes(name) == HeaderName::ContentLength {
        return Err(CONTENT_LENGTH_IS_OURS);
    }
    Ok(())
}

fn overlaps(a: &Splice<'_>, b: &Splice<'_>) -> bool {
    let strictly_inside = |p: u32, s: &Splice<'_>| s.start < p && p < s.end;
    match (a.start == a.end, b.start == b.end) {
        (true, true) => false,
        (true, false) => strictly_inside(a.start, b),
        (false, true) => strictly_inside(b.start, a),
        (false, false) => a.start < b.end && b.start < a.end,
    }
}

/// The host of a Via `sent-protocol LWS sent-by` (without brackets for IPv6).
fn sent_by_host(v: &[u8]) -> &[u8] {
    // The protocol is name/version/transport, with LWS allowed around the slashes.
    let mut slashes = 0;
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if b == b'/' {
            slashes += 1;
            if slashes == 2 {
                break;
            }
        }
        i += 1;
    }
    let rest = v.get(i + 1..).unwrap_or(b"");
    let rest = trim_lws_start(rest);
    let t = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    let host = trim_lws_start(rest.get(t..).unwrap_or(b""));
    if let Some(inner) = host.strip_prefix(b"[") {
        return inner
            .get(..memchr(b']', inner).unwrap_or(inner.len()))
            .unwrap_or(b"");
    }
    let end = host
        .iter()
        .position(|&b| matches!(b, b':' | b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(host.len());
    host.get(..end).unwrap_or(b"")
}

fn trim_lws_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(s.len());
    s.get(n..).unwrap_or(b"")
}

fn host_matches(host: &[u8], ip: &[u8]) -> bool {
    let ip = ip
        .strip_prefix(b"[")
        .and_then(|i| i.strip_suffix(b"]"))
        .unwrap_or(ip);
    host.eq_ignore_ascii_case(ip)
}

pub(crate) fn decimal_len(mut n: u32) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

pub(crate) fn put_decimal(out: &mut BytesMut, n: u32) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::parse::parse_datagram;

    fn parse(s: &[u8]) -> Message {
        parse_datagram(Bytes::copy_from_slice(s), &Limits::default()).unwrap()
    }

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: abc@host\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
body";

    fn out(ed: &Editor<'_>) -> Vec<u8> {
        let b = ed.finish();
        assert_eq!(b.len(), ed.output_len());
        b.to_vec()
    }

    #[test]
    fn no_edits_is_identity() {
        let m = parse(INVITE);
        assert_eq!(out(&Editor::new(&m)), INVITE);
    }

    #[test]
    fn proxy_edits() {
        let m = parse(INVITE);
        let mut ed = Editor::new(&m);
        ed.set_request_uri(b"sip:bob@10.0.0.1:5060").unwrap();
        ed.push_via(b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp")
            .unwrap();
        assert_eq!(ed.decrement_max_forwards().unwrap(), 69);
        ed.prepend_record_route(b"<sip:proxy.example.com;lr>")
            .unwrap();
        assert!(ed.pop_route().unwrap());
        ed.set_via_received(b"203.0.113.9", 40000).unwrap();
        let o = out(&ed);
        let expected = b"INVITE sip:bob@10.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=40000;received=203.0.113.9\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p2.example.com;lr>\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: abc@host\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 4\r\n\
Record-Route: <sip:proxy.example.com;lr>\r\n\
\r\n\
body";
        assert_eq!(
            String::from_utf8_lossy(&o),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn pop_routes_takes_values_across_and_within_lines() {
        let head = b"BYE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n";
        let msg = |routes: &[u8]| {
            let mut m = head.to_vec();
            m.extend_from_slice(routes);
            m.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            parse(&m)
        };
        let routes_after = |m: &Message, n: usize| {
            let mut ed = Editor::new(m);
            let popped = ed.pop_routes(n).unwrap();
            let o = parse(&out(&ed));
            let left: Vec<Vec<u8>> = o
                .headers(HeaderName::Route)
                .flat_map(split_list)
                .map(|i| i.value.to_vec())
                .collect();
            (popped, left)
        };
        let one_line = msg(b"Route: <sip:p1;lr>, <sip:p2;lr>,<sip:x;lr>\r\n");
        assert_eq!(
            routes_after(&one_line, 2),
            (2, vec![b"<sip:x;lr>".to_vec()])
        );
        let lines = msg(b"Route: <sip:p1;lr>\r\nRoute: <sip:p2;lr>\r\nRoute: <sip:x;lr>\r\n");
        assert_eq!(routes_after(&lines, 2), (2, vec![b"<sip:x;lr>".to_vec()]));
        let mixed = msg(b"Route: <sip:p1;lr>\r\nRoute: <sip:p2;lr>, <sip:x;lr>\r\n");
        assert_eq!(routes_after(&mixed, 2), (2, vec![b"<sip:x;lr>".to_vec()]));
        let two = msg(b"Route: <sip:p1;lr>,<sip:p2;lr>\r\n");
        assert_eq!(routes_after(&two, 2), (2, vec![]));
        assert_eq!(routes_after(&two, 3), (2, vec![]));
    }

    #[test]
    fn remove_top_via_from_a_shared_line() {
        let m = parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;x=\"p,q\", SIP/2.0/UDP b\r\nVia: SIP/2.0/UDP c\r\nl: 0\r\n\r\n");
        let mut ed = Editor::new(&m);
        ed.remove_top_via().unwrap();
        let o = parse(&out(&ed));
        let vias: Vec<_> = o.headers(HeaderName::Via).collect();
        assert_eq!(vias, vec![&b"SIP/2.0/UDP b"[..], b"SIP/2.0/UDP c"]);
    }

    #[test]
    fn remove_top_via_whole_line_including_fold() {
        let m = parse(
            b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a\r\n ;branch=1\r\nVia: SIP/2.0/UDP c\r\n\r\n",
        );
        let mut ed = Editor::new(&m);
        ed.remove_top_via().unwrap();
        assert_eq!(
            out(&ed),
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP c\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn missing_via_is_an_error() {
        let m = parse(b"SIP/2.0 200 OK\r\n\r\n");
        let mut ed = Editor::new(&m);
        assert!(ed.remove_top_via().is_err());
        assert!(ed.set_via_received(b"1.2.3.4", 5).is_err());
        assert!(!ed.pop_route().unwrap());
    }

    #[test]
    fn push_via_without_any_via_goes_first() {
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nTo: a\r\n\r\n");
        let mut ed = Editor::new(&m);
        ed.push_via(b"SIP/2.0/TCP p").unwrap();
        assert_eq!(
            out(&ed),
            b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP p\r\nTo: a\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn max_forwards_insert_and_errors() {
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        let mut ed = Editor::new(&m);
        assert_eq!(ed.decrement_max_forwards().unwrap(), 70);
        assert_eq!(
            out(&ed),
            b"OPTIONS sip:a SIP/2.0\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        for bad in [&b"0"[..], b"256", b"-1", b"x"] {
            let mut s = b"OPTIONS sip:a SIP/2.0\r\nMax-Forwards: ".to_vec();
            s.extend_from_slice(bad);
            s.extend_from_slice(b"\r\n\r\n");
            let m = parse(&s);
            assert!(Editor::new(&m).decrement_max_forwards().is_err(), "{bad:?}");
        }
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nMax-Forwards: 0010\r\n\r\n");
        let mut ed = Editor::new(&m);
        assert_eq!(ed.decrement_max_forwards().unwrap(), 9);
        ed.set_max_forwards(5).unwrap();
        assert_eq!(
            parse(&out(&ed)).header(HeaderName::MaxForwards),
            Some(&b"5"[..])
        );
    }

    #[test]
    fn body_replacement_fixes_or_adds_content_length() {
        let m = parse(INVITE);
        let mut ed = Editor::new(&m);
        ed.set_body(b"a longer body").unwrap();
        let o = parse(&out(&ed));
        assert_eq!(o.body(), b"a longer body");
        assert_eq!(o.content_length(), Some(13));

        // Datagram without Content-Length: inserted with the body's length.
        let m = parse(b"MESSAGE sip:a SIP/2.0\r\nTo: a\r\n\r\nhello");
        let o = out(&Editor::new(&m));
        assert_eq!(
            o,
            b"MESSAGE sip:a SIP/2.0\r\nTo: a\r\nContent-Length: 5\r\n\r\nhello"
        );
        let mut ed = Editor::new(&m);
        ed.set_body(b"").unwrap();
        assert_eq!(parse(&out(&ed)).content_length(), Some(0));
    }

    #[test]
    fn fixups_follow_user_insertions_at_the_head_end() {
        // No Content-Length and no blank line: the user's header, then the inserted
        // Content-Length, then the blank line, all at the same offset, in that order.
        let m = parse(b"MESSAGE sip:a SIP/2.0\r\nTo: a\r\n");
        let mut ed = Editor::new(&m);
        ed.add_header(b"X-A", b"1").unwrap();
        ed.prepend_record_route(b"<sip:p;lr>").unwrap();
        let o = out(&ed);
        assert_eq!(
            o,
            &b"MESSAGE sip:a SIP/2.0\r\nTo: a\r\nX-A: 1\r\nRecord-Route: <sip:p;lr>\r\n\
               Content-Length: 0\r\n\r\n"[..]
        );
        assert_eq!(ed.output_len(), o.len());
    }

    #[test]
    fn duplicate_agreeing_content_lengths_are_all_rewritten() {
        let m = parse(b"MESSAGE sip:a SIP/2.0\r\nl: 2\r\nContent-Length: 2\r\n\r\nab");
        let mut ed = Editor::new(&m);
        ed.set_body(b"xyz").unwrap();
        let o = parse(&out(&ed));
        assert_eq!(
            o.headers(HeaderName::ContentLength).collect::<Vec<_>>(),
            vec![&b"3"[..], b"3"]
        );
    }

    #[test]
    fn several_headers_removed_in_one_pass() {
        let m = parse(
            b"OPTIONS sip:a SIP/2.0\r\nP-Asserted-Identity: <sip:1@x>\r\nX-A: 1\r\n\
              remote-party-id: <sip:2@x>\r\nP-Asserted-Identity: <sip:3@x>\r\n\r\n",
        );
        let mut ed = Editor::new(&m);
        let names: [&[u8]; 3] = [b"P-Asserted-Identity", b"Remote-Party-ID", b"X-None"];
        assert_eq!(ed.remove_headers(&names).unwrap(), 3);
        assert_eq!(
            out(&ed),
            b"OPTIONS sip:a SIP/2.0\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"
        );
        let mut ed = Editor::new(&m);
        assert!(ed.remove_headers(&[b"A", b"B", b"C", b"D", b"E"]).is_err());
        assert!(ed.remove_headers(&[b"X-A", b"Content-Length"]).is_err());
    }

    #[test]
    fn header_add_set_remove() {
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nX-A: 1\r\nx-a: 2\r\nSubject:\r\nk: foo\r\n\r\n");
        let mut ed = Editor::new(&m);
        ed.set_header(b"X-a", b"new").unwrap();
        ed.set_header(b"Subject", b"hi").unwrap();
        assert_eq!(ed.remove_header(b"Supported").unwrap(), 1);
        ed.add_header(b"X-B", b"b").unwrap();
        ed.set_header(b"X-C", b"c").unwrap();
        assert_eq!(
            out(&ed),
            b"OPTIONS sip:a SIP/2.0\r\nX-A: new\r\nSubject: hi\r\nX-B: b\r\nX-C: c\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(ed.add_header(b"l", b"5").is_err());
        assert!(ed.remove_header(b"Content-Length").is_err());
    }

    #[test]
    fn same_edit_twice_last_wins_and_overlaps_are_refused() {
        let m = parse(INVITE);
        let mut ed = Editor::new(&m);
        ed.set_request_uri(b"sip:one").unwrap();
        ed.set_request_uri(b"sip:two").unwrap();
        assert!(parse(&out(&ed)).request_uri() == b"sip:two");
        ed.remove_top_via().unwrap();
        assert_eq!(
            ed.set_via_received(b"1.1.1.1", 1).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn too_many_edits() {
        let m = parse(INVITE);
        let mut ed = Editor::new(&m);
        for _ in 0..MAX_EDITS {
            ed.add_header(b"X", b"y").unwrap();
        }
        assert_eq!(
            ed.add_header(b"X", b"y").unwrap_err(),
            Error::TooLarge("edit count")
        );
        let o = parse(&out(&ed));
        assert_eq!(o.headers_named(b"x").count(), MAX_EDITS);
    }

    #[test]
    fn response_has_no_request_uri() {
        let m = parse(b"SIP/2.0 200 OK\r\n\r\n");
        assert!(Editor::new(&m).set_request_uri(b"sip:x").is_err());
    }

    fn received(via: &[u8], ip: &[u8], port: u16) -> Vec<u8> {
        let mut s = b"OPTIONS sip:a SIP/2.0\r\nVia: ".to_vec();
        s.extend_from_slice(via);
        s.extend_from_slice(b"\r\nl: 0\r\n\r\n");
        let m = parse(&s);
        let mut ed = Editor::new(&m);
        ed.set_via_received(ip, port).unwrap();
        let o = parse(&out(&ed));
        o.header(HeaderName::Via).unwrap().to_vec()
    }

    #[test]
    fn via_received_and_rport() {
        // Same host, no rport: nothing to add.
        assert_eq!(
            received(b"SIP/2.0/UDP 1.2.3.4;branch=z", b"1.2.3.4", 9),
            b"SIP/2.0/UDP 1.2.3.4;branch=z"
        );
        // Different host: received.
        assert_eq!(
            received(b"SIP/2.0/UDP host:5060;branch=z", b"1.2.3.4", 9),
            b"SIP/2.0/UDP host:5060;branch=z;received=1.2.3.4"
        );
        // rport requested: filled, and received added even for the same host.
        assert_eq!(
            received(b"SIP/2.0/UDP 1.2.3.4;rport;branch=z", b"1.2.3.4", 9),
            b"SIP/2.0/UDP 1.2.3.4;rport=9;branch=z;received=1.2.3.4"
        );
        // Existing values replaced; only the first Via value of the line is touched.
        assert_eq!(
            received(
                b"SIP / 2.0 / UDP h ; received=9.9.9.9;rport=1, SIP/2.0/UDP x",
                b"1.2.3.4",
                7
            ),
            b"SIP / 2.0 / UDP h ; received=1.2.3.4;rport=7, SIP/2.0/UDP x"
        );
        // IPv6 sent-by compared without brackets.
        assert_eq!(
            received(b"SIP/2.0/UDP [2001:db8::1]:5060", b"2001:DB8::1", 5060),
            b"SIP/2.0/UDP [2001:db8::1]:5060"
        );
        assert_eq!(
            received(b"SIP/2.0/UDP [2001:db8::1]", b"2001:db8::2", 5060),
            b"SIP/2.0/UDP [2001:db8::1];received=2001:db8::2"
        );
    }

    #[test]
    fn datagram_without_blank_line_gets_one() {
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nTo: a\r\n");
        let mut ed = Editor::new(&m);
        ed.add_header(b"X", b"y").unwrap();
        assert_eq!(
            out(&ed),
            b"OPTIONS sip:a SIP/2.0\r\nTo: a\r\nX: y\r\nContent-Length: 0\r\n\r\n"
        );
        let m = parse(b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n");
        assert_eq!(
            out(&Editor::new(&m)),
            b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n"
        );
    }

    #[test]
    fn decimal_helpers() {
        for n in [0u32, 9, 10, 99, 100, 65535, u32::MAX] {
            let mut b = BytesMut::new();
            put_decimal(&mut b, n);
            assert_eq!(&b[..], n.to_string().as_bytes());
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }
}
