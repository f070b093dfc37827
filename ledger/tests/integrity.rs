//! Integrity against the host: edits that keep every frame sound (CRC recomputed) are caught by
//! the chain, a wrong key and a missing ledger are refused, and what the ledger alone cannot
//! see (a rollback to an earlier record boundary) is caught by checking a checkpoint's
//! position. Also: plan records, digests across reopens, file permissions.

use bastion_ledger::{
    read_log, read_log_verified, AccountantKind, Budget, Ledger, LedgerError, PlanRecord, Position,
    Record, StepCharge, Tamper,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const KIND: AccountantKind = AccountantKind::Rdp;
const KEY: [u8; 32] = [0x5A; 32];
/// Bytes before a frame's payload: marker, type, flags, length, prev.
const PAYLOAD_AT: usize = 40;

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

fn plan(job: &str, steps: u64) -> PlanRecord {
    PlanRecord {
        job: job.into(),
        q: 0.01,
        sigma: 1.1,
        max_grad_norm: 1.0,
        steps,
        datasets: vec!["a".into(), "b".into()],
    }
}

/// Records: header, datasets `a` and `b`, steps `0..steps`. Returns the path, each record's
/// offset (plus the file length at the end), and the position reached.
fn filled(dir: &Path, steps: u64) -> (PathBuf, Vec<u64>, Position) {
    let path = dir.join("privacy.ledger");
    let (mut ledger, _) = Ledger::open(&path, KIND, &KEY).unwrap();
    ledger.register_dataset("a", budget()).unwrap();
    ledger.register_dataset("b", budget()).unwrap();
    for n in 0..steps {
        ledger.authorize(&charge(n)).unwrap();
    }
    let position = ledger.position();
    drop(ledger);
    let mut offsets: Vec<u64> = read_log(&path)
        .unwrap()
        .records
        .iter()
        .map(|r| r.offset)
        .collect();
    offsets.push(fs::metadata(&path).unwrap().len());
    (path, offsets, position)
}

/// Recomputes the CRC of the frame in `bytes[start..end]`, as a forger without the key can.
fn fix_crc(bytes: &mut [u8], start: usize, end: usize) {
    let crc = crc32fast::hash(&bytes[start..end - 4]);
    bytes[end - 4..end].copy_from_slice(&crc.to_le_bytes());
}

/// Asserts `result` is `Tampered` at `record` for `reason`, and that its message names the
/// record and its offset.
fn assert_tampered<T: std::fmt::Debug>(
    result: Result<T, LedgerError>,
    record: u64,
    offset: u64,
    reason: Tamper,
) {
    match result {
        Err(e @ LedgerError::Tampered { .. }) => {
            let msg = e.to_string();
            let LedgerError::Tampered {
                offset: o,
                record: r,
                reason: why,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!((r, o, why), (record, offset, reason), "{msg}");
            assert!(msg.contains(&format!("record {record} ")), "{msg}");
            assert!(msg.contains(&format!("offset {offset} ")), "{msg}");
        }
        other => panic!("expected Tampered at record {record} ({reason:?}), got {other:?}"),
    }
}

#[test]
fn an_edited_record_with_a_recomputed_crc_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, _) = filled(dir.path(), 10);
    let pristine = fs::read(&path).unwrap();
    let last = offsets.len() - 2;
    // A step in the middle and the last record: flip one bit in the middle of the payload
    // (inside dataset a's q), so the record still decodes, just to a different value.
    for record in [7, last] {
        let (at, end) = (offsets[record] as usize, offsets[record + 1] as usize);
        let payload_len = end - at - PAYLOAD_AT - 36;
        let mut bytes = pristine.clone();
        bytes[at + PAYLOAD_AT + payload_len / 2] ^= 0x01;
        fix_crc(&mut bytes, at, end);
        fs::write(&path, &bytes).unwrap();

        // Without the key the edit passes: frames and links are sound, and the q differs.
        let unverified = read_log(&path).unwrap();
        assert_eq!(unverified.records.len(), last + 1);
        let Record::Step(edited) = &unverified.records[record].record else {
            panic!("record {record} is not a step")
        };
        assert_ne!(edited.datasets[0].1, 0.01, "the flip missed dataset a's q");

        // With it, the record is named, and a tampered last record is not cut as a torn tail.
        let at = at as u64;
        assert_tampered(
            Ledger::open(&path, KIND, &KEY),
            record as u64,
            at,
            Tamper::BadMac,
        );
        assert_tampered(
            read_log_verified(&path, &KEY),
            record as u64,
            at,
            Tamper::BadMac,
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "a refused open changed the file"
        );
    }
    // Negative control: the untouched file opens.
    fs::write(&path, &pristine).unwrap();
    Ledger::open(&path, KIND, &KEY).unwrap();
}

