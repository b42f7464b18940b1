//! Size limits applied while parsing and framing. Every limit bounds work or memory a peer
//! can make the proxy spend on one message, so all of them are checked before the bytes
//! they cover are examined further.

/// Limits for one message. Fields are public so settings can override any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message (start line, headers, body). Exceeding it is answered with 513, and on
    /// a stream it is fatal for the connection. Values above `u32::MAX` are treated as
    /// `u32::MAX` because offsets inside a message are stored as `u32`.
    pub max_message_size: usize,
    /// Number of header lines (a folded header counts once).
    pub max_headers: usize,
    /// One header field including its folded continuation lines, or the start line.
    pub max_header_line: usize,
    /// Request-URI length.
    pub max_uri_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_headers: 128,
            max_header_line: 8 * 1024,
            max_uri_len: 4 * 1024,
        }
    }
}

impl Limits {
    /// The message size limit actually enforced (offsets are `u32`).
    pub fn message_size(&self) -> usize {
        self.max_message_size.min(u32::MAX as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(l.max_message_size, 65536);
        assert_eq!(l.max_headers, 128);
        assert_eq!(l.max_header_line, 8192);
        assert_eq!(l.max_uri_len, 4096);
    }

    #[test]
    fn message_size_is_clamped_to_u32() {
        let l = Limits {
            max_message_size: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(l.message_size(), u32::MAX as usize);
    }
}
