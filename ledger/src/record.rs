//! Records and their on-disk frames, chained and authenticated.
//!
//! ```text
//!  0      2      3       4            8                40                 40+len     72+len
//!  ┌──────┬──────┬───────┬────────────┬────────────────┬──────────────────┬──────────┬────────────┐
//!  │ B5 1D│ type │ flags │ len u32 LE │ prev (32)      │ payload (postcard)│ mac (32) │ crc u32 LE │
//!  └──────┴──────┴───────┴────────────┴────────────────┴──────────────────┴──────────┴────────────┘
//!  mac = HMAC-SHA256(K, bytes 0..40+len)          K = HMAC-SHA256(sealing key, "bastion-ledger v2 chain")
//!  crc = CRC-32 (ISO-HDLC) over bytes 0..72+len
//!  prev of record 0 = 32 zero bytes; prev of record i = mac of record i-1
//! ```
//!
//! Two checks with two jobs:
//! - The **CRC** catches torn and damaged writes, with or without the key. A frame whose CRC
//!   fails is damage (a torn tail, or corruption in the middle), never tampering evidence.
//! - The **chain**: each record's `mac` is the ledger's chain digest after that record, and the
//!   next record carries it as `prev`. The MAC covers `prev`, so editing, inserting, removing
//!   or reordering any record breaks a MAC that only the holder of the sealing key (derived
//!   inside the TEE) can recompute. Without the key a reader can still check that each `prev`
//!   equals the previous `mac` (a removed or reordered record shows), but not the MACs.
//!
//! `K` is derived from the caller's key with a fixed label, so the same sealing key may be used
//! for other purposes (checkpoints, shards) without its MACs ever meaning anything there.
//! The CRC covers the length too, so a damaged length cannot pass for a short record, and the
//! two-byte marker lets recovery look for valid frames after a damaged one cheaply.

use crate::{Budget, FrameError, LedgerError};
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Every frame starts with these two bytes.
pub(crate) const MAGIC: [u8; 2] = [0xB5, 0x1D];
/// Marker, type, flags and length: what must be read before the frame's size is known.
const PREFIX: usize = 8;
/// Length of a chain digest (`prev`, `mac`).
pub(crate) const DIGEST_LEN: usize = 32;
/// Bytes a frame adds around its payload: prefix, `prev`, `mac`, CRC.
pub(crate) const FRAME_OVERHEAD: usize = PREFIX + 2 * DIGEST_LEN + 4;
/// The largest payload a frame may carry. A step naming thousands of datasets still fits.
pub const MAX_RECORD_BYTES: u32 = 1 << 20;
/// The ledger format this build reads and writes. Version 1 had CRC-only frames (no chain).
pub const FORMAT_VERSION: u32 = 2;
/// The chain digest before the first record.
pub(crate) const GENESIS: [u8; DIGEST_LEN] = [0; DIGEST_LEN];
/// Derives the MAC key from the caller's sealing key (domain separation, see module docs).
const CHAIN_LABEL: &[u8] = b"bastion-ledger v2 chain";

const TYPE_HEADER: u8 = 1;
const TYPE_DATASET: u8 = 2;
const TYPE_STEP: u8 = 3;
const TYPE_NOTE: u8 = 4;
const TYPE_PLAN: u8 = 5;

/// The key records are chained with, derived from the caller's 32-byte sealing key.
pub(crate) struct ChainKey(hmac::Key);