#[test]
fn a_raised_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, _) = filled(dir.path(), 3);
    let mut bytes = fs::read(&path).unwrap();
    // Record 1 registers "a": payload = name length, "a", epsilon f64, delta f64, time.
    let (at, end) = (offsets[1] as usize, offsets[2] as usize);
    let eps = at + PAYLOAD_AT + 2;
    assert_eq!(bytes[eps..eps + 8], 50.0f64.to_le_bytes());
    bytes[eps..eps + 8].copy_from_slice(&1e9f64.to_le_bytes());
    fix_crc(&mut bytes, at, end);
    fs::write(&path, &bytes).unwrap();
    match &read_log(&path).unwrap().records[1].record {
        Record::Dataset(d) => assert_eq!(d.budget.epsilon, 1e9),
        other => panic!("{other:?}"),
    }
    assert_tampered(
        Ledger::open(&path, KIND, &KEY),
        1,
        at as u64,
        Tamper::BadMac,
    );
}

#[test]
fn a_deleted_middle_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, _) = filled(dir.path(), 8);
    let pristine = fs::read(&path).unwrap();
    // Cut record 6 (step 3) out, fixing up nothing: record 7 now sits at record 6's offset
    // and links to a digest that is not its predecessor's.
    let (at, end) = (offsets[6] as usize, offsets[7] as usize);
    let mut bytes = pristine[..at].to_vec();
    bytes.extend_from_slice(&pristine[end..]);
    fs::write(&path, &bytes).unwrap();
    assert_tampered(
        Ledger::open(&path, KIND, &KEY),
        6,
        at as u64,
        Tamper::BrokenChain,
    );
    // The link is checked without the key too.
    assert_tampered(read_log(&path), 6, at as u64, Tamper::BrokenChain);

    // A forger who also relinks the next record (prev and CRC) gets past a keyless reader,
    // not past the MAC.
    let prev_of_7 = pristine[end + 8..end + PAYLOAD_AT].to_vec();
    let prev_of_6 = pristine[at + 8..at + PAYLOAD_AT].to_vec();
    assert_ne!(prev_of_7, prev_of_6);
    let next_end = offsets[8] as usize;
    let mut relinked = pristine[..at].to_vec();
    relinked.extend_from_slice(&pristine[end..]);
    let new_end = at + (next_end - end);
    relinked[at + 8..at + PAYLOAD_AT].copy_from_slice(&prev_of_6);
    fix_crc(&mut relinked, at, new_end);
    fs::write(&path, &relinked).unwrap();
    let steps: Vec<u64> = read_log(&path)
        .unwrap()
        .records
        .iter()
        .filter_map(|r| match &r.record {
            Record::Step(s) => Some(s.step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [0, 1, 2, 4, 5, 6, 7]);
    assert_tampered(
        Ledger::open(&path, KIND, &KEY),
        6,
        at as u64,
        Tamper::BadMac,
    );
    assert_tampered(read_log_verified(&path, &KEY), 6, at as u64, Tamper::BadMac);
}

#[test]
fn swapped_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, _) = filled(dir.path(), 6);
    let pristine = fs::read(&path).unwrap();
    let o: Vec<usize> = offsets.iter().map(|&o| o as usize).collect();
    // Steps 2 and 3 (records 5 and 6) have frames of equal length; exchange them.
    let mut bytes = pristine[..o[5]].to_vec();
    bytes.extend_from_slice(&pristine[o[6]..o[7]]);
    bytes.extend_from_slice(&pristine[o[5]..o[6]]);
    bytes.extend_from_slice(&pristine[o[7]..]);
    assert_eq!(bytes.len(), pristine.len());
    fs::write(&path, &bytes).unwrap();
    assert_tampered(
        Ledger::open(&path, KIND, &KEY),
        5,
        o[5] as u64,
        Tamper::BrokenChain,
    );
}

