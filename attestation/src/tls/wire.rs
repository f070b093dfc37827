//! The messages of the evidence exchange inside the TLS channel, and their framing. Their
//! order (client evidence first, server evidence only after accepting it) is in
//! [`super::endpoint`].
//!
//! A frame is a big-endian `u32` length then that many bytes; frames over [`MAX_FRAME`] are
//! refused before any allocation. A body starts with the protocol version and a kind byte, and
//! is decoded completely (no trailing bytes) into a [`Message`] before anything acts on it.
//!
//! ```text
//! Evidence: 02 'E' role:u8 spki:u16+bytes exporter:[32] report:u16+bytes vcek:u16+bytes
//! Accept:   02 'A'
//! Refuse:   02 'R' code:u8+bytes reason:u16+bytes
//! Party:    02 'P'
//! ```
//!
//! `Party` is the first message of a party (a data owner, model owner or operator, which has
//! no TEE) in place of evidence; see [`super::party`]. Each mode refuses the other's first
//! message by name, so a node on a party port, or a party on a node port, is told so.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::attester::Evidence;
use super::binding::{Binding, Role, EXPORTER_LEN};

/// Version of this exchange; a peer speaking another is refused by name. Version 1 sent both
/// sides' evidence at once; version 2 has the client prove itself first.
pub const PROTOCOL_VERSION: u8 = 2;

/// Largest frame accepted: a report (1184 bytes), a VCEK (about 1.4 KB), an SPKI, and room.
pub const MAX_FRAME: usize = 16 * 1024;

/// Longest refusal reason sent; longer ones are cut at a character boundary.
const MAX_REASON: usize = 2048;

const KIND_EVIDENCE: u8 = b'E';
const KIND_ACCEPT: u8 = b'A';
const KIND_REFUSE: u8 = b'R';
const KIND_PARTY: u8 = b'P';

/// One message of the exchange.
#[derive(Debug)]
pub(crate) enum Message {
    Evidence(Evidence),
    Accept,
    Refuse {
        code: String,
        reason: String,
    },
    /// A party's opening: it has no evidence; it is known by its TLS key alone.
    PartyHello,
}

/// A frame that is not a well-formed message of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix exceeds [`MAX_FRAME`].
    #[error("frame of {found} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The announced length.
        found: usize,
        /// [`MAX_FRAME`].
        limit: usize,
    },
    /// The peer speaks another version of this exchange.
    #[error("peer speaks attested-TLS protocol version {found}, we speak {expected}")]
    Version {
        /// Ours.
        expected: u8,
        /// Theirs.
        found: u8,
    },
    /// An unknown message kind.
    #[error("unknown message kind {found:#04x}")]
    Kind {
        /// The kind byte.
        found: u8,
    },
    /// The body ended inside a field.
    #[error("message truncated in field {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes after the last field.
    #[error("{count} unexpected bytes after the message")]
    Trailing {
        /// How many.
        count: usize,
    },
    /// A field holds a value outside its domain.
    #[error("field {field} is invalid: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The peer sent a message the protocol does not allow at this point.
    #[error("expected {expected}, received {found}")]
    Unexpected {
        /// What the protocol expects now.
        expected: &'static str,
        /// What came.
        found: &'static str,
    },
}

impl Message {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Message::Evidence(_) => "evidence",
            Message::Accept => "acceptance",
            Message::Refuse { .. } => "refusal",
            Message::PartyHello => "a party's hello",
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION];
        match self {
            Message::Evidence(ev) => {
                out.push(KIND_EVIDENCE);
                out.push(ev.binding.role.to_byte());
                put_u16_bytes(&mut out, &ev.binding.spki_der);
                out.extend_from_slice(&ev.binding.exporter);
                put_u16_bytes(&mut out, &ev.report);
                put_u16_bytes(&mut out, &ev.vcek_der);
            }
            Message::Accept => out.push(KIND_ACCEPT),
            Message::Refuse { code, reason } => {
                out.push(KIND_REFUSE);
                let code = truncate(code, u8::MAX as usize);
                out.push(code.len() as u8);
                out.extend_from_slice(code.as_bytes());
                put_u16_bytes(&mut out, truncate(reason, MAX_REASON).as_bytes());
            }
            Message::PartyHello => out.push(KIND_PARTY),
        }
        out
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { rest: body };
        let version = r.u8("version")?;
        if version != PROTOCOL_VERSION {
            return Err(WireError::Version {
                expected: PROTOCOL_VERSION,
                found: version,
            });
        }
        let msg = match r.u8("kind")? {
            KIND_EVIDENCE => {
                let role_byte = r.u8("role")?;
                let role = Role::from_byte(role_byte).ok_or_else(|| WireError::Field {
                    field: "role",
                    reason: format!("{role_byte:#04x} is neither client nor server"),
                })?;
                let spki_der = r.u16_bytes("spki")?.to_vec();
                let exporter = r.array::<EXPORTER_LEN>("exporter")?;
                let report = r.u16_bytes("report")?.to_vec();
                let vcek_der = r.u16_bytes("vcek")?.to_vec();
                Message::Evidence(Evidence {
                    report,
                    vcek_der,
                    binding: Binding {
                        role,
                        spki_der,
                        exporter,
                    },
                })
            }
            KIND_ACCEPT => Message::Accept,
            KIND_REFUSE => {
                let code_len = r.u8("code")? as usize;
                let code = utf8(r.take(code_len, "code")?, "code")?;
                let reason = utf8(r.u16_bytes("reason")?, "reason")?;
                Message::Refuse { code, reason }
            }
            KIND_PARTY => Message::PartyHello,
            found => return Err(WireError::Kind { found }),
        };
        if !r.rest.is_empty() {
            return Err(WireError::Trailing {
                count: r.rest.len(),
            });
        }
        Ok(msg)
    }
}