impl ChainKey {
    pub(crate) fn new(sealing_key: &[u8; 32]) -> Self {
        let outer = hmac::Key::new(hmac::HMAC_SHA256, sealing_key);
        let derived = hmac::sign(&outer, CHAIN_LABEL);
        ChainKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// Whether `frame`'s MAC verifies (constant-time comparison, inside ring).
    pub(crate) fn verifies(&self, frame: &Frame<'_>) -> bool {
        hmac::verify(&self.0, frame.signed, &frame.mac).is_ok()
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

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
    /// A job's training plan, so a restarted coordinator resumes it instead of recalibrating.
    Plan(PlanRecord),
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

/// A job's training plan: what a restarted coordinator resumes with (the same `q`, `sigma`,
/// clipping norm and step count) instead of calibrating a new one against the budget left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// The job the plan belongs to.
    pub job: String,
    /// Poisson sampling rate of every step.
    pub q: f64,
    /// Noise multiplier of every step.
    pub sigma: f64,
    /// Per-sample clipping norm `C`.
    pub max_grad_norm: f64,
    /// Steps the job runs in total.
    pub steps: u64,
    /// The datasets the job samples from.
    pub datasets: Vec<String>,
}

/// A complete frame whose CRC checks out, found at some offset. Its MAC is not checked yet.
pub(crate) struct Frame<'a> {
    pub(crate) kind: u8,
    /// The chain digest the writer linked this record to.
    pub(crate) prev: [u8; DIGEST_LEN],
    pub(crate) payload: &'a [u8],
    /// The chain digest after this record.
    pub(crate) mac: [u8; DIGEST_LEN],
    /// The bytes the MAC covers.
    signed: &'a [u8],
    /// Offset just past the frame.
    pub(crate) end: usize,
}

/// Encodes a record into one frame linked to `prev`; returns the frame and its chain digest.
pub(crate) fn encode(
    record: &Record,
    prev: &[u8; DIGEST_LEN],
    key: &ChainKey,
) -> Result<(Vec<u8>, [u8; DIGEST_LEN]), LedgerError> {
    let (kind, payload) = match record {
        Record::Header(r) => (TYPE_HEADER, postcard::to_stdvec(r)),
        Record::Dataset(r) => (TYPE_DATASET, postcard::to_stdvec(r)),
        Record::Step(r) => (TYPE_STEP, postcard::to_stdvec(r)),
        Record::Note(r) => (TYPE_NOTE, postcard::to_stdvec(r)),
        Record::Plan(r) => (TYPE_PLAN, postcard::to_stdvec(r)),
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
    let mut frame = Vec::with_capacity(FRAME_OVERHEAD + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.push(kind);
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(prev);
    frame.extend_from_slice(&payload);
    let mac: [u8; DIGEST_LEN] = hmac::sign(&key.0, &frame)
        .as_ref()
        .try_into()
        .expect("HMAC-SHA256 is 32 bytes");
    frame.extend_from_slice(&mac);
    let crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    Ok((frame, mac))
}

/// Reads the frame starting at `offset`, checking marker, flags, length and CRC (not the MAC:
/// that needs the key, see [`ChainKey::verifies`]).
pub(crate) fn read_frame(buf: &[u8], offset: usize) -> Result<Frame<'_>, FrameError> {
    let rest = &buf[offset..];
    let available = rest.len() as u64;
    if rest.len() < PREFIX {
        // A prefix that already shows a wrong marker is damage, not a short write.
        if rest.len() >= 2 && rest[..2] != MAGIC {
            return Err(FrameError::BadMagic {
                found: [rest[0], rest[1]],
            });
        }
        return Err(FrameError::Incomplete {
            needed: PREFIX as u64,
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
    let total = FRAME_OVERHEAD + len as usize;
    if rest.len() < total {
        return Err(FrameError::Incomplete {
            needed: total as u64,
            available,
        });
    }
    let (covered, crc) = rest[..total].split_at(total - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    let payload_end = PREFIX + DIGEST_LEN + len as usize;
    Ok(Frame {
        kind: rest[2],
        prev: covered[PREFIX..PREFIX + DIGEST_LEN]
            .try_into()
            .expect("32 bytes"),
        payload: &covered[PREFIX + DIGEST_LEN..payload_end],
        mac: covered[payload_end..].try_into().expect("32 bytes"),
        signed: &covered[..payload_end],
        end: offset + total,
    })
}

/// Decodes a checksummed frame's payload; the whole payload must be consumed.
pub(crate) fn decode(frame: &Frame<'_>) -> Result<Record, String> {
    Ok(match frame.kind {
        TYPE_HEADER => Record::Header(exact(frame.payload)?),
        TYPE_DATASET => Record::Dataset(exact(frame.payload)?),
        TYPE_STEP => Record::Step(exact(frame.payload)?),
        TYPE_NOTE => Record::Note(exact(frame.payload)?),
        TYPE_PLAN => Record::Plan(exact(frame.payload)?),
        other => return Err(format!("unknown record type {other}")),
    })
}

fn exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes(payload).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the record", rest.len()));
    }
    Ok(value)
}

/// Whether a valid frame starts anywhere after `offset`: tells a damaged tail (nothing valid
/// follows, so it was never acknowledged) from damage in the middle (accepted records follow).
pub(crate) fn valid_frame_after(buf: &[u8], offset: usize) -> Option<usize> {
    (offset + 1..buf.len().saturating_sub(FRAME_OVERHEAD - 1))
        .filter(|&o| buf[o..o + 2] == MAGIC)
        .find(|&o| read_frame(buf, o).is_ok())
}

/// The format version in a version-1 ledger's header frame (12-byte frame header: marker,
/// type, flags, length, CRC-32 of bytes 0..8 and the payload), if `buf` starts with one. Lets
/// an old ledger be refused by its version rather than as "not a ledger".
pub(crate) fn v1_header_format(buf: &[u8]) -> Option<u32> {
    const V1_HEADER: usize = 12;
    let head = buf.get(..V1_HEADER)?;
    if head[..2] != MAGIC || head[2] != TYPE_HEADER || head[3] != 0 {
        return None;
    }
    let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = buf.get(V1_HEADER..V1_HEADER + len as usize)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..8]);
    crc.update(payload);
    if crc.finalize() != u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) {
        return None;
    }
    exact::<HeaderRecord>(payload).ok().map(|h| h.format)
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

    fn key() -> ChainKey {
        ChainKey::new(&[3; 32])
    }

    /// Recomputes a frame's CRC after a deliberate edit, so only the MAC can notice it.
    fn fix_crc(frame: &mut [u8]) {
        let n = frame.len();
        let crc = crc32fast::hash(&frame[..n - 4]);
        frame[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn frame_round_trip() {
        let prev = [9u8; 32];
        let (frame, mac) = encode(&step(3), &prev, &key()).unwrap();
        let read = read_frame(&frame, 0).unwrap();
        assert_eq!(read.end, frame.len());
        assert_eq!(read.prev, prev);
        assert_eq!(read.mac, mac);
        assert!(key().verifies(&read));
        assert!(
            !ChainKey::new(&[4; 32]).verifies(&read),
            "another key verifies"
        );
        assert_eq!(decode(&read).unwrap(), step(3));
        // The digest depends on what it is chained to.
        assert_ne!(encode(&step(3), &GENESIS, &key()).unwrap().1, mac);
    }

    #[test]
    fn every_defect_is_named() {
        let (good, _) = encode(&step(3), &GENESIS, &key()).unwrap();

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
            Err(FrameError::Incomplete { needed: 8, .. })
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

        // Every byte after the flags is covered by the CRC: length, prev, payload, mac, CRC.
        for i in 4..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                read_frame(&bad, 0).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn the_mac_covers_everything_but_itself_and_the_crc() {
        let (good, _) = encode(&step(3), &[5; 32], &key()).unwrap();
        let mac_at = good.len() - 4 - DIGEST_LEN;
        // Type, prev and payload: with the CRC fixed up the frame reads, and the MAC fails.
        // (Marker and flags are refused before any MAC is looked at; a changed length no
        // longer frames the same bytes, so the CRC already fails.)
        for i in (2..3).chain(8..mac_at) {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fix_crc(&mut bad);
            let frame = read_frame(&bad, 0).unwrap_or_else(|e| panic!("flip at byte {i}: {e}"));
            assert!(!key().verifies(&frame), "flip at byte {i} verifies");
        }
        // Negative control: the untouched frame verifies.
        assert!(key().verifies(&read_frame(&good, 0).unwrap()));
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_unknown_types() {
        // Re-frame the payload with one extra byte, a fresh MAC and CRC.
        let record = step(1);
        let payload = match &record {
            Record::Step(s) => postcard::to_stdvec(s).unwrap(),
            _ => unreachable!(),
        };
        let mut frame = MAGIC.to_vec();
        frame.extend([TYPE_STEP, 0]);
        frame.extend(((payload.len() + 1) as u32).to_le_bytes());
        frame.extend(GENESIS);
        frame.extend(&payload);
        frame.push(0);
        let mac = hmac::sign(&key().0, &frame);
        frame.extend(mac.as_ref());
        frame.extend(crc32fast::hash(&frame).to_le_bytes());
        let read = read_frame(&frame, 0).unwrap();
        assert!(key().verifies(&read));
        assert!(decode(&read).unwrap_err().contains("trailing"));

        let (mut frame, _) = encode(&step(1), &GENESIS, &key()).unwrap();
        frame[2] = 99;
        fix_crc(&mut frame);
        let read = read_frame(&frame, 0).unwrap();
        assert!(decode(&read)
            .unwrap_err()
            .contains("unknown record type 99"));
    }

    #[test]
    fn finds_the_next_valid_frame() {
        let (mut buf, mac) = encode(&step(1), &GENESIS, &key()).unwrap();
        let second = buf.len();
        buf.extend(encode(&step(2), &mac, &key()).unwrap().0);
        assert_eq!(valid_frame_after(&buf, 0), Some(second));
        assert_eq!(valid_frame_after(&buf, second), None);
    }

    #[test]
    fn plan_records_round_trip() {
        let plan = Record::Plan(PlanRecord {
            job: "cancer".into(),
            q: 0.01,
            sigma: 1.1,
            max_grad_norm: 1.0,
            steps: 500,
            datasets: vec!["hospital-a".into(), "hospital-b".into()],
        });
        let (frame, _) = encode(&plan, &GENESIS, &key()).unwrap();
        assert_eq!(decode(&read_frame(&frame, 0).unwrap()).unwrap(), plan);
    }
}
