//! The versioned hello both ends of a link send first.
//!
//! ```text
//! frame body: version:u16 big-endian | postcard(H)
//! ```
//!
//! The version is fixed-width and first so that any future version can still read it and
//! refuse by name, whatever the rest of its hello looks like. What the hello carries (node,
//! role, epoch, ...) is the caller's type: this crate knows only the version.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::frame::{decode_body, read_body, LEN_PREFIX};
use crate::{WireError, PROTOCOL_VERSION};

/// Largest hello accepted (version and payload).
pub const HELLO_MAX: usize = 64 * 1024;

const VERSION_LEN: usize = 2;

/// Sends our hello and reads the peer's, concurrently (neither side can block the other on a
/// full buffer), then refuses a peer speaking another [`PROTOCOL_VERSION`] with
/// [`WireError::Version`]. Both ends see the mismatch, each naming both versions.
///
/// Wrap it in a timeout: a silent peer stalls it.
pub async fn handshake<S, H>(stream: &mut S, ours: &H) -> Result<H, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    H: Serialize + DeserializeOwned,
{
    exchange(stream, PROTOCOL_VERSION, ours).await
}

/// [`handshake`] speaking `version` (tests play a peer of another version with it).
pub(crate) async fn exchange<S, H>(stream: &mut S, version: u16, ours: &H) -> Result<H, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    H: Serialize + DeserializeOwned,
{
    let frame = encode_hello(version, ours)?;
    let (mut rx, mut tx) = tokio::io::split(stream);
    let send = async {
        tx.write_all(&frame).await?;
        tx.flush().await?;
        Ok::<(), WireError>(())
    };
    let recv = async {
        let body = read_body(&mut rx, HELLO_MAX).await?;
        decode_hello::<H>(version, &body)
    };
    let (sent, received) = tokio::join!(send, recv);
    // What the peer said explains more than our write failing because it hung up.
    let hello = received?;
    sent?;
    Ok(hello)
}

fn encode_hello<H: Serialize>(version: u16, hello: &H) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0u8; LEN_PREFIX]);
    out.extend_from_slice(&version.to_be_bytes());
    let mut out = postcard::to_extend(hello, out).map_err(|e| WireError::Encode {
        ty: std::any::type_name::<H>(),
        reason: e.to_string(),
    })?;
    let len = out.len() - LEN_PREFIX;
    if len > HELLO_MAX {
        return Err(WireError::TooLarge {
            len,
            max: HELLO_MAX,
        });
    }
    out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

fn decode_hello<H: DeserializeOwned>(ours: u16, body: &[u8]) -> Result<H, WireError> {
    let Some((version, payload)) = body.split_first_chunk::<VERSION_LEN>() else {
        return Err(WireError::Decode {
            ty: "hello",
            reason: format!(
                "{} byte body is shorter than the {VERSION_LEN} byte version",
                body.len()
            ),
        });
    };
    let theirs = u16::from_be_bytes(*version);
    if theirs != ours {
        return Err(WireError::Version { ours, theirs });
    }
    decode_body(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Hello {
        node: String,
        role: String,
        epoch: u64,
    }

    fn hello(node: &str) -> Hello {
        Hello {
            node: node.into(),
            role: "trainer".into(),
            epoch: 7,
        }
    }

    #[tokio::test]
    async fn both_ends_get_the_others_hello() {
        // A 16-byte pipe: both hellos are larger, so writing before reading would deadlock.
        let (mut a, mut b) = tokio::io::duplex(16);
        let (ours_a, ours_b) = (hello("a"), hello("b"));
        let (ha, hb) = tokio::join!(handshake(&mut a, &ours_a), handshake(&mut b, &ours_b));
        assert_eq!(ha.unwrap(), hello("b"));
        assert_eq!(hb.unwrap(), hello("a"));
    }

    #[tokio::test]
    async fn a_newer_peer_is_refused_and_refuses_us() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (ours_a, ours_b) = (hello("a"), hello("b"));
        let (ra, rb) = tokio::join!(
            handshake(&mut a, &ours_a),
            exchange(&mut b, PROTOCOL_VERSION + 1, &ours_b)
        );
        match ra.unwrap_err() {
            WireError::Version { ours, theirs } => {
                assert_eq!((ours, theirs), (PROTOCOL_VERSION, PROTOCOL_VERSION + 1))
            }
            e => panic!("expected a version error, got {e}"),
        }
        match rb.unwrap_err() {
            WireError::Version { ours, theirs } => {
                assert_eq!((ours, theirs), (PROTOCOL_VERSION + 1, PROTOCOL_VERSION))
            }
            e => panic!("expected a version error, got {e}"),
        }
    }

    #[tokio::test]
    async fn an_older_peer_is_refused_even_if_its_hello_is_another_shape() {
        // An old peer whose hello is a bare number: the version is read before the payload.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let ours_a = hello("a");
        let (ra, rb) = tokio::join!(handshake(&mut a, &ours_a), exchange(&mut b, 0, &42u8));
        let err = ra.unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Version {
                    ours: PROTOCOL_VERSION,
                    theirs: 0
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("peer speaks wire protocol version 0, we speak {PROTOCOL_VERSION}")
        );
        assert!(matches!(
            rb.unwrap_err(),
            WireError::Version {
                ours: 0,
                theirs: PROTOCOL_VERSION
            }
        ));
    }

    #[test]
    fn a_body_shorter_than_the_version_is_refused() {
        let err = decode_hello::<Hello>(PROTOCOL_VERSION, &[1]).unwrap_err();
        assert!(
            matches!(err, WireError::Decode { ty: "hello", .. }),
            "{err}"
        );
    }

    #[test]
    fn the_version_is_two_big_endian_bytes_after_the_prefix() {
        let frame = encode_hello(0x0102, &hello("a")).unwrap();
        assert_eq!(&frame[LEN_PREFIX..LEN_PREFIX + 2], &[1, 2]);
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - LEN_PREFIX);
        let back: Hello = decode_hello(0x0102, &frame[LEN_PREFIX..]).unwrap();
        assert_eq!(back, hello("a"));
    }
}
