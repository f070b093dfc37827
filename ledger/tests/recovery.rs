//! Opening damaged ledgers: a torn tail is cut and reported, damage in the middle is a hard
//! error naming its offset, and the file is left untouched when opening fails. (Deliberate
//! edits that keep frames sound are in `tests/integrity.rs`.)

use bastion_ledger::{
    read_log, AccountantKind, Budget, FrameError, Ledger, LedgerError, Record, StepCharge,
};
use std::fs;
use std::path::{Path, PathBuf};

const KIND: AccountantKind = AccountantKind::Rdp;
const KEY: [u8; 32] = [0x5A; 32];

fn budget() -> Budget {
    Budget {
        epsilon: 50.0,
        delta: 1e-5,
    }
}

fn charge(step: u64) -> StepCharge {
    StepCharge {
        step,
        sigma: 1.0,
        datasets: vec![("a".into(), 0.01), ("b".into(), 0.02)],
    }
}

/// A ledger with two datasets and `steps` steps; returns its path and each record's offset.
fn filled(dir: &Path, steps: u64) -> (PathBuf, Vec<u64>) {
    let path = dir.join("privacy.ledger");
    let (mut ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert!(recovery.created);
    ledger.register_dataset("a", budget()).unwrap();
    ledger.register_dataset("b", budget()).unwrap();
    for n in 0..steps {
        ledger.authorize(&charge(n)).unwrap();
    }
    drop(ledger);
    let offsets = read_log(&path)
        .unwrap()
        .records
        .iter()
        .map(|r| r.offset)
        .collect();
    (path, offsets)
}

#[test]
fn damage_in_the_middle_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = filled(dir.path(), 12);
    let pristine = fs::read(&path).unwrap();
    // Records: header, a, b, steps 0..12. Damage a registration and a middle step, in the
    // marker, flags, length, checksum and payload.
    for record in [1, 2, 7] {
        let at = offsets[record] as usize;
        let len = (offsets[record + 1] - offsets[record]) as usize;
        // Frame: marker 0..2, type, flags, length 4..8, prev 8..40, payload, mac (32), CRC (4).
        for (within, expect) in [
            (0, "marker"),
            (3, "flags"),
            (5, "length"),
            (20, "prev"),
            (len - 37, "payload"),
            (len - 20, "mac"),
            (len - 1, "checksum"),
        ] {
            let mut bytes = pristine.clone();
            bytes[at + within] ^= 0x40;
            fs::write(&path, &bytes).unwrap();
            match Ledger::open(&path, KIND, &KEY) {
                Err(LedgerError::Corrupt { offset, reason, .. }) => {
                    assert_eq!(offset, at as u64, "record {record}, {expect} byte");
                    let ok = match expect {
                        "marker" => matches!(reason, FrameError::BadMagic { .. }),
                        "flags" => matches!(reason, FrameError::BadFlags { .. }),
                        // A larger length reads as too large, past the end, or a checksum miss.
                        "length" => !matches!(reason, FrameError::BadMagic { .. }),
                        _ => matches!(reason, FrameError::Checksum { .. }),
                    };
                    assert!(ok, "record {record}, {expect} byte: {reason:?}");
                    let msg = LedgerError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason,
                    }
                    .to_string();
                    assert!(msg.contains(&format!("offset {at}")), "{msg}");
                }
                other => panic!("record {record}, {expect} byte: expected Corrupt, got {other:?}"),
            }
            assert!(matches!(read_log(&path), Err(LedgerError::Corrupt { .. })));
            // A refused open keeps every byte.
            assert_eq!(fs::read(&path).unwrap(), bytes);
        }
    }
}

#[test]
fn a_damaged_header_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = filled(dir.path(), 2);
    let mut bytes = fs::read(&path).unwrap();
    bytes[14] ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Ledger::open(&path, KIND, &KEY),
        Err(LedgerError::NotALedger { .. })
    ));

    let other = dir.path().join("notes.txt");
    fs::write(&other, b"this is not a ledger at all, just some text").unwrap();
    assert!(matches!(
        Ledger::open(&other, KIND, &KEY),
        Err(LedgerError::NotALedger { .. })
    ));
    let empty = dir.path().join("empty");
    fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Ledger::open(&empty, KIND, &KEY),
        Err(LedgerError::NotALedger { .. })
    ));
}

