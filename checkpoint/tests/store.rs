//! Saving and loading: round trips, and every way a file can fail to authenticate, or belong
//! to another store or step, is an error naming the file.

use bastion_checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const KEY: [u8; 32] = [0x42; 32];
const NODE: &str = "node=node-1";

fn sample(step: u64) -> Checkpoint {
    let mut c = Checkpoint::new(step, 1000 + step)
        .with_job("cancer")
        .with_ledger_digest([step as u8 ^ 0xA5; 32]);
    c.sections.insert(
        "model.safetensors".into(),
        b"PLAINTEXT-WEIGHTS-MARKER".repeat(3),
    );
    c.sections.insert("optimizer".into(), vec![0xAB; 300]);
    c.sections.insert("rng".into(), step.to_le_bytes().to_vec());
    c.sections.insert("empty".into(), Vec::new());
    c
}

fn names_file(e: &CheckpointError, path: &Path) -> bool {
    e.to_string().contains(&path.display().to_string())
}

#[test]
fn round_trip_and_the_file_is_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 5, NODE).unwrap();
    assert_eq!(store.load_latest().unwrap(), None);

    let mut big = sample(7);
    // Non-UTF-8 names are impossible (String), but any bytes are fine in sections.
    big.sections.insert(
        "weights/layer.0".into(),
        (0..=255u8).cycle().take(1 << 20).collect(),
    );
    let path = store.save(&big).unwrap();
    assert_eq!(path, dir.path().join("ckpt-00000000000000000007.bin"));
    store.save(&sample(3)).unwrap();
    assert_eq!(store.load(7).unwrap(), big);
    assert_eq!(store.load(3).unwrap(), sample(3));
    assert_eq!(store.load_latest().unwrap(), Some(big));
    assert_eq!(store.steps().unwrap(), [3, 7]);

    let bytes = fs::read(&path).unwrap();
    assert!(!bytes
        .windows(b"PLAINTEXT-WEIGHTS-MARKER".len())
        .any(|w| w == b"PLAINTEXT-WEIGHTS-MARKER"));

    // A fresh nonce every time: saving the same state twice gives different files.
    store.save(&sample(3)).unwrap();
    let again = fs::read(store.path_for(3)).unwrap();
    store.save(&sample(3)).unwrap();
    assert_ne!(again, fs::read(store.path_for(3)).unwrap());
    assert_eq!(store.load(3).unwrap(), sample(3));

    assert!(matches!(
        store.load(4),
        Err(CheckpointError::Missing { step: 4, .. })
    ));
    assert!(
        !format!("{store:?}").contains("66, 66"),
        "Debug shows the key"
    );
}

#[test]
fn a_wrong_key_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = CheckpointStore::open(dir.path(), KEY, 2, NODE)
        .unwrap()
        .save(&sample(1))
        .unwrap();
    let mut other = KEY;
    other[31] ^= 1;
    let store = CheckpointStore::open(dir.path(), other, 2, NODE).unwrap();
    for result in [store.load(1), store.load_latest().map(Option::unwrap)] {
        let e = result.unwrap_err();
        assert!(matches!(e, CheckpointError::Authentication { .. }), "{e:?}");
        assert!(names_file(&e, &path), "{e}");
    }
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 2, NODE).unwrap();
    let mut small = Checkpoint::new(9, 5);
    small.sections.insert("w".into(), vec![1, 2, 3, 4, 5]);
    let path = store.save(&small).unwrap();
    let pristine = fs::read(&path).unwrap();
    for i in 0..pristine.len() {
        for bit in [0x01, 0x80] {
            let mut bytes = pristine.clone();
            bytes[i] ^= bit;
            fs::write(&path, &bytes).unwrap();
            let e = store.load(9).unwrap_err();
            let expected = match i {
                0..8 => matches!(e, CheckpointError::BadMagic { .. }),
                8..12 => matches!(e, CheckpointError::Unsupported { .. }),
                // A binding length that runs past the file leaves nothing to authenticate.
                32..34 => matches!(
                    e,
                    CheckpointError::Authentication { .. } | CheckpointError::Truncated { .. }
                ),
                // The step, nonce, binding, ciphertext and tag are all authenticated.
                _ => matches!(e, CheckpointError::Authentication { .. }),
            };
            assert!(expected, "byte {i} bit {bit:#x}: {e:?}");
            assert!(names_file(&e, &path), "{e}");
        }
    }
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 2, NODE).unwrap();
    let path = store.save(&sample(2)).unwrap();
    let pristine = fs::read(&path).unwrap();
    for len in 0..pristine.len() {
        fs::write(&path, &pristine[..len]).unwrap();
        let e = store.load(2).unwrap_err();
        // Fixed header (34 bytes), the binding, the tag (16 bytes).
        let expected = if len < 34 + NODE.len() + 16 {
            matches!(e, CheckpointError::Truncated { .. })
        } else {
            matches!(e, CheckpointError::Authentication { .. })
        };
        assert!(expected, "cut to {len}: {e:?}");
        assert!(names_file(&e, &path), "{e}");
    }
}

