//! [`FramedConn`]: a stream with a fixed frame limit and an optional read timeout.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{read_frame, write_frame};
use crate::{WireError, DEFAULT_MAX_FRAME};

/// A byte stream spoken in frames, with one limit for both directions and an optional
/// per-frame read timeout.
///
/// It remembers when a read or write stopped inside a frame (an I/O error, a truncated or
/// oversized frame, a timeout, or a future dropped midway): the stream is then no longer at
/// a frame boundary, and every later call answers [`WireError::Poisoned`] instead of reading
/// garbage as a length. A frame that arrived whole but did not decode leaves it usable.
///
/// The read timeout uses tokio's timer: the runtime needs time enabled.
#[derive(Debug)]
pub struct FramedConn<S> {
    io: S,
    max: usize,
    read_timeout: Option<Duration>,
    poisoned: bool,
}

impl<S> FramedConn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Frames over `io` with [`DEFAULT_MAX_FRAME`] and no read timeout.
    pub fn new(io: S) -> Self {
        Self {
            io,
            max: DEFAULT_MAX_FRAME,
            read_timeout: None,
            poisoned: false,
        }
    }

    /// Sets the frame limit (both directions).
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Sets how long [`FramedConn::recv`] waits for one whole frame; `None` waits forever.
    pub fn with_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The frame limit.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Sends one message as one frame.
    pub async fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), WireError> {
        self.check()?;
        self.poisoned = true;
        let result = write_frame(&mut self.io, msg, self.max).await;
        // Encoding fails before a byte is written; only I/O can leave half a frame.
        self.poisoned = matches!(result, Err(WireError::Io(_)));
        result
    }

    /// Receives one frame and decodes it into `T`, within the read timeout if one is set.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, WireError> {
        self.check()?;
        self.poisoned = true;
        let result = match self.read_timeout {
            None => read_frame(&mut self.io, self.max).await,
            Some(limit) => tokio::time::timeout(limit, read_frame(&mut self.io, self.max))
                .await
                .unwrap_or(Err(WireError::Timeout(limit))),
        };
        self.poisoned = !matches!(
            result,
            Ok(_) | Err(WireError::Decode { .. } | WireError::Trailing { .. } | WireError::Empty)
        );
        result
    }

    /// The versioned hello exchange ([`crate::handshake`]) on this connection.
    pub async fn handshake<H>(&mut self, ours: &H) -> Result<H, WireError>
    where
        H: Serialize + DeserializeOwned,
    {
        self.check()?;
        self.poisoned = true;
        let exchange = crate::handshake(&mut self.io, ours);
        let result = match self.read_timeout {
            None => exchange.await,
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or(Err(WireError::Timeout(limit))),
        };
        self.poisoned = result.is_err();
        result
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The stream; writing to it directly between frames is the caller's business.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The stream back.
    pub fn into_inner(self) -> S {
        self.io
    }

    fn check(&self) -> Result<(), WireError> {
        if self.poisoned {
            Err(WireError::Poisoned)
        } else {
            Ok(())
        }
    }
}
