//! Records and their on-disk frames.
//!
//! ```text
//!  0      2      3       4            8            12
//!  ┌──────┬──────┬───────┬────────────┬────────────┬──────────────────────┐
//!  │ B5 1D│ type │ flags │ len u32 LE │ crc u32 LE │ payload (postcard)   │
//!  └──────┴──────┴───────┴────────────┴────────────┴──────────────────────┘
//!  crc = CRC-32 (ISO-HDLC) over bytes 0..8 and the payload
//! ```
//!
//! The checksum covers the length too, so a damaged length cannot pass for a short record.
//! The two-byte marker lets recovery look for valid frames after a damaged one cheaply.

use crate::{Budget, FrameError, LedgerError};
use serde::{Deserialize, Serialize};

/// Every frame starts with these two bytes.
pub(crate) const MAGIC: [u8; 2] = [0xB5, 0x1D];
/// Bytes before the payload.
pub(crate) const FRAME_HEADER: usize = 12;
/// The largest payload a frame may carry. A step naming thousands of datasets still fits.
pub const MAX_RECORD_BYTES: u32 = 1 << 20;
/// The ledger format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const TYPE_HEADER: u8 = 1;
const TYPE_DATASET: u8 = 2;
const TYPE_STEP: u8 = 3;
const TYPE_NOTE: u8 = 4;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// The first record of every ledger.
    Header(HeaderRecord),
    /// A dataset and its budget.
    Dataset(DatasetRecord),
    /// One authorized DP step.
    Step(StepRecord),
    /// Free text for the audit trail (job started, plan accepted, ...).
    Note(NoteRecord),
}

/// The ledger's header: format and the accountant its budgets are enforced with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderRecord {
    /// [`FORMAT_VERSION`] when written by this build.
    pub format: u32,
    /// The accountant's registry name (`"pld"`, `"rdp"`).
    pub accountant: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}

/// A dataset registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// The dataset's name.
    pub name: String,
    /// Its privacy budget.
    pub budget: Budget,
    /// Registration time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// One authorized step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step number (strictly increasing through the log).
    pub step: u64,
    /// The noise multiplier of this step.
    pub sigma: f64,
    /// Each dataset charged, with its Poisson sampling rate at this step.
    pub datasets: Vec<(String, f64)>,
    /// Authorization time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// A free-text note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteRecord {
    /// The text.
    pub text: String,
    /// When it was written, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// A complete, checksummed frame found at some offset.
pub(crate) struct Frame<'a> {
    pub(crate) kind: u8,
    pub(crate) payload: &'a [u8],
    /// Offset just past the frame.
    pub(crate) end: usize,
}

/// Encodes a record into one frame.
pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, LedgerError> {
    let (kind, payload) = match record {
        Record::Header(r) => (TYPE_HEADER, postcard::to_stdvec(r)),
        Record::Dataset(r) => (TYPE_DATASET, postcard::to_stdvec(r)),
        Record::Step(r) => (TYPE_STEP, postcard::to_stdvec(r)),
        Record::Note(r) => (TYPE_NOTE, postcard::to_stdvec(r)),
    };
    // Serializing plain structs into a Vec cannot fail; keep the error path total anyway.
    let payload = payload.map_err(|e| LedgerError::InvalidCharge {
        reason: format!("cannot encode record: {e}"),
    })?;
    if payload.len() > MAX_RECORD_BYTES as usize {
        return Err(LedgerError::RecordTooLarge {
            size: payload.len(),
            limit: MAX_RECORD_BYTES,
        });
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.push(kind);
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = checksum(&frame[..8], &payload);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

fn checksum(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

/// Reads the frame starting at `offset`, checking marker, flags, length and checksum.
pub(crate) fn read_frame(buf: &[u8], offset: usize) -> Result<Frame<'_>, FrameError> {
    let rest = &buf[offset..];
    let available = rest.len() as u64;
    if rest.len() < FRAME_HEADER {
        // A prefix that already shows a wrong marker is damage, not a short write.
        if rest.len() >= 2 && rest[..2] != MAGIC {
            return Err(FrameError::BadMagic {
                found: [rest[0], rest[1]],
            });
        }
        return Err(FrameError::Incomplete {
            needed: FRAME_HEADER as u64,
            available,
        });
    }
    if rest[..2] != MAGIC {
        return Err(FrameError::BadMagic {
            found: [rest[0], rest[1]],
        });
    }
    if rest[3] != 0 {
        return Err(FrameError::BadFlags { found: rest[3] });
    }
    let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_RECORD_BYTES {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_RECORD_BYTES,
        });
    }
    let total = FRAME_HEADER + len as usize;
    if rest.len() < total {
        return Err(FrameError::Incomplete {
            needed: total as u64,
            available,
        });
    }
    let stored = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
    let payload = &rest[FRAME_HEADER..total];
    let computed = checksum(&rest[..8], payload);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok(Frame {
        kind: rest[2],
        payload,
        end: offset + total,
    })
}

