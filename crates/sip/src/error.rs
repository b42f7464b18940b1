//! The one error type of the codec. Each variant knows the SIP status the proxy answers
//! with, so the packet path never has to guess.

use std::fmt;

/// Why a message could not be parsed or framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Malformed syntax; the message names what was wrong. Answered with 400.
    BadSyntax(&'static str),
    /// A SIP version other than SIP/2.0. Answered with 505.
    VersionNotSupported,
    /// The Request-URI scheme is not sip, sips or tel. Answered with 416.
    UnsupportedUriScheme,
    /// A configured limit (message size, header count, line or URI length) was exceeded;
    /// the message names the limit. Answered with 513 for size, 400 otherwise.
    TooLarge(&'static str),
    /// A stream holds only part of a message so far; read more.
    Incomplete,
}

impl Error {
    /// The status code of the response the proxy sends for a request it cannot accept.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadSyntax(_) => 400,
            Error::VersionNotSupported => 505,
            Error::UnsupportedUriScheme => 416,
            Error::TooLarge("message size") => 513,
            Error::TooLarge(_) => 400,
            Error::Incomplete => 400,
        }
    }

    /// Reason phrase for the response.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BadSyntax(what) => what,
            Error::VersionNotSupported => "Version Not Supported",
            Error::UnsupportedUriScheme => "Unsupported URI Scheme",
            Error::TooLarge("message size") => "Message Too Large",
            Error::TooLarge(what) => what,
            Error::Incomplete => "Incomplete Message",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for Error {}