#[test]
fn a_renamed_file_cannot_pose_as_another_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 5, NODE).unwrap();
    let old = store.save(&sample(5)).unwrap();
    fs::rename(&old, store.path_for(9)).unwrap();
    match store.load(9) {
        Err(
            e @ CheckpointError::StepMismatch {
                in_name: 9,
                in_header: 5,
                ..
            },
        ) => {
            assert!(names_file(&e, &store.path_for(9)), "{e}");
            assert!(e.to_string().contains("belongs to another step"), "{e}");
        }
        other => panic!("expected StepMismatch, got {other:?}"),
    }
    // Negative control: renamed back, it loads.
    fs::rename(store.path_for(9), &old).unwrap();
    assert_eq!(store.load(5).unwrap(), sample(5));
}

#[test]
fn a_checkpoint_from_another_nodes_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Two nodes that derive the same key (same image, same chip): only the binding tells
    // their checkpoints apart.
    let mine = CheckpointStore::open(dir.path().join("node-1"), KEY, 5, NODE).unwrap();
    let theirs = CheckpointStore::open(dir.path().join("node-2"), KEY, 5, "node=node-2").unwrap();
    let foreign = theirs.save(&sample(4)).unwrap();
    fs::copy(&foreign, mine.path_for(4)).unwrap();
    let e = mine.load(4).unwrap_err();
    match &e {
        CheckpointError::BindingMismatch {
            expected, found, ..
        } => assert_eq!((expected.as_str(), found.as_str()), (NODE, "node=node-2")),
        other => panic!("expected BindingMismatch, got {other:?}"),
    }
    assert!(names_file(&e, &mine.path_for(4)), "{e}");
    assert!(e.to_string().contains("belongs to another node"), "{e}");
    assert!(matches!(
        mine.load_latest(),
        Err(CheckpointError::BindingMismatch { .. })
    ));
    // Negative controls: it loads in its own store, and a store reopened with its own
    // binding over the same directory reads it too.
    assert_eq!(theirs.load(4).unwrap(), sample(4));
    let theirs_again =
        CheckpointStore::open(dir.path().join("node-1"), KEY, 5, "node=node-2").unwrap();
    assert_eq!(theirs_again.load(4).unwrap(), sample(4));
}

#[test]
fn job_and_ledger_binding_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 5, NODE).unwrap();
    let digest: [u8; 32] = std::array::from_fn(|i| i as u8 * 7 + 1);
    let ckpt = Checkpoint::new(12, 345)
        .with_job("gpt-finetune")
        .with_ledger_digest(digest);
    store.save(&ckpt).unwrap();
    let back = store.load(12).unwrap();
    assert_eq!(back.job, "gpt-finetune");
    assert_eq!(back.ledger_position, 345);
    assert_eq!(back.ledger_digest, digest);
    assert_eq!(back, ckpt);
    // The defaults round-trip too: no job, an all-zero digest.
    store.save(&Checkpoint::new(13, 0)).unwrap();
    let bare = store.load(13).unwrap();
    assert_eq!((bare.job.as_str(), bare.ledger_digest), ("", [0; 32]));
    // The job is inside the ciphertext, not in the clear.
    let bytes = fs::read(store.path_for(12)).unwrap();
    assert!(!bytes.windows(12).any(|w| w == b"gpt-finetune"));
}