#[test]
fn a_rollback_opens_shorter_and_is_caught_by_the_checkpoint_position() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, full) = filled(dir.path(), 10);
    let (ledger, _) = Ledger::open(&path, KIND, &KEY).unwrap();
    let digests: Vec<[u8; 32]> = (0..=full.records)
        .map(|n| ledger.digest_at(n).unwrap())
        .collect();
    drop(ledger);

    // The host cuts the file back to record 8 (steps 0..5): a valid, shorter chain. The ledger
    // alone cannot tell this from a ledger that never went further.
    let k = 8u64;
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..offsets[k as usize] as usize]).unwrap();
    let (mut ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert_eq!(recovery.records, k);
    assert_eq!(recovery.torn_tail, None);
    assert_eq!(ledger.last_step(), Some(4));
    assert_eq!(ledger.digest_at(k), Some(digests[k as usize]));
    assert_eq!(ledger.position().digest, digests[k as usize]);
    assert_eq!(ledger.digest_at(k + 1), None);

    // A checkpoint taken at the full position catches it...
    match ledger.check_position(full.records, &full.digest) {
        Err(LedgerError::RolledBack {
            records, needed, ..
        }) => assert_eq!((records, needed), (k, full.records)),
        other => panic!("expected RolledBack, got {other:?}"),
    }
    // ...and one taken before the cut point is fine.
    ledger.check_position(k, &digests[k as usize]).unwrap();
    ledger.check_position(3, &digests[3]).unwrap();

    // Training on from the rollback forks the history: same record count, another digest.
    ledger.authorize(&charge(5)).unwrap();
    let err = ledger
        .check_position(k + 1, &digests[k as usize + 1])
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::HistoryMismatch { records: 9, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("record 9"), "{err}");
}

#[test]
fn a_wrong_key_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, full) = filled(dir.path(), 3);
    let pristine = fs::read(&path).unwrap();
    let mut other = KEY;
    other[0] ^= 1;
    for result in [
        Ledger::open(&path, KIND, &other).map(|_| ()),
        Ledger::open_existing(&path, KIND, &other).map(|_| ()),
        read_log_verified(&path, &other).map(|_| ()),
    ] {
        match result {
            Err(e @ LedgerError::WrongKey { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("sealed with another key"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            other => panic!("expected WrongKey, got {other:?}"),
        }
    }
    assert_eq!(fs::read(&path).unwrap(), pristine);
    // Negative controls: without the key the file reads; with the right key it opens.
    assert_eq!(read_log(&path).unwrap().records.len() as u64, full.records);
    let (ledger, _) = Ledger::open_existing(&path, KIND, &KEY).unwrap();
    assert_eq!(ledger.position(), full);
}

#[test]
fn open_existing_refuses_a_missing_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("privacy.ledger");
    let err = Ledger::open_existing(&path, KIND, &KEY).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, LedgerError::Missing { path: p } if *p == path),
        "{err:?}"
    );
    assert!(msg.contains("missing") && msg.contains("spent"), "{msg}");
    assert!(!path.exists(), "open_existing created the ledger");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

    // Negative control: once created, it opens, and is not "created" again.
    let (ledger, recovery) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert!(recovery.created);
    drop(ledger);
    let (_, recovery) = Ledger::open_existing(&path, KIND, &KEY).unwrap();
    assert!(!recovery.created);
    assert_eq!(recovery.records, 1);
}

