//! Frames: a big-endian `u32` body length, then a postcard body.
//!
//! The length is checked against the limit before anything of the body is read or
//! allocated, and the body buffer grows only as bytes actually arrive, so a peer that
//! announces a large frame and then stalls holds at most what it sent. The body is decoded
//! from that bounded slice, completely: bytes left over are refused.
//!
//! Allocation while decoding is bounded by the frame too: postcard gives serde a sequence's
//! length as a size hint only when the remaining bytes could hold that many elements, and
//! serde caps any preallocation from a hint at 1 MiB.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::WireError;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Largest read step while a body arrives: the buffer grows by at most this (or by what is
/// already there, whichever is larger) ahead of the bytes actually received.
const GROW_STEP: usize = 64 * 1024;

/// Encodes `msg` as one frame: length prefix and postcard body, in one buffer.
///
/// Refuses a body larger than `max` (or than `u32::MAX`) with [`WireError::TooLarge`].
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0u8; LEN_PREFIX]);
    let mut out = postcard::to_extend(msg, out).map_err(|e| WireError::Encode {
        ty: std::any::type_name::<T>(),
        reason: e.to_string(),
    })?;
    let len = out.len() - LEN_PREFIX;
    check_len(len, max)?;
    if len == 0 {
        // A zero-sized message would be refused by every reader.
        return Err(WireError::Empty);
    }
    out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes one frame body (without its length prefix) into `T`, completely: an empty body,
/// invalid postcard, or bytes left after the value are refused. Never panics.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let ty = std::any::type_name::<T>();
    if body.is_empty() {
        return Err(WireError::Empty);
    }
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(|e| WireError::Decode {
        ty,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(WireError::Trailing {
            ty,
            count: rest.len(),
        });
    }
    Ok(value)
}

/// Decodes a complete frame (prefix and body) held in memory, refusing a length over `max`,
/// a length that disagrees with the bytes given, and trailing bytes.
pub fn decode_frame<T: DeserializeOwned>(frame: &[u8], max: usize) -> Result<T, WireError> {
    let Some((prefix, body)) = frame.split_first_chunk::<LEN_PREFIX>() else {
        return Err(WireError::Truncated {
            part: "length prefix",
            expected: LEN_PREFIX,
            got: frame.len(),
        });
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    check_len(len, max)?;
    if body.len() < len {
        return Err(WireError::Truncated {
            part: "body",
            expected: len,
            got: body.len(),
        });
    }
    if body.len() > len {
        return Err(WireError::Trailing {
            ty: "frame",
            count: body.len() - len,
        });
    }
    decode_body(body)
}

/// Writes `msg` as one frame (one `write_all` of prefix and body) and flushes.
pub async fn write_frame<W, T>(w: &mut W, msg: &T, max: usize) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize + ?Sized,
{
    let frame = encode_frame(msg, max)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame and decodes it into `T`.
///
/// A clean end of the link before the first byte of a frame is [`WireError::Closed`]; an end
/// inside a frame is [`WireError::Truncated`]. Not cancel-safe: dropping the future inside a
/// frame leaves the stream off a frame boundary (see [`crate::FramedConn`], which tracks it).
pub async fn read_frame<R, T>(r: &mut R, max: usize) -> Result<T, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    let body = read_body(r, max).await?;
    decode_body(&body)
}

/// Reads one frame's body, undecoded.
pub async fn read_body<R>(r: &mut R, max: usize) -> Result<Vec<u8>, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut prefix = [0u8; LEN_PREFIX];
    let got = read_full(r, &mut prefix).await?;
    if got == 0 {
        return Err(WireError::Closed);
    }
    if got < LEN_PREFIX {
        return Err(WireError::Truncated {
            part: "length prefix",
            expected: LEN_PREFIX,
            got,
        });
    }
    let len = u32::from_be_bytes(prefix) as usize;
    check_len(len, max)?;
    if len == 0 {
        return Err(WireError::Empty);
    }
    // Grow with what arrives, not with what the peer announced.
    let mut body = Vec::new();
    while body.len() < len {
        let filled = body.len();
        let step = (len - filled).min(filled.max(GROW_STEP));
        body.resize(filled + step, 0);
        let got = read_full(r, &mut body[filled..]).await?;
        if got < step {
            return Err(WireError::Truncated {
                part: "body",
                expected: len,
                got: filled + got,
            });
        }
    }
    Ok(body)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
async fn read_full<R>(r: &mut R, buf: &mut [u8]) -> Result<usize, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

fn check_len(len: usize, max: usize) -> Result<(), WireError> {
    let max = max.min(u32::MAX as usize);
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok(())
}
