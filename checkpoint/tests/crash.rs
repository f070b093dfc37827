//! Kill -9 during saves: `checkpoint-stress` writes multi-megabyte checkpoints in a loop and is
//! killed at random moments. Afterwards every `ckpt-*.bin` must load and hold exactly what
//! was saved for its step, temporary files must be cleaned up by `open`, and the last step
//! reported saved must still be there.

use bastion_checkpoint::CheckpointStore;
use rand::Rng;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY: [u8; 32] = *b"checkpoint-stress test key 32 b!";
const NODE: &str = "node=stress";
const WEIGHTS: usize = 4 << 20;
const ROUNDS: usize = 30;

/// splitmix64 bytes, as the writer makes them (an independent copy).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn kill_9_never_leaves_a_half_written_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_checkpoint-stress");
    let mut rng = rand::rng();
    let mut last_saved = 0u64;
    let mut leftovers = 0;

    for round in 0..ROUNDS {
        let mut child = Command::new(bin)
            .arg(dir.path())
            .arg(WEIGHTS.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: writer exited by itself ({status}): {}",
            std::io::read_to_string(child.stderr.take().unwrap()).unwrap()
        );
        for line in reader.join().unwrap() {
            let step: u64 = line.strip_prefix("saved ").unwrap().parse().unwrap();
            assert!(step > last_saved, "round {round}: step {step} saved twice");
            last_saved = step;
        }

        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".tmp")
            })
            .count();
        leftovers += temps;

        let store = CheckpointStore::open(dir.path(), KEY, 3, NODE).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("ckpt-") && n.ends_with(".bin")),
            "round {round}: unexpected files after open: {names:?}"
        );
        let steps = store.steps().unwrap();
        // A kill between the rename and the prune leaves one extra.
        assert!(steps.len() <= 4, "round {round}: {steps:?}");
        if last_saved > 0 {
            assert!(
                steps.last() >= Some(&last_saved),
                "round {round}: saved step {last_saved} missing, have {steps:?}"
            );
        }
        for &step in &steps {
            let ckpt = store
                .load(step)
                .unwrap_or_else(|e| panic!("round {round}: checkpoint {step} does not load: {e}"));
            assert_eq!(ckpt.ledger_position, step * 100);
            assert_eq!(ckpt.ledger_digest, [step as u8; 32]);
            assert_eq!(ckpt.job, "stress");
            assert!(ckpt.sections["model.safetensors"] == pattern(step, WEIGHTS));
            assert!(ckpt.sections["optimizer"] == pattern(!step, WEIGHTS / 4));
            assert_eq!(ckpt.sections["rng"], step.to_le_bytes().repeat(4));
        }
    }
    eprintln!("{last_saved} checkpoints saved over {ROUNDS} kills, {leftovers} interrupted saves cleaned up");
    assert!(
        last_saved >= 3,
        "only {last_saved} saves completed: the kills came too early"
    );
    assert!(
        leftovers > 0,
        "no kill landed inside a save; the test exercised nothing"
    );
}
