//! The header in front of every chunk on a ring link. The receiver knows exactly which
//! header the step expects and compares every field, so a confused or stale peer is named
//! instead of its data being mixed in.
//!
//! ```text
//! offset  0  magic  "BRv1"
//!         4  phase  u8 (1 reduce-scatter, 2 all-gather)   5  reserved u8 = 0
//!         6  step   u16       8 bucket u32      12 chunk u32     16 len u32 (f32 values)
//!        20  sender u16      22 world  u16      24 epoch u64     32 tag u64
//!        40  seq    u64 (this ring's all-reduce count)            48 total u64 (f32 values)
//!        56  payload: len little-endian f32, no padding
//! ```

use crate::error::{CollectiveError, PeerId};

pub(crate) const HEADER_LEN: usize = 56;
const MAGIC: [u8; 4] = *b"BRv1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    ReduceScatter = 1,
    AllGather = 2,
}

/// Every field of a chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) phase: Phase,
    pub(crate) step: u16,
    pub(crate) bucket: u32,
    pub(crate) chunk: u32,
    pub(crate) len: u32,
    pub(crate) sender: u16,
    pub(crate) world: u16,
    pub(crate) epoch: u64,
    pub(crate) tag: u64,
    pub(crate) seq: u64,
    pub(crate) total: u64,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = self.phase as u8;
        out[6..8].copy_from_slice(&self.step.to_le_bytes());
        out[8..12].copy_from_slice(&self.bucket.to_le_bytes());
        out[12..16].copy_from_slice(&self.chunk.to_le_bytes());
        out[16..20].copy_from_slice(&self.len.to_le_bytes());
        out[20..22].copy_from_slice(&self.sender.to_le_bytes());
        out[22..24].copy_from_slice(&self.world.to_le_bytes());
        out[24..32].copy_from_slice(&self.epoch.to_le_bytes());
        out[32..40].copy_from_slice(&self.tag.to_le_bytes());
        out[40..48].copy_from_slice(&self.seq.to_le_bytes());
        out[48..56].copy_from_slice(&self.total.to_le_bytes());
        out
    }

    /// Checks `bytes` against the header this step expects, field by field, in an order that
    /// names the most telling difference first (a stale ring before a wrong chunk).
    pub(crate) fn check(
        &self,
        bytes: &[u8; HEADER_LEN],
        peer: PeerId,
    ) -> Result<(), CollectiveError> {
        let u16_at = |i: usize| u64::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]));
        let u32_at = |i: usize| {
            u64::from(u32::from_le_bytes([
                bytes[i],
                bytes[i + 1],
                bytes[i + 2],
                bytes[i + 3],
            ]))
        };
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let fields: [(&'static str, u64, u64); 13] = [
            ("magic", u32_at(0), u64::from(u32::from_le_bytes(MAGIC))),
            ("reserved", u64::from(bytes[5]), 0),
            ("epoch", u64_at(24), self.epoch),
            ("world", u16_at(22), u64::from(self.world)),
            ("sender", u16_at(20), u64::from(self.sender)),
            ("seq", u64_at(40), self.seq),
            ("tag", u64_at(32), self.tag),
            ("total", u64_at(48), self.total),
            ("phase", u64::from(bytes[4]), self.phase as u64),
            ("step", u16_at(6), u64::from(self.step)),
            ("bucket", u32_at(8), u64::from(self.bucket)),
            ("chunk", u32_at(12), u64::from(self.chunk)),
            ("len", u32_at(16), u64::from(self.len)),
        ];
        for (field, found, expected) in fields {
            if found != expected {
                return Err(CollectiveError::OutOfStep {
                    peer,
                    field,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    fn header() -> Header {
        Header {
            phase: Phase::AllGather,
            step: 2,
            bucket: 7,
            chunk: 1,
            len: 1000,
            sender: 3,
            world: 4,
            epoch: 9,
            tag: 12345,
            seq: 5,
            total: 1 << 40,
        }
    }

    const PEER: PeerId = PeerId {
        rank: 3,
        side: Side::Prev,
    };

    #[test]
    fn a_header_checks_against_itself() {
        header().check(&header().encode(), PEER).unwrap();
    }

    #[test]
    fn every_field_difference_is_named() {
        let base = header();
        let cases: Vec<(&str, Header)> = vec![
            (
                "phase",
                Header {
                    phase: Phase::ReduceScatter,
                    ..base
                },
            ),
            ("step", Header { step: 1, ..base }),
            ("bucket", Header { bucket: 8, ..base }),
            ("chunk", Header { chunk: 0, ..base }),
            ("len", Header { len: 999, ..base }),
            ("sender", Header { sender: 2, ..base }),
            ("world", Header { world: 3, ..base }),
            ("epoch", Header { epoch: 8, ..base }),
            ("tag", Header { tag: 1, ..base }),
            ("seq", Header { seq: 4, ..base }),
            ("total", Header { total: 3, ..base }),
        ];
        for (name, sent) in cases {
            match base.check(&sent.encode(), PEER) {
                Err(CollectiveError::OutOfStep { field, peer, .. }) => {
                    assert_eq!((field, peer), (name, PEER))
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let mut bytes = base.encode();
        bytes[0] = b'X';
        assert!(matches!(
            base.check(&bytes, PEER),
            Err(CollectiveError::OutOfStep { field: "magic", .. })
        ));
    }

    #[test]
    fn the_layout_is_little_endian_at_the_documented_offsets() {
        let bytes = header().encode();
        assert_eq!(&bytes[..4], b"BRv1");
        assert_eq!(bytes[4], 2);
        assert_eq!(&bytes[16..20], &1000u32.to_le_bytes());
        assert_eq!(&bytes[48..56], &(1u64 << 40).to_le_bytes());
    }
}