#[test]
fn a_plan_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("privacy.ledger");
    let (mut ledger, _) = Ledger::open(&path, KIND, &KEY).unwrap();
    ledger.register_dataset("a", budget()).unwrap();
    assert_eq!(ledger.plan(), None);
    ledger.record_plan(&plan("cancer", 500)).unwrap();
    assert_eq!(ledger.plan(), Some(&plan("cancer", 500)));
    ledger
        .authorize(&StepCharge {
            step: 0,
            sigma: 1.1,
            datasets: vec![("a".into(), 0.01)],
        })
        .unwrap();
    drop(ledger);

    let (mut ledger, recovery) = Ledger::open_existing(&path, KIND, &KEY).unwrap();
    assert_eq!(recovery.records, 4);
    assert_eq!(ledger.plan(), Some(&plan("cancer", 500)));
    // A later plan (a resumed or re-planned job) is the one returned.
    ledger.record_plan(&plan("cancer", 800)).unwrap();
    drop(ledger);
    let (ledger, _) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert_eq!(ledger.plan(), Some(&plan("cancer", 800)));
    let plans: Vec<PlanRecord> = read_log_verified(&path, &KEY)
        .unwrap()
        .records
        .into_iter()
        .filter_map(|r| match r.record {
            Record::Plan(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(plans, [plan("cancer", 500), plan("cancer", 800)]);
}

#[test]
fn a_malformed_plan_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ledger, _) = Ledger::open(dir.path().join("l"), KIND, &KEY).unwrap();
    let before = ledger.position();
    /// Spoils one field of a valid plan.
    type Spoil = fn(&mut PlanRecord);
    let bad: [(&str, Spoil); 8] = [
        ("job name", |p| p.job.clear()),
        ("sampling rate q", |p| p.q = 0.0),
        ("sampling rate q", |p| p.q = 1.5),
        ("sigma", |p| p.sigma = f64::NAN),
        ("max_grad_norm", |p| p.max_grad_norm = 0.0),
        ("at least one step", |p| p.steps = 0),
        ("at least one dataset", |p| p.datasets.clear()),
        ("listed twice", |p| p.datasets.push("a".into())),
    ];
    for (what, spoil) in &bad {
        let mut p = plan("job", 10);
        spoil(&mut p);
        match ledger.record_plan(&p) {
            Err(e @ LedgerError::InvalidPlan { .. }) => {
                assert!(e.to_string().contains(what), "{what}: {e}")
            }
            other => panic!("{what}: expected InvalidPlan, got {other:?}"),
        }
    }
    assert_eq!(ledger.position(), before);
    assert_eq!(ledger.plan(), None);
    ledger.record_plan(&plan("job", 10)).unwrap();
}

#[test]
fn digests_are_stable_across_reopen_and_match_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("privacy.ledger");
    let (mut ledger, _) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert_eq!(ledger.digest_at(0), Some([0; 32]));
    let mut live = vec![ledger.digest_at(0).unwrap(), ledger.position().digest];
    ledger.register_dataset("a", budget()).unwrap();
    live.push(ledger.position().digest);
    ledger.register_dataset("b", budget()).unwrap();
    live.push(ledger.position().digest);
    ledger.note("job started").unwrap();
    live.push(ledger.position().digest);
    for n in 0..5 {
        let auth = ledger.authorize(&charge(n)).unwrap();
        assert_eq!(auth.position, ledger.position());
        live.push(auth.position.digest);
    }
    let records = ledger.position().records;
    assert_eq!(live.len() as u64, records + 1);
    for (n, d) in live.iter().enumerate() {
        assert_eq!(
            ledger.digest_at(n as u64),
            Some(*d),
            "live, after {n} records"
        );
    }
    assert_eq!(ledger.digest_at(records + 1), None);
    assert_eq!(ledger.digest_at(u64::MAX), None);
    let position = ledger.position();
    drop(ledger);

    let (ledger, _) = Ledger::open(&path, KIND, &KEY).unwrap();
    assert_eq!(ledger.position(), position);
    for (n, d) in live.iter().enumerate() {
        assert_eq!(
            ledger.digest_at(n as u64),
            Some(*d),
            "reopened, after {n} records"
        );
    }
    let logged: Vec<[u8; 32]> = read_log_verified(&path, &KEY)
        .unwrap()
        .records
        .iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(logged, live[1..]);
    // Every digest is distinct: each one commits to a longer history.
    let mut sorted = live.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), live.len());
}

#[test]
fn the_file_is_private_and_so_are_directories_it_creates() {
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // Both missing levels are created 0700.
    let path = dir
        .path()
        .join("state")
        .join("node-1")
        .join("privacy.ledger");
    drop(Ledger::open(&path, KIND, &KEY).unwrap());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&dir.path().join("state/node-1")), 0o700);

    // A directory that already existed is not the ledger's to change; the file still is 0600,
    // even where a crashed creation left a world-readable side file behind.
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    let side = shared.join("privacy.ledger.creating");
    fs::write(&side, b"half").unwrap();
    fs::set_permissions(&side, fs::Permissions::from_mode(0o644)).unwrap();
    let path = shared.join("privacy.ledger");
    drop(Ledger::open(&path, KIND, &KEY).unwrap());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&shared), 0o755);
}
