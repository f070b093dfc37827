//! The one error type of this crate.

use std::io;

/// Why a frame could not be written or read, or a handshake failed.
///
/// Bad input from the peer ([`WireError::TooLarge`], [`WireError::Empty`],
/// [`WireError::Truncated`], [`WireError::Trailing`], [`WireError::Decode`],
/// [`WireError::Version`]) is kept apart from the link failing ([`WireError::Io`],
/// [`WireError::Closed`], [`WireError::Timeout`]) and from our own misuse
/// ([`WireError::Encode`], [`WireError::Poisoned`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame's length exceeds the limit; refused before any of its body is read or
    /// allocated. On send, our own message was too large.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced (or, on send, the encoded) body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A frame with an empty body: no message of this protocol encodes to zero bytes.
    #[error("empty frame: a message body is never zero bytes")]
    Empty,
    /// The link ended inside a frame.
    #[error("link closed inside a frame: {got} of {expected} bytes of the {part} arrived")]
    Truncated {
        /// `"length prefix"` or `"body"`.
        part: &'static str,
        /// Bytes that part needed.
        expected: usize,
        /// Bytes that arrived before the end.
        got: usize,
    },
    /// The link was closed cleanly between frames.
    #[error("the peer closed the link")]
    Closed,
    /// The body decoded into a message but bytes were left over.
    #[error("{count} trailing bytes after a complete {ty}")]
    Trailing {
        /// The type decoded.
        ty: &'static str,
        /// Bytes left over.
        count: usize,
    },
    /// The body is not a valid postcard encoding of the expected type.
    #[error("cannot decode {ty}: {reason}")]
    Decode {
        /// The type expected.
        ty: &'static str,
        /// postcard's message.
        reason: String,
    },
    /// Our message could not be encoded (a serializer error: a bug on our side).
    #[error("cannot encode {ty}: {reason}")]
    Encode {
        /// The type being sent.
        ty: &'static str,
        /// postcard's message.
        reason: String,
    },
    /// The peer speaks another protocol version.
    #[error("peer speaks wire protocol version {theirs}, we speak {ours}")]
    Version {
        /// [`crate::PROTOCOL_VERSION`].
        ours: u16,
        /// The version the peer sent.
        theirs: u16,
    },
    /// The link failed.
    #[error("I/O error on the link: {0}")]
    Io(#[from] io::Error),
    /// No complete frame arrived within the read timeout.
    #[error("no frame within {0:?}")]
    Timeout(std::time::Duration),
    /// A [`crate::FramedConn`] is unusable: an earlier read or write stopped inside a frame,
    /// so the byte stream is no longer at a frame boundary.
    #[error("connection unusable after an earlier failure inside a frame")]
    Poisoned,
}