#[test]
fn a_truncated_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = filled(dir.path(), 6);
    let pristine = fs::read(&path).unwrap();
    let last = *offsets.last().unwrap();
    let last_len = pristine.len() as u64 - last;
    for cut in 1..last_len {
        fs::write(&path, &pristine[..pristine.len() - cut as usize]).unwrap();
        let (mut ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
        let torn = recovery.torn_tail.expect("a torn tail");
        assert_eq!(torn.offset, last);
        assert_eq!(torn.bytes, last_len - cut);
        assert!(matches!(torn.reason, FrameError::Incomplete { .. }));
        assert_eq!(recovery.steps, 5);
        assert_eq!(ledger.last_step(), Some(4));
        assert_eq!(ledger.steps("a").unwrap(), 5);
        assert_eq!(fs::metadata(&path).unwrap().len(), last);
        assert_eq!(ledger.position().offset, last);

        // Step 5 was never acknowledged, so it can be authorized again, after the cut.
        let auth = ledger.authorize(&charge(5)).unwrap();
        assert_eq!(auth.position.offset, fs::metadata(&path).unwrap().len());
        drop(ledger);
        let (ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
        assert_eq!(recovery.torn_tail, None);
        assert_eq!(ledger.last_step(), Some(5));
        assert_eq!(fs::read(&path).unwrap().len(), pristine.len());
    }
}

#[test]
fn zeros_or_a_damaged_last_frame_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = filled(dir.path(), 4);
    let pristine = fs::read(&path).unwrap();

    // Blocks allocated but never written before a power cut read back as zeros.
    let mut bytes = pristine.clone();
    bytes.extend([0u8; 4096]);
    fs::write(&path, &bytes).unwrap();
    let (ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
    let torn = recovery.torn_tail.unwrap();
    assert_eq!(torn.offset, pristine.len() as u64);
    assert_eq!(torn.bytes, 4096);
    assert_eq!(torn.reason, FrameError::BadMagic { found: [0, 0] });
    assert_eq!(ledger.last_step(), Some(3));
    drop(ledger);
    assert_eq!(fs::read(&path).unwrap(), pristine);

    // A complete last frame whose checksum fails is indistinguishable from a write that
    // reached the disk only in part, and nothing after it was ever written: cut as a tail.
    let mut bytes = pristine.clone();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let (ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
    let torn = recovery.torn_tail.unwrap();
    assert_eq!(torn.offset, *offsets.last().unwrap());
    assert!(matches!(torn.reason, FrameError::Checksum { .. }));
    assert_eq!(ledger.last_step(), Some(2));
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let (first, _) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert!(matches!(
        Ledger::open(&path, KIND, &KEY),
        Err(LedgerError::Locked { .. })
    ));
    drop(first);
    Ledger::open(&path, KIND, &KEY).unwrap();
}

#[test]
fn another_accountant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    drop(Ledger::open(&path, AccountantKind::Rdp, &KEY).unwrap());
    match Ledger::open(&path, AccountantKind::Pld, &KEY) {
        Err(LedgerError::AccountantMismatch {
            recorded,
            requested,
            ..
        }) => {
            assert_eq!(recorded, "rdp");
            assert_eq!(requested, "pld");
        }
        other => panic!("expected AccountantMismatch, got {other:?}"),
    }
}

#[test]
fn a_leftover_creation_file_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    // A crash during creation leaves the side file and no ledger.
    fs::write(dir.path().join("l.creating"), b"half a head").unwrap();
    let (mut ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert!(recovery.created);
    ledger.note("job 7 started").unwrap();
    drop(ledger);
    let log = read_log(&path).unwrap();
    assert!(matches!(&log.records[0].record, Record::Header(h) if h.accountant == "rdp"));
    assert!(matches!(&log.records[1].record, Record::Note(n) if n.text == "job 7 started"));
    assert!(!dir.path().join("l.creating").exists());
}
