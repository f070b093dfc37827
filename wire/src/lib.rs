//! Wire protocol of BastionAI's control links: postcard frames with a length prefix, a hard
//! size limit, and a versioned handshake.
//!
//! ```text
//! frame:  len:u32 big-endian | body: postcard(T), exactly len bytes, 1 <= len <= max
//! hello:  one frame whose body is  version:u16 big-endian | postcard(H)
//! ```
//!
//! - **Limits before allocation.** The length prefix is checked against the caller's limit
//!   before any byte of the body is read, and the body buffer grows only as bytes arrive.
//! - **Complete decoding.** A body is decoded from that bounded slice into a typed message,
//!   completely: bytes left over, an empty body, or invalid postcard are refused with an
//!   error naming the type; nothing acts on a half-decoded message. Decoding never panics.
//! - **Versions by name.** Both ends send a hello first; the version is a fixed-width field
//!   ahead of the payload, so a peer of any other version is refused with both versions
//!   named ([`WireError::Version`]), on both ends.
//! - **Control only.** Gradients do not travel in these frames (the collective crate streams
//!   raw `f32` with its own header); the default limit, [`DEFAULT_MAX_FRAME`], is for control
//!   messages, which are small.
//!
//! The message types themselves belong to their protocol (the actors crate); this crate
//! knows only frames and the version.
//!
//! # Example
//!
//! ```
//! use bastion_wire::{FramedConn, WireError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Hello { node: String, role: String }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum Msg { Step { t: u64 }, Abort { reason: String } }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), WireError> {
//! let (a, b) = tokio::io::duplex(1 << 16);
//! let (mut a, mut b) = (FramedConn::new(a), FramedConn::new(b));
//! let hello = |node: &str| Hello { node: node.into(), role: "trainer".into() };
//! let (hello_a, hello_b) = (hello("a"), hello("b"));
//! let (from_b, from_a) = tokio::join!(a.handshake(&hello_a), b.handshake(&hello_b));
//! assert_eq!(from_b?.node, "b");
//! assert_eq!(from_a?.node, "a");
//! a.send(&Msg::Step { t: 3 }).await?;
//! assert_eq!(b.recv::<Msg>().await?, Msg::Step { t: 3 });
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod error;
mod frame;
mod handshake;

pub use conn::FramedConn;
pub use error::WireError;
pub use frame::{
    decode_body, decode_frame, encode_frame, read_body, read_frame, write_frame, LEN_PREFIX,
};
pub use handshake::{handshake, HELLO_MAX};

/// Version of this wire protocol, sent first in every hello.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default frame limit: 16 MiB, far above any control message (gradients do not use frames).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
