//! Bencode, the encoding of rtpengine's NG control protocol.
//!
//! Byte strings `4:spam`, integers `i42e`, lists `l…e`, dictionaries `d…e` with byte-string
//! keys. The decoder reads replies from the network, so it is written for hostile input:
//! it never panics, nests at most [`MAX_DEPTH`] deep (no stack exhaustion), and checks
//! every length against what is left of the input before allocating, so a decoded value
//! never holds more data bytes than the datagram had, and at most one value per two
//! input bytes (the shortest value, `0:`, takes two).

/// Deepest nesting of lists and dictionaries the decoder accepts. NG replies nest two or
/// three levels; anything deeper is not from rtpengine.
pub(crate) const MAX_DEPTH: usize = 32;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A byte string.
    Bytes(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A list.
    List(Vec<Value>),
    /// A dictionary: keys in the order read (the encoder sorts them).
    Dict(Vec<(Vec<u8>, Value)>),
}

/// Why a datagram is not bencode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The input ended inside a value.
    Truncated,
    /// A byte that cannot start or continue a value here.
    Syntax,
    /// An integer or length out of range, or with leading zeros or `-0`.
    Number,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes left after the value.
    Trailing,
    /// A dictionary key that is not a byte string.
    Key,
}

impl Value {
    /// A byte-string value from anything byte-like.
    pub(crate) fn bytes(b: impl AsRef<[u8]>) -> Value {
        Value::Bytes(b.as_ref().to_vec())
    }

    /// A list of byte strings.
    pub(crate) fn strings<I, S>(items: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Value::List(items.into_iter().map(Value::bytes).collect())
    }

    /// The value under `key`, when this is a dictionary holding it.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The bytes, when this is a byte string.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Appends the encoding to `out`; dictionary keys are written sorted as raw bytes
    /// (the bencode rule), whatever order they were built in.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bytes(b) => encode_bytes(b, out),
            Value::Int(n) => {
                out.push(b'i');
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'e');
            }
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                let mut sorted: Vec<&(Vec<u8>, Value)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(b'd');
                for (k, v) in sorted {
                    encode_bytes(k, out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value filling all of `input`.
    pub(crate) fn decode(input: &[u8]) -> Result<Value, DecodeError> {
        let mut d = Decoder { input, pos: 0 };
        let v = d.value(0)?;
        if d.pos != input.len() {
            return Err(DecodeError::Trailing);
        }
        Ok(v)
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.number(b'e')?;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => self.byte_string().map(Value::Bytes),
            b'l' => {
                let depth = nested(depth)?;
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let depth = nested(depth)?;
                self.pos += 1;
                let mut entries = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::Key);
                    }
                    let key = self.byte_string()?;
                    let value = self.value(depth)?;
                    entries.push((key, value));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            _ => Err(DecodeError::Syntax),
        }
    }

    /// `<len>:<bytes>`; the length is checked against the input left before copying.
    fn byte_string(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.number(b':')?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Number)?;
        let rest = &self.input[self.pos..];
        if len > rest.len() {
            return Err(DecodeError::Truncated);
        }
        self.pos += len;
        Ok(rest[..len].to_vec())
    }

    /// A decimal integer up to `end` (consumed): optional `-` (not for lengths, which
    /// `usize::try_from` rejects), no leading zeros, no `-0`, within i64.
    fn number(&mut self, end: u8) -> Result<i64, DecodeError> {
        let rest = &self.input[self.pos..];
        let Some(len) = rest.iter().position(|&b| b == end) else {
            return Err(DecodeError::Truncated);
        };
        let text = &rest[..len];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && !(text.len() != digits.len() && digits == b"0");
        if !canonical {
            return Err(DecodeError::Number);
        }
        // All ASCII digits and at most one '-': valid UTF-8.
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(DecodeError::Number)?;
        self.pos += len + 1;
        Ok(n)
    }
}

fn nested(depth: usize) -> Result<usize, DecodeError> {
    if depth >= MAX_DEPTH {
        Err(DecodeError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn encodes_each_kind() {
        assert_eq!(enc(&Value::bytes("spam")), b"4:spam");
        assert_eq!(enc(&Value::bytes("")), b"0:");
        assert_eq!(enc(&Value::Int(-42)), b"i-42e");
        assert_eq!(enc(&Value::Int(0)), b"i0e");
        assert_eq!(enc(&Value::strings(["a", "bc"])), b"l1:a2:bce");
    }

    #[test]
    fn dictionary_keys_are_written_sorted() {
        let d = Value::Dict(vec![
            (b"sdp".to_vec(), Value::bytes("v=0")),
            (b"command".to_vec(), Value::bytes("offer")),
            (b"call-id".to_vec(), Value::bytes("x")),
        ]);
        assert_eq!(enc(&d), b"d7:call-id1:x7:command5:offer3:sdp3:v=0e");
    }

    #[test]
    fn decodes_a_reply() {
        let v = Value::decode(b"d6:result2:ok3:sdp3:v=0e").unwrap();
        assert_eq!(v.get(b"result").and_then(Value::as_bytes), Some(&b"ok"[..]));
        assert_eq!(v.get(b"sdp").and_then(Value::as_bytes), Some(&b"v=0"[..]));
        assert_eq!(v.get(b"none"), None);
    }

    #[test]
    fn hostile_input_is_refused_without_panic() {
        use DecodeError::*;
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", Truncated),
            (b"4:spa", Truncated),
            (b"99999999999999999999:x", Number),
            (b"18446744073709551615:x", Number),
            (b"1000000:x", Truncated),
            (b"i", Truncated),
            (b"ie", Number),
            (b"i-e", Number),
            (b"i-0e", Number),
            (b"i03e", Number),
            (b"i1x2e", Number),
            (b"i9223372036854775808e", Number),
            (b"l", Truncated),
            (b"l4:spam", Truncated),
            (b"d", Truncated),
            (b"di1e1:ae", Key),
            (b"d1:ae", Syntax),
            (b"d1:a", Truncated),
            (b"x", Syntax),
            (b"4:spamX", Trailing),
            (b"-1:x", Syntax),
            (b"01:x", Number),
        ];
        for (input, want) in cases {
            assert_eq!(
                Value::decode(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            Value::decode(b"i-9223372036854775808e"),
            Ok(Value::Int(i64::MIN))
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = [&b"l"[..].repeat(MAX_DEPTH)[..], &b"e"[..].repeat(MAX_DEPTH)].concat();
        assert!(Value::decode(&ok).is_ok());
        let deep = [
            &b"l"[..].repeat(MAX_DEPTH + 1)[..],
            &b"e"[..].repeat(MAX_DEPTH + 1),
        ]
        .concat();
        assert_eq!(Value::decode(&deep), Err(DecodeError::TooDeep));
        // A million opening brackets: refused at the limit, not by a stack overflow.
        assert_eq!(
            Value::decode(&b"d1:a".repeat(1_000_000)),
            Err(DecodeError::TooDeep)
        );
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
            any::<i64>().prop_map(Value::Int),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                // Unique keys, sorted: the form the encoder writes and decoding returns.
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Dict(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in value()) {
            let bytes = enc(&v);
            prop_assert_eq!(Value::decode(&bytes), Ok(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Value::decode(&input);
        }
    }
}