/// Writes framed messages back to back and flushes once.
pub(crate) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    msgs: &[Message],
) -> std::io::Result<()> {
    let mut frames = Vec::new();
    for msg in msgs {
        let body = msg.encode();
        debug_assert!(body.len() <= MAX_FRAME);
        frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frames.extend_from_slice(&body);
    }
    w.write_all(&frames).await?;
    w.flush().await
}

/// What reading a frame can fail with: the transport, or the bytes.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    Wire(WireError),
}

/// Reads one framed message.
pub(crate) async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, ReadError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(ReadError::Io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(ReadError::Wire(WireError::TooLarge {
            found: len,
            limit: MAX_FRAME,
        }));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(ReadError::Io)?;
    Message::decode(&body).map_err(ReadError::Wire)
}

fn put_u16_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field is far below 64 KiB (the frame limit is 16 KiB); a longer one is a bug.
    let len = u16::try_from(bytes.len()).expect("field shorter than 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn utf8(bytes: &[u8], field: &'static str) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| WireError::Field {
        field,
        reason: e.to_string(),
    })
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16_bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.take(2, field)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        self.take(len, field)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> Message {
        Message::Evidence(Evidence {
            report: vec![1; 1184],
            vcek_der: vec![2; 1300],
            binding: Binding {
                role: Role::Server,
                spki_der: vec![3; 91],
                exporter: [4; EXPORTER_LEN],
            },
        })
    }

    #[test]
    fn messages_round_trip() {
        let body = evidence().encode();
        match Message::decode(&body).unwrap() {
            Message::Evidence(ev) => {
                assert_eq!(ev.report, vec![1; 1184]);
                assert_eq!(ev.vcek_der, vec![2; 1300]);
                assert_eq!(ev.binding.role, Role::Server);
                assert_eq!(ev.binding.spki_der, vec![3; 91]);
                assert_eq!(ev.binding.exporter, [4; EXPORTER_LEN]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Message::decode(&Message::Accept.encode()),
            Ok(Message::Accept)
        ));
        assert!(matches!(
            Message::decode(&Message::PartyHello.encode()),
            Ok(Message::PartyHello)
        ));
        let refuse = Message::Refuse {
            code: "policy.debug".into(),
            reason: "é".repeat(MAX_REASON),
        };
        match Message::decode(&refuse.encode()).unwrap() {
            Message::Refuse { code, reason } => {
                assert_eq!(code, "policy.debug");
                assert!(reason.len() <= MAX_REASON && reason.starts_with('é'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_bodies_are_named() {
        let body = evidence().encode();
        for cut in [0, 1, 2, 3, 10, body.len() - 1] {
            assert!(
                matches!(
                    Message::decode(&body[..cut]),
                    Err(WireError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut long = body.clone();
        long.push(0);
        assert_eq!(
            Message::decode(&long).unwrap_err(),
            WireError::Trailing { count: 1 }
        );
        // A peer of version 1 (evidence from both sides at once) is named, not misread.
        let mut v1 = body.clone();
        v1[0] = 1;
        assert_eq!(
            Message::decode(&v1).unwrap_err(),
            WireError::Version {
                expected: 2,
                found: 1
            }
        );
        let mut kind = body.clone();
        kind[1] = b'Z';
        assert_eq!(
            Message::decode(&kind).unwrap_err(),
            WireError::Kind { found: b'Z' }
        );
        let mut role = body;
        role[2] = b'X';
        assert!(matches!(
            Message::decode(&role),
            Err(WireError::Field { field: "role", .. })
        ));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_reading_them() {
        let mut input: &[u8] = &((MAX_FRAME as u32) + 1).to_be_bytes();
        match read(&mut input).await {
            Err(ReadError::Wire(WireError::TooLarge { found, .. })) => {
                assert_eq!(found, MAX_FRAME + 1)
            }
            other => panic!("{other:?}"),
        }
    }
}