/// Decodes a checksummed frame's payload; the whole payload must be consumed.
pub(crate) fn decode(frame: &Frame<'_>) -> Result<Record, String> {
    fn exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
        let (value, rest) = postcard::take_from_bytes(payload).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes after the record", rest.len()));
        }
        Ok(value)
    }
    Ok(match frame.kind {
        TYPE_HEADER => Record::Header(exact(frame.payload)?),
        TYPE_DATASET => Record::Dataset(exact(frame.payload)?),
        TYPE_STEP => Record::Step(exact(frame.payload)?),
        TYPE_NOTE => Record::Note(exact(frame.payload)?),
        other => return Err(format!("unknown record type {other}")),
    })
}

/// Whether a valid frame starts anywhere after `offset`: tells a damaged tail (nothing valid
/// follows, so it was never acknowledged) from damage in the middle (accepted records follow).
pub(crate) fn valid_frame_after(buf: &[u8], offset: usize) -> Option<usize> {
    (offset + 1..buf.len().saturating_sub(FRAME_HEADER - 1))
        .filter(|&o| buf[o..o + 2] == MAGIC)
        .find(|&o| read_frame(buf, o).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: u64) -> Record {
        Record::Step(StepRecord {
            step: n,
            sigma: 1.25,
            datasets: vec![("a".into(), 0.01), ("b".into(), 0.5)],
            unix_ms: 7,
        })
    }

    #[test]
    fn frame_round_trip() {
        let frame = encode(&step(3)).unwrap();
        let read = read_frame(&frame, 0).unwrap();
        assert_eq!(read.end, frame.len());
        assert_eq!(decode(&read).unwrap(), step(3));
    }

    #[test]
    fn every_defect_is_named() {
        let good = encode(&step(3)).unwrap();

        let short = &good[..good.len() - 1];
        assert_eq!(
            read_frame(short, 0).err(),
            Some(FrameError::Incomplete {
                needed: good.len() as u64,
                available: short.len() as u64
            })
        );
        assert!(matches!(
            read_frame(&good[..5], 0),
            Err(FrameError::Incomplete { needed: 12, .. })
        ));

        let mut bad = good.clone();
        bad[0] = 0;
        assert_eq!(
            read_frame(&bad, 0).err(),
            Some(FrameError::BadMagic { found: [0, 0x1D] })
        );

        let mut bad = good.clone();
        bad[3] = 1;
        assert_eq!(
            read_frame(&bad, 0).err(),
            Some(FrameError::BadFlags { found: 1 })
        );

        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&(MAX_RECORD_BYTES + 1).to_le_bytes());
        assert!(matches!(
            read_frame(&bad, 0),
            Err(FrameError::TooLarge { .. })
        ));

        // Every payload byte and the length field are covered by the checksum.
        for i in (4..8).chain(FRAME_HEADER..good.len()) {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                read_frame(&bad, 0).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_unknown_types() {
        let mut frame = encode(&step(1)).unwrap();
        // Re-frame the payload with one extra byte and a fresh checksum.
        frame.push(0);
        let len = (frame.len() - FRAME_HEADER) as u32;
        frame[4..8].copy_from_slice(&len.to_le_bytes());
        let crc = checksum(&frame[..8], &frame[FRAME_HEADER..]);
        frame[8..12].copy_from_slice(&crc.to_le_bytes());
        let read = read_frame(&frame, 0).unwrap();
        assert!(decode(&read).unwrap_err().contains("trailing"));

        let mut frame = encode(&step(1)).unwrap();
        frame[2] = 99;
        let crc = checksum(&frame[..8], &frame[FRAME_HEADER..]);
        frame[8..12].copy_from_slice(&crc.to_le_bytes());
        let read = read_frame(&frame, 0).unwrap();
        assert!(decode(&read)
            .unwrap_err()
            .contains("unknown record type 99"));
    }

    #[test]
    fn finds_the_next_valid_frame() {
        let mut buf = encode(&step(1)).unwrap();
        let second = buf.len();
        buf.extend(encode(&step(2)).unwrap());
        assert_eq!(valid_frame_after(&buf, 0), Some(second));
        assert_eq!(valid_frame_after(&buf, second), None);
    }
}