#[test]
fn files_are_private_and_so_is_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = dir.path().join("state").join("ckpt");
    let store = CheckpointStore::open(&root, KEY, 3, NODE).unwrap();
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    let path = store.save(&sample(1)).unwrap();
    assert_eq!(mode(&path), 0o600);
    let aside = store.quarantine(1).unwrap();
    assert_eq!(mode(&aside), 0o600);

    // An existing directory open to others is tightened: it holds only this store's files.
    let loose = dir.path().join("loose");
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
    CheckpointStore::open(&loose, KEY, 3, NODE).unwrap();
    assert_eq!(mode(&loose), 0o700);
}

#[test]
fn load_latest_never_falls_back_silently() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 5, NODE).unwrap();
    for step in [10, 20, 30] {
        store.save(&sample(step)).unwrap();
    }
    // Damage the two newest.
    for step in [20, 30] {
        let path = store.path_for(step);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xFF;
        fs::write(&path, bytes).unwrap();
    }
    let e = store.load_latest().unwrap_err();
    assert!(names_file(&e, &store.path_for(30)), "{e}");

    let found = store.load_latest_valid().unwrap();
    assert_eq!(found.checkpoint, Some(sample(10)));
    let skipped: Vec<u64> = found.skipped.iter().map(|s| s.step).collect();
    assert_eq!(skipped, [30, 20]);
    assert_eq!(found.skipped[0].path, store.path_for(30));
    assert!(matches!(
        found.skipped[0].error,
        CheckpointError::Authentication { .. }
    ));

    for s in &found.skipped {
        let aside = store.quarantine(s.step).unwrap();
        assert!(aside.exists());
    }
    assert_eq!(store.load_latest().unwrap(), Some(sample(10)));
    assert_eq!(store.steps().unwrap(), [10]);
}

#[test]
fn leftover_temp_files_are_cleaned_and_other_files_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 3, NODE).unwrap();
    store.save(&sample(1)).unwrap();
    drop(store);
    // What a save killed before its rename leaves, plus unrelated files.
    let tmp = dir
        .path()
        .join(".ckpt-00000000000000000002.00112233aabbccdd.tmp");
    fs::write(&tmp, b"half a checkpoint").unwrap();
    fs::write(dir.path().join("README"), b"not a checkpoint").unwrap();
    fs::write(dir.path().join("ckpt-2.bin"), b"wrong name").unwrap();

    let store = CheckpointStore::open(dir.path(), KEY, 3, NODE).unwrap();
    assert!(!tmp.exists());
    assert!(dir.path().join("README").exists());
    assert_eq!(store.steps().unwrap(), [1]);
    assert_eq!(store.load_latest().unwrap(), Some(sample(1)));
}

#[test]
fn pruning_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), KEY, 3, NODE).unwrap();
    for step in 1..=7 {
        store.save(&sample(step)).unwrap();
        assert_eq!(store.steps().unwrap().len(), step.min(3) as usize);
    }
    assert_eq!(store.steps().unwrap(), [5, 6, 7]);
    for step in [5, 6, 7] {
        assert_eq!(store.load(step).unwrap(), sample(step));
    }
    // Saving an older step (training resumed from it) keeps that file, drops the oldest other.
    store.save(&sample(2)).unwrap();
    assert_eq!(store.steps().unwrap(), [2, 6, 7]);
}

#[test]
fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        CheckpointStore::open(dir.path(), KEY, 0, NODE),
        Err(CheckpointError::InvalidKeep { keep: 0 })
    ));
    for binding in [String::new(), "n".repeat(1025)] {
        assert!(matches!(
            CheckpointStore::open(dir.path(), KEY, 1, &binding),
            Err(CheckpointError::InvalidBinding { .. })
        ));
    }
    let store = CheckpointStore::open(dir.path(), KEY, 1, NODE).unwrap();
    let mut c = sample(1);
    c.sections.insert(String::new(), vec![1]);
    assert!(matches!(
        store.save(&c),
        Err(CheckpointError::InvalidSectionName { .. })
    ));
    let long_job = sample(1).with_job("j".repeat(1025));
    assert!(matches!(
        store.save(&long_job),
        Err(CheckpointError::InvalidJob { .. })
    ));
    assert_eq!(store.steps().unwrap(), Vec::<u64>::new());
}

/// The store is shared with a background saver thread (checked at compile time).
#[test]
fn the_store_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CheckpointStore>();
}
